#!/usr/bin/env python3
"""fetch_diff: APPENDs a corpus of MIME edge cases to two IMAP servers and compares their
FETCH answers (BODYSTRUCTURE, ENVELOPE, sections, BINARY ...) item by item, case-insensitively,
and their SEARCH results for a list of criteria.
Used to line ringpost's MIME answers up with Dovecot's. Python 3 standard library only.

    fetch_diff.py --a 127.0.0.1:10143 --a-user U --a-pass P \\
                  --b 127.0.0.1:37993 --b-tls --b-user U --b-pass P [ITEM ...]

The mailbox `fetchdiff` is deleted and created on both. Exit status 1 if anything differs.
"""
import argparse
import re
import socket
import ssl
import sys

CORPUS = []


def add(text):
    CORPUS.append(text.replace("\n", "\r\n").encode("utf-8"))


add("""From: a@b.c
To: d@e.f
Subject: plain

hello
""")
add("""From: "Quoted, Name" <q@b.c>
To: undisclosed-recipients:;
Cc: A <a@b.c>, "B" <b@c.d>, c@d.e (Comment)
Subject: =?utf-8?q?caf=C3=A9?= test
Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)
Message-ID: <1@x>
In-Reply-To: <0@x>
Content-Type: text/plain; charset="ISO-8859-1"; format=flowed
Content-Transfer-Encoding: quoted-printable

caf=E9
""")
add("""From: a@b.c
Subject: alt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

preamble
--b1
Content-Type: text/plain; charset=us-ascii

text part
--b1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 8bit

<p>caf\u00e9</p>
--b1--
epilogue
""")
add("""From: a@b.c
Subject: mixed with attachment
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: text/plain

body
--outer
Content-Type: application/pdf; name="doc.pdf"
Content-Disposition: attachment; filename="doc.pdf"; size=10
Content-Transfer-Encoding: base64
Content-ID: <cid@x>
Content-Description: A document
Content-Language: en, fr
Content-Location: http://example.com/doc.pdf
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==

SGVsbG8gd29ybGQh
--outer--
""")
add("""From: a@b.c
Subject: nested message
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="x"

--x
Content-Type: message/rfc822

From: inner@b.c
To: z@y.x
Subject: inner
Content-Type: multipart/alternative; boundary="y"

--y
Content-Type: text/plain

inner text
--y
Content-Type: text/html

<b>inner</b>
--y--
--x--
""")
add("""Subject: no content type, 8bit
From: a@b.c

h\u00e9llo
""")
add("""From: a@b.c
Subject: rfc2231
Content-Type: application/octet-stream; name*=utf-8''caf%C3%A9.bin
Content-Disposition: attachment; filename*0="long"; filename*1="name.txt"
Content-Transfer-Encoding: base64

AAAA
""")
add("""From: a@b.c
Subject: missing final boundary
Content-Type: multipart/mixed; boundary=zz

--zz
Content-Type: text/plain

one
--zz
Content-Type: text/plain

two
""")
add("""From: a@b.c
Subject: multipart without boundary
Content-Type: multipart/mixed

just text
""")
add("""From: a@b.c
Subject: empty body
Content-Type: text/plain

""")
add("""From: a@b.c
Subject: header only""")
add("""From: a@b.c
Subject: message/rfc822 top
Content-Type: message/rfc822

From: x@y.z
Subject: encapsulated

body of encapsulated
""")
add("""From: a@b.c
Subject: digest
Content-Type: multipart/digest; boundary=d

--d

From: m1@x
Subject: m1

m1
--d
Content-Type: text/plain

not a message
--d--
""")
add("""From: a@b.c
Subject: weird type
Content-Type: TEXT/X-Weird; CHARSET=UTF-8; Foo="bar baz"
Content-Transfer-Encoding: 7BIT

x
""")
add("""From: Group: a@b.c, b@c.d;
Sender: 
Reply-To: <@route1,@route2:user@host>
To: "a\\"b" <ab@c.d>
Subject: addresses
Date: 1 Jan 2000 00:00 +0000

x
""")
add("""From: a@b.c
Subject: signed
Content-Type: multipart/signed; protocol="application/pgp-signature"; micalg=pgp-sha256; boundary="s"

--s
Content-Type: text/plain

signed text
--s
Content-Type: application/pgp-signature; name="signature.asc"
Content-Disposition: attachment; filename="signature.asc"

-----BEGIN PGP SIGNATURE-----
abc
-----END PGP SIGNATURE-----
--s--
""")
add("""From: a@b.c
Subject: message/global
Content-Type: message/global

From: x@y.z
Subject: g

g
""")
add("""From: a@b.c
Subject: long header folding
X-Long: aaaa
 bbbb
\tcccc
Content-Type: text/plain;
 charset=us-ascii

x
""")


# SEARCH criteria compared over the corpus too.
SEARCHES = [
    "ALL", "TEXT caf", "BODY caf", "CHARSET UTF-8 BODY café", "CHARSET UTF-8 SUBJECT café",
    "SUBJECT caf", "HEADER X-Long bbbb", "HEADER X-Long \"aaaa bbbb\"",
    "HEADER Content-Type multipart", "FROM quoted", "FROM \"quoted, name\"", "TO group",
    "CC comment", "CC a@b.c", "FROM group", "TO undisclosed", "BODY inner", "TEXT inner",
    "BODY <b>", "TEXT signature", "BODY \"Hello world\"", "BODY SGVsbG8", "BODY m1",
    "TEXT encapsulated", "HEADER Subject \"\"", "NOT HEADER Content-Type \"\"", "LARGER 200",
    "SMALLER 100", "SENTON 7-Feb-1994", "SENTSINCE 1-Jan-2000", "SENTBEFORE 1-Jan-1990",
    "HEADER content-transfer-encoding base64", "BODY attachment", "TEXT pdf", "BODY doc.pdf",
    "TEXT \"inner text\"", "BODY \"just text\"", "HEADER MESSAGE-ID 1@x",
    "HEADER In-Reply-To <0@x>", "SUBJECT \"\"", "CHARSET UTF-8 TEXT héllo", "TEXT =E9",
    "BODY =E9", "BODY AAAA", "TEXT long", "BODY \"\"",
]


class Client:
    def __init__(self, hostport, tls, user, password):
        host, port = hostport.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=30)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=host)
        self.s, self.buf, self.n = s, b"", 0
        self.line()
        _, tagged = self.cmd('LOGIN "%s" "%s"' % (user, password))
        if b" OK" not in tagged:
            sys.exit("login failed on %s: %r" % (hostport, tagged))

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.s.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        m = re.search(rb"~?\{(\d+)\+?\}$", line)
        if m:
            n = int(m.group(1))
            while len(self.buf) < n:
                self.buf += self.s.recv(65536)
            line += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            line += self.line()
        return line

    def cmd(self, command, literal=None):
        self.n += 1
        tag = b"d%d" % self.n
        if literal is None:
            self.s.sendall(tag + b" " + command.encode() + b"\r\n")
        else:
            self.s.sendall(tag + b" " + command.encode() + b" {%d}\r\n" % len(literal))
            while not self.line().startswith(b"+"):
                pass
            self.s.sendall(literal + b"\r\n")
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return untagged, line
            untagged.append(line)


def norm(line):
    """Case-insensitive, with literals that fit written as quoted strings and literal8 as a
    plain literal, so equivalent IMAP syntax compares equal."""
    out = b""
    rest = line
    while True:
        m = re.search(rb"~?\{(\d+)\}\r\n", rest)
        if not m:
            out += rest
            break
        n = int(m.group(1))
        data = rest[m.end():m.end() + n]
        out += rest[:m.start()]
        if b"\r" in data or b"\n" in data:
            out += b"{%d}\r\n" % n + data
        else:
            out += b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        rest = rest[m.end() + n:]
    return out.lower()


def main():
    ap = argparse.ArgumentParser(description="compare FETCH answers of two IMAP servers")
    for side in ("a", "b"):
        ap.add_argument("--" + side, required=True, help="HOST:PORT")
        ap.add_argument("--%s-tls" % side, action="store_true")
        ap.add_argument("--%s-user" % side, required=True)
        ap.add_argument("--%s-pass" % side, required=True)
    ap.add_argument("items", nargs="*", default=[
        "BODYSTRUCTURE", "BODY", "ENVELOPE", "RFC822.SIZE", "BODY.PEEK[TEXT]",
        "BODY.PEEK[1]", "BODY.PEEK[1.MIME]", "BODY.PEEK[1.TEXT]", "BODY.PEEK[1.HEADER]",
        "BODY.PEEK[1.1]", "BODY.PEEK[2]", "BODY.PEEK[2.MIME]", "BINARY.PEEK[1]",
        "BINARY.SIZE[1]"])
    args = ap.parse_args()
    a = Client(args.a, args.a_tls, args.a_user, args.a_pass)
    b = Client(args.b, args.b_tls, args.b_user, args.b_pass)
    for c in (a, b):
        c.cmd("DELETE fetchdiff")
        c.cmd("CREATE fetchdiff")
        for m in CORPUS:
            _, tagged = c.cmd("APPEND fetchdiff", m)
            if b" OK" not in tagged:
                sys.exit("APPEND failed: %r" % tagged)
        c.cmd("SELECT fetchdiff")
    diffs = 0
    for i in range(1, len(CORPUS) + 1):
        for item in args.items:
            ua, _ = a.cmd("FETCH %d (%s)" % (i, item))
            ub, _ = b.cmd("FETCH %d (%s)" % (i, item))
            fa = [norm(x) for x in ua if b" FETCH " in x]
            fb = [norm(x) for x in ub if b" FETCH " in x]
            if fa != fb:
                diffs += 1
                print("== message %d %s" % (i, item))
                print("  a:", b" | ".join(fa).decode("utf-8", "replace"))
                print("  b:", b" | ".join(fb).decode("utf-8", "replace"))
    for criteria in SEARCHES:
        ua, ta = a.cmd("SEARCH " + criteria)
        ub, tb = b.cmd("SEARCH " + criteria)
        ra = [x for x in ua if x.startswith(b"* SEARCH")] + [ta.split(b" ")[1]]
        rb = [x for x in ub if x.startswith(b"* SEARCH")] + [tb.split(b" ")[1]]
        if ra != rb:
            diffs += 1
            print("== SEARCH %s\n  a: %r\n  b: %r" % (criteria, ra, rb))
    print("%d differences" % diffs)
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
