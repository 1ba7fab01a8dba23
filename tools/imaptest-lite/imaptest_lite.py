#!/usr/bin/env python3
"""imaptest-lite: runs Dovecot imaptest's scripted tests (`imaptest test=DIR`) against an IMAP
server, with imaptest's matching rules, using only the Python 3 standard library.

    imaptest_lite.py --port 143 --starttls --user U --pass P IMAPTEST/src/tests
    imaptest_lite.py --port 993 --tls --user U --pass P IMAPTEST/src/tests/fetch -v

A test is a file `NAME` (and optionally `NAME.mbox`, else `default.mbox` beside it): a header
(`capabilities:`, `connections:`, `messages:`, `state:`, `ignore_extra_untagged:`, `user N:`),
an empty line, then command groups. The rules followed here are imaptest's own
(src/test-parser.c and src/test-exec.c of dovecot/imaptest):

* `[conn] [tagN] ok|no|bad|"" command` sends a command and expects that tagged reply (method 1);
  without the status word the reply comes on its own line, which may carry a prefix such as
  `ok [read-write]` (method 2); `tagN` lines pipeline several commands (method 3).
* `* reply` must arrive before the tagged reply, `! reply` must not, `? reply` may. Untagged
  replies match in any order (`!ordered` in a group makes them ordered); one reply may satisfy
  several expectations; replies nobody expects are ignored unless `ignore_extra_untagged: no`.
* Words compare case-insensitively; `$var` binds on first use and must match afterwards (a
  binding made by a failed untagged match is undone); `$` matches any one value (also a list),
  `$]` skips to a word ending in `]`, `$N` is the current sequence of what was message N when
  the group started, `$modseqN` must grow at least by the index gap, `${case:X}` is
  case-sensitive. Tagged replies and untagged OK/NO/BAD/BYE match as prefixes.
* Lists match in order unless `$!unordered[=n]` (chains of n, extra elements allowed unless
  `$!noextra`; `$!ignore=x`, `$!ban=x`). Defaults: `n FETCH ($!unordered=2 ...)`, its
  `FLAGS ($!unordered $!noextra $!ignore=\\recent ...)`, `LIST|LSUB ($!unordered)` flags and
  `STATUS mbox ($!unordered=2)`.
* `{{{` ... `}}}` (or `~{{{` for binary) spans lines into a literal.
* Before a test the mailbox `$mailbox` and everything matching `$mailbox*` is deleted (and
  unsubscribed); then, depending on `state:`, it is created, filled from the mbox (APPEND with
  the From-line date) and SELECTed on every connection. `append` alone APPENDs the next mbox
  message; `append ARGS` APPENDs it with ARGS and no date.

Besides the script's expectations a few server invariants are checked on every connection, as
imaptest's state tracking does: EXISTS never shrinks without EXPUNGE, RECENT never exceeds
EXISTS, FETCH/EXPUNGE name existing sequence numbers, no EXPUNGE comes while only FETCH, STORE
or SEARCH by sequence number run, a sequence number keeps its UID, a message's RFC822.SIZE,
INTERNALDATE, ENVELOPE and BODY[STRUCTURE] never change, MODSEQ / UIDNEXT / HIGHESTMODSEQ never
go down, FETCH FLAGS uses only keywords announced by FLAGS, and no two sessions both see a
message as \\Recent.

Exit status: 0 when no test failed (skipped tests, for missing capabilities, do not fail).
"""

import argparse
import os
import re
import socket
import ssl
import sys
import time

ATOM, STRING, LITERAL, NIL, LIST = "atom", "string", "literal", "nil", "list"
MUST, MUST_NOT, MAY = "*", "!", "?"
# FETCH items whose value for a message never changes.
STATIC_ITEMS = ("RFC822.SIZE", "INTERNALDATE", "ENVELOPE", "BODYSTRUCTURE", "BODY")


class ScriptError(Exception):
    """The test file is malformed."""


class TestFailure(Exception):
    """A test failed; the message says why."""


class Skip(Exception):
    """The server lacks a capability the test needs."""


# ---------------------------------------------------------------------------------------------
# IMAP argument parsing (for both the script's expectations and the server's replies).
# Strings are Python str holding bytes as latin-1, so lengths are byte counts.


class ArgParser:
    """Parses IMAP arguments the way Dovecot's imap-parser does with ATOM_ALLCHARS, literal
    and multi-line string support: atoms run to a space (or `)` inside a list), NIL is its own
    type, `{n}`/`~{n}` followed by CRLF and n bytes is a literal."""

    def __init__(self, text):
        self.s = text
        self.i = 0

    def parse(self):
        args = self._list(top=True)
        return args

    def _list(self, top):
        out = []
        s = self.s
        while True:
            while self.i < len(s) and s[self.i] == " ":
                self.i += 1
            if self.i >= len(s) or s[self.i] in "\r\n":
                return out   # end of line (an unclosed list ends here too)
            c = s[self.i]
            if c == ")":
                if top:
                    # Unbalanced: keep it as part of an atom (human-readable text).
                    out.append(self._atom(top))
                    continue
                self.i += 1
                return out
            if c == "(":
                self.i += 1
                out.append((LIST, self._list(top=False)))
            elif c == '"':
                out.append(self._quoted(top))
            elif c == "{" or (c == "~" and s[self.i + 1:self.i + 2] == "{"):
                lit = self._literal()
                out.append(lit if lit is not None else self._atom(top))
            else:
                out.append(self._atom(top))

    def _atom(self, top):
        s = self.s
        start = self.i
        while self.i < len(s):
            c = s[self.i]
            if c == " " or c in "\r\n":
                break
            if c == ")" and not top:
                break
            self.i += 1
        word = s[start:self.i]
        if word.upper() == "NIL":
            return (NIL, None)
        return (ATOM, word)

    def _quoted(self, top):
        s = self.s
        start = self.i
        self.i += 1
        out = []
        while self.i < len(s):
            c = s[self.i]
            if c == "\\" and self.i + 1 < len(s):
                out.append(s[self.i + 1])
                self.i += 2
                continue
            if c == '"':
                self.i += 1
                return (STRING, "".join(out))
            out.append(c)
            self.i += 1
        # Unterminated: treat the rest as an atom.
        self.i = start
        return self._atom_raw()

    def _atom_raw(self):
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in " \r\n":
            self.i += 1
        return (ATOM, self.s[start:self.i])

    def _literal(self):
        m = re.compile(r"~?\{(\d+)\+?\}\r?\n").match(self.s, self.i)
        if not m:
            return None
        n = int(m.group(1))
        data = self.s[m.end():m.end() + n]
        if len(data) < n:
            return None
        self.i = m.end() + n
        return (LITERAL, data)


def parse_args(text):
    return ArgParser(text).parse()


def astring(arg):
    """The text of an atom, string or literal; None for NIL and lists."""
    if arg[0] in (ATOM, STRING, LITERAL):
        return arg[1]
    return None


def args_to_str(args):
    out = []
    for a in args:
        if a[0] == LIST:
            out.append("(" + args_to_str(a[1]) + ")")
        elif a[0] == NIL:
            out.append("NIL")
        elif a[0] == ATOM:
            out.append(a[1])
        elif a[0] == LITERAL and ("\n" in a[1] or "\r" in a[1] or '"' in a[1]):
            out.append("{%d}%r" % (len(a[1]), a[1]))
        else:
            out.append('"' + a[1].replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(out)


# ---------------------------------------------------------------------------------------------
# Test scripts.


class Untagged:
    def __init__(self, existence, args, linenum):
        self.existence = existence
        self.args = args
        self.linenum = linenum


class Command:
    def __init__(self, linenum, tag, reply, text):
        self.linenum = linenum
        self.tag = tag          # explicit tagN of pipelined commands, else 0
        self.reply = reply      # expected tagged reply args, None until its line is read
        self.text = text
        self.cur_tag = None     # the tag sent to the server


class Group:
    def __init__(self):
        self.conn = 0
        self.commands = []
        self.untagged = []
        self.ordered = False
        self.sleep = 0.0
        self.output = []
        self.replies_pending = 0


class Test:
    def __init__(self, path, default_mbox):
        self.path = path
        self.name = os.path.basename(path)
        mbox = path + ".mbox"
        self.mbox = mbox if os.path.exists(mbox) else default_mbox
        self.capabilities = []
        self.connections = 1
        self.message_count = None   # None: the whole mbox
        self.state = "selected"
        self.ignore_extra_untagged = True
        self.users = {}
        self.groups = []
        self.banner_check = False


REPLY_WORDS = {"ok": "ok", "no": "no", "bad": "bad", '""': ""}


def get_cmd_reply(line):
    """Splits an optional `tagN` and `ok|no|bad|""` off a command line: (tag, reply, rest)."""
    tag = 0
    first = line.split(" ", 1)[0]
    if first[:3].lower() == "tag" and " " in line:
        num = first[3:]
        if num.isdigit() and int(num) > 0:
            tag = int(num)
            line = line.split(" ", 1)[1]
            first = line.split(" ", 1)[0]
    word = first.lower()
    if word in REPLY_WORDS:
        reply = [(ATOM, REPLY_WORDS[word])]
        line = line[len(first):]
        if line.startswith(" "):
            line = line[1:]
        return tag, reply, line
    return tag, None, line


def reply_name_of(args):
    if not args or args[0][0] != ATOM:
        return ""
    s = args[0][1]
    if s[:1] == "$" or s[:1].isdigit():
        return args[1][1] if len(args) > 1 and args[1][0] == ATOM else ""
    return s


def has_directives(items):
    return bool(items) and items[0][0] == ATOM and items[0][1].startswith("$!")


def check_directives(items):
    for a in items:
        if a[0] != ATOM or not a[1].startswith("$!"):
            break
        d = a[1][2:]
        if re.fullmatch(r"unordered(=\d+)?|ordered|noextra|extra|ignore=.*|ban=.*", d) is None:
            raise ScriptError("Unknown directive: " + d)


def add_default_directives(args):
    """imaptest's default list directives for FETCH, FLAGS, LIST/LSUB and STATUS replies."""
    name = reply_name_of(args).lower()

    def walk(items, depth, top_index, prev_atom_path):
        check_directives(items)
        prev = None
        for i, a in enumerate(items):
            if a[0] == ATOM:
                prev = a[1].lower()
            if a[0] != LIST:
                continue
            sub = a[1]
            defaults = []
            if not has_directives(sub):
                if depth == 0:
                    if name in ("list", "lsub") and i == 1:
                        defaults = ["$!unordered"]
                    elif name in ("status", "fetch") and i == 2:
                        defaults = ["$!unordered=2"]
                elif depth == 1 and name == "fetch" and top_index == 2 and prev == "flags":
                    defaults = ["$!unordered", "$!noextra", "$!ignore=\\recent",
                                "$!ignore=$HasAttachment", "$!ignore=$HasNoAttachment"]
            sub[0:0] = [(ATOM, d) for d in defaults]
            walk(sub, depth + 1, i if depth == 0 else top_index, prev)

    walk(args, 0, 0, None)
    return args


def read_test(path, default_mbox):
    test = Test(path, default_mbox)
    with open(path, "rb") as f:
        data = f.read().decode("latin-1")
    if data and not data.endswith("\n"):
        raise ScriptError("%s: last line doesn't end with LF" % path)
    raw_lines = data.split("\n")[:-1] if data else []
    header = True
    group = None
    ifenv = []
    skip = False
    continues = False
    binary = False
    multiline = ""
    start_pos = last_line_end = 0
    start_linenum = 0

    for linenum, raw in enumerate(raw_lines, 1):
        crlf = raw.endswith("\r")
        line = raw[:-1] if crlf else raw
        if continues:
            if not line.startswith("}}}"):
                multiline += line
                last_line_end = len(multiline)
                multiline += "\n" if binary and not crlf else "\r\n"
                continue
            multiline = multiline[:last_line_end]
            rest = line[3:]
            size = len(multiline) - start_pos
            multiline = multiline[:start_pos] + ("~" if binary else "") + \
                "{%d}\r\n" % size + multiline[start_pos:]
            if rest.endswith("{{{"):
                n = len(rest)
                if n > 3 and rest[n - 4] == "~":
                    n -= 1
                    binary = True
                else:
                    binary = False
                multiline += rest[:n - 3]
                start_pos = last_line_end = len(multiline)
                continue
            line = multiline + rest
            continues = False
        else:
            start_linenum = linenum
            if line == "":
                header = False
                continue
            if line.startswith("#"):
                continue
            if line.endswith("{{{"):
                n = len(line)
                if n > 3 and line[n - 4] == "~":
                    n -= 1
                    binary = True
                else:
                    binary = False
                multiline = line[:n - 3]
                start_pos = last_line_end = len(multiline)
                continues = True
                continue
        try:
            if header:
                parse_header_line(test, line)
            else:
                group, skip = parse_command_line(test, group, start_linenum, line, ifenv, skip)
        except ScriptError as e:
            raise ScriptError("%s line %d: %s" % (path, linenum, e))
    if continues:
        raise ScriptError("%s: multiline reply at line %d not ended" % (path, start_linenum))
    if ifenv:
        raise ScriptError("%s: !ifenv not closed with !endif" % path)
    if group is None:
        raise ScriptError("%s: no commands in file" % path)
    if group.replies_pending > 0:
        raise ScriptError("%s: missing reply for the last command" % path)
    # imaptest adds a LOGOUT on the first connection unless the script logs out itself.
    has_logout = any(c.text.lower() == "logout" for g in test.groups for c in g.commands)
    if not has_logout:
        g = Group()
        g.commands.append(Command(0, 0, [(ATOM, "ok")], "logout"))
        test.groups.append(g)
    return test


def parse_header_line(test, line):
    if ":" not in line:
        raise ScriptError("Missing ':'")
    key, value = line.split(":", 1)
    key = key.rstrip(" ").lower()
    value = value.lstrip(" ")
    if key == "capabilities":
        test.capabilities = value.split()
    elif key == "connections":
        n = int(re.match(r"\d*", value).group(0) or 0)
        if n < 1 or n > 100:
            raise ScriptError("Too many connections")
        test.connections = n
    elif key == "ignore_extra_untagged":
        test.ignore_extra_untagged = value[:1] == "y"
    elif key.startswith("user ") and key[5:].isdigit() and int(key[5:]) > 0:
        test.users[int(key[5:]) - 1] = value
    elif key == "messages":
        test.message_count = None if value == "all" else int(re.match(r"\d*", value).group(0) or 0)
    elif key == "state":
        v = value.lower()
        if v not in ("nonauth", "auth", "created", "appended", "selected"):
            raise ScriptError("Unknown state value")
        test.state = v
    else:
        raise ScriptError("Unknown setting")


def untagged_kind(line):
    if line[:2] in ("* ", "! ", "? "):
        return line[0]
    return None


def parse_command_line(test, group, linenum, line, ifenv, skip):
    if line.startswith("!ifenv ") or line.startswith("!ifnenv "):
        env = line.split(" ", 1)[1]
        have = env in os.environ
        if line.startswith("!ifnenv "):
            have = not have
        ifenv.append([linenum, False, skip])
        if not have:
            skip = True
        return group, skip
    if line == "!else":
        if not ifenv:
            raise ScriptError("!else without !ifenv")
        if ifenv[-1][1]:
            raise ScriptError("!else already seen")
        ifenv[-1][1] = True
        if not ifenv[-1][2]:
            skip = not skip
        return group, skip
    if line == "!endif":
        if not ifenv:
            raise ScriptError("!endif without !ifenv")
        skip = ifenv.pop()[2]
        return group, skip
    if skip:
        return group, skip

    if group is not None:
        if line.startswith("!sleep "):
            m = re.fullmatch(r"\s*(\d+)\s*(ms|msecs?|s|secs?)?\s*", line[7:])
            if not m:
                raise ScriptError("Invalid !sleep value")
            n = int(m.group(1))
            group.sleep = n / 1000.0 if (m.group(2) or "").startswith("m") else float(n)
            return group, skip
        if line.startswith("!output "):
            group.output.append(line[8:])
            return group, skip
        if line == "!ordered":
            group.ordered = True
            return group, skip
        kind = untagged_kind(line)
        if kind:
            args = add_default_directives(parse_args(line[2:]))
            group.untagged.append(Untagged(kind, args, linenum))
            return group, skip
        if group.replies_pending > 0:
            rest = line
            conn_idx = 0
            if test.connections > 1:
                first = rest.split(" ", 1)[0]
                if first.isdigit() and int(first) > 0:
                    conn_idx = int(first)
                    rest = rest.split(" ", 1)[1] if " " in rest else ""
            tag, reply, _ = get_cmd_reply(rest)
            if reply is not None:
                if test.connections > 1:
                    if conn_idx == 0:
                        raise ScriptError("Missing client index")
                    if conn_idx - 1 != group.conn:
                        raise ScriptError("Reply for wrong connection")
                cmd = next((c for c in group.commands if c.tag == tag), None)
                if cmd is None:
                    raise ScriptError("Reply for unknown tag")
                if cmd.reply is not None:
                    raise ScriptError("Command already has a reply")
                args = parse_args(rest)
                cmd.reply = args[1:] if tag else args
                group.replies_pending -= 1
                return group, skip

    if group is None or group.replies_pending == 0:
        group = Group()
        test.groups.append(group)
    if test.connections > 1:
        first = line.split(" ", 1)[0]
        if not first.isdigit() or int(first) == 0:
            raise ScriptError("Missing client index")
        conn = int(first)
        if conn > 100:
            raise ScriptError("Too many connections")
        if group.commands and group.conn != conn - 1:
            raise ScriptError("All pipelined commands must use the same connection")
        group.conn = conn - 1
        test.connections = max(test.connections, conn)
        line = line.split(" ", 1)[1] if " " in line else ""
    tag, reply, line = get_cmd_reply(line)
    if tag == 0:
        if group.replies_pending > 0:
            raise ScriptError("Missing reply from previous command group")
    elif any(c.tag == tag for c in group.commands):
        raise ScriptError("Tag reused within command group")
    kind = untagged_kind(line)
    if not group.commands and kind:
        test.banner_check = True
        group.untagged.append(Untagged(kind, add_default_directives(parse_args(line[2:])),
                                       linenum))
        return group, skip
    if reply is None:
        group.replies_pending += 1
    group.commands.append(Command(linenum, tag, reply, line))
    return group, skip


# ---------------------------------------------------------------------------------------------
# mbox source.

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
FROM_RE = re.compile(
    r"From \S+\s+\w{3}\s+(\w{3})\s+(\d{1,2})\s+(\d{1,2}):(\d\d)(?::(\d\d))?"
    r"(?:\s+([+-]\d{4}|[A-Z]{3,4}))?\s+(\d{4})(?:\s+([+-]\d{4}))?")


def parse_from_line(line):
    """imap date-time of an mbox From_ line (no zone: +0000), or None if it is not one."""
    m = FROM_RE.match(line)
    if not m or m.group(1).capitalize() not in MONTHS:
        return None
    mon, day, hh, mm, ss, tz1, year, tz2 = m.groups()
    tz = tz2 or (tz1 if tz1 and tz1[0] in "+-" else None) or "+0000"
    return "%02d-%s-%s %02d:%s:%s %s" % (int(day), mon.capitalize(), year, int(hh), mm,
                                        ss or "00", tz)


class Mbox:
    """Messages of an mbox, CRLF line ends, each with the date of its From_ line; read in a
    cycle like imaptest's mailbox source."""

    def __init__(self, path):
        with open(path, "rb") as f:
            lines = f.read().decode("latin-1").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self.messages = []
        date, body = None, None
        for line in lines:
            d = parse_from_line(line) if line.startswith("From ") else None
            if d is not None:
                if body:   # a From_ line right after another one: the first had no body
                    self.messages.append((date, body))
                date, body = d, []
                continue
            if body is None:
                raise ScriptError("%s: not a valid mbox file" % path)
            body.append(line.rstrip("\r"))
        if body:
            self.messages.append((date, body))
        if not self.messages:
            raise ScriptError("%s: empty mbox" % path)
        self.messages = [(d, "".join(l + "\r\n" for l in b)) for d, b in self.messages]
        self.next = 0

    def eof(self):
        return self.next >= len(self.messages)

    def get_next(self):
        if self.next >= len(self.messages):
            self.next = 0
        m = self.messages[self.next]
        self.next += 1
        return m


# ---------------------------------------------------------------------------------------------
# Connections.


class Response:
    def __init__(self, kind, tag, args, raw):
        self.kind = kind    # "untagged", "tagged", "cont"
        self.tag = tag
        self.args = args
        self.raw = raw


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Conn:
    def __init__(self, runner, idx):
        self.r = runner
        self.idx = idx
        self.id = runner.next_conn_id
        runner.next_conn_id += 1
        self.sock = None
        self.buf = b""
        self.tagn = 0
        self.caps = set()
        self.exists = 0
        self.uids = []
        self.selected = None
        self.uidvalidity = None
        self.keywords = None      # keywords announced by the last FLAGS, lower-case
        self.counters = {}        # last UIDNEXT / HIGHESTMODSEQ of the selected mailbox
        self.closed = False
        self.greeting = None
        self.raw_log = []

    def log(self, direction, data):
        if self.r.verbose:
            for line in data.decode("latin-1").split("\r\n"):
                if line:
                    print("    [%d%s] %s" % (self.idx + 1, direction, line[:300]))

    def connect(self):
        a = self.r.args
        s = socket.create_connection((a.host, a.port), timeout=a.timeout)
        if a.tls:
            s = self.r.tls_ctx.wrap_socket(s, server_hostname=a.host)
        self.sock = s
        greeting = self.read_response()
        if greeting.kind != "untagged":
            raise TestFailure("bad greeting: %s" % greeting.raw)
        self.greeting = greeting
        self.note_capability(greeting.args)
        if a.starttls:
            r = self.simple("STARTTLS")
            if not r.args or (astring(r.args[0]) or "").upper() != "OK":
                raise TestFailure("STARTTLS failed: %s" % r.raw)
            self.sock = self.r.tls_ctx.wrap_socket(self.sock, server_hostname=a.host)
            self.caps = set()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.log(">", data)
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.time()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def read_response(self, timeout=None):
        deadline = time.time() + (timeout or self.r.args.timeout)
        text = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill(deadline)
            line, self.buf = self.buf.split(b"\r\n", 1)
            text += line
            m = re.search(rb"~?\{(\d+)\+?\}$", line)
            if not m:
                break
            n = int(m.group(1))
            text += b"\r\n"
            while len(self.buf) < n:
                self._fill(deadline)
            text += self.buf[:n]
            self.buf = self.buf[n:]
        self.log("<", text + b"\r\n")
        s = text.decode("latin-1")
        if s.startswith("* "):
            return Response("untagged", None, parse_args(s[2:]), s)
        if s.startswith("+"):
            return Response("cont", None, [], s)
        tag, _, rest = s.partition(" ")
        return Response("tagged", tag, parse_args(rest), s)

    def next_tag(self):
        self.tagn += 1
        return "%d.%d" % (self.id, self.tagn)

    def simple(self, command, on_untagged=None):
        """Sends a command (no literals) and returns its tagged response."""
        tag = self.next_tag()
        self.send("%s %s\r\n" % (tag, command))
        while True:
            r = self.read_response()
            if r.kind == "untagged":
                self.track(r)
                if on_untagged:
                    on_untagged(r)
            elif r.kind == "tagged" and r.tag == tag:
                self.note_resp_code(r.args)
                return r

    def note_capability(self, args):
        """Capabilities from a CAPABILITY response or a [CAPABILITY ...] response code."""
        words = [astring(a) or "" for a in args]
        if words and words[0].upper() == "CAPABILITY":
            self.caps = set(w.upper() for w in words[1:])
            return
        if len(words) > 1 and words[1].upper().startswith("[CAPABILITY"):
            caps = []
            for w in words[2:]:
                caps.append(w.rstrip("]"))
                if w.endswith("]"):
                    break
            self.caps = set(c.upper() for c in caps if c)

    def note_resp_code(self, args):
        """A tagged reply's [CAPABILITY ...] code (args: OK [CAPABILITY ...] text)."""
        self.note_capability(args)

    def track(self, r):
        """Follows EXISTS / EXPUNGE / FETCH and checks the server's invariants."""
        args = r.args
        if len(args) >= 2 and args[0][0] == ATOM and args[0][1].isdigit() and args[1][0] == ATOM:
            n = int(args[0][1])
            what = args[1][1].upper()
            if what == "EXISTS":
                if n < self.exists:
                    self.r.state_error(self, "EXISTS shrank from %d to %d without EXPUNGE"
                                       % (self.exists, n))
                    self.uids = self.uids[:n]
                self.uids += [None] * (n - len(self.uids))
                self.exists = n
            elif what == "RECENT":
                if n > self.exists:
                    self.r.state_error(self, "RECENT %d is more than EXISTS %d" % (n, self.exists))
            elif what == "EXPUNGE":
                if self.r.no_expunge_now(self):
                    self.r.state_error(self, "EXPUNGE %d while a FETCH, STORE or SEARCH by "
                                       "sequence number was running (RFC 3501 7.4.1)" % n)
                if n == 0 or n > self.exists:
                    self.r.state_error(self, "EXPUNGE %d for a message that doesn't exist "
                                       "(EXISTS %d)" % (n, self.exists))
                else:
                    del self.uids[n - 1]
                    self.exists -= 1
            elif what == "FETCH":
                if n == 0 or n > self.exists:
                    self.r.state_error(self, "FETCH %d for a message that doesn't exist "
                                       "(EXISTS %d)" % (n, self.exists))
                elif len(args) > 2 and args[2][0] == LIST:
                    self.track_fetch(n, args[2][1])
        elif args and (astring(args[0]) or "").upper() == "FLAGS" and len(args) > 1 \
                and args[1][0] == LIST:
            self.keywords = set((astring(f) or "").lower() for f in args[1][1]
                                if not (astring(f) or "\\").startswith("\\"))
        elif args and astring(args[0]) and astring(args[0]).upper() == "CAPABILITY":
            self.note_capability(args)
        elif args and astring(args[0]) and astring(args[0]).upper() == "OK" and len(args) > 2:
            code = (astring(args[1]) or "").upper()
            value = (astring(args[2]) or "").rstrip("]")
            if code == "[UIDVALIDITY":
                self.uidvalidity = value
            elif code in ("[UIDNEXT", "[HIGHESTMODSEQ") and value.isdigit():
                last = self.counters.get(code)
                if last is not None and int(value) < last:
                    self.r.state_error(self, "%s went down from %d to %s"
                                       % (code[1:], last, value))
                self.counters[code] = int(value)

    def track_fetch(self, seq, items):
        uid = None
        flags = None
        modseq = None
        static = {}
        for i in range(0, len(items) - 1, 2):
            name = (astring(items[i]) or "").upper()
            value = items[i + 1]
            if name == "UID":
                uid = astring(value)
            elif name == "FLAGS" and value[0] == LIST:
                flags = [(astring(f) or "").lower() for f in value[1]]
            elif name == "MODSEQ" and value[0] == LIST and value[1]:
                modseq = astring(value[1][0])
            elif name in STATIC_ITEMS:
                static[name] = args_to_str([value])
        if uid is not None:
            old = self.uids[seq - 1]
            if old is not None and old != uid:
                self.r.state_error(self, "sequence %d changed UID from %s to %s"
                                   % (seq, old, uid))
            self.uids[seq - 1] = uid
        uid = self.uids[seq - 1]
        if uid is not None and self.selected:
            key = (self.selected.lower(), self.uidvalidity, uid)
            # What a message is never changes (imaptest compares what it cached).
            known = self.r.static_data.setdefault(key, {})
            for name, value in static.items():
                if (value.replace("NIL", "").strip("() ") == "" or value in ("0", '""')
                        or value.startswith('"01-Jan-1970 00:00:00')):
                    # What a server may send for a message expunged meanwhile (Dovecot).
                    continue
                old = known.setdefault(name, value)
                if old != value:
                    self.r.state_error(self, "UID %s %s changed from %s to %s"
                                       % (uid, name, old[:80], value[:80]))
            if modseq is not None and modseq.isdigit():
                last = self.r.modseqs.get(key)
                if last is not None and int(modseq) < last:
                    self.r.state_error(self, "UID %s MODSEQ went down from %d to %s"
                                       % (uid, last, modseq))
                self.r.modseqs[key] = max(int(modseq), last or 0)
        if flags is not None and self.keywords is not None:
            for f in flags:
                if not f.startswith("\\") and f not in self.keywords:
                    self.r.state_error(self, "keyword %s used without being in FLAGS" % f)
        if flags is not None and "\\recent" in flags and uid is not None and self.selected:
            key = (self.selected.lower(), self.uidvalidity, uid)
            owner = self.r.recent_owner.setdefault(key, self.idx)
            if owner != self.idx:
                self.r.state_error(self, "UID %s is \\Recent in two sessions (%d and %d)"
                                   % (uid, owner + 1, self.idx + 1))

    def reset_view(self):
        self.counters = {}
        self.exists = 0
        self.uids = []
        self.uidvalidity = None
        self.keywords = None

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


# ---------------------------------------------------------------------------------------------
# Matching (imaptest's test_imap_match_args / test_imap_match_list / test_expand_input).

FULL = float("inf")
VAR_CHARS = re.compile(r"[A-Za-z0-9_]*")


class Matcher:
    def __init__(self, ex):
        self.ex = ex
        self.vars = ex.vars

    def expand_input(self, pattern, inp):
        """Matches the pattern's variables against the input word; returns the expanded pattern
        or None on a mismatch. Binds unbound variables (recorded in ex.added)."""
        out = []
        icase = True
        i = 0
        j = 0
        n = len(pattern)
        while i < n:
            c = pattern[i]
            if c != "$" or pattern[i + 1:i + 2] == "$":
                if c == "$":
                    i += 1
                    c = pattern[i]
                if j >= len(inp) or c.upper() != inp[j].upper():
                    return None, icase
                out.append(c)
                i += 1
                j += 1
                continue
            i += 1
            if pattern[i:i + 1] == "{":
                end = pattern.find("}", i + 1)
                if end < 0:
                    return "", icase
                name = pattern[i + 1:end]
                i = end + 1
            else:
                name = VAR_CHARS.match(pattern, i).group(0)
                i += len(name)
            if name.isdigit():
                value = self.ex.relative_seq(int(name))
            elif name.startswith("case:"):
                icase = False
                value = name[5:]
            else:
                value = self.vars.get(name) if name else None
                if value is None:
                    rest = pattern[i:]
                    stop = self.first_char_of(rest) if rest.startswith("$") else rest[:1]
                    k = j
                    if stop:
                        while k < len(inp) and inp[k].upper() != stop.upper():
                            k += 1
                    else:
                        k = len(inp)
                    value = inp[j:k]
                    m = re.fullmatch(r"modseq(\d+)", name)
                    if not name:
                        pass
                    elif m and self.ex.r.args.modseq_order:
                        value = self.ex.new_modseq(int(m.group(1)), value)
                        self.vars[name] = value
                    else:
                        self.vars[name] = value
                        self.ex.added.append(name)
            out.append(value)
            for ch in value:
                if j >= len(inp) or inp[j] != ch:
                    return None, icase
                j += 1
        return "".join(out), icase

    def first_char_of(self, rest):
        """First character a pattern starting with a variable stands for (imaptest checks
        only the first letter too); '' when unknown."""
        m = re.match(r"\$(\{[^}]*\}|[A-Za-z0-9_]*)", rest)
        if not m:
            return rest[:1]
        name = m.group(1).strip("{}")
        if name.isdigit():
            return self.ex.relative_seq(int(name))[:1]
        v = self.vars.get(name)
        if v:
            return v[:1]
        return ""

    def match_args(self, match, args, maxn=None, prefix=False):
        """Number of leading elements matched; FULL on a full match."""
        ret = 0
        mi = 0
        ai = 0
        left = maxn if maxn is not None else 1 << 30
        while mi < len(match) and left > 0:
            m = match[mi]
            a = args[ai] if ai < len(args) else None
            if m[0] == NIL:
                if a is None or a[0] != NIL:
                    return ret
            elif m[0] in (ATOM, STRING, LITERAL):
                if m[1] == "$" and a is not None and a[0] == LIST:
                    pass
                elif m[1] == "$]":
                    while ai < len(args) and args[ai][0] == ATOM and "]" not in args[ai][1]:
                        ai += 1
                else:
                    astr = astring(a) if a is not None else None
                    if astr is None:
                        return ret
                    mstr, icase = self.expand_input(m[1], astr)
                    if mstr is None:
                        return ret
                    last = mi + 1 == len(match)
                    if prefix and last:
                        ok = astr[:len(mstr)].lower() == mstr.lower() if icase \
                            else astr[:len(mstr)] == mstr
                    else:
                        ok = astr.lower() == mstr.lower() if icase else astr == mstr
                    if not ok:
                        return ret
            elif m[0] == LIST:
                if a is None or a[0] != LIST:
                    return ret
                sub = self.match_list(m[1], a[1])
                if sub != FULL:
                    return ret + sub
            ret += 1
            mi += 1
            ai += 1
            left -= 1
        if prefix or ai >= len(args) or left == 0:
            return FULL
        return ret

    def match_list(self, match, args):
        unordered = False
        chain = 1
        noextra = None
        ignores, bans = [], []
        k = 0
        while k < len(match) and match[k][0] == ATOM and match[k][1].startswith("$!"):
            d = match[k][1][2:]
            if d.startswith("unordered"):
                unordered = True
                if noextra is None:
                    noextra = False
                if d[9:10] == "=":
                    chain = int(d[10:])
            elif d == "ordered":
                unordered = False
            elif d == "extra":
                noextra = False
            elif d == "noextra":
                noextra = True
            elif d.startswith("ignore="):
                ignores.append(d[7:])
            elif d.startswith("ban="):
                bans.append(d[4:])
            k += 1
        match = match[k:]
        if noextra is None:
            noextra = True
        if not unordered:
            return self.match_args(match, args)
        if len(args) % chain != 0:
            return 0
        matched = [False] * len(args)
        ret = 0
        for mi in range(0, len(match), chain):
            for ai in range(0, len(args), chain):
                if self.match_args(match[mi:mi + chain], args[ai:], chain) == FULL:
                    matched[ai] = True
                    break
            else:
                return ret
            ret += 1
        if noextra:
            for ai in range(0, len(args), chain):
                if matched[ai]:
                    continue
                s = astring(args[ai])
                if s is None:
                    continue
                if not any(s.lower() == x.lower() for x in ignores):
                    return ret
        elif bans:
            for ai in range(0, len(args), chain):
                if matched[ai]:
                    continue
                s = astring(args[ai])
                if s is not None and any(s.lower() == x.lower() for x in bans):
                    return ret
        return FULL


# ---------------------------------------------------------------------------------------------
# Running a test.


class Execution:
    def __init__(self, runner, test):
        self.r = runner
        self.test = test
        self.vars = {}
        self.added = []
        self.seqmap = []
        self.modseq_idx = 0
        self.modseq_value = 0
        self.matcher = Matcher(self)
        self.conns = []
        self.errors = []
        self.source = Mbox(test.mbox)

    # -- variables
    def relative_seq(self, n):
        if n == 0:
            return "<zero seq>"
        if n > len(self.seqmap):
            return "<out of range>"
        if self.seqmap[n - 1] == 0:
            return "<expunged>"
        return str(self.seqmap[n - 1])

    def new_modseq(self, idx, value):
        if not value.isdigit():
            return "$modseq-not-number"
        v = int(value)
        if self.modseq_idx > idx:
            return "$modseq-order-mismatch"
        at_least = self.modseq_value + (idx - self.modseq_idx)
        out = value
        if v < at_least:
            out = "$modseq-at-least-%d" % at_least
            v = at_least
        self.modseq_idx = idx
        self.modseq_value = v
        return out

    def expand_command(self, line):
        out = []
        i = 0
        while i < len(line):
            c = line[i]
            if c != "$" or i + 1 == len(line):
                out.append(c)
                i += 1
                continue
            i += 1
            if line[i] == "$":
                out.append("$")
                i += 1
            elif line[i] == "!":
                while i < len(line) and line[i] != " ":
                    i += 1
                i += 1
            else:
                if line[i] == "{":
                    end = line.find("}", i)
                    if end < 0:
                        raise TestFailure("Missing '}'")
                    name = line[i + 1:end]
                    i = end + 1
                else:
                    name = VAR_CHARS.match(line, i).group(0)
                    i += len(name)
                if name.isdigit():
                    out.append(self.relative_seq(int(name)))
                else:
                    v = self.vars.get(name)
                    if v is None:
                        raise TestFailure("Uninitialized variable: %s" % name)
                    out.append(v)
        return "".join(out)

    # -- state errors
    def state_error(self, conn, msg):
        self.errors.append("connection %d: %s" % (conn.idx + 1, msg))

    # -- setup
    def login(self, conn, user, password):
        r = conn.simple("LOGIN %s %s" % (quote(user), quote(password)))
        if (astring(r.args[0]) or "").upper() != "OK":
            raise TestFailure("LOGIN %s failed: %s" % (user, r.raw))

    def setup(self):
        t = self.test
        a = self.r.args
        mailbox = a.box
        for i in range(t.connections):
            c = Conn(self.r, i)
            c.connect()
            self.conns.append(c)
            user, pw = a.user, a.password
            if i in t.users:
                u = t.users[i]
                if u in ("$user2", "${user2}"):
                    if not a.user2:
                        raise Skip("needs --user2")
                    user, pw = a.user2, a.pass2
                else:
                    user = u
            key = "" if i == 0 else str(i + 1)
            self.vars["user" + key] = user
            self.vars["username" + key] = user.split("@")[0]
            self.vars["domain" + key] = user.split("@", 1)[1] if "@" in user else a.host
            self.vars["password" + key] = pw
            if t.state != "nonauth":
                self.login(c, user, pw)
        self.vars["mailbox"] = mailbox
        self.vars["mailbox_url"] = mailbox
        c0 = self.conns[0]
        if not c0.caps or "IMAP4REV1" not in c0.caps and "IMAP4REV2" not in c0.caps:
            c0.simple("CAPABILITY")
        missing = [cap for cap in t.capabilities if cap.upper() not in c0.caps]
        if missing:
            raise Skip("missing capabilities: " + " ".join(missing))
        if t.state == "nonauth":
            return
        # Delete (and unsubscribe) everything named like the test mailbox.
        boxes, subs = [], []

        def collect(r):
            if len(r.args) >= 4 and r.args[1][0] == LIST:
                name = astring(r.args[3])
                kind = (astring(r.args[0]) or "").upper()
                if name is not None and kind == "LIST":
                    boxes.append(name)
                elif name is not None and kind == "LSUB":
                    subs.append(name)
        pattern = quote(mailbox + "*")
        c0.simple('LIST "" %s' % pattern, collect)
        c0.simple('LSUB "" %s' % pattern, collect)
        for b in sorted(set(boxes), key=str.lower, reverse=True):
            r = c0.simple("DELETE %s" % quote(b))
            if (astring(r.args[0]) or "").upper() == "BAD":
                raise TestFailure("DELETE %s failed: %s" % (b, r.raw))
        for b in sorted(set(subs), key=str.lower, reverse=True):
            r = c0.simple("UNSUBSCRIBE %s" % quote(b))
            if (astring(r.args[0]) or "").upper() != "OK":
                raise TestFailure("UNSUBSCRIBE %s failed: %s" % (b, r.raw))
        if t.state == "auth":
            return
        if mailbox.upper() != "INBOX":
            r = c0.simple("CREATE %s" % quote(mailbox))
            if (astring(r.args[0]) or "").upper() != "OK":
                raise TestFailure("CREATE %s failed: %s" % (mailbox, r.raw))
        if t.state == "created":
            return
        count = t.message_count
        n = 0
        while (count is None and not self.source.eof()) or (count is not None and n < count):
            date, body = self.source.get_next()
            r = self.append_raw(c0, '%s "%s"' % (quote(mailbox), date), body)
            if (astring(r.args[0]) or "").upper() != "OK":
                raise TestFailure("APPEND failed: %s" % r.raw)
            n += 1
        if t.state == "appended":
            return
        for c in self.conns:
            c.reset_view()
            r = c.simple("SELECT %s" % quote(mailbox))
            if (astring(r.args[0]) or "").upper() != "OK":
                raise TestFailure("SELECT %s failed: %s" % (mailbox, r.raw))
            c.selected = mailbox

    def append_raw(self, conn, args, body):
        tag = conn.next_tag()
        if "LITERAL+" in conn.caps:
            conn.send("%s APPEND %s {%d+}\r\n" % (tag, args, len(body)) + body + "\r\n")
        else:
            conn.send("%s APPEND %s {%d}\r\n" % (tag, args, len(body)))
            while True:
                r = conn.read_response()
                if r.kind == "cont":
                    break
                if r.kind == "tagged":
                    return r
                conn.track(r)
            conn.send(body + "\r\n")
        while True:
            r = conn.read_response()
            if r.kind == "untagged":
                conn.track(r)
            elif r.kind == "tagged" and r.tag == tag:
                return r

    # -- command groups
    def command_wire(self, conn, cmd, text):
        """The bytes of one command as a list of pieces; a piece after a synchronising literal
        is sent only after the server's continuation."""
        lower = text.lower()
        if lower == "append" or (lower.startswith("append ") and not self.append_has_body(text[7:])):
            if lower == "append":
                date, body = self.source.get_next()
                args = '%s "%s"' % (quote(self.r.args.box), date)
            else:
                _, body = self.source.get_next()
                args = text[7:]
            if "LITERAL+" in conn.caps:
                return ["%s APPEND %s {%d+}\r\n%s\r\n" % (cmd.cur_tag, args, len(body), body)]
            return ["%s APPEND %s {%d}\r\n" % (cmd.cur_tag, args, len(body)), body + "\r\n"]
        pieces = []
        line = "%s %s" % (cmd.cur_tag, text)
        pos = 0
        for m in re.finditer(r"~?\{(\d+)\}\r\n", line):
            if m.start() < pos:
                continue
            pieces.append(line[pos:m.end()])
            pos = m.end()
        pieces.append(line[pos:] + "\r\n")
        return pieces

    @staticmethod
    def append_has_body(args_text):
        args = parse_args(args_text)
        if not args:
            return False
        i = 0
        if i + 1 < len(args) and args[i + 1][0] == LIST:
            i += 1
        if i + 1 < len(args) and args[i + 1][0] == STRING:
            i += 1
        return i + 1 < len(args) and (args[i + 1][0] == LITERAL or
                                      (astring(args[i + 1]) or "").lower() == "catenate")

    def run_group(self, gi, group):
        conn = self.conns[group.conn]
        self.seqmap = list(range(1, conn.exists + 1))
        found = [False] * len(group.untagged)
        best = [(0, None)] * len(group.untagged)
        mismatches = 0
        first_extra = None
        failures = []
        pending = {}
        queue = []
        group_tag = None
        for cmd in group.commands:
            text = self.expand_command(cmd.text)
            cmd.cur_tag = conn.next_tag()
            if group_tag is None:
                group_tag = cmd.cur_tag
            pending[cmd.cur_tag] = (cmd, text)
            if text.split(" ", 1)[0].lower() in ("select", "examine"):
                # The new mailbox's EXISTS arrives before the tagged reply.
                conn.reset_view()
                conn.selected = None
            queue.append([cmd.cur_tag, self.command_wire(conn, cmd, text)])
        if not group.commands:
            group_tag = None

        def pump():
            """Sends queued pieces up to the next synchronising literal."""
            while queue:
                tag, pieces = queue[0]
                if tag not in pending:
                    queue.pop(0)
                    continue
                conn.send(pieces.pop(0))
                if pieces:
                    return True     # waiting for "+"
                queue.pop(0)
            return False

        self.r.running[conn.idx] = [t for _, t in pending.values()]
        waiting_cont = pump()
        if not group.commands and conn.greeting is not None:
            # Banner check: the expectations are about the greeting.
            m, first = self.match_untagged(group, None, conn.greeting.args, found, best)
            if first:
                failures.append(first)
        while pending:
            try:
                r = conn.read_response()
            except socket.timeout:
                raise TestFailure("timed out waiting for the reply to: %s" %
                                  "; ".join(t for _, t in pending.values()))
            except ConnectionError:
                logout = any(t.lower() == "logout" for _, t in pending.values())
                if logout:
                    break
                raise TestFailure("unexpected disconnection during: %s" %
                                  "; ".join(t for _, t in pending.values()))
            if r.kind == "cont":
                if waiting_cont:
                    waiting_cont = pump()
                elif any(t.lower() == "idle" for _, t in pending.values()):
                    conn.send("DONE\r\n")
                continue
            if r.kind == "untagged":
                m, first = self.match_untagged(group, group_tag, r.args, found, best)
                mismatches += 0 if m else 1
                if not m and first_extra is None and not self.test.ignore_extra_untagged:
                    first_extra = r.raw
                if first:
                    failures.append(first)
                if (len(r.args) >= 2 and r.args[0][0] == ATOM and r.args[0][1].isdigit()
                        and (astring(r.args[1]) or "").upper() == "EXPUNGE"):
                    self.handle_expunge(int(r.args[0][1]))
                conn.track(r)
                continue
            if r.tag not in pending:
                continue
            cmd, text = pending.pop(r.tag)
            self.r.running[conn.idx] = [t for _, t in pending.values()]
            self.vars["tag"] = r.tag
            got = self.matcher.match_args(cmd.reply, r.args, prefix=True)
            del self.vars["tag"]
            if got != FULL:
                failures.append("line %d: %s\n      expected tagged: %s\n      got:             %s"
                                % (cmd.linenum, text, args_to_str(cmd.reply), r.raw))
            self.after_command(conn, text, r)
            if waiting_cont and queue and queue[0][0] == r.tag:
                queue.pop(0)
                waiting_cont = pump()
        # Missing untagged replies.
        for i, ut in enumerate(group.untagged):
            if ut.existence == MUST and not found[i]:
                cmdtext = group.commands[0].text if group.commands else "(banner)"
                failures.append(
                    "line %d: %s\n      missing untagged: %s\n      expanded:         %s"
                    "\n      best match:       %s"
                    % (ut.linenum, cmdtext, args_to_str(ut.args),
                       self.expand_for_display(args_to_str(ut.args)), best[i][1] or "(none)"))
        if first_extra is not None:
            failures.append("line %d: %d unexpected untagged replies, first: %s"
                            % (group.commands[0].linenum if group.commands else 0,
                               mismatches, first_extra))
        if self.errors:
            failures.extend("server state: " + e for e in self.errors)
            self.errors = []
        for o in group.output:
            print(self.expand_command(o))
        if group.sleep:
            time.sleep(group.sleep)
        return failures

    def expand_for_display(self, s):
        def rep(m):
            name = m.group(1) or m.group(2)
            if name.isdigit():
                return self.relative_seq(int(name))
            return self.vars.get(name, m.group(0))
        return re.sub(r"\$\{([^}]*)\}|\$([A-Za-z0-9_]+)", rep, s)

    def after_command(self, conn, text, r):
        ok = (astring(r.args[0]) or "").upper() == "OK" if r.args else False
        words = text.split(" ", 1)
        verb = words[0].lower()
        if verb in ("select", "examine"):
            if ok:
                name = parse_args(words[1])[0] if len(words) > 1 else None
                conn.selected = astring(name) if name else None
            else:
                conn.selected = None
                conn.reset_view()
        elif verb in ("close", "unselect") and ok:
            conn.selected = None
            conn.reset_view()

    def handle_expunge(self, seq):
        seqs = self.seqmap
        if seq > len(seqs):
            return
        for i in range(seq - 1, len(seqs)):
            if seqs[i] >= seq:
                if seqs[i] == seq:
                    seqs[i] = 0
                else:
                    seqs[i] -= 1

    def match_untagged(self, group, group_tag, args, found, best):
        """imaptest's test_handle_untagged_match: (matched anything, failure text or None)."""
        if not group.untagged:
            return self.test.ignore_extra_untagged, None
        first = (astring(args[0]) or "").lower() if args else ""
        prefix = first in ("ok", "no", "bad", "bye")
        found_some = False
        for i, ut in enumerate(group.untagged):
            if found[i]:
                continue
            self.added = []
            if group_tag is not None:
                self.vars["tag"] = group_tag
            n = self.matcher.match_args(ut.args, args, prefix=prefix)
            if group_tag is not None:
                self.vars.pop("tag", None)
            if n == FULL:
                if ut.existence == MUST_NOT:
                    return True, ("line %d: unexpected untagged match:\n      match: %s\n"
                                  "      reply: %s" % (ut.linenum, args_to_str(ut.args),
                                                       args_to_str(args)))
                found[i] = True
                found_some = True
                self.added = []
                if group.ordered:
                    break
                continue
            if best[i][0] < n or best[i][1] is None:
                best[i] = (n, args_to_str(args))
            for name in self.added:
                self.vars.pop(name, None)
            self.added = []
            if group.ordered and ut.existence == MUST:
                break
        return found_some, None

    def run(self):
        try:
            self.setup()
            failures = []
            for gi, group in enumerate(self.test.groups):
                failures += self.run_group(gi, group)
            return failures
        finally:
            for c in self.conns:
                c.close()


class Runner:
    def __init__(self, args):
        self.args = args
        self.verbose = args.verbose
        self.next_conn_id = 1
        self.recent_owner = {}
        self.static_data = {}
        self.modseqs = {}
        self.running = {}
        self.current = None
        self.tls_ctx = ssl.create_default_context()
        self.tls_ctx.check_hostname = False
        self.tls_ctx.verify_mode = ssl.CERT_NONE

    def state_error(self, conn, msg):
        if self.current is not None:
            self.current.state_error(conn, msg)

    def no_expunge_now(self, conn):
        """Whether every command running on `conn` is a FETCH, STORE or SEARCH by sequence
        number, when RFC 3501 §7.4.1 forbids EXPUNGE responses."""
        running = self.running.get(conn.idx) or []
        return bool(running) and all(
            t.split(" ", 1)[0].lower() in ("fetch", "store", "search") for t in running)

    def run_test(self, test):
        self.recent_owner = {}
        self.static_data = {}
        self.modseqs = {}
        self.running = {}
        ex = Execution(self, test)
        self.current = ex
        try:
            failures = ex.run()
        except Skip as e:
            return "skip", [str(e)]
        except TestFailure as e:
            return "fail", [str(e)]
        except (OSError, ConnectionError) as e:
            return "fail", ["I/O error: %s" % e]
        return ("fail" if failures else "pass"), failures


def collect_tests(paths):
    tests = []
    for p in paths:
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                if name.startswith(".") or name.endswith(".mbox") or name.startswith("README"):
                    continue
                full = os.path.join(p, name)
                if os.path.isfile(full):
                    tests.append((full, os.path.join(p, "default.mbox")))
        else:
            tests.append((p, os.path.join(os.path.dirname(p) or ".", "default.mbox")))
    return tests


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tests", nargs="+", help="test files or directories")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=143)
    ap.add_argument("--tls", action="store_true", help="implicit TLS (port 993)")
    ap.add_argument("--starttls", action="store_true", help="STARTTLS before LOGIN")
    ap.add_argument("--user", required=True)
    ap.add_argument("--pass", dest="password", required=True)
    ap.add_argument("--user2", help="second user for tests with 'user N: $user2'")
    ap.add_argument("--pass2")
    ap.add_argument("--box", default="imaptest",
                    help="test mailbox ($mailbox); imaptest's own default, INBOX, cannot be "
                    "deleted between tests, so most scripts fail with it on any server")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a reply")
    ap.add_argument("--modseq-order", action="store_true",
                    help="newer imaptest's rule: $modseqN must grow at least by the gap of N "
                    "(the stored scripts predate it: esearch-condstore binds them out of order)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the IMAP dialogue")
    args = ap.parse_args()
    runner = Runner(args)
    results = {"pass": [], "fail": [], "skip": []}
    for path, default_mbox in collect_tests(args.tests):
        name = os.path.basename(path)
        try:
            test = read_test(path, default_mbox)
        except (ScriptError, ValueError) as e:
            print("FAIL %s: cannot parse: %s" % (name, e))
            results["fail"].append(name)
            continue
        if args.verbose:
            print("--- %s" % name)
        status, details = runner.run_test(test)
        results[status].append(name)
        if status == "pass":
            print("PASS %s" % name)
        elif status == "skip":
            print("SKIP %s (%s)" % (name, "; ".join(details)))
        else:
            print("FAIL %s" % name)
            for d in details:
                print("    " + d.replace("\n", "\n    "))
        sys.stdout.flush()
    print("%d passed, %d failed, %d skipped" % (len(results["pass"]), len(results["fail"]),
                                                 len(results["skip"])))
    if results["fail"]:
        print("failed: " + " ".join(results["fail"]))
    sys.exit(1 if results["fail"] else 0)


if __name__ == "__main__":
    main()
