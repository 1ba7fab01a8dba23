"""Reads (and pokes at) a ringpost mailbox over IMAPS for tests/stock_clients.rs, never
setting \\Seen, so the stock clients under test see exactly what they left behind.

    imap_peek.py USER PASS messages MAILBOX     -> one line per message: UID<TAB>FLAGS<TAB>SUBJECT
    imap_peek.py USER PASS list                 -> one mailbox name per line
    imap_peek.py USER PASS store MAILBOX UID +FLAGS (\\Answered)
    imap_peek.py USER PASS text MAILBOX UID     -> the message text (BODY.PEEK[TEXT]) as is
Port from RP_IMAPS."""
import imaplib
import os
import re
import ssl
import sys


def connect(user, password):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["RP_IMAPS"]), ssl_context=ctx, timeout=60)
    c.login(user, password)
    return c


def quoted(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ok(resp, what):
    typ, data = resp
    if typ != "OK":
        sys.exit(f"{what}: {typ} {data}")
    return data


def main():
    user, password, cmd, *args = sys.argv[1:]
    c = connect(user, password)
    if cmd == "list":
        for line in ok(c.list('""', "*"), "LIST"):
            print(re.sub(r'^\(.*?\) "." ', "", line.decode()).strip('"'))
    elif cmd == "messages":
        ok(c.select(quoted(args[0]), readonly=True), "EXAMINE")
        data = ok(c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"), "FETCH")
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, header = item
            meta = meta.decode()
            uid = re.search(r"UID (\d+)", meta).group(1)
            flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1)
            subject = header.decode("utf-8", "replace").strip()
            subject = subject[len("Subject:"):].strip() if subject.startswith("Subject:") else ""
            print(f"{uid}\t{flags}\t{subject}")
    elif cmd == "store":
        mailbox, uid, op, flags = args
        ok(c.select(quoted(mailbox)), "SELECT")
        ok(c.uid("STORE", uid, op, flags), "STORE")
    elif cmd == "text":
        mailbox, uid = args
        ok(c.select(quoted(mailbox), readonly=True), "EXAMINE")
        data = ok(c.uid("FETCH", uid, "(BODY.PEEK[TEXT])"), "FETCH")
        sys.stdout.buffer.write(data[0][1])
    else:
        sys.exit(f"unknown command {cmd}")
    c.logout()


main()
