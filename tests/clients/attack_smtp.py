"""SMTP protocol attacks on the MX and submission ports. Each attack checks the reply the
attacked session got (a protocol error, or a close), and every listener must still answer
afterwards. The server runs with max_message_size = LIMIT (first argument).
Usage: attack_smtp.py LIMIT"""
import base64
import os
import sys

from attack_common import (assert_alive, fail, greeted, ok, read_lines, start_tls,
                           read_until, smtp_reply)


LIMIT = int(sys.argv[1])
TX = b"MAIL FROM:<attacker@remote.example>\r\nRCPT TO:<alice@example.org>\r\n"


def codes(data):
    """Reply codes of every final reply line in `data`."""
    return [ln[:3] for ln in data.split(b"\r\n") if len(ln) >= 4 and ln[3:4] == b" "]


def expect(label, data, want):
    got = codes(data)
    if got != want:
        fail(f"{label}: replies {got}, want {want} ({data[-300:]!r})")
    ok(label)


def exchange(s, data, n):
    """Sends `data`, reads `n` reply lines."""
    s.sendall(data)
    return read_lines(s, n, 20)


def session(name="smtp"):
    return greeted(name)


# Lines far beyond max_line_length, NUL bytes and 8-bit bytes in commands.
s = session()
expect("1 MiB command line, then NOOP", exchange(s, b"A" * (1 << 20) + b"\r\nNOOP\r\n", 2),
       [b"500", b"250"])
s.sendall(b"B" * (5 << 20))
expect("5 MiB without a line end, then NOOP", exchange(s, b"\r\nNOOP\r\n", 2), [b"500", b"250"])
expect("NUL bytes in commands", exchange(
    s, b"NO\x00OP\r\nMAIL FROM:<a\x00b@remote.example>\r\nNOOP\r\n", 3), [b"500", b"500", b"250"])
data = exchange(s, b"N\xffOOP\r\nMAIL FROM:<\xc3\xa9@remote.example>\r\nHELO \xff\xfe\r\nNOOP\r\n", 4)
if codes(data)[-1:] != [b"250"] or any(c[:1] != b"5" for c in codes(data)[:-1]):
    fail(f"8-bit commands: {data!r}")
ok("8-bit bytes in commands are refused")
s.close()

# Pipelining floods: 10k commands in one write.
s = session()
s.sendall(b"NOOP\r\n" * 10000)
data = read_lines(s, 10000, 30)
if data.count(b"250 2.0.0") != 10000:
    fail(f"10k pipelined NOOPs: {data.count(b'250 2.0.0')} answers")
ok("10k pipelined NOOPs all answered")
s.close()
s = session()
s.sendall(b"XYZZY\r\n" * 10000)
data, eof = read_until(s, None, 20)
if not eof or b"421 4.7.0" not in data:
    fail(f"10k unknown commands: no 421 close ({data[-120:]!r})")
ok("10k unknown commands end with 421 and a close")
s = session()
s.sendall((b"RSET\r\n" + TX) * 2000 + b"NOOP\r\n")
data = read_lines(s, 6001, 30)
if codes(data) != [b"250"] * 6001:
    fail(f"2000 pipelined transactions: {codes(data)[-5:]} {len(codes(data))} replies")
ok("2000 pipelined transactions answered in order")
s.close()


# DATA and BDAT of exactly the size limit, and one octet over.
def body(size):
    """A message of exactly `size` octets (CRLF line ends, last line ends in CRLF)."""
    head = b"Subject: size test\r\n\r\n"
    rest = size - len(head)
    lines = []
    while rest > 0:
        n = min(rest, 78)
        if n < 2:
            lines[-1] = lines[-1][:-2] + b"y" * n + b"\r\n"
            break
        lines.append(b"x" * (n - 2) + b"\r\n")
        rest -= n
    m = head + b"".join(lines)
    assert len(m) == size, (len(m), size)
    return m


s = session()
expect("DATA of exactly the size limit", exchange(
    s, TX + b"DATA\r\n" + body(LIMIT) + b".\r\n", 4), [b"250", b"250", b"354", b"250"])
expect("DATA one octet over the limit", exchange(
    s, TX + b"DATA\r\n" + body(LIMIT + 1) + b".\r\nNOOP\r\n", 5),
    [b"250", b"250", b"354", b"552", b"250"])
expect("BDAT of exactly the size limit", exchange(
    s, TX + b"BDAT %d LAST\r\n" % LIMIT + body(LIMIT), 3), [b"250", b"250", b"250"])
expect("BDAT one octet over the limit", exchange(
    s, TX + b"BDAT %d LAST\r\n" % (LIMIT + 1) + body(LIMIT + 1) + b"NOOP\r\n", 4),
    [b"250", b"250", b"552", b"250"])
expect("SIZE= over the limit", exchange(
    s, b"MAIL FROM:<a@remote.example> SIZE=%d\r\n" % (LIMIT + 1), 1), [b"552"])
s.close()

# BDAT with giant, negative and overflowing sizes.
for arg in (b"18446744073709551616", b"99999999999999999999999999 LAST", b"-1", b"+5",
            b"0x10", b"", b"1e9"):
    s = session()
    s.sendall(TX + b"BDAT " + arg + b"\r\nNOOP\r\n")
    data, eof = read_until(s, None, 5)
    if codes(data)[:3] != [b"250", b"250", b"501"] or not eof:
        fail(f"BDAT {arg!r}: {data!r} (eof {eof})")
    s.close()
ok("BDAT with unusable sizes: 501 and a close (framing lost)")
s = session()
# The largest size that parses: the chunk swallows everything after it, up to the limit.
s.sendall(TX + b"BDAT 18446744073709551615 LAST\r\n" + b"z" * (LIMIT + 4096))
s.close()
s = session()
expect("BDAT without MAIL: chunk skipped, not executed",
       exchange(s, b"BDAT 6\r\nQUIT\r\nNOOP\r\n", 2), [b"503", b"250"])
expect("BDAT then DATA", exchange(s, TX + b"BDAT 3\r\nabcDATA\r\nRSET\r\n", 5),
       [b"250", b"250", b"250", b"503", b"250"])
expect("RSET inside a BDAT chunk is data", exchange(
    s, TX + b"BDAT 12\r\nRSET\r\nRSET\r\nBDAT 2 LAST\r\nab", 4),
    [b"250", b"250", b"250", b"250"])
expect("RSET between BDAT chunks ends the transaction", exchange(
    s, TX + b"BDAT 5\r\nhelloRSET\r\nBDAT 5 LAST\r\nworldNOOP\r\n", 6),
    [b"250", b"250", b"250", b"250", b"503", b"250"])
expect("DATA then BDAT", exchange(
    s, TX + b"DATA\r\n", 3) + exchange(s, b"Subject: x\r\n\r\nx\r\n.\r\nBDAT 3 LAST\r\nabc", 2),
    [b"250", b"250", b"354", b"250", b"503"])
s.close()

# Many recipients, duplicate recipients, header floods.
s = session()
rcpts = b"".join(b"RCPT TO:<alice+%d@example.org>\r\n" % i for i in range(2000))
data = exchange(s, b"MAIL FROM:<a@remote.example>\r\n" + rcpts + b"NOOP\r\n", 2002)
c = codes(data)
if c.count(b"250") != 102 or c.count(b"452") != 1900:
    fail(f"2000 recipients: {c.count(b'250')} x 250, {c.count(b'452')} x 452")
ok("2000 recipients: 100 accepted, the rest 452")
expect("500 duplicates of one recipient", exchange(
    s, b"RSET\r\nMAIL FROM:<a@remote.example>\r\n" + b"RCPT TO:<alice@example.org>\r\n" * 500, 502),
    [b"250"] * 502)
headers = b"".join(b"X-Flood-%d: %s\r\n" % (i, b"v" * 20) for i in range(5000))
expect("header flood", exchange(
    s, b"DATA\r\n" + headers[:LIMIT - 100] + b"\r\nbody\r\n.\r\nNOOP\r\n", 3),
    [b"354", b"552", b"250"])
s.close()

# Commands after QUIT are never answered.
s = session()
s.sendall(b"QUIT\r\nNOOP\r\nMAIL FROM:<a@remote.example>\r\n")
data, eof = read_until(s, None, 5)
if codes(data) != [b"221"] or not eof:
    fail(f"after QUIT: {data!r}")
ok("nothing after QUIT is executed")

# AUTH: huge base64, NULs everywhere, before TLS, after AUTH.
s = session("submission")
expect("AUTH before TLS on submission", exchange(
    s, b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.org\0alice-pw") + b"\r\n", 1),
    [b"538"])
s.close()
s = session("submissions")
expect("AUTH with 1 MiB of base64", exchange(
    s, b"AUTH PLAIN " + base64.b64encode(os.urandom(1 << 20)) + b"\r\nNOOP\r\n", 2),
    [b"500", b"250"])
expect("AUTH continuation of 1 MiB", exchange(
    s, b"AUTH PLAIN\r\n" + base64.b64encode(os.urandom(1 << 20)) + b"\r\nNOOP\r\n", 3),
    [b"334", b"500", b"250"])
for blob in (b"\0\0\0\0", b"\0", b"\0alice@example.org\0alice-pw\0", b"\0\0alice-pw",
             b"alice@example.org\0\0alice-pw", b"\0alice@example.org\0\0"):
    data = exchange(s, b"AUTH PLAIN " + base64.b64encode(blob) + b"\r\nNOOP\r\n", 2)
    if codes(data) not in ([b"535", b"250"], [b"501", b"250"]):
        fail(f"AUTH PLAIN {blob!r}: {data!r}")
ok("AUTH PLAIN with NULs everywhere is refused")
s.close()
s = session("submissions")
expect("AUTH then STARTTLS", exchange(
    s, b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.org\0alice-pw") + b"\r\n"
    b"STARTTLS\r\nNOOP\r\n", 3), [b"235", b"503", b"250"])
s.close()

# STARTTLS twice on 587: the second is refused inside TLS.
s = session("submission")
s.sendall(b"STARTTLS\r\n")
if not smtp_reply(s).startswith(b"220"):
    fail("STARTTLS on 587 refused")
t = start_tls(s)
t.sendall(b"EHLO again\r\nSTARTTLS\r\nNOOP\r\n")
data = smtp_reply(t) + smtp_reply(t) + smtp_reply(t)
if codes(data) != [b"250", b"503", b"250"] or b"STARTTLS" in data:
    fail(f"STARTTLS twice: {data!r}")
ok("STARTTLS twice: the second is refused")
t.close()

# A client that pipelines the TLS handshake's worth of junk after STARTTLS: nothing of it
# may run as a command; the handshake fails and the connection closes.
s = session("smtp")
s.sendall(b"STARTTLS\r\nRSET\r\nQUIT\r\n")
data, eof = read_until(s, None, 10)
if codes(data)[:1] != [b"220"] or b"221" in data or not eof:
    fail(f"STARTTLS injection: {data!r}")
ok("commands pipelined after STARTTLS are discarded")

assert_alive("SMTP attacks")
