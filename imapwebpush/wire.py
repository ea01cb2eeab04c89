"""IMAP wire syntax, defined once: strings, atoms, sequence sets, dates, mailbox names.

Why one module: the IMAP server, its WEBPUSH commands, QRESYNC, the Twisted-facing
mailbox, the ENVELOPE renderer and the push payloads all read or write IMAP text;
two parsers of the same grammar drift apart (they did: two sequence-set parsers,
two astring parsers with different escaping rules, four quoting functions). It
imports no room of the package, so the push side uses it without the IMAP server.

Reading functions take bytes and raise L{ParseError} (a ValueError; the server
answers BAD with its text). Writing functions return bytes, except the push
helpers (L{push_quoted}, L{truncate_utf8}), which work on the str of a UTF-8 body.
"""

import calendar
import functools
import re
import time
from bisect import bisect_left
from typing import List, NamedTuple, Tuple

import twisted.mail.imap4  # noqa: F401 (registers the "imap4-utf-7" codec: modified UTF-7)


class ParseError(ValueError):
    """The client's text is not what the grammar allows; the answer is BAD with this text."""


# -- atoms (RFC 3501 9: ATOM-CHAR is any CHAR except atom-specials) ---------------------

# atom-specials: ( ) { SP CTL % * " \ ]  (and no 8-bit octet is a CHAR)
_NOT_ATOM = re.compile(rb'[\x00-\x20\x7f-\xff(){%*"\\\]]')
# what an astring/list-mailbox atom may hold: ATOM-CHAR plus the list wildcards % * and
# resp-special ] (LIST patterns and push endpoints use them; RFC 3501 list-char)
_NOT_LIST_CHAR = re.compile(rb'[\x00-\x20\x7f-\xff(){"\\]')
# a tag: 1*<any ASTRING-CHAR except "+">
_NOT_TAG_CHAR = re.compile(rb'[\x00-\x20\x7f-\xff(){%*"\\+]')


def _bytes(text):
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")


def is_atom(text):
    """True for a non-empty atom (str or bytes): no atom-specials, 7-bit."""
    data = _bytes(text)
    return bool(data) and _NOT_ATOM.search(data) is None


def is_flag(text):
    """True for a flag keyword or a ``\\``-prefixed system flag name (RFC 3501 flag)."""
    data = _bytes(text)
    return is_atom(data[1:] if data[:1] == b"\\" else data)


def is_tag(tag):
    """True for a valid command tag (bytes)."""
    return bool(tag) and _NOT_TAG_CHAR.search(tag) is None


# -- reading strings ---------------------------------------------------------------------


class LiteralHeader(NamedTuple):
    """``{size}`` (``sync``: the client waits for "+") or ``{size+}`` (LITERAL+) ending a line."""

    size: int
    sync: bool


_LITERAL = re.compile(rb"\A\{(\d{1,12})(\+?)\}\Z")


def literal_header(text):
    """The L{LiteralHeader} of ``{n}`` / ``{n+}`` (the whole of ``text``), or ParseError."""
    m = _LITERAL.match(text)
    if m is None:
        raise ParseError("Malformed literal")
    return LiteralHeader(int(m.group(1)), not m.group(2))


_APPEND_LITERAL = re.compile(rb"\A(~?)\{(\d{1,12})(\+?)\}\Z")


def append_literal_header(text):
    """(L{LiteralHeader}, binary?) of APPEND's message literal: ``{n}``, ``{n+}``, or the
    literal8 ``~{n}`` / ``~{n+}`` of RFC 3516 (may hold NUL); ParseError for anything else."""
    m = _APPEND_LITERAL.match(text)
    if m is None:
        raise ParseError("Expected a message literal")
    return LiteralHeader(int(m.group(2)), not m.group(3)), bool(m.group(1))


_TRAILING_LITERAL = re.compile(rb"~?\{(\d{1,12})(\+?)\}\Z")


def trailing_literal(line):
    """The L{LiteralHeader} of the literal announced at the end of ``line``, or None."""
    m = _TRAILING_LITERAL.search(line.rstrip(b" "))
    if m is None:
        return None
    return LiteralHeader(int(m.group(1)), not m.group(2))


def _read_quoted(line):
    """(value, rest) of the quoted string opening ``line`` (RFC 3501 quoted).

    The one escaping rule: only ``\\\\`` and ``\\"`` are escapes; CR, LF and NUL are
    refused; a space (or the end of the line) must follow the closing quote.
    """
    end = line.find(b'"', 1)
    if end != -1 and line.find(b"\\", 1, end) == -1:  # the common case: nothing escaped
        value, rest = line[1:end], line[end + 1 :]
    else:
        out = bytearray()
        i = 1
        while True:
            if i >= len(line):
                raise ParseError("Unmatched quotes")
            c = line[i]
            if c == 0x5C:  # backslash
                if line[i + 1 : i + 2] not in (b'"', b"\\"):
                    raise ParseError("Bad escape in quoted string")
                out.append(line[i + 1])
                i += 2
                continue
            if c == 0x22:
                break
            out.append(c)
            i += 1
        value, rest = bytes(out), line[i + 1 :]
    if b"\x00" in value or b"\r" in value or b"\n" in value:
        raise ParseError("CR, LF or NUL in quoted string")
    if rest and rest[:1] != b" ":
        raise ParseError("Missing space after quoted string")
    return value, rest[1:]


def _read(line):
    """(kind, value, rest) of the astring opening ``line``: kind "quoted", "atom" or "literal"."""
    line = (line or b"").lstrip(b" ")
    if not line:
        raise ParseError("Missing argument")
    first = line[:1]
    if first == b'"':
        value, rest = _read_quoted(line)
        return "quoted", value, rest
    if first == b"{":
        return "literal", literal_header(line), b""
    if first == b"(":
        raise ParseError("Expected a string, found a list")
    atom, _, rest = line.partition(b" ")
    if _NOT_LIST_CHAR.search(atom):
        raise ParseError("Malformed atom %r" % (atom[:40],))
    return "atom", atom, rest


def read_astring(line):
    """(value, rest) of the astring at the start of ``line`` (leading spaces skipped).

    ``value`` is bytes for an atom or a quoted string, and a L{LiteralHeader} when a
    literal follows (``{n}`` ends the line; the protocol reads its octets). Atoms may
    hold the LIST wildcards ``%`` and ``*`` (list-mailbox uses this same reader).
    """
    _, value, rest = _read(line)
    return value, rest


_LIST_ITEM = re.compile(
    rb'(?:"((?:[^"\\\r\n\x00]|\\["\\])*)"|([^\x00-\x20\x7f-\xff(){"\\]+))(?= |\)|\Z)'
)


def read_list_item(line):
    """(value, rest) of one astring or list-mailbox inside a parenthesised list
    (LIST-EXTENDED's patterns): as L{read_astring}, but a ``)`` may follow it at once.

    ``value`` is bytes, or a L{LiteralHeader} when a literal ends the line.
    """
    line = (line or b"").lstrip(b" ")
    if line[:1] == b"{":
        return literal_header(line), b""
    m = _LIST_ITEM.match(line)
    if m is None:
        raise ParseError("Malformed list item")
    quoted_text, atom = m.groups()
    if quoted_text is not None:
        return _UNESCAPE.sub(rb"\1", quoted_text), line[m.end() :]
    return atom, line[m.end() :]


def read_nstring(line):
    """Like L{read_astring}, but the atom ``NIL`` (not ``"NIL"``) reads as None."""
    kind, value, rest = _read(line)
    if kind == "atom" and value.upper() == b"NIL":
        return None, rest
    return value, rest


def matching_paren(line, start=0):
    """Index just after the parenthesis group that opens at ``start`` (quotes and [] skipped)."""
    depth = 0
    i = start
    in_quote = False
    in_bracket = 0
    while i < len(line):
        c = line[i : i + 1]
        if in_quote:
            if c == b"\\":
                i += 1
            elif c == b'"':
                in_quote = False
        elif c == b'"':
            in_quote = True
        elif c == b"[":
            in_bracket += 1
        elif c == b"]":
            in_bracket -= 1
        elif c == b"(" and not in_bracket:
            depth += 1
        elif c == b")" and not in_bracket:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ParseError("unbalanced parentheses")


_LIST_TOKEN = re.compile(rb'[ \t]*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^ \t()"]+))', re.S)
_UNESCAPE = re.compile(rb"\\(.)", re.S)


def parse_list(line, limit):
    """The atoms, quoted strings and parenthesised lists of ``line``, nested as lists.

    Atoms and strings are bytes (escapes undone); the atom ``NIL`` is None. ParseError
    when quotes or parentheses do not balance, or lists nest deeper than ``limit``.
    Why not twisted's parseNestedParens: it spent 4 microseconds per octet (a 64 KiB
    SEARCH line held the reactor for 280 ms) and recursed once per level.
    """
    top = []
    stack = [top]
    pos = 0
    end = len(line.rstrip(b" \t"))
    match = _LIST_TOKEN.match
    while pos < end:
        m = match(line, pos)
        if m is None:
            raise ParseError("Malformed list: unbalanced quotes")
        pos = m.end()
        opening, closing, quoted_text, atom = m.groups()
        if opening:
            if len(stack) > limit:
                raise ParseError(too_deep(limit))
            inner = []
            stack[-1].append(inner)
            stack.append(inner)
        elif closing:
            if len(stack) == 1:
                raise ParseError("Malformed list: unbalanced parentheses")
            stack.pop()
        elif quoted_text is not None:
            stack[-1].append(_UNESCAPE.sub(rb"\1", quoted_text))
        else:
            stack[-1].append(None if atom == b"NIL" else atom)
    if len(stack) != 1:
        raise ParseError("Malformed list: unbalanced parentheses")
    return top


def too_deep(limit):
    """The text of the BAD answering input nested more than ``limit`` levels."""
    return "Nested too deeply (more than %d levels)" % (limit,)


# -- writing strings ---------------------------------------------------------------------


def quoted(data):
    """A quoted string of ``data`` (bytes): ``\\`` and ``"`` escaped. No CR, LF or NUL please."""
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data):
    """A synchronizing literal of ``data``: ``{n}`` CRLF octets.

    A literal may not carry NUL (RFC 3501 CHAR8); a message stored by a literal8 APPEND
    (RFC 3516) may hold some: each is sent as 0x80, the length unchanged, as Dovecot
    does. BINARY sends the true octets in a literal8."""
    return b"{%d}\r\n%b" % (len(data), without_nul(data))


def without_nul(data):
    """``data`` with each NUL made 0x80 (what a plain literal may carry)."""
    return data.replace(b"\x00", b"\x80") if b"\x00" in data else data


def literal8(data):
    """A literal8 of ``data`` (RFC 3516): ``~{n}`` CRLF octets, which may hold NUL."""
    return b"~{%d}\r\n%b" % (len(data), data)


def binary_literal(data):
    """BINARY's answer octets: a literal8 when ``data`` holds NUL, else a plain literal."""
    return literal8(data) if b"\x00" in data else literal(data)


def string(data):
    """An IMAP string of ``data`` (bytes): quoted when it can be, else a literal."""
    if data.isascii() and b"\x00" not in data and b"\r" not in data and b"\n" not in data:
        return quoted(data)
    return literal(data)


def atom_or_quoted(text):
    """``text`` (str) as an atom when it is one (and is not NIL), else a quoted string."""
    data = text.encode("utf-8")
    if is_atom(data) and data.upper() != b"NIL":
        return data
    return quoted(data)


_NOT_QUOTABLE = re.compile("[\r\n\x00]")


def printable(text):
    """``text`` (str) with CR, LF and NUL (which no IMAP string may hold) made spaces."""
    return _NOT_QUOTABLE.sub(" ", text)


def truncate_utf8(text, max_bytes):
    """``text`` cut to at most ``max_bytes`` UTF-8 octets, at a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[: max(0, max_bytes)].decode("utf-8", "ignore")


def push_quoted(text, max_bytes=None):
    """A quoted string (str) for a UTF-8 push body (SPEC 5.1): never a literal.

    CR, LF and NUL become spaces and lone surrogates "?", so any text can be
    quoted. With ``max_bytes`` the text is first cut to that many UTF-8 octets at a
    character boundary, then quoted, so no escape and no UTF-8 sequence is ever cut.
    """
    text = printable(text).encode("utf-8", "replace").decode("utf-8")
    if max_bytes is not None:
        text = truncate_utf8(text, max_bytes)
    return quoted(text.encode("utf-8")).decode("utf-8")


# -- mailbox names (RFC 3501 5.1.3, modified UTF-7) ---------------------------------------


def encode_mailbox(name):
    """The modified UTF-7 octets of a mailbox name (str)."""
    return name.encode("imap4-utf-7")


_PLAIN_NAME = re.compile(rb"[\x20-\x25\x27-\x7e]*")


def decode_mailbox(raw):
    """The str of a modified UTF-7 mailbox name (bytes), or ParseError.

    Only the one spelling RFC 3501 5.1.3 allows: twisted's codec also reads an
    unterminated ``&Jjo``, a lone ``&`` or ASCII sent in base64 (``&AGE-``), which would
    let two spellings name one mailbox; what does not encode back the same is refused.
    """
    if _PLAIN_NAME.fullmatch(raw):  # printable ASCII but "&" stands for itself: no codec
        return raw.decode("ascii")
    try:
        name = raw.decode("imap4-utf-7")
        if name.encode("imap4-utf-7") == raw:
            return name
    except Exception:
        pass
    raise ParseError("Mailbox name is not valid modified UTF-7")


@functools.lru_cache(maxsize=4096)
def quoted_mailbox(name):
    """A mailbox name (str) as LIST, LSUB and STATUS send it: a quoted mUTF-7 string
    (kept for the names used last: twisted's codec was a tenth of a LIST)."""
    return quoted(encode_mailbox(name))


# -- sequence sets (RFC 3501 9, sequence-set) ----------------------------------------------
# A set is a list of (first, last) pairs; "normalized" means sorted, merged, disjoint.

Ranges = List[Tuple[int, int]]
MAX_NUMBER = 2**32 - 1  # nz-number is 32-bit


def _nz_number(text, whole):
    if text.isdigit() and text[:1] != b"0" and len(text) <= 10:
        value = int(text)
        if value <= MAX_NUMBER:
            return value
    raise ParseError("bad sequence set %r" % (whole.decode("ascii", "replace"),))


def parse_sequence_set(text):
    """[(low, high)] of an IMAP sequence-set (bytes or str), in the client's order.

    ``*`` reads as None (see L{with_star}); a range stays as written (``5:3``).
    Numbers are nz-numbers (no leading zero, at most 2**32-1); anything else
    raises ParseError.
    """
    if isinstance(text, str):
        text = text.encode("ascii", "replace")
    if text.isdigit():  # one number, the common case
        value = _nz_number(text, text)
        return [(value, value)]
    ranges = []
    for item in text.split(b","):
        ends = item.split(b":")
        if len(ends) > 2 or not item:
            raise ParseError("bad sequence set %r" % (text.decode("ascii", "replace"),))
        values = [None if end == b"*" else _nz_number(end, text) for end in ends]
        ranges.append((values[0], values[-1]))
    return ranges


def with_star(ranges, star):
    """Parsed ``(low, high)`` pairs with ``*`` (None) taken as ``star``, each put low-high."""
    out = []
    for lo, hi in ranges:
        lo = star if lo is None else lo
        hi = star if hi is None else hi
        out.append((lo, hi) if lo <= hi else (hi, lo))
    return out


def normalize(ranges):
    """Sorted, merged, disjoint ranges of any list of ``(a, b)`` pairs."""
    out = []
    for lo, hi in sorted((min(a, b), max(a, b)) for a, b in ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def ranges_of(uids):
    """Ranges of an iterable of UIDs (any order, duplicates allowed)."""
    return normalize((u, u) for u in uids)


def expand(ranges):
    """Every number of ``ranges``, ascending (mind the size)."""
    return [n for lo, hi in ranges for n in range(lo, hi + 1)]


def count(ranges):
    return sum(hi - lo + 1 for lo, hi in ranges)


def render(ranges):
    """IMAP sequence-set text of ranges: ``1:3,7``."""
    return ",".join(str(lo) if lo == hi else "%d:%d" % (lo, hi) for lo, hi in ranges)


def intersect(a, b):
    """Ranges in both ``a`` and ``b`` (both normalized)."""
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a, b):
    """Ranges in ``a`` but not in ``b`` (both normalized)."""
    out = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] < lo:
            j += 1
        k = j
        while lo <= hi and k < len(b) and b[k][0] <= hi:
            if b[k][0] > lo:
                out.append((lo, b[k][0] - 1))
            lo = max(lo, b[k][1] + 1)
            k += 1
        if lo <= hi:
            out.append((lo, hi))
    return out


def at_least(ranges, low):
    """The part of ``ranges`` at or above ``low``."""
    return [(max(lo, low), hi) for lo, hi in ranges if hi >= low]


def contains(ranges, number):
    """True when ``number`` is in ``ranges`` (normalized)."""
    i = bisect_left(ranges, (number + 1,)) - 1
    return i >= 0 and ranges[i][1] >= number


def runs_in_order(numbers):
    """Ranges of consecutive ascending runs, keeping the given order (COPYUID pairs rely on it)."""
    out = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def format_set(numbers):
    """Compact text of numbers in the given order: ``1:3,7`` (no sorting, no merging)."""
    return render(runs_in_order(numbers))


def format_sorted_set(numbers):
    """Compact text of numbers in any order, duplicates allowed: sorted and merged."""
    return render(ranges_of(numbers))


# -- dates (RFC 3501 date, date-time) ---------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_internaldate(ts):
    """The quoted date-time of FETCH INTERNALDATE for seconds since the epoch (in UTC)."""
    t = time.gmtime(ts)
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode("ascii"),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def parse_date(text):
    """An IMAP date (``1-Feb-1994``, bytes) as a (y, m, d) tuple, or ParseError."""
    try:
        day, month, year = text.decode("ascii").split("-")
        y, m, d = int(year), _MONTHS.index(month.title()) + 1, int(day)
        if not 1 <= d <= calendar.monthrange(y, m)[1]:
            raise ValueError(day)  # 31-Feb is no day (it was read as 2-Mar)
        return (y, m, d)
    except (ValueError, UnicodeDecodeError):
        raise ParseError("Bad date: %s" % (text.decode("ascii", "replace"),))


def parse_datetime(text):
    """An IMAP date-time (``17-Jul-1996 02:44:25 -0700``, bytes) as seconds since the epoch."""
    try:
        date, clock, zone = text.decode("ascii").strip().split(" ")
        y, m, d = parse_date(date.encode("ascii"))
        hh, mm, ss = (int(x) for x in clock.split(":"))
        if not (0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss < 61 and len(zone) == 5 and zone[0] in "+-"
                and zone[1:].isdigit() and int(zone[3:5]) < 60):
            raise ValueError(text)  # a zone's minutes are 00-59 (+9999 is no zone)
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        return calendar.timegm((y, m, d, hh, mm, ss, 0, 0, 0)) - offset
    except ParseError:
        raise  # "Bad date: ..." of the date part
    except (ValueError, IndexError, UnicodeDecodeError):
        raise ParseError("Bad date-time: %s" % (text.decode("ascii", "replace"),))
