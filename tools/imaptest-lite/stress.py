#!/usr/bin/env python3
"""stress: several sessions on one mailbox doing random APPEND / STORE / EXPUNGE / UID EXPUNGE /
FETCH / SEARCH / COPY / MOVE / NOOP, with imaptest-lite's state tracking on every response
(see imaptest_lite.py), then a check that all sessions agree on UIDs and flags after NOOP.
A small stand-in for imaptest's default (non-scripted) mode. Standard library only.

    stress.py --port 2993 --tls --user U --pass P [--sessions 4] [--secs 20] [--seed 1]

Exit status 1 on any state error or BAD reply.
"""
import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imaptest_lite as it  # noqa: E402

BOX = "stressbox"


class Errors:
    def __init__(self):
        self.errors = []

    def state_error(self, conn, msg):
        self.errors.append("session %d: %s" % (conn.idx + 1, msg))


def wait_tagged(runner, c, tag):
    while True:
        r = c.read_response()
        if r.kind == "untagged":
            c.track(r)
        elif r.kind == "tagged" and r.tag == tag:
            runner.running[c.idx] = []
            return r


def command(runner, c, cmd):
    runner.running[c.idx] = [cmd]
    tag = c.next_tag()
    c.send("%s %s\r\n" % (tag, cmd))
    return wait_tagged(runner, c, tag)


def append(runner, c, rnd, n):
    body = "Subject: m%d\r\nMessage-ID: <%d.stress@x>\r\n\r\nbody %d\r\n" % (n, n, n)
    flags = rnd.choice(["", "\\Seen", "$kw1", "\\Flagged $kw2"])
    tag = c.next_tag()
    c.send("%s APPEND %s (%s) {%d+}\r\n%s\r\n" % (tag, BOX, flags, len(body), body))
    return wait_tagged(runner, c, tag)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=143)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--user", required=True)
    ap.add_argument("--pass", dest="password", required=True)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20)
    args = ap.parse_args()
    args.verbose, args.box, args.modseq_order = False, BOX, False
    runner = it.Runner(args)
    errors = Errors()
    runner.current = errors
    rnd = random.Random(args.seed)
    conns = []
    for i in range(args.sessions):
        c = it.Conn(runner, i)
        c.connect()
        c.simple('LOGIN "%s" "%s"' % (args.user, args.password))
        conns.append(c)
    conns[0].simple("DELETE " + BOX)
    conns[0].simple("CREATE " + BOX)
    counter = 0
    for _ in range(10):
        counter += 1
        append(runner, conns[0], rnd, counter)
    for c in conns:
        c.reset_view()
        c.simple("SELECT " + BOX)
        c.selected = BOX
    done = 0
    deadline = time.time() + args.secs
    while time.time() < deadline:
        c = rnd.choice(conns)
        exists = c.exists

        def seq():
            return rnd.randint(1, max(1, exists))
        op = rnd.random()
        if exists == 0 or op < 0.15:
            counter += 1
            append(runner, c, rnd, counter)
            continue
        if op < 0.35:
            cmd = "STORE %d:%d %sFLAGS (%s)" % (
                seq(), seq(), rnd.choice(["+", "-", ""]),
                rnd.choice(["\\Seen", "\\Deleted", "$kw1", "\\Flagged $kw3", "\\Answered"]))
        elif op < 0.45:
            cmd = "EXPUNGE"
        elif op < 0.55:
            cmd = "UID EXPUNGE %d:*" % rnd.randint(1, 50)
        elif op < 0.7:
            cmd = "FETCH %d:* (UID FLAGS RFC822.SIZE INTERNALDATE)" % seq()
        elif op < 0.75:
            cmd = "UID FETCH 1:* (FLAGS ENVELOPE)"
        elif op < 0.8:
            cmd = "SEARCH " + rnd.choice(["ALL", "DELETED", "UNSEEN", "KEYWORD $kw1", "NEW", "1:3"])
        elif op < 0.85:
            cmd = "COPY %d %s" % (seq(), BOX)
        elif op < 0.9:
            cmd = "MOVE %d %s" % (seq(), BOX)
        else:
            cmd = "NOOP"
        r = command(runner, c, cmd)
        if r.args and (it.astring(r.args[0]) or "").upper() == "BAD":
            errors.errors.append("BAD for %s: %s" % (cmd, r.raw))
        done += 1
    # After NOOP every session must see the same UIDs with the same flags.
    for c in conns:
        command(runner, c, "NOOP")
    views = []
    for c in conns:
        seen = {}
        tag = c.next_tag()
        c.send("%s FETCH 1:* (UID FLAGS)\r\n" % tag)
        while True:
            r = c.read_response()
            if r.kind == "tagged" and r.tag == tag:
                break
            if r.kind != "untagged":
                continue
            c.track(r)
            if len(r.args) > 2 and (it.astring(r.args[1]) or "").upper() == "FETCH":
                items = r.args[2][1]
                d = {(it.astring(items[i]) or "").upper(): items[i + 1]
                     for i in range(0, len(items) - 1, 2)}
                if "UID" in d and "FLAGS" in d:
                    seen[it.astring(d["UID"])] = sorted(
                        f for f in ((it.astring(x) or "").lower() for x in d["FLAGS"][1])
                        if f != "\\recent")
        views.append((c.exists, seen))
    if any(v != views[0] for v in views):
        errors.errors.append("sessions disagree after NOOP: %s"
                             % [(e, len(s)) for e, s in views])
    print("%d commands, %d errors" % (done, len(errors.errors)))
    for e in errors.errors[:30]:
        print("  " + e)
    sys.exit(1 if errors.errors else 0)


if __name__ == "__main__":
    main()
