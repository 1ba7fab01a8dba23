"""Account quota (limits.quota_bytes = 20000) with stock clients: smtplib is refused with 452 4.2.2
once alice's mailboxes hold 20000 bytes, while bob still gets mail; imaplib sees the usage in
GETQUOTAROOT, gets NO [OVERQUOTA] on APPEND, and after expunging, mail for alice flows again."""
import imaplib
import re
import smtplib

from rp import HOST, check, expect_code, message, port, tls_context

LIMIT = 20000
BODY = ("x" * 76 + "\r\n") * 100  # 7,800 bytes


def send(to, subject):
    with smtplib.SMTP(HOST, port("smtp"), timeout=20) as s:
        s.sendmail("someone@remote.example", [to], message(subject, BODY, to=to))


def usage(imap):
    typ, data = imap.getquotaroot("INBOX")
    check(typ == "OK", f"GETQUOTAROOT answered {typ} {data}")
    text = " ".join(d.decode() if isinstance(d, bytes) else str(d) for d in data[1])
    m = re.search(r"STORAGE (\d+) (\d+)", text)
    check(m is not None, f"GETQUOTAROOT reports STORAGE: {data}")
    return int(m.group(1)), int(m.group(2))


for i in range(3):
    send("alice@example.org", f"fill {i}")
print("ok: three messages of 7.8 kB accepted below the 20000-byte quota")

with smtplib.SMTP(HOST, port("smtp"), timeout=20) as s:
    s.ehlo("client.example")
    s.mail("someone@remote.example")
    code, text = s.rcpt("alice@example.org")
    check(code == 452 and text.decode().startswith("4.2.2"), f"RCPT to a full account: {code} {text!r}")
    code, _ = s.rcpt("bob@example.org")
    check(code == 250, f"RCPT to bob in the same transaction: {code}")
    s.data(message("for bob", to="bob@example.org"))
    s.rset()
expect_code(lambda: send("alice@example.org", "refused"), 452, "sendmail to a full account", "4.2.2")

imap = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context())
imap.login("alice@example.org", "alice-pw")
typ, caps = imap.capability()
check(b"QUOTA" in caps[0].split(), f"QUOTA advertised: {caps}")
used, limit = usage(imap)
check(limit == LIMIT // 1024 and used * 1024 >= LIMIT, f"usage {used} KiB of {limit} KiB")
typ, data = imap.append("INBOX", None, None, message("appended", BODY))
check(typ == "NO" and b"OVERQUOTA" in data[0], f"APPEND over quota: {typ} {data}")

imap.select("INBOX")
imap.store("1:2", "+FLAGS.SILENT", "(\\Deleted)")
imap.expunge()
used, _ = usage(imap)
check(used * 1024 < LIMIT, f"usage after expunging two messages: {used} KiB")
imap.logout()

send("alice@example.org", "after expunge")
print("ok: alice gets mail again once her mailboxes are below the quota")
print("quota ok")
