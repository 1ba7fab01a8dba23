"""Idle clients: with a short idle_timeout_secs, silent SMTP and POP3 sessions are closed by
the server (SMTP says 421 4.4.2 first), before and after login, whichever executor the
session ends up on after login.
Usage: attack_idle.py"""
import threading

from attack_common import fail, greeted, ok, read_lines, read_until, smtp_reply

results = []
lock = threading.Lock()


def wait_closed(label, s):
    data, eof = read_until(s, None, 60)
    with lock:
        results.append((label, eof, data))


def smtp(name):
    wait_closed(name, greeted(name))


def pop3(name, user):
    s = greeted(name)
    if user:
        s.sendall(b"USER %s@example.org\r\nPASS %s-pw\r\n" % (user, user))
        r = read_lines(s, 2)
        if r.count(b"+OK") != 2:
            fail(f"{user!r} login: {r!r}")
    wait_closed(f"{name} {user.decode() or 'before login'}", s)


def submission_authed():
    import base64
    s = greeted("submissions")
    s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.org\0alice-pw") + b"\r\n")
    if not smtp_reply(s).startswith(b"235"):
        fail("SMTP login failed")
    wait_closed("submissions after login", s)


threads = [threading.Thread(target=smtp, args=(n,)) for n in ("smtp", "submission", "submissions")]
threads += [threading.Thread(target=pop3, args=(n, b"")) for n in ("pop3", "pop3s")]
threads += [threading.Thread(target=pop3, args=("pop3s", u)) for u in (b"alice", b"bob", b"carol")]
threads.append(threading.Thread(target=submission_authed))
for t in threads:
    t.start()
for t in threads:
    t.join()
for label, eof, data in results:
    if not eof:
        fail(f"{label}: idle session never closed")
    if label.startswith(("smtp", "submission")) and not data.startswith(b"421 4.4.2 "):
        fail(f"{label}: closed without 421 4.4.2: {data!r}")
ok(f"{len(results)} idle sessions closed by the server")
