"""POP3 protocol attacks: long lines, NULs, huge / negative / overflowing message numbers, TOP
with giant line counts, AUTH floods and oversized SASL, commands pipelined after STLS and
after QUIT. Every listener must still answer afterwards. alice must have at least one message.
Usage: attack_pop3.py"""
import base64
import os

from attack_common import (assert_alive, fail, greeted, ok, read_lines, start_tls,
                           read_until)



def status(data):
    """+OK / -ERR of every status line (multi-line bodies are not split out here)."""
    return [ln.split(b" ")[0] for ln in data.split(b"\r\n") if ln.startswith((b"+OK", b"-ERR"))]


def exchange(s, data, n, timeout=20):
    s.sendall(data)
    return read_lines(s, n, timeout)


def expect(label, data, want):
    got = status(data)
    if got != want:
        fail(f"{label}: {got}, want {want} ({data[-300:]!r})")
    ok(label)


def login():
    s = greeted("pop3s")
    data = exchange(s, b"USER alice@example.org\r\nPASS alice-pw\r\n", 2)
    if status(data) != [b"+OK", b"+OK"]:
        fail(f"login: {data!r}")
    return s


s = greeted("pop3")
expect("1 MiB line, then CAPA", exchange(s, b"A" * (1 << 20) + b"\r\nNOOP\r\n", 2),
       [b"-ERR", b"-ERR"])
s.sendall(b"B" * (4 << 20))
expect("4 MiB without a line end", exchange(s, b"\r\nQUIT\r\n", 2), [b"-ERR", b"+OK"])
s = greeted("pop3")
expect("NUL bytes", exchange(s, b"CA\x00PA\r\nUSER a\x00b\r\nQUIT\r\n", 3),
       [b"-ERR", b"-ERR", b"+OK"])
s = greeted("pop3")
expect("USER/PASS/AUTH before STLS", exchange(
    s, b"USER alice@example.org\r\nPASS alice-pw\r\nAUTH PLAIN\r\n", 3), [b"-ERR"] * 3)
s.close()

# Commands pipelined after STLS are discarded; the handshake then fails on them.
s = greeted("pop3")
s.sendall(b"STLS\r\nUSER alice@example.org\r\nPASS alice-pw\r\nSTAT\r\n")
data, eof = read_until(s, None, 10)
if status(data) != [b"+OK"] or not eof:
    fail(f"commands pipelined after STLS: {data!r}")
ok("commands pipelined after STLS are not executed")
# STLS done right, with junk pipelined behind the handshake by a real TLS client.
s = greeted("pop3")
s.sendall(b"STLS\r\n")
read_lines(s, 1)
t = start_tls(s)
expect("STLS twice", exchange(t, b"STLS\r\nCAPA\r\n", 2), [b"-ERR", b"+OK"])
t.close()

s = login()
for arg in (b"RETR 0", b"RETR -1", b"RETR 4294967295", b"RETR 4294967296",
            b"RETR 99999999999999999999999", b"RETR 1 2", b"RETR +1", b"RETR 0x1",
            b"LIST 18446744073709551616", b"LIST -0", b"DELE 0", b"DELE 4294967297",
            b"UIDL -5", b"TOP 1 -1", b"TOP 0 0", b"TOP 1", b"TOP -1 5", b"TOP 1 1 1",
            b"STAT x", b"NOOP x", b"RETR \xff"):
    data = exchange(s, arg + b"\r\n", 1)
    if status(data) != [b"-ERR"]:
        fail(f"{arg!r}: {data!r}")
ok("bad message numbers and arguments get -ERR")
s.sendall(b"RETR 1\r\n")
whole, _ = read_until(s, b"\r\n.\r\n", 20)
for arg in (b"TOP 1 99999999999999999999", b"TOP 1 18446744073709551615",
            b"TOP 1 4294967296", b"TOP 1 2147483648"):
    s.sendall(arg + b"\r\n")
    data, _ = read_until(s, b"\r\n.\r\n", 20)
    if data.split(b"\r\n", 1)[1:] != whole.split(b"\r\n", 1)[1:]:
        fail(f"{arg!r}: not the whole message: {data[:200]!r}")
ok("TOP with giant line counts gives the whole message")

# Pipelined floods in the TRANSACTION state.
s.sendall(b"NOOP\r\n" * 10000)
data = read_lines(s, 10000, 30)
if data.count(b"+OK") != 10000:
    fail(f"10k pipelined NOOPs: {data.count(b'+OK')} answers")
ok("10k pipelined NOOPs answered")
s.sendall(b"RETR 1\r\n" * 500 + b"QUIT\r\n")
data, eof = read_until(s, None, 30, limit=1 << 28)
while not eof:
    more, eof = read_until(s, None, 30, limit=1 << 28)
    if not more:
        break
    data += more
ends = data.count(b"\r\n.\r\n")
if ends < 500 or not data.endswith(b"+OK ringpost POP3 signing off\r\n"):
    fail(f"500 pipelined RETRs: {ends} answers, ends {data[-60:]!r}")
ok("500 pipelined RETRs answered, then QUIT")

# AUTH floods and oversized SASL.
s = greeted("pop3s")
blob = base64.b64encode(os.urandom(1 << 20))
expect("AUTH with 1 MiB of base64", exchange(s, b"AUTH PLAIN " + blob + b"\r\nNOOP\r\n", 2),
       [b"-ERR", b"-ERR"])
expect("AUTH continuation of 1 MiB", exchange(s, b"AUTH PLAIN\r\n" + blob + b"\r\nNOOP\r\n", 3),
       [b"-ERR", b"-ERR"])
for b in (b"\0\0\0\0", b"", b"\0alice@example.org\0alice-pw\0", b"\0\0alice-pw"):
    data = exchange(s, b"AUTH PLAIN " + (base64.b64encode(b) or b"=") + b"\r\n", 1)
    if status(data) != [b"-ERR"]:
        fail(f"AUTH PLAIN {b!r}: {data!r}")
ok("AUTH PLAIN with NULs everywhere is refused")
s.close()
s = greeted("pop3s")
s.sendall(b"AUTH PLAIN =\r\n" * 2000 + b"QUIT\r\n")
data, eof = read_until(s, b"signing off\r\n", 30)
if data.count(b"-ERR") != 2000 or not data.endswith(b"signing off\r\n"):
    fail(f"2000 pipelined AUTHs: {data.count(b'-ERR')} refusals, ends {data[-60:]!r}")
ok("2000 pipelined AUTHs refused, then QUIT")

s = greeted("pop3s")
s.sendall(b"QUIT\r\nCAPA\r\nUSER alice@example.org\r\n")
data, eof = read_until(s, None, 5)
if status(data) != [b"+OK"] or not eof:
    fail(f"after QUIT: {data!r}")
ok("nothing after QUIT is executed")

assert_alive("POP3 attacks")
