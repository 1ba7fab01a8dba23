"""Checks that every acknowledged message id (from smtp_flood.py's file) is in the recipients'
INBOX after a restart. Usage: count_ids.py IDS_FILE"""
import imaplib
import sys
from rp import HOST, port, tls_context, check

want = {}
for line in open(sys.argv[1]):
    mid, to = line.split()
    for r in to.split(","):
        want.setdefault(r, set()).add(mid)
passwords = {"alice@example.org": "alice-pw", "bob@example.org": "bob-pw", "carol@example.org": "carol-pw"}
total = 0
for user, ids in want.items():
    m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context(), timeout=60)
    m.login(user, passwords[user])
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    have = set()
    for d in data:
        if isinstance(d, tuple):
            for l in d[1].split(b"\r\n"):
                if l.startswith(b"Subject: "):
                    have.add(l[9:].decode())
    missing = ids - have
    check(not missing, f"{user}: all {len(ids)} acknowledged messages present (missing {sorted(missing)[:5]})")
    total += len(ids)
    m.logout()
check(total > 0, f"some messages were acknowledged before the kill ({total})")
print("ALL OK", total)
