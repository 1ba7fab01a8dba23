"""IMAP memory probe: CLIENTS clients at once either APPEND a SIZE-octet message to bob's
INBOX, sent in pieces over SECONDS and held open until all have sent it ("append"; even
clients use a synchronising literal, odd ones LITERAL+), or FETCH BODY[] of every message in
carol's INBOX without reading the answer ("fetch"; deliver a large message to carol first).
Prints the server's resident memory before and at its peak. With MAX_GROWTH_MIB, fails when
the peak grew more than that, or when an APPEND got anything but OK or a NO [UNAVAILABLE]
(a LITERAL+ one then also gets * BYE: its data was already on its way).
Usage: attack_imap_memory.py append|fetch CLIENTS SIZE SECONDS SERVER_PID [MAX_GROWTH_MIB]"""
import socket
import sys
import threading
import time

from attack_common import fail, greeted, ok, read_line, read_until, rss_kib

mode, clients, size, seconds, pid = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                     float(sys.argv[4]), int(sys.argv[5]))
max_growth = int(sys.argv[6]) if len(sys.argv) > 6 else None
peak = [rss_kib(pid)]
base = peak[0]
done = threading.Event()
answers = []
sent = threading.Barrier(clients + 1)


def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_kib(pid))
        time.sleep(0.05)


def append(i):
    try:
        s = greeted("imaps", timeout=120)
        s.sendall(b"l LOGIN bob@example.org bob-pw\r\n")
        read_until(s, b"\r\n", 60)
        if i % 2 == 0:
            s.sendall(b"a APPEND INBOX {%d}\r\n" % size)
            go = read_line(s, 60)
            if not go.startswith(b"+"):
                answers.append(go[:45])
                return
        else:
            s.sendall(b"a APPEND INBOX {%d+}\r\n" % size)
        piece = (b"x" * 998 + b"\r\n") * 64
        steps = size // len(piece)
        for _ in range(steps):
            s.sendall(piece)
            time.sleep(seconds / max(1, steps))
        s.sendall(b"y" * (size - steps * len(piece)))
        s.sendall(b"\r\n")
        answers.append(read_line(s, 120)[:45])
    except OSError as e:
        # A refused LITERAL+ APPEND: the server answered and closed while data was coming.
        answers.append(f"closed: {e.__class__.__name__}".encode())
    finally:
        try:
            sent.wait(timeout=180)
        except threading.BrokenBarrierError:
            pass


def fetch(i):
    s = greeted("imaps", timeout=120)
    s.sendall(b"l LOGIN carol@example.org carol-pw\r\ns SELECT INBOX\r\n")
    read_until(s, b"s OK", 60)
    read_line(s)
    s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"f FETCH 1:* BODY[]\r\n")
    sent.wait()
    time.sleep(seconds)
    s.close()


sampler = threading.Thread(target=sample)
sampler.start()
threads = [threading.Thread(target={"append": append, "fetch": fetch}[mode], args=(i,))
           for i in range(clients)]
for t in threads:
    t.start()
try:
    sent.wait(timeout=240)
except threading.BrokenBarrierError:
    pass
for t in threads:
    t.join()
done.set()
sampler.join()
growth = (peak[0] - base) // 1024
print(f"IMAP {mode}: {clients} clients x {size} octets: server RSS {base // 1024} MiB before, "
      f"peak {peak[0] // 1024} MiB; answers {sorted(set(answers))[:4]}")
if max_growth is not None:
    if growth > max_growth:
        fail(f"resident memory grew by {growth} MiB (limit {max_growth})")
    if mode == "append":
        stored = sum(a.startswith(b"a OK") for a in answers)
        refused = sum(a.startswith((b"a NO [UNAVAILABLE]", b"closed")) for a in answers)
        if stored + refused != clients or refused == 0 or stored == 0:
            fail(f"{stored} stored, {refused} refused of {clients}: {sorted(set(answers))}")
ok("probe finished")
