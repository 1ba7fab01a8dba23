"""Mailbox changes under kill -9: IMAP workers APPEND, STORE, COPY, MOVE and EXPUNGE in mailboxes of
their own while a POP3 client RETRs and DELEs with QUIT, until the server dies. Each worker keeps
a model of its mailboxes: the state every acknowledged command left, plus the one command that
was in flight when the connection broke. After a restart, `verify` requires the server's state to
be the acknowledged one, or that one with the in-flight command applied; nothing in between.

With `churn`, most appended messages are marked \Deleted and expunges are frequent, so most of
what is written becomes garbage (what makes compaction run).

Usage: crash_mailbox.py run STATE_FILE READY_FILE SECONDS [churn]
       crash_mailbox.py verify STATE_FILE"""
import copy
import imaplib
import json
import poplib
import random
import re
import sys
import threading
import time
from rp import HOST, port, tls_context, check

USERS = {"alice@example.org": "alice-pw", "bob@example.org": "bob-pw"}
POP_USER, POP_PW = "carol@example.org", "carol-pw"
WORKERS_PER_USER = 3
POP_MESSAGES = 400
DELE_PER_SESSION = 3
FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "$Work"]


def body(mid):
    """The message a model id stands for: byte-exact, so verify can compare contents."""
    rng = random.Random(mid)
    pad = "".join(rng.choice("abcdefgh ") for _ in range(rng.randrange(200, 2700)))
    pad = "\r\n".join(pad[i:i + 76] for i in range(0, len(pad), 76))  # RFC 5322 line lengths
    return (f"From: <w@example.org>\r\nSubject: {mid}\r\nMessage-ID: <{mid}@crash.test>\r\n\r\n"
            f"{pad}\r\n").encode()


def imap_login(user):
    m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context(), timeout=30)
    m.login(user, USERS.get(user, POP_PW))
    return m


def ok(typ, data, what):
    if typ != "OK":
        raise RuntimeError(f"{what}: {typ} {data!r}")


class Worker:
    """One IMAP connection changing mailboxes W<n> and W<n>-Archive, nobody else touches."""

    def __init__(self, n, user, churn):
        self.n, self.user, self.churn = n, user, churn
        self.boxes = [f"W{n}", f"W{n}-Archive"]
        # Model: mailbox -> {message id: sorted flags}. Ids are unique within a mailbox.
        self.acked = {b: {} for b in self.boxes}
        self.pending = None  # (description, model after the command) while one is in flight
        self.ops = 0
        self.error = None
        self.selected = None

    def uid_of(self, m, box, mid):
        if self.selected != box:
            ok(*m.select(box), f"SELECT {box}")
            self.selected = box
        typ, data = m.uid("SEARCH", "HEADER", "Message-ID", f"<{mid}@crash.test>")
        ok(typ, data, "UID SEARCH")
        uids = data[0].split()
        if len(uids) != 1:
            raise RuntimeError(f"{box}: {mid} found {len(uids)} times before any crash")
        return uids[0].decode()

    def step(self, m, rng, i):
        box = rng.choice(self.boxes)
        other = self.boxes[1] if box == self.boxes[0] else self.boxes[0]
        after = copy.deepcopy(self.acked)
        mids = sorted(self.acked[box])
        op = rng.random()
        if op < 0.35 or not mids:
            mid = f"w{self.n}-{i}"
            flags = sorted(rng.sample(FLAGS, rng.randrange(3)))
            if self.churn and rng.random() < 0.8 and "\\Deleted" not in flags:
                flags = sorted(flags + ["\\Deleted"])
            after[box][mid] = flags
            self.pending = (f"APPEND {box} {mid}", after)
            ok(*m.append(box, "(" + " ".join(flags) + ")", None, body(mid)), "APPEND")
        elif op < (0.5 if self.churn else 0.65):
            mid = rng.choice(mids)
            uid = self.uid_of(m, box, mid)
            change = rng.sample(FLAGS, rng.randrange(1, 3))
            add = rng.random() < 0.6
            now = set(self.acked[box][mid])
            after[box][mid] = sorted(now | set(change) if add else now - set(change))
            sign = "+" if add else "-"
            self.pending = (f"STORE {box} {mid} {sign}{change}", after)
            ok(*m.uid("STORE", uid, sign + "FLAGS", "(" + " ".join(change) + ")"), "STORE")
        elif op < (0.6 if self.churn else 0.85):
            candidates = [x for x in mids if x not in self.acked[other]]
            if not candidates:
                return
            mid = rng.choice(candidates)
            uid = self.uid_of(m, box, mid)
            verb = "MOVE" if rng.random() < 0.5 else "COPY"
            after[other][mid] = self.acked[box][mid]
            if verb == "MOVE":
                del after[box][mid]
            self.pending = (f"{verb} {box} {mid}", after)
            ok(*m.uid(verb, uid, other), verb)
        else:
            if self.selected != box:
                ok(*m.select(box), f"SELECT {box}")
                self.selected = box
            after[box] = {k: v for k, v in after[box].items() if "\\Deleted" not in v}
            self.pending = (f"EXPUNGE {box}", after)
            ok(*m.expunge(), "EXPUNGE")
        self.acked, self.pending = after, None
        self.ops += 1

    def run(self, deadline, started):
        rng = random.Random(self.n)
        try:
            m = imap_login(self.user)
            for b in self.boxes:
                ok(*m.create(b), f"CREATE {b}")
        except Exception as e:  # the setup must work: the server is alive until READY
            self.error = f"setup: {e!r}"
            return
        started.wait()
        i = 0
        try:
            while time.time() < deadline:
                i += 1
                self.step(m, rng, i)
        except (OSError, imaplib.IMAP4.abort, EOFError):
            return  # the server was killed: the model and the in-flight command are final
        except Exception as e:
            self.error = f"{self.pending[0] if self.pending else '?'}: {e!r}"

    def state(self):
        return {"user": self.user, "acked": self.acked,
                "pending": self.pending and {"what": self.pending[0], "after": self.pending[1]},
                "ops": self.ops, "error": self.error}


class Pop3Worker:
    """RETR, DELE and QUIT on carol's INBOX, a few messages per session: QUIT commits them."""

    def __init__(self):
        self.left = [f"p-{i}" for i in range(POP_MESSAGES)]
        self.pending = None
        self.ops = 0
        self.error = None

    def setup(self):
        m = imap_login(POP_USER)
        for mid in self.left:
            ok(*m.append("INBOX", None, None, body(mid)), "APPEND for POP3")
        m.logout()

    def run(self, deadline, started):
        started.wait()
        while time.time() < deadline and self.left:
            try:
                p = poplib.POP3_SSL(HOST, port("pop3s"), context=tls_context(), timeout=30)
                p.user(POP_USER)
                p.pass_(POP_PW)
                deleted = []
                for n in range(1, min(DELE_PER_SESSION, len(self.left)) + 1):
                    _, lines, _ = p.retr(n)
                    deleted.append(re.search(rb"Subject: (\S+)", b"\r\n".join(lines)).group(1).decode())
                    p.dele(n)
                self.pending = deleted
                p.quit()
                self.left = [x for x in self.left if x not in deleted]
                self.pending = None
                self.ops += len(deleted)
            except (OSError, EOFError):
                return  # the server was killed
            except poplib.error_proto as e:
                if str(e).startswith("-ERR EOF"):
                    return  # poplib's word for a connection the server's death closed
                self.error = repr(e)  # a real -ERR while the server was alive
                return
            except Exception as e:
                self.error = repr(e)
                return

    def state(self):
        return {"left": self.left, "pending": self.pending, "ops": self.ops, "error": self.error}


def run(state_file, ready_file, seconds, churn):
    deadline = time.time() + seconds
    started = threading.Event()
    workers = [Worker(n, user, churn) for n, user in
               enumerate(u for u in USERS for _ in range(WORKERS_PER_USER))]
    pop = Pop3Worker()
    pop.setup()
    threads = [threading.Thread(target=w.run, args=(deadline, started)) for w in workers]
    threads.append(threading.Thread(target=pop.run, args=(deadline, started)))
    for t in threads:
        t.start()
    time.sleep(0.5)  # logins and CREATEs done (a worker that failed says so in its error)
    started.set()
    open(ready_file, "w").write("go\n")
    for t in threads:
        t.join()
    json.dump({"imap": [w.state() for w in workers], "pop3": pop.state()}, open(state_file, "w"))


def server_state(m, boxes):
    """mailbox -> {message id: sorted flags}, checking every body byte-exact on the way."""
    out = {}
    for box in boxes:
        ok(*m.select(box, readonly=True), f"SELECT {box}")
        typ, data = m.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")  # UID: fine when empty
        have = {}
        for d in data:
            if not isinstance(d, tuple):
                continue
            flags = re.search(rb"FLAGS \(([^)]*)\)", d[0]).group(1).decode().split()
            mid = re.search(rb"Subject: (\S+)", d[1]).group(1).decode()
            check(d[1] == body(mid), f"{box}: {mid} is byte-exact")
            check(mid not in have, f"{box}: {mid} is there once")
            have[mid] = sorted(f for f in flags if f != "\\Recent")
        out[box] = have
    return out


def verify(state_file):
    st = json.load(open(state_file))
    total = 0
    for w in st["imap"]:
        check(w["error"] is None, f"worker error before the kill: {w['error']}")
        m = imap_login(w["user"])
        boxes = sorted(w["acked"])
        have = server_state(m, boxes)
        m.logout()
        allowed = [w["acked"]] + ([w["pending"]["after"]] if w["pending"] else [])
        what = w["pending"]["what"] if w["pending"] else "nothing"
        check(have in allowed,
              f"{boxes}: state after {w['ops']} acknowledged changes (in flight: {what}); "
              f"server {have} vs acknowledged {w['acked']}")
        total += w["ops"]
    p = st["pop3"]
    check(p["error"] is None, f"POP3 error before the kill: {p['error']}")
    m = imap_login(POP_USER)
    left = sorted(server_state(m, ["INBOX"])["INBOX"])
    m.logout()
    allowed = [sorted(p["left"])]
    if p["pending"]:
        allowed.append(sorted(x for x in p["left"] if x not in p["pending"]))
    check(left in allowed, f"POP3: {p['ops']} acknowledged deletions stay deleted, nothing else is "
                           f"gone ({len(left)} left, want {len(p['left'])})")
    check(total > 20 and p["ops"] > 0,
          f"the kill came under load ({total} IMAP changes, {p['ops']} POP3 deletions acknowledged)")
    print("ALL OK", total, p["ops"])


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:] == ["churn"])
    else:
        verify(sys.argv[2])
