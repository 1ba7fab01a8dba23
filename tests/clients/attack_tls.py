"""TLS attacks on every TLS entry point (implicit TLS and after STARTTLS): garbage instead of
a ClientHello, a client that never speaks, half a handshake, a byte-at-a-time handshake,
renegotiation and KeyUpdate floods, STARTTLS twice. The server runs with a short
tls_handshake_timeout_secs; every stalled handshake must be closed by the server.
Usage: attack_tls.py"""
import os
import shutil
import subprocess
import threading
import time

from attack_common import (IMPLICIT_TLS, assert_alive, closed_or_error, connect, fail,
                           greeted, ok, read_line, read_lines, smtp_reply)
from rp import HOST, port

STARTTLS = {
    "smtp": [b"EHLO a.example\r\n", b"STARTTLS\r\n"],
    "submission": [b"EHLO a.example\r\n", b"STARTTLS\r\n"],
    "imap": [b"t STARTTLS\r\n"],
    "pop3": [b"STLS\r\n"],
}
# A ClientHello that promises more than it sends.
HALF_HELLO = bytes.fromhex("1603010200010001fc0303") + os.urandom(32) + b"\x00\x00\x02\x13\x01"
JUNK = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"EHLO plaintext.example\r\n",
    os.urandom(20000),
    b"\x16\x03\x01\xff\xff" + b"A" * 300,  # record longer than allowed
    b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",  # truncated handshake message
    b"\x80\x80\x01\x03\x01" + os.urandom(120),  # SSLv2-style hello
    b"\x00" * 4096,
]


def entry(name):
    """A raw socket at the point where the server expects a ClientHello."""
    if name in IMPLICIT_TLS:
        return connect(name, tls=False)
    s = connect(name)
    read_line(s)
    for c in STARTTLS[name]:
        s.sendall(c)
        r = smtp_reply(s) if name in ("smtp", "submission") else read_line(s)
        if not r:
            fail(f"{name}: no answer to {c!r}")
    return s


POINTS = list(IMPLICIT_TLS) + list(STARTTLS)

# 1. Garbage instead of a ClientHello: an alert or a close, quickly.
for name in POINTS:
    for junk in JUNK:
        s = entry(name)
        try:
            s.sendall(junk)
        except OSError:
            pass
        if not closed_or_error(s, 10):
            fail(f"{name}: garbage {junk[:12]!r} did not end the connection")
        s.close()
ok("garbage instead of a ClientHello is refused on every TLS entry point")
assert_alive("TLS garbage")


# 2. Stalled handshakes (silent, half a hello, one byte a second): all closed by the
#    handshake deadline, in parallel.
def stall(name, how, results):
    s = entry(name)
    s.settimeout(1)
    payload = HALF_HELLO if how == "trickle" else b""
    if how == "half":
        s.sendall(HALF_HELLO)
    closed = False
    for i in range(40):  # 40 s at most; the server's deadline is a few seconds
        if how == "trickle" and i < len(payload):
            try:
                s.sendall(payload[i:i + 1])
            except OSError:
                closed = True
                break
        try:
            if s.recv(100) == b"":
                closed = True
                break
        except TimeoutError:
            continue
        except OSError:
            closed = True
            break
    s.close()
    results.append((name, how, closed))


results = []
threads = [threading.Thread(target=stall, args=(n, h, results))
           for n in POINTS for h in ("silent", "half", "trickle")]
for t in threads:
    t.start()
for t in threads:
    t.join()
stuck = [(n, h) for n, h, c in results if not c]
if stuck:
    fail(f"handshakes never timed out: {stuck}")
ok(f"{len(results)} stalled handshakes (silent, half, byte-at-a-time) were all closed")
assert_alive("stalled handshakes")

# 3. STARTTLS once TLS is up: refused, the session goes on.
for name, cmd, good in (("submissions", b"STARTTLS\r\nNOOP\r\n", b"250 "),
                        ("imaps", b"s STARTTLS\r\ns2 NOOP\r\n", b"s2 OK"),
                        ("pop3s", b"STLS\r\nCAPA\r\n", b"+OK")):
    s = greeted(name)
    s.sendall(cmd)
    first, second = (read_lines(s, 2, 10).split(b"\r\n") + [b"", b""])[:2]
    if not first.startswith((b"503 ", b"s BAD", b"s NO", b"-ERR")) or \
            not second.startswith(good):
        fail(f"{name}: second TLS start answered {first!r} then {second!r}")
    s.close()
ok("STARTTLS/STLS inside TLS is refused and the session goes on")


# 4. Renegotiation (TLS 1.2) and KeyUpdate floods (TLS 1.3), with openssl's s_client, whose
#    interactive commands R and k ask for them.
def s_client(name, version, command, count):
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"{HOST}:{port(name)}", version],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        for _ in range(count):
            p.stdin.write(command)
            p.stdin.flush()
            time.sleep(0.01)
        time.sleep(0.5)
        p.stdin.close()
    except OSError:
        pass  # the server ended the connection: fine
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


if shutil.which("openssl"):
    for name in IMPLICIT_TLS:
        s_client(name, "-tls1_2", b"R\n", 5)
        s_client(name, "-tls1_3", b"k\n", 200)
    ok("renegotiation and KeyUpdate floods tried")
    assert_alive("renegotiation and KeyUpdate floods")
