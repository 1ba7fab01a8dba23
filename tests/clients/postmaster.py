"""RFC 5321 §4.5.1 with the usual setup, a hostname (mail.example.org) that is not itself a mail
domain: `RCPT TO:<Postmaster>` and postmaster of a second local domain (example.net, no
postmaster of its own) both reach postmaster@example.org, an alias of alice here."""
import imaplib
import smtplib
from rp import HOST, port, tls_context, check, message

with smtplib.SMTP(HOST, port("smtp"), timeout=30) as s:
    s.ehlo("client.example.com")
    for rcpt, subject in (("Postmaster", "pm bare"), ("postmaster@example.net", "pm net")):
        code, resp = s.docmd("MAIL", "FROM:<>")
        check(code == 250, f"MAIL FROM:<> (got {code} {resp!r})")
        code, resp = s.docmd("RCPT", f"TO:<{rcpt}>")
        check(code == 250, f"RCPT TO:<{rcpt}> accepted (got {code} {resp!r})")
        code, resp = s.data(message(subject, frm="mailer-daemon@remote.example", to=rcpt))
        check(code == 250, f"{subject}: DATA accepted (got {code} {resp!r})")
    code, resp = s.docmd("MAIL", "FROM:<>")
    code, resp = s.docmd("RCPT", "TO:<nobody@example.net>")
    check(code == 550 and resp.startswith(b"5.1.1"), f"other unknown users still get 550 5.1.1 ({code} {resp!r})")

m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context(), timeout=30)
m.login("alice@example.org", "alice-pw")
m.select("INBOX", readonly=True)
for subject in ("pm bare", "pm net"):
    typ, data = m.search(None, "SUBJECT", f'"{subject}"')
    check(typ == "OK" and len(data[0].split()) == 1, f"alice got '{subject}' once ({data})")
m.logout()
print("ALL OK")
