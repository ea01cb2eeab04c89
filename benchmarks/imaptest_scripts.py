"""Run scripted IMAP compliance tests in imaptest's script format against an IMAP server.

Why ours: Dovecot's imaptest is a C program that is not packaged here; its
scripted tests (one file per test, an optional ``NAME.mbox`` beside it,
``default.mbox`` otherwise) are plain text. This runner reads such a folder and
runs each script against a server, the way imaptest's test mode does, so we
can compare our server with Dovecot on the same scripts. The scripts are not
part of this repository: point the runner at a folder that holds them.

The script format, as imaptest reads it:

- a header of ``key: value`` lines up to the first empty line:
  ``capabilities:`` (skip the test unless the server advertises all of them),
  ``connections: N``, ``state: nonauth|auth|created|appended|selected``
  (default selected: the test mailbox is deleted, created, filled from the
  mbox and selected on every connection), ``messages: N|all`` (default all),
  ``ignore_extra_untagged: yes|no``;
- then command groups: ``[conn] [tagN] ok|no|bad|"" COMMAND`` or a command
  line followed later by its ``[conn] [tagN] ok|no|bad|"" [prefix]`` line
  (several tagged commands pipeline); after a command, ``* reply`` must come,
  ``! reply`` must not, ``? reply`` may; ``{{{`` ... ``}}}`` is a literal
  (``~{{{`` a binary one);
- ``$name`` / ``${name}`` variables: bound from the first reply that matches,
  then compared; ``$`` alone matches anything; ``$N`` is the current sequence
  of what was message N when the group started; ``$$`` is a dollar sign;
- lists may start with directives ``$!unordered[=N]``, ``$!ordered``,
  ``$!noextra``, ``$!extra``, ``$!ignore=X``, ``$!ban=X``; FETCH, STATUS,
  LIST and LSUB replies get imaptest's default directives (FETCH items and
  STATUS items in any order, FLAGS lists in any order with no extra flag but
  ``\\Recent``);
- a bare ``append`` appends the next message of the mbox (with the date of its
  ``From`` line), ``append ARGS`` without a literal appends it with ARGS.

Like imaptest, every reply is also checked against what the connection knows of its
mailbox: EXPUNGE and FETCH numbers within the message count, the count never dropping
through EXISTS, a message's UID never changing, keywords in FETCH FLAGS announced by an
untagged FLAGS first, and ``\\Recent`` of a message given to one session only; each
break is a failure (``state: ...``).

Usage::

    python benchmarks/imaptest_scripts.py DIR --server ours      # starts ours
    python benchmarks/imaptest_scripts.py DIR --server dovecot   # private Dovecot (root)
    python benchmarks/imaptest_scripts.py DIR --host H --port P --user U --password PW
    ... [--only test1,test2] [--verbose]

Prints one line per test (``PASS``/``FAIL``/``SKIP``, with the failures) and
ends with ``imaptest_scripts server=S tests=N passed=P failed=F skipped=K
base_commands_failed=a/b ext_commands_failed=c/d``.
"""

import argparse
import os
import re
import shutil
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

ALL = float("inf")  # "everything matched", as imaptest's UINT_MAX
EXIST, MUST_NOT = "*", "!"  # "?" (may come) needs no check
STATUS_WORDS = ("OK", "NO", "BAD", "BYE", "PREAUTH")


class ScriptError(Exception):
    """A script this runner cannot read."""


class TestFailed(Exception):
    """The test cannot go on (init failure, disconnection, timeout)."""


# ---------------------------------------------------------------------------
# IMAP arguments: ("A", atom) ("S", string) ("L", literal) ("N", None) ("(", [args])
# ---------------------------------------------------------------------------

_LITERAL = re.compile(r"~?\{(\d+)\+?\}\r\n")


def tokenize(s, i=0, nested=False):
    """IMAP arguments of ``s`` from ``i``; an atom holding ``[`` runs to its ``]`` (fetch items)."""
    args = []
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \r\n":
            i += 1
        elif c == "(":
            sub, i = tokenize(s, i + 1, True)
            args.append(("(", sub))
        elif c == ")":
            if nested:
                return args, i + 1
            raise ScriptError("unexpected ')'")
        elif c == '"':
            j, buf = i + 1, []
            while j < n and s[j] != '"':
                if s[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(s[j])
                j += 1
            if j >= n:
                raise ScriptError("unterminated string")
            args.append(("S", "".join(buf)))
            i = j + 1
        else:
            m = _LITERAL.match(s, i)
            if m:
                start = m.end()
                args.append(("L", s[start:start + int(m.group(1))]))
                i = start + int(m.group(1))
                continue
            j, depth = i, 0
            while j < n:
                ch = s[j]
                if ch in "\r\n":
                    break
                if ch == "[":
                    depth += 1
                elif ch == "]":
                    depth = max(0, depth - 1)
                elif depth == 0 and ch in " ()":
                    break
                j += 1
            atom = s[i:j]
            args.append(("N", None) if atom.upper() == "NIL" else ("A", atom))
            i = j
    if nested:
        raise ScriptError("missing ')'")
    return args, i


def parse_status_text(s):
    """``OK [code] text``: the status word, the bracketed code as one atom, then words."""
    word, _, rest = s.partition(" ")
    args = [("A", word)]
    rest = rest.lstrip(" ")
    if rest.startswith("["):
        depth, j = 0, 0
        while j < len(rest):
            if rest[j] == "[":
                depth += 1
            elif rest[j] == "]":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            j += 1
        args.append(("A", rest[:j]))
        rest = rest[j:]
    args.extend(("A", w) for w in rest.split())
    return args


def parse_response(raw):
    """``(kind, tag, args)`` of one server response (literals inlined in ``raw``)."""
    line = raw[:-2] if raw.endswith("\r\n") else raw.rstrip("\n")
    if line.startswith("+"):
        return "+", None, []
    tag, _, rest = line.partition(" ")
    if tag == "*":
        word = rest.split(" ", 1)[0].upper()
        if word in STATUS_WORDS:
            return "*", None, parse_status_text(rest)
        return "*", None, tokenize(rest)[0]
    return "tagged", tag, parse_status_text(rest)


def is_astring(arg):
    return arg[0] in ("A", "S", "L")


def arg_str(args):
    out = []
    for t, v in args:
        if t == "(":
            out.append("(" + arg_str(v) + ")")
        elif t == "N":
            out.append("NIL")
        elif t == "S":
            out.append('"%s"' % v.replace("\\", "\\\\").replace('"', '\\"'))
        elif t == "L":
            out.append("{%d}%s" % (len(v), v if len(v) < 200 else v[:200] + "..."))
        else:
            out.append(v)
    return " ".join(out)


# ---------------------------------------------------------------------------
# Scripts
# ---------------------------------------------------------------------------


class Command:
    def __init__(self, text, tag, reply, linenum):
        self.text, self.tag, self.reply, self.linenum = text, tag, reply, linenum


class Group:
    """Commands sent together on one connection, and the untagged replies they expect."""

    def __init__(self):
        self.conn = 0
        self.commands = []
        self.untagged = []  # (existence, args)
        self.pending = 0
        self.ordered = False
        self.sleep = 0.0
        self.have_bye = False


class Test:
    def __init__(self, path, mbox):
        self.path = path
        self.name = os.path.basename(path)
        self.mbox = mbox
        self.capabilities = None
        self.connections = 1
        self.state = "selected"
        self.messages = None  # all
        self.ignore_extra_untagged = True
        self.groups = []
        self.banner_check = False


_REPLY_WORDS = {"ok": "ok", "no": "no", "bad": "bad", '""': ""}


def split_reply(line):
    """``(tag, reply args or None, rest)`` for ``[tagN] ok|no|bad|"" rest``."""
    tag = 0
    first, _, rest = line.partition(" ")
    m = re.match(r"(?i)tag(\d+)$", first)
    if m and rest and int(m.group(1)) > 0:
        tag = int(m.group(1))
        line = rest
        first, _, rest = line.partition(" ")
    word = _REPLY_WORDS.get(first.lower())
    if word is None:
        return tag, None, line
    return tag, [("A", word)], rest


def default_directives(name, args):
    """imaptest's defaults: unordered FETCH/STATUS items, unordered FLAGS and LIST flags."""
    name = name.lower()

    def has_directives(lst):
        return bool(lst) and lst[0][0] == "A" and lst[0][1].startswith("$!")

    for i, (t, v) in enumerate(args):
        if t != "(":
            continue
        if name == "fetch" and i == 2:
            pass
        elif has_directives(v):
            continue
        if name in ("list", "lsub") and i == 1:
            v.insert(0, ("A", "$!unordered"))
        elif name == "status" and i == 2:
            v.insert(0, ("A", "$!unordered=2"))
        elif name == "fetch" and i == 2:
            if not has_directives(v):
                v.insert(0, ("A", "$!unordered=2"))
            prev = None
            for t2, v2 in v:
                if t2 == "A":
                    prev = v2.lower()
                elif t2 == "(" and prev == "flags" and not has_directives(v2):
                    v2[0:0] = [("A", d) for d in (
                        "$!ignore=$HasNoAttachment", "$!ignore=$HasAttachment",
                        "$!ignore=\\recent", "$!noextra", "$!unordered")]


def parse_untagged(line):
    args, _ = tokenize(line)
    name = ""
    if args and args[0][0] == "A":
        name = args[0][1]
        if (name[:1] == "$" or name[:1].isdigit()) and len(args) > 1 and args[1][0] == "A":
            name = args[1][1]
        elif name[:1] == "$" or name[:1].isdigit():
            name = ""
    default_directives(name, args)
    return name, args


def read_test(path, default_mbox):
    mbox = path + ".mbox" if os.path.exists(path + ".mbox") else default_mbox
    test = Test(path, mbox)
    with open(path, "rb") as f:
        raw_lines = f.read().decode("latin-1").split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    header = True
    group = None
    skip_stack, skip = [], False
    continues, binary = False, False
    multiline, start_pos, last_end = "", 0, 0
    for linenum, line in enumerate(raw_lines, 1):
        if continues:
            if not line.startswith("}}}"):
                multiline += line
                last_end = len(multiline)
                multiline += "\n" if binary else "\r\n"
                continue
            multiline = multiline[:last_end]
            line = line[3:]
            literal = multiline[start_pos:]
            multiline = multiline[:start_pos] + "%s{%d}\r\n" % ("~" if binary else "", len(literal)) + literal
            if line.endswith("{{{"):
                binary = line.endswith("~{{{")
                multiline += line[:-4] if binary else line[:-3]
                start_pos = last_end = len(multiline)
                continue
            line = multiline + line
            continues = False
        else:
            if line == "":
                header = False
                continue
            if line.startswith("#"):
                continue
            if line.endswith("{{{"):
                binary = line.endswith("~{{{")
                multiline = line[:-4] if binary else line[:-3]
                start_pos = last_end = len(multiline)
                continues = True
                continue
        if header:
            key, sep, value = line.partition(":")
            if not sep:
                raise ScriptError("%s line %d: missing ':'" % (path, linenum))
            key, value = key.strip().lower(), value.strip()
            if key == "capabilities":
                test.capabilities = value.split()
            elif key == "connections":
                test.connections = int(value)
            elif key == "ignore_extra_untagged":
                test.ignore_extra_untagged = value[:1] == "y"
            elif key == "messages":
                test.messages = None if value == "all" else int(value)
            elif key == "state":
                test.state = value.lower()
            elif key.startswith("user "):
                raise ScriptError("%s: per-connection users are not supported" % path)
            else:
                raise ScriptError("%s line %d: unknown setting %s" % (path, linenum, key))
            continue
        # commands
        if line.startswith("!ifenv ") or line.startswith("!ifnenv "):
            have = os.environ.get(line.split(" ", 1)[1]) is not None
            if line.startswith("!ifnenv "):
                have = not have
            skip_stack.append([skip, False])
            if not have:
                skip = True
            continue
        if line == "!else":
            if not skip_stack[-1][0]:
                skip = not skip
            continue
        if line == "!endif":
            skip = skip_stack.pop()[0]
            continue
        if skip:
            continue
        if group is not None:
            if line.startswith("!sleep "):
                group.sleep = float(re.match(r"[\d.]+", line[7:]).group(0)) / 1000.0
                continue
            if line.startswith("!output ") or line == "!ordered":
                group.ordered = group.ordered or line == "!ordered"
                continue
            if line[:2] in ("* ", "! ", "? "):
                name, args = parse_untagged(line[2:])
                if name.upper().startswith("BYE") and line[0] == EXIST:
                    group.have_bye = True
                group.untagged.append((line[0], args))
                continue
            if group.pending > 0:
                rest = line
                conn = 0
                if test.connections > 1:
                    first, _, after = rest.partition(" ")
                    if first.isdigit() and int(first) > 0:
                        conn, rest = int(first), after
                tag, reply, tail = split_reply(rest)
                if reply is not None:
                    if test.connections > 1 and conn - 1 != group.conn:
                        raise ScriptError("%s line %d: reply for wrong connection" % (path, linenum))
                    cmd = next((c for c in group.commands if c.tag == tag), None)
                    if cmd is None or cmd.reply is not None:
                        raise ScriptError("%s line %d: reply for unknown tag" % (path, linenum))
                    cmd.reply = reply + tokenize(tail)[0]
                    group.pending -= 1
                    continue
        if group is None or group.pending == 0:
            group = Group()
            test.groups.append(group)
        if test.connections > 1:
            first, _, line = line.partition(" ")
            if not first.isdigit() or int(first) == 0:
                raise ScriptError("%s line %d: missing connection number" % (path, linenum))
            idx = int(first) - 1
            if group.commands and group.conn != idx:
                raise ScriptError("%s line %d: pipelined commands must share a connection" % (path, linenum))
            group.conn = idx
            test.connections = max(test.connections, idx + 1)
        tag, reply, text = split_reply(line)
        if reply is not None:
            reply = reply + []
        if tag == 0 and group.pending > 0:
            raise ScriptError("%s line %d: missing reply of the previous command" % (path, linenum))
        if not group.commands and text[:2] in ("* ", "! ", "? "):
            test.banner_check = True
            group.untagged.append((text[0], parse_untagged(text[2:])[1]))
            continue
        if reply is None:
            group.pending += 1
        group.commands.append(Command(text, tag, reply, linenum))
    if continues:
        raise ScriptError("%s: multiline reply not ended" % path)
    if group is not None and group.pending:
        raise ScriptError("%s: missing reply of the last command" % path)
    if not any(c.text.lower() == "logout" for g in test.groups for c in g.commands) and \
            not any(g.have_bye for g in test.groups):
        g = Group()
        g.commands.append(Command("logout", 0, [("A", "ok")], 0))
        test.groups.append(g)
    return test


def read_mbox(path):
    """The messages of an mbox (CRLF line ends) with each ``From`` line's time."""
    with open(path, "rb") as f:
        lines = f.read().decode("latin-1").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    messages = []
    for line in lines:
        date = parse_from_line(line)
        if date is not None and (not messages or messages[-1][1]):
            messages.append([date, []])
        elif date is not None:  # an empty body: the From line starts the same message anew
            messages[-1][0] = date
        else:
            messages[-1][1].append(line)
    return [(d, "".join(l + "\r\n" for l in body)) for d, body in messages]


_FROM = re.compile(r"From \S+\s+\w{3} (\w{3})\s+(\d+) (\d\d):(\d\d):(\d\d) (\d{4})(?: ([+-]\d{4}))?\s*$")
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def parse_from_line(line):
    """The IMAP date-time of an mbox ``From`` line, or None."""
    m = _FROM.match(line)
    if not m:
        return None
    mon, day, hh, mm, ss, year, tz = m.groups()
    return "%2d-%s-%s %s:%s:%s %s" % (int(day), mon, year, hh, mm, ss, tz or "+0000")


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------


class Conn:
    def __init__(self, host, port, idx, timeout):
        self.idx = idx
        self.sock = socket.create_connection((host, port), timeout)
        self.file = self.sock.makefile("rb")
        self.n = 0
        self.closed = False
        self.errors = []  # what imaptest's state tracking would report
        self.reset_view()
        self.greeting = self.read()

    def reset_view(self, mailbox=None):
        """A new selected mailbox (or none): nothing known of its messages yet."""
        self.mailbox = mailbox
        self.uids = []  # per sequence number: the UID once told, else None
        self.flags = None  # the last untagged FLAGS, upper-cased

    @property
    def exists(self):
        return len(self.uids)

    def next_tag(self):
        self.n += 1
        return "%d.%d" % (self.idx + 1, self.n)

    def read(self):
        try:
            line = self.file.readline()
        except socket.timeout:
            raise TestFailed("timeout waiting for the server (connection %d)" % (self.idx + 1))
        if not line:
            self.closed = True
            return None
        parts = [line]
        m = re.search(rb"~?\{(\d+)\+?\}\r\n\Z", line)
        while m:
            parts.append(self.file.read(int(m.group(1))))
            line = self.file.readline()
            parts.append(line)
            m = re.search(rb"~?\{(\d+)\+?\}\r\n\Z", line)
        raw = b"".join(parts).decode("latin-1")
        kind, tag, args = parse_response(raw)
        if kind == "*":
            self.track(args)
        return kind, tag, args, raw

    def track(self, args):
        """imaptest's mailbox state checks: numbers, UIDs and keywords stay consistent."""
        if args and args[0][0] == "A" and args[0][1].upper() == "FLAGS" and len(args) > 1 and args[1][0] == "(":
            self.flags = {a[1].upper() for a in args[1][1] if a[0] == "A"}
            return
        if len(args) < 2 or args[0][0] != "A" or not args[0][1].isdigit() or args[1][0] != "A":
            return
        n, word = int(args[0][1]), args[1][1].upper()
        if word == "EXISTS":
            if n < len(self.uids):
                self.errors.append("message count dropped %d -> %d" % (len(self.uids), n))
                del self.uids[n:]
            self.uids.extend([None] * (n - len(self.uids)))
        elif word == "EXPUNGE":
            if not 0 < n <= len(self.uids):
                self.errors.append("EXPUNGE %d with %d messages" % (n, len(self.uids)))
            else:
                del self.uids[n - 1]
        elif word == "FETCH" and len(args) > 2 and args[2][0] == "(":
            if not 0 < n <= len(self.uids):
                self.errors.append("FETCH of sequence %d with %d messages" % (n, len(self.uids)))
                return
            items = args[2][1]
            recent = False
            for i in range(0, len(items) - 1, 2):
                name, value = items[i][1].upper() if items[i][0] == "A" else "", items[i + 1]
                if name == "UID" and value[0] == "A":
                    uid = int(value[1])
                    if self.uids[n - 1] not in (None, uid):
                        self.errors.append("UID of %d changed %d -> %d" % (n, self.uids[n - 1], uid))
                    self.uids[n - 1] = uid
                elif name == "FLAGS" and value[0] == "(":
                    recent = any(f[0] == "A" and f[1].upper() == "\\RECENT" for f in value[1])
                    for flag in value[1] if self.flags is not None else ():
                        if flag[0] == "A" and not flag[1].startswith("\\") and flag[1].upper() not in self.flags:
                            self.errors.append("keyword %s used without being in FLAGS" % flag[1])
            uid = self.uids[n - 1]
            if recent and uid is not None and self.recent_owners is not None:
                owner = self.recent_owners.setdefault((self.mailbox, uid), self.idx)
                if owner != self.idx:
                    self.errors.append("\\Recent of UID %d also given to connection %d" % (uid, owner + 1))

    def send(self, text):
        self.sock.sendall(text.encode("latin-1"))

    def simple(self, text):
        """Send ``text``; ``(status, untagged args list)`` of its answer."""
        tag = self.next_tag()
        self.send_command(tag, text)
        untagged = []
        while True:
            r = self.read()
            if r is None:
                raise TestFailed("disconnected during %r" % text)
            kind, rtag, args, _ = r
            if kind == "tagged" and rtag == tag:
                return args[0][1].upper(), untagged
            if kind == "*":
                untagged.append(args)

    def send_command(self, tag, text):
        """Send a command, waiting for ``+`` before each synchronizing literal."""
        m = re.match(r"(?i)(select|examine|close|unselect)\b\s*(.*)", text)
        if m:
            self.reset_view(m.group(2).split(" (")[0].strip('"').upper() or None)
        pos = 0
        data = tag + " " + text
        for m in re.finditer(r"~?\{(\d+)\}\r\n", data):
            self.send(data[pos:m.end()])
            while True:
                r = self.read()
                if r is None:
                    raise TestFailed("disconnected while sending a literal")
                if r[0] == "+":
                    break
                if r[0] == "tagged":
                    raise TestFailed("literal refused: %s" % r[3].strip())
                self.pending_untagged.append(r)
            pos = m.end()
        self.send(data[pos:] + "\r\n")

    pending_untagged = None
    recent_owners = None  # (mailbox, uid) -> the connection given its \\Recent, shared by a test

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# Running one test
# ---------------------------------------------------------------------------


class Runner:
    def __init__(self, host, port, user, password, mailbox, verbose=False, timeout=20):
        self.host, self.port, self.user, self.password = host, port, user, password
        self.mailbox = mailbox
        self.verbose = verbose
        self.timeout = timeout

    # -- matching, after imaptest's test-exec.c --------------------------------

    def relative_seq(self, n):
        if n == 0:
            return "<zero seq>"
        if n > len(self.seqmap):
            return "<out of range>"
        return "<expunged>" if self.seqmap[n - 1] == 0 else str(self.seqmap[n - 1])

    def expand_input(self, pat, inp):
        """``(expanded pattern or None, case-insensitive)``; binds unset variables from ``inp``."""
        icase = True
        out = []
        i = k = 0
        while i < len(pat):
            if pat[i] != "$" or pat[i + 1:i + 2] == "$":
                if pat[i] == "$":
                    i += 1
                if k >= len(inp) or pat[i].upper() != inp[k].upper():
                    return None, icase
                out.append(pat[i])
                i += 1
                k += 1
                continue
            i += 1
            if pat[i:i + 1] == "{":
                p = pat.find("}", i + 1)
                if p < 0:
                    return "", icase
                name = pat[i + 1:p]
                i = p + 1
            else:
                p = i
                while p < len(pat) and (pat[p].isascii() and pat[p].isalnum() or pat[p] == "_"):
                    p += 1
                name = pat[i:p]
                i = p
            if name.isdigit():
                value = self.relative_seq(int(name))
            elif name.startswith("case:"):
                icase = False
                value = name[5:]
            else:
                value = self.vars.get(name) if name else None
                if value is None:
                    rest = pat[i:]
                    stop = rest
                    if rest[:1] == "$":
                        stop = self.expand_input(rest, inp[k:])[0] or ""
                    p = k
                    while p < len(inp) and (not stop or inp[p].upper() != stop[0].upper()):
                        p += 1
                    value = inp[k:p]
                    if name:
                        self.vars[name] = value
                        if not re.match(r"modseq\d+$", name):
                            self.added.append(name)
            out.append(value)
            if inp[k:k + len(value)] != value:
                return None, icase
            k += len(value)
        return "".join(out), icase

    def match_args(self, match, args, maxn, prefix):
        ret = 0
        mi = ai = 0
        while mi < len(match) and maxn > 0:
            mt, mv = match[mi]
            at, av = args[ai] if ai < len(args) else ("EOL", None)
            if mt == "N":
                if at != "N":
                    return ret
            elif mt in ("A", "S", "L"):
                if mv == "$" and at == "(":
                    pass
                elif mv == "$]":
                    while ai < len(args) and args[ai][0] == "A" and "]" not in args[ai][1]:
                        ai += 1
                else:
                    if at not in ("A", "S", "L"):
                        return ret
                    out, icase = self.expand_input(mv, av)
                    if out is None:
                        return ret
                    a, o = (av.upper(), out.upper()) if icase else (av, out)
                    if prefix and mi == len(match) - 1:
                        if not a.startswith(o):
                            return ret
                    elif a != o:
                        return ret
            elif mt == "(":
                if at != "(":
                    return ret
                sub = self.match_list(mv, av)
                if sub != ALL:
                    return ret + sub
            ret += 1
            mi += 1
            ai += 1
            maxn -= 1
        if prefix or ai >= len(args) or maxn == 0:
            return ALL
        return ret

    def match_list(self, match, args):
        unordered, chain, noextra = False, 1, -1
        ignores, bans = [], []
        while match and match[0][0] == "A" and match[0][1].startswith("$!"):
            d = match[0][1][2:]
            if d.startswith("unordered"):
                unordered = True
                if noextra == -1:
                    noextra = 0
                if d[9:10] == "=":
                    chain = int(d[10:])
            elif d == "ordered":
                unordered = False
            elif d == "extra":
                noextra = 0
            elif d == "noextra":
                noextra = 1
            elif d.startswith("ignore="):
                ignores.append(d[7:].lower())
            elif d.startswith("ban="):
                bans.append(d[4:].lower())
            else:
                raise ScriptError("unknown directive %s" % d)
            match = match[1:]
        if noextra == -1:
            noextra = 1
        if not unordered:
            return self.match_args(match, args, ALL, False)
        if len(args) % chain:
            return 0
        matched = [False] * len(args)
        ret = 0
        for mi in range(0, len(match), chain):
            for i in range(0, len(args), chain):
                if self.match_args(match[mi:mi + chain], args[i:], chain, False) == ALL:
                    matched[i] = True
                    break
            else:
                return ret
            ret += 1
        for i in range(0, len(args), chain):
            if matched[i] or not is_astring(args[i]):
                continue
            if noextra > 0 and args[i][1].lower() not in ignores:
                return ret
            if noextra <= 0 and args[i][1].lower() in bans:
                return ret
        return ALL

    # -- commands -------------------------------------------------------------

    def expand_command(self, text):
        out, i = [], 0
        while i < len(text):
            c = text[i]
            if c != "$" or i + 1 >= len(text):
                out.append(c)
                i += 1
                continue
            i += 1
            if text[i] == "$":
                out.append("$")
                i += 1
                continue
            if text[i] == "!":
                while i + 1 < len(text) and text[i + 1] != " ":
                    i += 1
                i += 1
                continue
            if text[i] == "{":
                p = text.find("}", i)
                name, i = text[i + 1:p], p + 1
            else:
                p = i
                while p < len(text) and (text[p].isascii() and text[p].isalnum() or text[p] == "_"):
                    p += 1
                name, i = text[i:p], p
            if name.isdigit():
                out.append(self.relative_seq(int(name)))
            elif name in self.vars:
                out.append(self.vars[name])
            else:
                raise TestFailed("uninitialized variable $%s" % name)
        return "".join(out)

    def append_command(self, args):
        date, body = self.next_message()
        if args is None:
            return 'APPEND "%s" "%s" {%d}\r\n%s' % (self.mailbox, date, len(body), body)
        return "APPEND %s {%d}\r\n%s" % (args, len(body), body)

    def next_message(self):
        msg = self.messages[self.mbox_pos % len(self.messages)]
        self.mbox_pos += 1
        return msg

    def command_text(self, text):
        text = self.expand_command(text)
        low = text.lower()
        if low == "append":
            return self.append_command(None)
        if low.startswith("append ") and not re.search(r"~?\{\d+\+?\}\r\n|\bcatenate\b", text, re.I):
            return self.append_command(text[7:])
        return text

    # -- a test ---------------------------------------------------------------

    def run_test(self, test):
        """``(status, failures, commands run)``; status PASS, FAIL or SKIP."""
        self.vars = {"mailbox": self.mailbox, "mailbox_url": self.mailbox}
        for i in range(test.connections):
            sfx = "" if i == 0 else str(i + 1)
            self.vars["user" + sfx] = self.user
            self.vars["username" + sfx] = self.user.split("@")[0]
            self.vars["domain" + sfx] = self.user.split("@")[1] if "@" in self.user else self.host
            self.vars["password" + sfx] = self.password
        self.messages = read_mbox(test.mbox)
        self.mbox_pos = 0
        self.failures = []
        self.commands_run = 0
        conns = []
        recent_owners = {}
        try:
            for i in range(test.connections):
                c = Conn(self.host, self.port, i, self.timeout)
                c.pending_untagged = []
                c.recent_owners = recent_owners
                conns.append(c)
            if not self.setup(test, conns):
                return "SKIP", [], 0
            start = 0
            if test.banner_check:
                self.group_begin(conns[0])
                self.check_group(test, test.groups[0], [conns[0].greeting[2]])
                start = 1
            for group in test.groups[start:]:
                self.run_group(test, conns, group)
        except TestFailed as e:
            self.failures.append(str(e))
        finally:
            for c in conns:
                c.close()
        return ("FAIL" if self.failures else "PASS"), self.failures, self.commands_run

    def setup(self, test, conns):
        """Bring every connection to the test's start state; False to skip."""
        c0 = conns[0]
        if test.state == "nonauth":
            caps = self.capabilities(c0)
            return self.has_caps(test, caps)
        for c in conns:
            st, _ = c.simple('LOGIN "%s" "%s"' % (self.user, self.password))
            if st != "OK":
                raise TestFailed("LOGIN failed")
        if not self.has_caps(test, self.capabilities(c0)):
            return False
        boxes, subs = [], []
        for cmd, out in (("LIST", boxes), ("LSUB", subs)):
            st, untagged = c0.simple('%s "" "%s*"' % (cmd, self.mailbox))
            for args in untagged:
                if len(args) >= 4 and args[0][1].upper() == cmd and is_astring(args[3]):
                    out.append(args[3][1])
        for name in sorted(boxes, key=str.lower, reverse=True):
            c0.simple('DELETE "%s"' % name)
        for name in sorted(subs, key=str.lower, reverse=True):
            c0.simple('UNSUBSCRIBE "%s"' % name)
        if test.state == "auth":
            return True
        if self.mailbox.upper() != "INBOX":
            st, _ = c0.simple('CREATE "%s"' % self.mailbox)
            if st != "OK":
                raise TestFailed("init: CREATE %s failed" % self.mailbox)
        if test.state == "created":
            return True
        count = len(self.messages) if test.messages is None else test.messages
        for _ in range(count):
            tag = c0.next_tag()
            c0.send_command(tag, self.append_command(None))
            while True:
                r = c0.read()
                if r is None:
                    raise TestFailed("init: disconnected during APPEND")
                if r[0] == "tagged" and r[1] == tag:
                    if r[2][0][1].upper() != "OK":
                        raise TestFailed("init: APPEND failed: %s" % r[3].strip())
                    break
        if test.state == "appended":
            return True
        for c in conns:
            st, _ = c.simple('SELECT "%s"' % self.mailbox)
            if st != "OK":
                raise TestFailed("init: SELECT failed")
        return True

    def capabilities(self, conn):
        st, untagged = conn.simple("CAPABILITY")
        caps = set()
        for args in untagged:
            if args and args[0][1].upper() == "CAPABILITY":
                caps.update(a[1].upper() for a in args[1:] if a[0] == "A")
        return caps

    @staticmethod
    def has_caps(test, caps):
        return all(c.upper() in caps for c in test.capabilities or ())

    def group_begin(self, conn):
        self.seqmap = list(range(1, conn.exists + 1))
        self.found = []
        self.best = []
        self.mismatches = 0
        self.first_extra = None

    def run_group(self, test, conns, group):
        conn = conns[group.conn]
        self.group_begin(conn)
        self.found = [False] * len(group.untagged)
        self.best = [(0, None)] * len(group.untagged)
        self.commands_run += 1
        waiting = {}
        first_tag = None
        for cmd in group.commands:
            tag = conn.next_tag()
            try:
                conn.send_command(tag, self.command_text(cmd.text))
            except OSError as e:
                raise TestFailed("line %d: send failed: %s" % (cmd.linenum, e))
            waiting[tag] = cmd
            first_tag = first_tag or tag
        received = list(conn.pending_untagged)
        conn.pending_untagged[:] = []
        for r in received:
            self.on_untagged(test, group, r[2], first_tag)
        while waiting:
            r = conn.read()
            if r is None:
                if group.have_bye:
                    for cmd in waiting.values():
                        if cmd.reply != [("A", "")]:
                            self.fail(group, "expected %s, got a disconnection" % arg_str(cmd.reply))
                    break
                raise TestFailed("line %d: unexpected disconnection" % group.commands[0].linenum)
            kind, tag, args, raw = r
            if kind == "*":
                self.on_untagged(test, group, args, first_tag if first_tag in waiting else None)
                if len(args) >= 2 and args[0][0] == "A" and args[0][1].isdigit() and \
                        args[1][0] == "A" and args[1][1].upper() == "EXPUNGE":
                    self.handle_expunge(int(args[0][1]))
            elif kind == "tagged":
                cmd = waiting.pop(tag, None)
                if cmd is None:
                    raise TestFailed("unexpected tagged reply %s" % raw.strip())
                self.vars["tag"] = tag
                got = self.match_args(cmd.reply, args, ALL, True)
                del self.vars["tag"]
                if got != ALL:
                    self.fail(group, "line %d: %s: expected tagged %r, got %r" % (
                        cmd.linenum, cmd.text[:60], arg_str(cmd.reply), raw.strip()[:200]))
        self.finish_group(test, group)
        for c in conns:
            for error in c.errors:
                self.fail(group, "state: connection %d: %s" % (c.idx + 1, error))
            c.errors[:] = []
        if group.sleep:
            time.sleep(group.sleep)

    def handle_expunge(self, seq):
        if seq > len(self.seqmap):
            return
        for i in range(seq - 1, len(self.seqmap)):
            if self.seqmap[i] == seq:
                self.seqmap[i] = 0
            elif self.seqmap[i] > seq:
                self.seqmap[i] -= 1

    def on_untagged(self, test, group, args, tag):
        if not group.untagged:
            if not test.ignore_extra_untagged:
                self.mismatches += 1
                self.first_extra = self.first_extra or arg_str(args)
            return
        prefix = bool(args) and args[0][0] == "A" and args[0][1].upper() in ("OK", "NO", "BAD", "BYE")
        found_some = False
        for i, (existence, expected) in enumerate(group.untagged):
            if self.found[i]:
                continue
            self.added = []
            if tag is not None:
                self.vars["tag"] = tag
            n = self.match_args(expected, args, ALL, prefix)
            self.vars.pop("tag", None)
            if n == ALL:
                if existence == MUST_NOT:
                    self.fail(group, "unexpected untagged match: %s (reply %s)" % (arg_str(expected), arg_str(args)))
                    return
                self.found[i] = True
                found_some = True
                if group.ordered:
                    break
                continue
            if n > self.best[i][0]:
                self.best[i] = (n, arg_str(args))
            for name in self.added:
                self.vars.pop(name, None)
            if group.ordered and existence == EXIST:
                break
        if not found_some:
            self.mismatches += 1
            if not test.ignore_extra_untagged and self.first_extra is None:
                self.first_extra = arg_str(args)

    def check_group(self, test, group, replies):
        self.found = [False] * len(group.untagged)
        self.best = [(0, None)] * len(group.untagged)
        for args in replies:
            self.on_untagged(test, group, args, None)
        self.finish_group(test, group)

    def finish_group(self, test, group):
        missing = [i for i, (e, _) in enumerate(group.untagged) if e == EXIST and not self.found[i]]
        if missing:
            first = missing[0]
            self.fail(group, "missing %d untagged replies (%d mismatches); first: %s; best match: %s" % (
                len(missing), self.mismatches, arg_str(group.untagged[first][1]), self.best[first][1]))
        if self.first_extra is not None:
            self.fail(group, "%d unexpected untagged replies, first: %s" % (self.mismatches, self.first_extra))

    def fail(self, group, text):
        line = group.commands[0].linenum if group.commands else 0
        cmd = group.commands[0].text[:70] if group.commands else "(banner)"
        self.failures.append("line %d %s: %s" % (line, cmd, text))


# ---------------------------------------------------------------------------
# Servers and the main loop
# ---------------------------------------------------------------------------


def start_ours(root, user, password):
    import _harness

    data = os.path.join(root, "ours")
    os.makedirs(data)
    _harness.add_user(data, user, password)
    server = _harness.OurServer(data, os.path.join(root, "ours.log"))
    server.start()
    return server, server.imap_port


def start_dovecot(root, user, password):
    import _dovecot

    if os.geteuid() != 0:
        raise SystemExit("a private Dovecot needs root (its master drops to its users)")
    if not _dovecot.ensure_installed():
        raise SystemExit("dovecot is not installed and could not be installed")
    dc = _dovecot.PrivateDovecot(os.path.join(root, "dovecot"), user.split("@")[0], password)
    os.makedirs(dc.root)
    dc.start()
    return dc, dc.imap_port


def run_all(runner, tests, server_name, verbose):
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    base = [0, 0]
    ext = [0, 0]
    for test in tests:
        status, failures, commands = runner.run_test(test)
        counts[status] += 1
        bucket = ext if test.capabilities else base
        bucket[1] += commands
        bucket[0] += len(failures)
        print("%-4s %s%s" % (status, test.name, "" if not failures else " (%d)" % len(failures)), flush=True)
        for f in failures[: (None if verbose else 5)]:
            print("     - " + f.replace("\n", "\\n")[:400])
    print("imaptest_scripts server=%s tests=%d passed=%d failed=%d skipped=%d "
          "base_commands_failed=%d/%d ext_commands_failed=%d/%d" % (
              server_name, len(tests), counts["PASS"], counts["FAIL"], counts["SKIP"],
              base[0], base[1], ext[0], ext[1]))
    return counts["FAIL"]


def load_tests(folder, only):
    default_mbox = os.path.join(folder, "default.mbox")
    tests = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or name.endswith(".mbox"):
            continue
        if only and name not in only:
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            continue
        try:
            tests.append(read_test(path, default_mbox))
        except ScriptError as e:
            print("UNREADABLE %s: %s" % (name, e))
    return tests


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", help="a folder of imaptest-format scripts (and their .mbox files)")
    p.add_argument("--server", choices=("ours", "dovecot"), help="start this server privately and test it")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=143)
    p.add_argument("--user", default="imaptest@localhost")
    p.add_argument("--password", default="imaptest-Pass_1")
    p.add_argument("--mailbox", default="imaptest", help="the test mailbox (default imaptest)")
    p.add_argument("--only", type=lambda v: set(v.split(",")), help="comma-separated test names")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for one reply")
    p.add_argument("--verbose", action="store_true", help="print every failure of a test, not the first 5")
    args = p.parse_args(argv)
    tests = load_tests(args.folder, args.only)
    root = tempfile.mkdtemp(prefix="imaptest-scripts-")
    os.chmod(root, 0o755)
    server = None
    user = args.user
    try:
        port = args.port
        name = "%s:%d" % (args.host, args.port)
        if args.server == "ours":
            server, port = start_ours(root, user, args.password)
            name = "ours"
        elif args.server == "dovecot":
            server, port = start_dovecot(root, user, args.password)
            user, name = user.split("@")[0], "dovecot"
        runner = Runner(args.host, port, user, args.password, args.mailbox, args.verbose, args.timeout)
        failed = run_all(runner, tests, name, args.verbose)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
