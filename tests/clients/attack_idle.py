"""Idle clients: with a short idle_timeout_secs, silent SMTP and POP3 sessions are closed by
the server (SMTP says 421 4.4.2 first), before and after login, whichever executor the
session ends up on after login. Silent IMAP clients are closed before login ("* BYE"
first); after login IMAP keeps its 30-minute autologout (RFC 3501 5.4).
Usage: attack_idle.py IDLE_TIMEOUT_SECS"""
import sys
import threading
import time

from attack_common import fail, greeted, ok, read_line, read_lines, read_until, smtp_reply

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


def imap_logged_in():
    """Outlives the idle timeout: logged-in IMAP sessions are not cut after a few seconds."""
    s = greeted("imaps")
    s.sendall(b"a LOGIN alice@example.org alice-pw\r\n")
    r, _ = read_until(s, b"a ", 10)
    r += read_line(s, 10)
    if b"a OK" not in r:
        fail(f"IMAP login: {r!r}")
    time.sleep(float(sys.argv[1]) * 2 + 1)
    s.sendall(b"b NOOP\r\n")
    r, eof = read_until(s, b"b OK", 10)
    if eof or b"b OK" not in r:
        fail(f"logged-in IMAP session did not outlive the idle timeout: {r!r}")
    ok("a logged-in IMAP session outlived the idle timeout")


threads = [threading.Thread(target=smtp, args=(n,)) for n in ("smtp", "submission", "submissions")]
threads += [threading.Thread(target=smtp, args=(n,)) for n in ("imap", "imaps")]
threads.append(threading.Thread(target=imap_logged_in))
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
    if label.startswith("imap") and not data.startswith(b"* BYE "):
        fail(f"{label}: closed without * BYE: {data!r}")
ok(f"{len(results)} idle sessions closed by the server")
