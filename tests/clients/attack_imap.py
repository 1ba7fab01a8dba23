"""IMAP protocol attacks: literal floods, unterminated and oversized literals, deep nesting,
giant sequence sets, binary junk, pipelined floods. Each attacked command must get a tagged
answer (or the connection must close), the session must answer a NOOP after it where it is
still open, and every listener must still answer at the end. alice needs a message.
Usage: attack_imap.py"""
import os

from attack_common import assert_alive, fail, greeted, ok, read_until


def login():
    s = greeted("imaps")
    s.sendall(b"l LOGIN alice@example.org alice-pw\r\nl2 SELECT INBOX\r\n")
    data, _ = read_until(s, b"l2 OK [READ-WRITE] Select completed.\r\n", 20)
    if b"l2 OK" not in data:
        fail(f"login/select: {data[-200:]!r}")
    return s


def attack(label, payload, tags, pre_auth=False, may_close=False):
    """Sends `payload`, then `zz NOOP`; each tag in `tags` must be answered (any status)
    and the NOOP must be OK, unless the server closed the connection (allowed when
    `may_close`)."""
    s = greeted("imap") if pre_auth else login()
    try:
        s.sendall(payload + b"\r\nzz NOOP\r\n")
    except OSError as e:
        if not may_close:
            fail(f"{label}: connection closed while sending: {e}")
    data, eof = read_until(s, b"zz OK NOOP completed.\r\n", 30, limit=1 << 26)
    lines = data.split(b"\r\n")
    for tag in tags:
        if not any(ln.startswith(tag + b" ") for ln in lines) and not (eof and may_close):
            fail(f"{label}: no tagged answer for {tag!r}: {data[-300:]!r}")
    if not eof and b"zz OK" not in data:
        fail(f"{label}: session stuck: {data[-300:]!r}")
    if eof and not may_close:
        fail(f"{label}: connection closed: {data[-300:]!r}")
    s.close()
    ok(label)


attack("1 MiB command line", b"a NOOP " + b"A" * (1 << 20), [b"a"], pre_auth=True)
attack("8 MiB line arriving without a line end", b"a NOOP " + b"A" * (8 << 20), [b"a"],
       pre_auth=True)
attack("binary junk", os.urandom(100000), [], pre_auth=True, may_close=True)
attack("NUL bytes", b"a NO\x00OP\r\nb LOGIN a\x00b c", [b"a", b"b"], pre_auth=True)
attack("oversized synchronizing literal", b"a LOGIN {104857600}", [b"a"], pre_auth=True)
attack("oversized non-synchronizing literal", b"a LOGIN {104857600+}\r\n" + b"x" * 100000,
       [b"a"], pre_auth=True, may_close=True)
attack("literal size beyond u64", b"a LOGIN {99999999999999999999999}", [b"a"],
       pre_auth=True, may_close=True)
attack("50k tiny literals in one command", b"a LOGIN " + b"{1+}\r\nx " * 50000, [b"a"],
       pre_auth=True, may_close=True)
attack("literal flood across commands", b"".join(b"l%d LOGIN {1+}\r\nx {1+}\r\ny\r\n" % i
                                                 for i in range(2000)), [b"l1999"],
       pre_auth=True, may_close=True)
attack("deep parenthesis nesting in FETCH", b"c FETCH 1 " + b"(" * 100000, [b"c"])
attack("deep nesting in SEARCH", b"c SEARCH " + b"(" * 2000 + b"ALL" + b")" * 2000, [b"c"])
attack("long NOT chain in SEARCH", b"c SEARCH " + b"NOT " * 5000 + b"ALL", [b"c"])
attack("long OR chain in SEARCH", b"c SEARCH " + b"OR ALL " * 5000 + b"ALL", [b"c"])
attack("sequence set 1:4294967295", b"c FETCH 1:4294967295 FLAGS", [b"c"])
attack("UID set 1:4294967295", b"c UID FETCH 1:4294967295 FLAGS\r\n"
       b"d UID STORE 1:4294967295 +FLAGS (\\Seen)\r\ne UID SEARCH UID 1:4294967295", [b"c", b"d", b"e"])
attack("sequence number 4294967296", b"c FETCH 1:4294967296 FLAGS", [b"c"])
attack("sequence number 0", b"c FETCH 0:5 FLAGS", [b"c"])
attack("10k-item sequence set", b"c FETCH " + b",".join(b"%d" % i for i in range(1, 10001)) +
       b" FLAGS", [b"c"])
attack("10k-item UID set", b"c UID FETCH " + b",".join(b"%d" % i for i in range(1, 10001)) +
       b" FLAGS", [b"c"])
attack("10k-range UID set", b"c UID SEARCH UID " +
       b",".join(b"%d:%d" % (i, i + 1) for i in range(1, 20001, 2)), [b"c"])
attack("COPY of a giant set", b"c UID COPY 1:4294967295 INBOX", [b"c"])
attack("partial fetch at the edges", b"c FETCH 1 BODY[]<4294967295.4294967295>\r\n"
       b"d FETCH 1 BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24]\r\n"
       b"e FETCH 1 BINARY[99999999999]\r\nf FETCH 1 BODY[]<0.0>", [b"c", b"d", b"e", b"f"])
attack("IDLE then junk", b"c IDLE\r\n" + os.urandom(5000) + b"\r\nDONE", [b"c"], may_close=True)
attack("10k pipelined NOOPs", b"c NOOP\r\n" * 10000, [b"c"])
attack("APPEND with an oversized literal", b"c APPEND INBOX {999999999999}", [b"c"])
attack("APPEND with an oversized LITERAL+", b"c APPEND INBOX {999999999+}\r\n" + b"x" * 100000,
       [b"c"], may_close=True)
attack("mailbox name of 5000 levels", b"c CREATE " + b"a/" * 5000 + b"x", [b"c"])
attack("LIST pattern of 2000 wildcards", b'c LIST "" "' + b"*%" * 1000 + b'"', [b"c"])
attack("AUTHENTICATE with 1 MiB", b"c AUTHENTICATE PLAIN\r\n" + b"A" * (1 << 20), [b"c"],
       pre_auth=True, may_close=True)

# An unterminated literal: the server waits for it; other clients are not held up.
s = greeted("imap")
s.sendall(b"a LOGIN {1000}\r\nabc")
assert_alive("IMAP attacks")
s.close()
