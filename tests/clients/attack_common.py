"""Shared helpers for the protocol-attack scripts: raw sockets (plain or TLS), bounded reads,
and the after-every-attack check that every listener still answers."""
import os
import socket
import ssl
import sys
import time

from rp import HOST, port, tls_context

PLAIN = ("smtp", "submission", "imap", "pop3")
IMPLICIT_TLS = ("submissions", "imaps", "pop3s")
ALL = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
PROBE = {
    "smtp": (b"NOOP\r\n", b"250 "),
    "submission": (b"NOOP\r\n", b"250 "),
    "submissions": (b"NOOP\r\n", b"250 "),
    "imap": (b"p1 NOOP\r\n", b"p1 OK"),
    "imaps": (b"p1 NOOP\r\n", b"p1 OK"),
    "pop3": (b"CAPA\r\n", b"+OK"),
    "pop3s": (b"CAPA\r\n", b"+OK"),
}
GREETING = {"smtp": b"220 ", "imap": b"* OK", "pop3": b"+OK"}


def fail(what):
    print("FAILED:", what, file=sys.stderr)
    sys.exit(1)


def ok(what):
    print("ok:", what)


class Wire:
    """A socket with a read buffer: the readers below take exactly what they return (a line,
    n lines, up to a marker) and leave the rest for the next read."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def recv(self, n):
        if self.buf:
            d, self.buf = self.buf[:n], self.buf[n:]
            return d
        return self.sock.recv(n)

    def unread(self, data):
        self.buf = data + self.buf

    def sendall(self, data):
        self.sock.sendall(data)

    def send(self, data):
        return self.sock.send(data)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


def connect(name, timeout=10, tls=None):
    """A Wire to listener `name`; implicit-TLS listeners are wrapped unless tls=False."""
    s = socket.create_connection((HOST, port(name)), timeout=timeout)
    if tls or (tls is None and name in IMPLICIT_TLS):
        s = tls_context().wrap_socket(s)
    return Wire(s)


def start_tls(w):
    """The TLS client handshake on a Wire whose server just agreed to STARTTLS/STLS."""
    if w.buf:
        fail(f"bytes after the STARTTLS answer: {w.buf!r}")
    return Wire(tls_context().wrap_socket(w.sock))


def read_until(w, marker, timeout=10, limit=1 << 24):
    """Reads until `marker` arrived (returning data up to and including it, the rest stays
    buffered), or EOF, `limit` bytes or `timeout`. Returns (data, eof)."""
    deadline = time.time() + timeout
    buf = b""
    eof = False
    while len(buf) < limit:
        if marker and marker in buf:
            cut = buf.index(marker) + len(marker)
            w.unread(buf[cut:])
            return buf[:cut], False
        left = deadline - time.time()
        if left <= 0:
            break
        w.settimeout(max(0.05, left))
        try:
            d = w.recv(65536)
        except socket.timeout:
            break
        except (ConnectionError, ssl.SSLError, OSError):
            eof = True
            break
        if not d:
            eof = True
            break
        buf += d
    return buf, eof


def read_lines(w, n, timeout=10):
    """Reads `n` CRLF-terminated lines (fewer at EOF / timeout)."""
    deadline = time.time() + timeout
    out = b""
    for _ in range(n):
        line, eof = read_until(w, b"\r\n", max(0.05, deadline - time.time()))
        out += line
        if eof or not line.endswith(b"\r\n"):
            break
    return out


def read_line(w, timeout=10):
    return read_until(w, b"\r\n", timeout)[0]


def smtp_reply(w, timeout=10):
    """One whole SMTP reply (all continuation lines)."""
    buf = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = read_line(w, max(0.1, deadline - time.time()))
        if not line:
            break
        buf += line
        if len(line) >= 4 and line[3:4] == b" ":
            break
    return buf


def greeted(name, timeout=10, tls=None):
    """A connection past its greeting."""
    s = connect(name, timeout, tls)
    g = read_line(s, timeout)
    base = name.rstrip("s") if name in IMPLICIT_TLS else name
    base = "smtp" if base.startswith("submission") else base
    if not g.startswith(GREETING[base]):
        fail(f"{name}: greeting {g!r}")
    if base == "smtp":
        s.sendall(b"EHLO attacker.example\r\n")
        r = smtp_reply(s)
        if not r.startswith(b"250"):
            fail(f"{name}: EHLO answered {r!r}")
    return s


def closed_or_error(s, timeout=5):
    """True once the server has closed the connection (or reset it)."""
    _, eof = read_until(s, None, timeout)
    return eof


def probe(name, timeout=15):
    """Greeting plus NOOP/CAPA on listener `name`; returns None or what went wrong."""
    try:
        s = connect(name, timeout)
        g = read_line(s, timeout)
        if not g:
            return "no greeting"
        cmd, want = PROBE[name]
        s.sendall(cmd)
        r = read_line(s, timeout)
        s.close()
        if not r.startswith(want):
            return f"answered {r!r} to {cmd!r} (greeting {g!r})"
        return None
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        return f"{type(e).__name__}: {e}"


def assert_alive(after):
    """Every listener greets and answers NOOP/CAPA."""
    bad = {n: p for n in ALL if (p := probe(n)) is not None}
    if bad:
        fail(f"after {after}: listeners not answering: {bad}")
    ok(f"every listener answers after {after}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))
