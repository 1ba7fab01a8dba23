"""Password-guessing floods: PARALLEL connections at once per protocol (SMTP AUTH on 465,
POP3 USER/PASS and AUTH on 995, IMAP LOGIN on 993), each with wrong passwords. Every guess
must be refused, and afterwards every listener must answer and real logins must still
work (the guesses must not leave a backlog of password hashing behind).
Usage: attack_auth.py PARALLEL"""
import base64
import sys
import threading

from attack_common import assert_alive, fail, greeted, ok, read_line, read_until, smtp_reply

parallel = int(sys.argv[1])


def smtp_guess(i):
    s = greeted("submissions", timeout=60)
    s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.org\0guess%d" % i) + b"\r\n")
    return smtp_reply(s, 60).startswith(b"535 ")


def pop3_guess(i):
    s = greeted("pop3s", timeout=60)
    if i % 2:
        s.sendall(b"USER bob@example.org\r\nPASS guess%d\r\n" % i)
        read_line(s, 60)
    else:
        s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0bob@example.org\0guess%d" % i) + b"\r\n")
    return read_line(s, 60).startswith(b"-ERR")


def imap_guess(i):
    s = greeted("imaps", timeout=60)
    s.sendall(b"g LOGIN carol@example.org guess%d\r\n" % i)
    data, _ = read_until(s, b"\r\n", 60)
    return data.startswith(b"g NO")


results = []
lock = threading.Lock()


def run(guess, i):
    try:
        r = guess(i)
    except OSError as e:
        r = f"error {e}"
    with lock:
        results.append(r)


threads = [threading.Thread(target=run, args=(g, i))
           for g in (smtp_guess, pop3_guess, imap_guess) for i in range(parallel)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wrong = [r for r in results if r is not True]
if wrong:
    fail(f"{len(wrong)} guesses not refused properly: {wrong[:5]}")
ok(f"{len(results)} parallel password guesses refused")
assert_alive("password-guessing floods")

# Real logins work afterwards, on every protocol.
s = greeted("submissions", timeout=60)
s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.org\0alice-pw") + b"\r\n")
r = smtp_reply(s, 60)
if not r.startswith(b"235 "):
    fail(f"SMTP login after the flood: {r!r}")
s = greeted("pop3s", timeout=60)
s.sendall(b"USER bob@example.org\r\nPASS bob-pw\r\n")
read_line(s, 60)
r = read_line(s, 60)
if not r.startswith(b"+OK"):
    fail(f"POP3 login after the flood: {r!r}")
s = greeted("imaps", timeout=60)
s.sendall(b"l LOGIN carol@example.org carol-pw\r\n")
data, _ = read_until(s, b"\r\n", 60)
while data.startswith(b"* "):
    data, _ = read_until(s, b"\r\n", 60)
if not data.startswith(b"l OK"):
    fail(f"IMAP login after the flood: {data!r}")
ok("real logins work after the floods")
