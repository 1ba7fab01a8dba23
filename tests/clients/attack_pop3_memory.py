"""POP3 slow readers: alice, bob and carol (each with one SIZE-octet message) RETR it over POP3S at
once and read only the first line. Three accounts on two executors: at least two share one, and
with an output memory for one body per executor, at least one RETR must be told to come back
later (-ERR [SYS/TEMP]) instead of the server holding every body. Fails when resident memory
grew more than MAX_GROWTH_MIB, or when the answers are not +OK / -ERR [SYS/TEMP] with at least
one of each.
Usage: attack_pop3_memory.py SIZE SERVER_PID MAX_GROWTH_MIB"""
import socket
import sys
import threading
import time

from attack_common import fail, greeted, ok, read_line, rss_kib

size, pid, max_growth = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
USERS = [("alice@example.org", "alice-pw"), ("bob@example.org", "bob-pw"),
         ("carol@example.org", "carol-pw")]
base = rss_kib(pid)
peak = [base]
answers = []
lock = threading.Lock()
done = threading.Barrier(len(USERS) + 1)


def retr(user, password):
    s = greeted("pop3s", timeout=60)
    s.sendall(f"USER {user}\r\nPASS {password}\r\n".encode())
    read_line(s, 30)
    if not read_line(s, 30).startswith(b"+OK"):
        fail(f"{user}: login refused")
    s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"RETR 1\r\n")
    first = read_line(s, 60)
    with lock:
        answers.append(first[:50])
    done.wait(timeout=120)  # hold the connection, unread, until every client has its answer
    s.close()


threads = [threading.Thread(target=retr, args=u) for u in USERS]
for t in threads:
    t.start()
try:
    done.wait(timeout=120)
except threading.BrokenBarrierError:
    fail(f"not every RETR was answered: {answers}")
time.sleep(1)
peak[0] = max(peak[0], rss_kib(pid))
for t in threads:
    t.join()
growth = (peak[0] - base) // 1024
print(f"POP3 RETR: {len(USERS)} slow readers x {size} octets: RSS {base // 1024} MiB before, "
      f"{peak[0] // 1024} MiB with all answered; answers {sorted(set(answers))}")
served = sum(a.startswith(b"+OK") for a in answers)
refused = sum(a.startswith(b"-ERR [SYS/TEMP]") for a in answers)
if served + refused != len(USERS) or served == 0 or refused == 0:
    fail(f"{served} served, {refused} refused: {answers}")
if growth > max_growth:
    fail(f"resident memory grew by {growth} MiB (limit {max_growth})")
ok("probe finished")
