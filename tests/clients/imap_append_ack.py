"""APPEND from Python's imaplib is not held by the delayed-ACK timer. imaplib sends a literal
and the CRLF that ends the command in two writes; with Nagle's algorithm on, the second waits
until the server acknowledges the first, which Linux delays by 40 ms unless the server asks
for a prompt ACK. Every APPEND then took 40+ ms; a median under 20 ms shows none waits."""
import imaplib
import statistics
import time

from rp import HOST, check, port, tls_context

imap = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context())
imap.login("alice@example.org", "alice-pw")
took = []
for i in range(30):
    msg = f"Subject: append {i}\r\n\r\n{'x' * 500}\r\n".encode()
    t = time.monotonic()
    typ, data = imap.append("INBOX", None, None, msg)
    took.append(time.monotonic() - t)
    check(typ == "OK", f"APPEND {i}: {typ} {data}")
median = statistics.median(took)
print("APPEND ms:", " ".join(f"{t * 1000:.1f}" for t in took))
check(median < 0.020, f"median APPEND {median * 1000:.1f} ms is below the 40 ms delayed-ACK timer")
imap.logout()
