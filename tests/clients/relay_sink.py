"""Outbound delivery through a relay host: a tiny SMTP sink on SINK_PORT takes the relayed
message (and refuses one recipient with 550); alice submits over 587 and must get a bounce for
the refused recipient. The sink also times each of ringpost's commands from the sink's reply to
the command's last byte: a client that sends a line and its CRLF in two writes waits 40 ms for
the sink's delayed ACK each time. Usage: relay_sink.py SINK_PORT"""
import imaplib
import smtplib
import statistics
import socket
import sys
import threading
import time
from rp import HOST, port, tls_context, check, message

sink_port = int(sys.argv[1])
received = []
gaps = []  # seconds from a reply of the sink to the end of ringpost's next command


def serve_one(conn):
    f = conn.makefile("rb")
    sent = [0.0]

    def send(line):
        conn.sendall(line.encode() + b"\r\n")
        sent[0] = time.monotonic()
    send("220 sink ESMTP")
    rcpts = []
    while True:
        line = f.readline()
        if not line:
            return
        gaps.append(time.monotonic() - sent[0])
        cmd = line.decode().strip()
        up = cmd.upper()
        if up.startswith("EHLO") or up.startswith("HELO"):
            send("250-sink\r\n250 8BITMIME")
        elif up.startswith("MAIL"):
            rcpts = []
            send("250 ok")
        elif up.startswith("RCPT"):
            if "reject@" in cmd:
                send("550 5.1.1 no such user here")
            else:
                rcpts.append(cmd)
                send("250 ok")
        elif up == "DATA":
            send("354 go")
            data = b""
            while True:
                l = f.readline()
                if l in (b".\r\n", b""):
                    break
                data += l
            received.append((rcpts, data))
            send("250 queued")
        elif up == "QUIT":
            send("221 bye")
            return
        else:
            send("250 ok")


def sink():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, sink_port))
    s.listen(5)
    s.settimeout(30)
    while True:
        try:
            c, _ = s.accept()
        except OSError:
            return
        threading.Thread(target=serve_one, args=(c,), daemon=True).start()


threading.Thread(target=sink, daemon=True).start()
time.sleep(0.2)

s = smtplib.SMTP(HOST, port("submission"), timeout=30)
s.starttls(context=tls_context())
s.login("alice@example.org", "alice-pw")
refused = s.sendmail("alice@example.org", ["friend@remote.example", "reject@remote.example"],
                     message("outbound test", to="friend@remote.example"))
check(refused == {}, "submission accepts remote recipients for relay")
s.quit()

deadline = time.time() + 20
while time.time() < deadline and not received:
    time.sleep(0.1)
check(len(received) == 1, f"relay host received the message ({len(received)})")
rcpts, data = received[0]
check(any("friend@remote.example" in r for r in rcpts), f"relayed to friend ({rcpts})")
check(b"Subject: outbound test" in data and b"Received: from" in data, "relayed message has trace header and body")
check(not data.startswith(b"Return-Path"), "no Return-Path on relayed mail")

# The refused recipient bounces back to alice's INBOX.
deadline = time.time() + 20
found = False
while time.time() < deadline and not found:
    m = imaplib.IMAP4_SSL(HOST, port("imaps"), ssl_context=tls_context(), timeout=30)
    m.login("alice@example.org", "alice-pw")
    m.select("INBOX", readonly=True)
    typ, data = m.search(None, "SUBJECT", '"Undelivered Mail"')
    found = bool(data[0].split())
    if found:
        typ, data = m.fetch(data[0].split()[0], "(BODY.PEEK[])")
        body = data[0][1]
        check(b"reject@remote.example" in body and b"550" in body, "bounce names the refused recipient and reason")
    m.logout()
    if not found:
        time.sleep(0.5)
check(found, "alice got a bounce for the refused recipient")
median = statistics.median(gaps)
check(median < 0.020, f"ringpost's commands to the relay come without delayed-ACK stalls: "
                      f"median {median * 1000:.1f} ms over {len(gaps)} "
                      f"({' '.join(f'{g * 1000:.0f}' for g in gaps)})")
print("ALL OK")
