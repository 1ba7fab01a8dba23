"""No command waits for the delayed-ACK timer when a client sends it in two writes.

With Nagle's algorithm on (the default), a client's second small write waits until the server
acknowledges the first, which Linux delays by 40 ms unless the server asks for a prompt ACK.
Python's imaplib sends an APPEND literal and the CRLF that ends the command apart; SMTP clients
may send a BDAT line and its chunk apart. Each such command took 40+ ms; a median under 20 ms
shows none waits. Usage: prompt_ack.py imap|bdat"""
import imaplib
import socket
import statistics
import sys
import time

from rp import HOST, check, port, tls_context


def timed(what, n, fn):
    took = []
    for i in range(n):
        t = time.monotonic()
        fn(i)
        took.append(time.monotonic() - t)
    median = statistics.median(took)
    print(what, "ms:", " ".join(f"{t * 1000:.1f}" for t in took))
    check(median < 0.020, f"median {what} {median * 1000:.1f} ms is below the 40 ms delayed-ACK timer")


def imap_append():
    imap = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context())
    imap.login("alice@example.org", "alice-pw")

    def append(i):
        typ, data = imap.append("INBOX", None, None, f"Subject: append {i}\r\n\r\nx\r\n".encode())
        check(typ == "OK", f"APPEND {i}: {typ} {data}")

    timed("APPEND", 30, append)
    imap.logout()


def smtp_bdat():
    s = socket.create_connection((HOST, port("smtp")))
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if line[3:4] != b"-":
                return line

    reply()
    s.sendall(b"EHLO client.example\r\n")
    reply()

    def bdat(i):
        s.sendall(b"MAIL FROM:<a@remote.example>\r\n")
        reply()
        s.sendall(b"RCPT TO:<bob@example.org>\r\n")
        reply()
        body = f"Subject: bdat {i}\r\n\r\nhello\r\n".encode()
        s.sendall(b"BDAT %d LAST\r\n" % len(body))
        s.sendall(body)
        r = reply()
        check(r.startswith(b"250"), f"BDAT {i}: {r!r}")

    timed("BDAT", 20, bdat)
    s.sendall(b"QUIT\r\n")


{"imap": imap_append, "bdat": smtp_bdat}[sys.argv[1]]()
