"""SMTP with Python's smtplib on all three ports: MX (25), submission (587, STARTTLS) and
submissions (465, implicit TLS); AUTH PLAIN and LOGIN; relay and sender rules."""
import smtplib
import sys
from rp import HOST, port, tls_context, check, expect_code, message

tag = sys.argv[1] if len(sys.argv) > 1 else "t"

# --- MX: plaintext, STARTTLS offered, never AUTH, only local recipients.
s = smtplib.SMTP(HOST, port("smtp"), timeout=30)
code, _ = s.ehlo("client.example.com")
check(code == 250, "MX EHLO 250")
check(s.has_extn("starttls") and s.has_extn("pipelining") and s.has_extn("8bitmime")
      and s.has_extn("enhancedstatuscodes") and s.has_extn("smtputf8") and s.has_extn("size"),
      "MX EHLO extensions")
check(not s.has_extn("auth"), "MX does not offer AUTH before TLS")
refused = s.sendmail("sender@remote.example", ["alice@example.org"], message(f"{tag} mx plain", to="alice@example.org"))
check(refused == {}, "MX accepts mail for a local account")
expect_code(lambda: s.sendmail("x@remote.example", ["nobody@example.org"], message("x")), 550, "unknown local user", "5.1.1")
expect_code(lambda: s.sendmail("x@remote.example", ["victim@gmail.com"], message("x")), 550, "MX open relay refused", "5.7.1")
s.rset()
s.starttls(context=tls_context())
s.ehlo("client.example.com")
check(not s.has_extn("starttls"), "no STARTTLS after TLS")
check(not s.has_extn("auth"), "MX never offers AUTH, even over TLS")
refused = s.sendmail("sender@remote.example", ["alice@example.org", "bob@example.org"],
                     message(f"{tag} mx tls", to="alice@example.org"))
check(refused == {}, "MX over STARTTLS accepts two local recipients")
s.quit()

# --- Submission: STARTTLS, AUTH only after TLS, AUTH required, sender must match.
s = smtplib.SMTP(HOST, port("submission"), timeout=30)
s.ehlo("client.example.com")
check(s.has_extn("starttls") and not s.has_extn("auth"), "submission: STARTTLS offered, AUTH hidden before TLS")
code, resp = s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3")
check(code == 538, f"AUTH before TLS refused with 538 (got {code} {resp!r})")
s.starttls(context=tls_context())
s.ehlo("client.example.com")
check(s.has_extn("auth") and "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"],
      "submission offers AUTH PLAIN LOGIN after TLS")
code, resp = s.docmd("MAIL", "FROM:<alice@example.org>")
check(code == 530, f"MAIL before AUTH gets 530 (got {code} {resp!r})")
s.rset()
try:
    s.login("alice@example.org", "wrong-password")
    check(False, "bad password accepted")
except smtplib.SMTPAuthenticationError as e:
    check(e.smtp_code == 535, "bad password gets 535")
s.auth("PLAIN", lambda challenge=None: "\0alice@example.org\0alice-pw")
refused = s.sendmail("alice@example.org", ["bob@example.org"], message(f"{tag} submission plain"))
check(refused == {}, "submission with AUTH PLAIN delivers")
expect_code(lambda: s.sendmail("bob@example.org", ["carol@example.org"], message("forged", frm="bob@example.org")),
            550, "sender mismatch refused", "5.7.1")
s.quit()

# --- Submissions: implicit TLS, AUTH LOGIN.
s = smtplib.SMTP_SSL(HOST, port("submissions"), timeout=30, context=tls_context())
s.ehlo("client.example.com")
check(s.has_extn("auth") and not s.has_extn("starttls"), "submissions: AUTH offered, no STARTTLS")
code, resp = s.docmd("MAIL", "FROM:<bob@example.org>")
check(code == 530, f"submissions: MAIL before AUTH gets 530 (got {code})")
s.rset()
s.user, s.password = "bob@example.org", "bob-pw"
code, resp = s.auth("LOGIN", s.auth_login)
check(code == 235, "AUTH LOGIN over implicit TLS")
refused = s.sendmail("bob@example.org", ["alice@example.org", "carol@example.org"],
                     message(f"{tag} submissions login", frm="bob@example.org", to="alice@example.org"))
check(refused == {}, "submissions delivers to two recipients")
s.quit()
print("ALL OK")
