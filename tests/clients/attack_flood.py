"""Connection floods and slowloris: IDLE connections held open on every port (a share of them
trickling one byte a second), then FLOOD connections opened as fast as possible. New clients
must be served on every port throughout, and the server's descriptors must come back down
once the attackers leave.
Usage: attack_flood.py IDLE FLOOD SERVER_PID"""
import resource
import socket
import sys
import threading
import time

from attack_common import ALL, assert_alive, fail, ok, open_fds
from rp import HOST, port

idle_n, flood_n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
room = hard - 100
if idle_n + flood_n > room:
    idle_n, flood_n = room // 4, room // 2
    print(f"only {hard} descriptors here: {idle_n} idle, {flood_n} flood")

baseline = open_fds(pid)
socks = []
for i in range(idle_n):
    try:
        socks.append(socket.create_connection((HOST, port(ALL[i % len(ALL)])), timeout=10))
    except OSError as e:
        fail(f"idle connection {i} refused: {e}")
ok(f"{idle_n} idle connections open on every port")

stop = threading.Event()


def slowloris(conns):
    """One byte a second on each connection: a command line that never ends."""
    while not stop.is_set():
        for s in conns:
            try:
                s.send(b"X")
            except OSError:
                pass
        stop.wait(1)


trickle = threading.Thread(target=slowloris, args=(socks[: idle_n // 2],))
trickle.start()
time.sleep(2)
assert_alive(f"{idle_n} idle and slowloris connections")

flood = []
started = time.time()
for i in range(flood_n):
    try:
        flood.append(socket.create_connection((HOST, port(ALL[i % len(ALL)])), timeout=10))
    except OSError as e:
        fail(f"flood connection {i} failed: {e}")
ok(f"{flood_n} more connections opened in {time.time() - started:.1f}s")
assert_alive(f"a flood of {flood_n} connections")

stop.set()
trickle.join()
for s in socks + flood:
    s.close()
deadline = time.time() + 30
while open_fds(pid) > baseline + 20 and time.time() < deadline:
    time.sleep(0.2)
if open_fds(pid) > baseline + 20:
    fail(f"descriptors stay up: {open_fds(pid)} open, {baseline} before the flood")
ok(f"descriptors back to {open_fds(pid)} (were {baseline})")

# Connect-and-drop churn: each connection closed right after connecting, some with a reset.
for i in range(flood_n):
    s = socket.create_connection((HOST, port(ALL[i % len(ALL)])), timeout=10)
    if i % 2:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
ok(f"{flood_n} connect-and-drop connections")
assert_alive("connect-and-drop churn")
