"""Concurrent SMTP senders for a bounded time; every message id that got 250 is appended (and
flushed) to the ids file, so a test can kill -9 the server and check that none was lost.
Usage: smtp_flood.py IDS_FILE SECONDS THREADS"""
import smtplib
import sys
import threading
import time
from rp import HOST, port, message

ids_file, seconds, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
out = open(ids_file, "a", buffering=1)
lock = threading.Lock()
deadline = time.time() + seconds
rcpts = ["alice@example.org", "bob@example.org", "carol@example.org"]


def worker(n):
    i = 0
    while time.time() < deadline:
        try:
            s = smtplib.SMTP(HOST, port("smtp"), timeout=10)
            while time.time() < deadline:
                mid = f"flood-{n}-{i}"
                i += 1
                to = [rcpts[i % 3]] if i % 4 else rcpts
                s.sendmail("load@remote.example", to, message(mid, body="x" * 1500 + "\r\n"))
                with lock:
                    out.write(f"{mid} {','.join(to)}\n")
                    out.flush()
        except Exception:
            time.sleep(0.05)  # the server was killed: keep trying until the deadline


ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
