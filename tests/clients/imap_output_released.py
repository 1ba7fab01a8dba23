"""Output memory is given back once written: carol's first IMAPS session reads a 10 MB message
and then just stays connected; a second session must still be able to FETCH the same message
(with 12 MiB of output memory per executor, a claim left behind by the first would refuse it)."""
import imaplib

from rp import HOST, check, port, tls_context


def session():
    imap = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context())
    imap.login("carol@example.org", "carol-pw")
    imap.select("INBOX", readonly=True)
    return imap


def fetch(imap, who):
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    check(typ == "OK", f"{who} FETCH answered {typ} {str(data)[:120]}")
    body = data[0][1]
    check(len(body) > 10_000_000, f"{who} got the whole message ({len(body)} octets)")


first = session()
fetch(first, "the first session")
second = session()
fetch(second, "a second session while the first stays connected")
fetch(second, "the second session again")
first.logout()
second.logout()
print("output released ok")
