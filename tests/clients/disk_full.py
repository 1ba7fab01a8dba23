"""A full disk: SMTP answers 452 4.3.1, IMAP APPEND NO [OVERQUOTA], reads go on; once space
is freed, mail is accepted again without a restart.

usage: disk_full.py fill | resume | count
  fill    send 200 KB messages until one is refused; print "accepted N"
  resume  retry for 15 s until a message is accepted again; print "accepted 1"
  count   print "count N": the messages in alice's INBOX"""
import imaplib
import smtplib
import sys
import time

from rp import HOST, check, port, tls_context

USER, PW = "alice@example.org", "alice-pw"
BODY = b"Subject: filler\r\n\r\n" + (b"y" * 998 + b"\r\n") * 200


def imap():
    m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context())
    m.login(USER, PW)
    return m


def send(s):
    """True if accepted; False on 452 4.3.1 (anything else fails the test)."""
    try:
        s.sendmail("sender@example.net", [USER], BODY)
        return True
    except smtplib.SMTPDataError as e:
        check(e.smtp_code == 452 and b"4.3.1" in e.smtp_error, f"a full disk is 452 4.3.1 ({e})")
        s.rset()
        return False


mode = sys.argv[1]
if mode == "fill":
    s = smtplib.SMTP(HOST, port("smtp"))
    accepted = 0
    while send(s):
        accepted += 1
        check(accepted < 500, "the disk filled up")
    # Once full, every further message is refused at once, and the session goes on.
    for _ in range(3):
        check(not send(s), "still refused while full")
    s.quit()
    m = imap()
    typ, data = m.select("INBOX")
    check(typ == "OK" and int(data[0]) == accepted, f"INBOX holds what was accepted ({data})")
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    check(typ == "OK" and data[0][1].endswith(BODY), "reading goes on while the disk is full")
    typ, data = m.append("INBOX", None, None, BODY)
    check(typ == "NO" and b"[OVERQUOTA]" in data[0], f"APPEND while full ({data})")
    m.logout()
    print("accepted", accepted)
elif mode == "resume":
    deadline = time.time() + 15
    while True:
        s = smtplib.SMTP(HOST, port("smtp"))
        ok = send(s)
        s.quit()
        if ok:
            break
        check(time.time() < deadline, "accepted again within 15 s of freeing space")
        time.sleep(0.2)
    m = imap()
    typ, data = m.append("INBOX", None, None, BODY)
    check(typ == "OK", f"APPEND after space was freed ({data})")
    m.logout()
    print("accepted 1")
elif mode == "count":
    m = imap()
    typ, data = m.select("INBOX")
    check(typ == "OK", f"SELECT ({data})")
    print("count", int(data[0]))
    m.logout()
