"""Mail for carol that is delivered, deleted and delivered again, for the compaction test.
Usage: compaction.py fill N | drain | more N | check N"""
import poplib
import smtplib
import sys

from rp import HOST, check, port, tls_context


def body(tag, i):
    line = f"{tag} {i} " + "abcdefghij" * 7
    return (f"From: <alice@example.org>\r\nTo: <carol@example.org>\r\nSubject: {tag}-{i}\r\n"
            f"Message-ID: <{tag}-{i}@example.org>\r\n\r\n" + (line + "\r\n") * 50).encode()


def deliver(tag, n):
    s = smtplib.SMTP(HOST, port("smtp"), timeout=30)
    for i in range(n):
        s.sendmail("alice@example.org", ["carol@example.org"], body(tag, i))
    s.quit()
    print(f"ok: {n} {tag} messages delivered")


def pop():
    p = poplib.POP3_SSL(HOST, port("pop3s"), context=tls_context(), timeout=30)
    p.user("carol@example.org")
    p.pass_("carol-pw")
    return p


def drain():
    p = pop()
    n, _ = p.stat()
    for i in range(1, n + 1):
        p.dele(i)
    p.quit()
    print(f"ok: {n} messages deleted")


def check_more(n):
    p = pop()
    count, _ = p.stat()
    check(count == n, f"{n} messages left after compaction (have {count})")
    got = set()
    for i in range(1, count + 1):
        _, lines, _ = p.retr(i)
        msg = b"\r\n".join(lines) + b"\r\n"
        subject = next(l for l in lines if l.startswith(b"Subject: "))[9:].decode()
        tag, k = subject.rsplit("-", 1)
        # The server prepends trace headers; the message as sent follows them byte-exact.
        check(msg.endswith(body(tag, int(k))), f"{subject} is byte-exact")
        got.add(subject)
    check(got == {f"more-{i}" for i in range(n)}, "exactly the later messages are there")
    p.quit()


cmd = sys.argv[1]
if cmd == "fill":
    deliver("fill", int(sys.argv[2]))
elif cmd == "more":
    deliver("more", int(sys.argv[2]))
elif cmd == "drain":
    drain()
else:
    check_more(int(sys.argv[2]))
