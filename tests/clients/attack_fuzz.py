"""Mutation fuzzing over the wire: 8 threads for SECONDS open connections to random listeners
and send protocol commands, half of them mutated (changed, dropped and inserted bytes,
repeated runs, literal markers, giant numbers, bare CR/LF). The server must answer on every
listener afterwards (the Rust test also checks its log for panics).
Usage: attack_fuzz.py SECONDS SEED"""
import base64
import random
import sys
import threading
import time

from attack_common import ALL, assert_alive, connect, ok, read_until

SECONDS = float(sys.argv[1])
SEED = int(sys.argv[2])
PLAIN = base64.b64encode(b"\0alice@example.org\0alice-pw")

SMTP = [b"EHLO x", b"HELO x", b"MAIL FROM:<a@b.org>",
        b"MAIL FROM:<> SIZE=100 BODY=8BITMIME SMTPUTF8", b"RCPT TO:<alice@example.org>",
        b"RCPT TO:<bob@example.org> NOTIFY=NEVER", b"DATA", b"BDAT 5", b"BDAT 0 LAST", b"RSET",
        b"NOOP", b"VRFY x", b"EXPN x", b"HELP", b"AUTH PLAIN", b"AUTH LOGIN",
        b"AUTH PLAIN " + PLAIN, b"STARTTLS", b".", b"Subject: x", b"", b"QUIT"]
POP3 = [b"CAPA", b"USER alice@example.org", b"PASS alice-pw", b"AUTH PLAIN",
        b"AUTH PLAIN " + PLAIN, b"STAT", b"LIST", b"LIST 1", b"RETR 1", b"TOP 1 0", b"DELE 1",
        b"RSET", b"UIDL", b"NOOP", b"APOP a b", b"QUIT", b"STLS"]
IMAP = [b"a CAPABILITY", b"a LOGIN alice@example.org alice-pw", b"a SELECT INBOX",
        b"a EXAMINE INBOX", b"a FETCH 1:* (FLAGS UID ENVELOPE BODYSTRUCTURE)",
        b"a FETCH 1 BODY[]", b"a UID FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
        b"a SEARCH ALL", b"a SEARCH OR SEEN NOT DELETED", b"a STORE 1 +FLAGS (\\Seen)",
        b"a CREATE x", b"a RENAME x y", b"a DELETE y", b'a LIST "" *', b'a LSUB "" *',
        b"a STATUS INBOX (MESSAGES UIDNEXT)", b"a APPEND INBOX {5+}\r\nhello", b"a IDLE",
        b"DONE", b"a NOOP", b"a CLOSE", b"a EXPUNGE", b"a ENABLE UTF8=ACCEPT", b"a ID NIL",
        b"a NAMESPACE", b"a COPY 1 INBOX", b"a MOVE 1 INBOX", b"a LOGOUT", b"a STARTTLS",
        b"a AUTHENTICATE PLAIN"]
COMMANDS = {"smtp": SMTP, "submission": SMTP, "submissions": SMTP,
            "pop3": POP3, "pop3s": POP3, "imap": IMAP, "imaps": IMAP}
INSERTS = [b"{10}", b"{99999999999}", b"4294967295", b"\xff\xfe", b"\r", b"\n", b"1:*",
           b"((((", b"~{3}\r\nabc", b"\x00"]


def mutate(r, cmd):
    b = bytearray(cmd)
    for _ in range(r.randint(1, 3)):
        if not b:
            b += bytes([r.randint(0, 255)])
            continue
        i = r.randrange(len(b))
        op = r.random()
        if op < 0.3:
            b[i] = r.randint(0, 255)
        elif op < 0.5:
            del b[i]
        elif op < 0.7:
            b[i:i] = bytes([r.choice(b'(){}[]<>"\\*%:.,0123456789 \r\n\x00+-')])
        elif op < 0.8:
            b[i:i] = b[i:i + r.randint(1, 20)] * r.randint(1, 50)
        else:
            b[i:i] = r.choice(INSERTS)
    return bytes(b)


deadline = time.time() + SECONDS
counts = {"connections": 0, "commands": 0}
lock = threading.Lock()


def worker(k):
    r = random.Random(SEED * 1000 + k)
    while time.time() < deadline:
        name = r.choice(ALL)
        try:
            s = connect(name, timeout=5)
            n = r.randint(1, 30)
            for _ in range(n):
                cmd = r.choice(COMMANDS[name])
                if r.random() < 0.5:
                    cmd = mutate(r, cmd)
                end = b"\r\n" if r.random() < 0.95 else r.choice([b"", b"\n", b"\r"])
                s.sendall(cmd + end)
                if r.random() < 0.3:
                    read_until(s, None, 0.05)
            read_until(s, None, 0.2)
            s.close()
            with lock:
                counts["connections"] += 1
                counts["commands"] += n
        except OSError:
            pass  # the server may close on us (too many errors, QUIT, bad TLS): fine


threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ok(f"fuzzed {counts['connections']} connections, {counts['commands']} commands")
assert_alive("wire fuzzing")
