"""Logs in over IMAPS and POP3S; exits 0 if the outcome matches. Usage: login_check.py USER PASS ok|fail"""
import imaplib
import poplib
import sys
from rp import HOST, port, tls_context, check

user, password, want = sys.argv[1], sys.argv[2], sys.argv[3]
m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context(), timeout=30)
try:
    m.login(user, password)
    got = "ok"
except imaplib.IMAP4.error:
    got = "fail"
check(got == want, f"IMAP login {user}: {got}, want {want}")
p = poplib.POP3_SSL(HOST, port("pop3s"), context=tls_context(), timeout=30)
try:
    p.user(user)
    p.pass_(password)
    got = "ok"
except poplib.error_proto:
    got = "fail"
check(got == want, f"POP3 login {user}: {got}, want {want}")
