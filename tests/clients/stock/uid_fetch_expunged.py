"""UID FETCH of a message that another session has just expunged (RFC 3501 6.4.8: "A
non-existent unique identifier is ignored without any error message generated"): the server
may announce the expunge (EXPUNGE is allowed during UID commands, 7.4.1) but must end the
command with OK. Thunderbird, answered NO [EXPUNGEISSUED] here, keeps listing the message.

    uid_fetch_expunged.py       -> exit 0 if the tagged reply is OK; prints the dialogue
Port from RP_IMAPS; uses bob@example.org, whose INBOX must hold at least one message."""
import imaplib
import os
import socket
import ssl
import sys

PORT = int(os.environ["RP_IMAPS"])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def command(s, line):
    """Sends one tagged command; returns every reply line up to and including the tagged one."""
    print("C:", line)
    s.sendall(line.encode() + b"\r\n")
    tag, buf = line.split()[0].encode(), b""
    while True:
        data = s.recv(65536)
        if not data:
            sys.exit("connection closed")
        buf += data
        lines = buf.split(b"\r\n")
        if any(l.startswith(tag + b" ") for l in lines):
            for l in lines:
                if l:
                    print("S:", l.decode(errors="replace"))
            return [l.decode(errors="replace") for l in lines if l]


a = ctx.wrap_socket(socket.create_connection(("127.0.0.1", PORT), timeout=30),
                    server_hostname="localhost")
a.recv(4096)
command(a, "a1 LOGIN bob@example.org bob-pw")
command(a, "a2 SELECT INBOX")

b = imaplib.IMAP4_SSL("127.0.0.1", PORT, ssl_context=ctx, timeout=30)
b.login("bob@example.org", "bob-pw")
b.select("INBOX")
uid = b.uid("SEARCH", "ALL")[1][0].split()[-1].decode()
b.uid("STORE", uid, "+FLAGS", r"(\Deleted)")
b.expunge()
b.logout()
print(f"-- another session expunged UID {uid} --")

reply = command(a, f"a3 UID FETCH {uid} (FLAGS BODY.PEEK[TEXT])")
command(a, "a4 LOGOUT")
if not reply[-1].startswith("a3 OK"):
    sys.exit(f"UID FETCH of an expunged UID ended with {reply[-1]!r}, want OK")
