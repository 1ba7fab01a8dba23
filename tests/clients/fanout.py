"""One message to many local recipients spread over every shard: each INBOX gets exactly one
byte-exact copy. Usage: fanout.py N (accounts u0..u{N-1}@example.org, password pw)"""
import imaplib
import smtplib
import sys
from rp import HOST, port, tls_context, check, message

n = int(sys.argv[1])
rcpts = [f"u{i}@example.org" for i in range(n)]
body = message("fan out", body="".join(f"line {i} of the body\r\n" for i in range(200)), to="undisclosed@example.org")
with smtplib.SMTP(HOST, port("smtp"), timeout=30) as s:
    refused = s.sendmail("sender@remote.example", rcpts, body)
    check(refused == {}, f"all {n} recipients accepted")
for r in rcpts:
    m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context(), timeout=30)
    m.login(r, "pw")
    typ, data = m.select("INBOX", readonly=True)
    check(data[0] == b"1", f"{r}: exactly one message ({data})")
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    check(data[0][1].endswith(body), f"{r}: byte-exact")
    m.logout()
print("ALL OK")
