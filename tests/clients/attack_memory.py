"""Memory attack: CLIENTS clients each send SIZE octets of message data at once, in pieces
over SECONDS, all holding their messages open until every one has sent its data, then end
them together. Every client must get 250 (stored) or 452 4.3.1 (no memory now, try later),
and with more data than the server's message-memory budget some must get 452. Prints the
server's peak resident memory.
Usage: attack_memory.py CLIENTS SIZE SECONDS SERVER_PID EXPECT_452(0|1)"""
import sys
import threading
import time

from attack_common import assert_alive, connect, fail, ok, read_line, rss_kib, smtp_reply

clients, size, seconds, pid = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
expect_refusals = sys.argv[5] == "1"

peak = [rss_kib(pid)]
base = peak[0]
done = threading.Event()


def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_kib(pid))
        time.sleep(0.05)


sent = threading.Barrier(clients + 1)
results = []
lock = threading.Lock()


def client(i):
    reply = b"no reply"
    try:
        s = connect("smtp", timeout=120)
        read_line(s)
        s.sendall(b"EHLO memory.example\r\n")
        smtp_reply(s)
        s.sendall(b"MAIL FROM:<m%d@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n" % i)
        r = smtp_reply(s) + smtp_reply(s) + smtp_reply(s)
        if b"354" not in r:
            reply = b"DATA refused: " + r
            sent.wait()
            return
        line = b"x" * 998 + b"\r\n"
        piece = line * 64
        steps = max(1, size // len(piece))
        s.sendall(b"Subject: memory attack %d\r\n\r\n" % i)
        for _ in range(steps):
            s.sendall(piece)
            time.sleep(seconds / steps)
        sent.wait()
        s.sendall(b".\r\n")
        reply = smtp_reply(s, 120)
        s.sendall(b"QUIT\r\n")
        s.close()
    except threading.BrokenBarrierError:
        reply = b"barrier broken"
    except OSError as e:
        reply = f"error {e}".encode()
        sent.abort()
    finally:
        with lock:
            results.append(reply)


sampler = threading.Thread(target=sample)
sampler.start()
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
try:
    sent.wait()
except threading.BrokenBarrierError:
    pass
time.sleep(0.5)
for t in threads:
    t.join()
done.set()
sampler.join()

stored = sum(r.startswith(b"250 ") for r in results)
refused = sum(r.startswith(b"452 4.3.1") for r in results)
other = [r for r in results if not r.startswith((b"250 ", b"452 4.3.1"))]
print(f"{clients} clients x {size} octets: {stored} stored, {refused} refused with 452; "
      f"server RSS {base // 1024} MiB before, peak {peak[0] // 1024} MiB")
if other:
    fail(f"unexpected answers: {other[:5]}")
if expect_refusals and refused == 0:
    fail("more data than the memory budget, yet nothing was refused")
if stored == 0:
    fail("nothing was stored")
ok("every client got 250 or 452 4.3.1")
assert_alive("the memory attack")
