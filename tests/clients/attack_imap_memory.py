"""IMAP memory probe (a reproduction, not wired into a test yet): CLIENTS clients at once
either APPEND a SIZE-octet LITERAL+ message to bob's INBOX, sent in pieces over SECONDS and
held open until all have sent it ("append"), or FETCH BODY[] of every message in carol's
INBOX without reading the answer ("fetch"; deliver a large message to carol first). Prints
the server's resident memory before and at its peak.
Usage: attack_imap_memory.py append|fetch CLIENTS SIZE SECONDS SERVER_PID"""
import socket
import sys
import threading
import time

from attack_common import greeted, ok, read_line, read_until, rss_kib

mode, clients, size, seconds, pid = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                     float(sys.argv[4]), int(sys.argv[5]))
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
    s = greeted("imaps", timeout=120)
    s.sendall(b"l LOGIN bob@example.org bob-pw\r\n")
    read_until(s, b"\r\n", 60)
    s.sendall(b"a APPEND INBOX {%d+}\r\n" % size)
    piece = (b"x" * 998 + b"\r\n") * 64
    steps = size // len(piece)
    for _ in range(steps):
        s.sendall(piece)
        time.sleep(seconds / max(1, steps))
    s.sendall(b"y" * (size - steps * len(piece)))
    sent.wait()
    s.sendall(b"\r\n")
    answers.append(read_line(s, 120)[:40])


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
sent.wait()
for t in threads:
    t.join()
done.set()
sampler.join()
print(f"IMAP {mode}: {clients} clients x {size} octets: server RSS {base // 1024} MiB before, "
      f"peak {peak[0] // 1024} MiB; answers {sorted(set(answers))[:3]}")
ok("probe finished")
