"""Shared helpers for the client scripts: ports from the environment, TLS without verification
(the test server uses a self-signed certificate), and small assertions with clear messages."""
import os
import ssl
import sys

HOST = "127.0.0.1"


def port(name):
    return int(os.environ["RP_" + name.upper()])


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check(cond, what):
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)
    print("ok:", what)


def expect_code(fn, code, what, enhanced=None):
    """Runs fn, which must raise an smtplib error carrying `code` (and the enhanced status)."""
    import smtplib
    try:
        fn()
    except smtplib.SMTPRecipientsRefused as e:
        (c, msg), = e.recipients.values()
        check(c == code and (enhanced is None or msg.decode().startswith(enhanced)),
              f"{what}: got {c} {msg!r}, want {code} {enhanced}")
        return
    except smtplib.SMTPResponseException as e:
        check(e.smtp_code == code and (enhanced is None or e.smtp_error.decode().startswith(enhanced)),
              f"{what}: got {e.smtp_code} {e.smtp_error!r}, want {code} {enhanced}")
        return
    check(False, f"{what}: no error, want {code}")


def message(subject, body="Hello.\r\n", frm="alice@example.org", to="bob@example.org", extra=""):
    return (f"From: <{frm}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n{extra}\r\n{body}").encode()
