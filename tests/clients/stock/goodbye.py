"""On SIGTERM the server says goodbye to idle sessions before closing them: "* BYE" to an
IMAP client in IDLE (RFC 3501 7.1.5), "421" to an SMTP client between commands (RFC 5321
3.8). Thunderbird, mutt and fetchmail reconnect quietly on BYE; a silent close shows as
"connection lost".

    goodbye.py SERVER_PID     -> sends SIGTERM itself; exit 0 if both goodbyes arrived"""
import imaplib
import os
import signal
import socket
import ssl
import sys
import time

pid = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

imap = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["RP_IMAPS"]), ssl_context=ctx, timeout=30)
imap.login("alice@example.org", "alice-pw")
imap.select("INBOX")
imap.send(imap._new_tag() + b" IDLE\r\n")
assert imap.readline().startswith(b"+"), "no IDLE continuation"

smtp = socket.create_connection(("127.0.0.1", int(os.environ["RP_SMTP"])), timeout=30)
smtp_in = smtp.makefile("rb")
smtp_in.readline()
smtp.sendall(b"EHLO client.example\r\n")
while not smtp_in.readline().startswith(b"250 "):
    pass

started = time.time()
os.kill(pid, signal.SIGTERM)
try:
    imap_line = imap.readline()
except OSError as e:
    imap_line = repr(e).encode()
try:
    smtp_line = smtp_in.readline()
except OSError as e:
    smtp_line = repr(e).encode()
took = time.time() - started
print(f"IMAP client in IDLE got {imap_line!r}; SMTP client got {smtp_line!r}; after {took:.1f} s")
ok = imap_line.startswith(b"* BYE") and smtp_line.startswith(b"421")
sys.exit(0 if ok else 1)
