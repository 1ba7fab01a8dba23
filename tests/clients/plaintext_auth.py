"""[tls] allow_plaintext_auth: with it, IMAP LOGIN and POP3 USER/PASS work on the plaintext
ports (as Dovecot with disable_plaintext_auth = no, for tools that cannot do TLS); without it,
both stay refused until STARTTLS/STLS. SMTP AUTH needs TLS either way.

usage: plaintext_auth.py allowed|refused"""
import imaplib
import poplib
import smtplib
import sys

from rp import HOST, check, port

mode = sys.argv[1]
allowed = mode == "allowed"
USER, PW = "alice@example.org", "alice-pw"

imap = imaplib.IMAP4(HOST, port("imap"))
caps = imap.capabilities
check(("LOGINDISABLED" in caps) != allowed, f"{mode}: LOGINDISABLED on 143 ({caps})")
check(("AUTH=PLAIN" in caps) == allowed, f"{mode}: AUTH=PLAIN on 143 ({caps})")
check("STARTTLS" in caps, f"{mode}: STARTTLS still offered ({caps})")
try:
    imap.login(USER, PW)
    logged_in = True
except imaplib.IMAP4.error:
    logged_in = False
check(logged_in == allowed, f"{mode}: IMAP LOGIN without TLS")
if logged_in:
    typ, data = imap.append("INBOX", None, None, b"Subject: plain\r\n\r\nover 143\r\n")
    check(typ == "OK", f"APPEND after a plaintext login ({data})")
    typ, data = imap.select("INBOX")
    check(typ == "OK" and int(data[0]) >= 1, f"SELECT after a plaintext login ({data})")
    imap.logout()

pop = poplib.POP3(HOST, port("pop3"))
capa = pop.capa()
check(("USER" in capa) == allowed, f"{mode}: USER in CAPA on 110 ({sorted(capa)})")
try:
    pop.user(USER)
    pop.pass_(PW)
    logged_in = True
except poplib.error_proto:
    logged_in = False
check(logged_in == allowed, f"{mode}: POP3 USER/PASS without TLS")
if logged_in:
    count, _ = pop.stat()
    check(count >= 1, f"POP3 STAT after a plaintext login ({count})")
    pop.quit()

sub = smtplib.SMTP(HOST, port("submission"))
sub.ehlo("client.example")
check(not sub.has_extn("auth"), f"{mode}: submission hides AUTH before TLS")
sub.quit()
