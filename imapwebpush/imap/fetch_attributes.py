"""FETCH attribute lists (RFC 3501 6.4.5, fetch-att) parsed into small objects, and cached.

Why our own parser: Twisted's is private (``imap4._FetchParser``), rewrote the header
names a client asked for, and cannot grow the items of extensions (BINARY[...] and
BINARY.SIZE[...] of RFC 3516 are two more alternatives of ``_ATT``). Pure: bytes in, L{Attribute}s out,
L{Bad} for anything else.
"""

import collections
import re

from imapwebpush import wire
from imapwebpush.imap.core import Bad

_MACROS = {
    b"ALL": ("flags", "internaldate", "rfc822size", "envelope"),
    b"FAST": ("flags", "internaldate", "rfc822size"),
    b"FULL": ("flags", "internaldate", "rfc822size", "envelope", "body"),
}
_SIMPLE = {
    b"ENVELOPE": "envelope",
    b"FLAGS": "flags",
    b"INTERNALDATE": "internaldate",
    b"SAVEDATE": "savedate",  # RFC 8514
    b"RFC822": "rfc822",
    b"RFC822.HEADER": "rfc822header",
    b"RFC822.TEXT": "rfc822text",
    b"RFC822.SIZE": "rfc822size",
    b"UID": "uid",
    b"BODYSTRUCTURE": "bodystructure",
    b"BODY": "body",
    b"BODY.PEEK": "body",  # without a section: the structure, as BODY (Twisted's reading)
}
# One fetch-att: BODY[.PEEK][section]<partial>, BINARY[.PEEK][part]<partial>,
# BINARY.SIZE[part], or a simple name; a space or the end follows.
_ATT = re.compile(
    rb"""(?:
        BODY(?P<peek>\.PEEK)?\[
            (?P<part>\d+(?:\.\d+)*)?\.?
            (?P<section>HEADER\.FIELDS(?P<negate>\.NOT)?\s+\((?P<names>[^)]*)\)|HEADER|TEXT|MIME)?
        \](?:<(?P<begin>\d+)\.(?P<length>\d+)>)?
      | BINARY(?P<bpeek>\.PEEK)?\[(?P<bpart>\d+(?:\.\d+)*)?\]
            (?:<(?P<bbegin>\d+)\.(?P<blength>\d+)>)?
      | BINARY\.SIZE\[(?P<spart>\d+(?:\.\d+)*)?\]
      | (?P<simple>[A-Z0-9.]+)
    )(?=\s|\Z)""",
    re.IGNORECASE | re.VERBOSE,
)
_SPACE = re.compile(rb"\s+")
_MODSEQ_ATTR = re.compile(rb"(?i)(?<![\w.\[])MODSEQ(?![\w.\]])")

_FETCH_CACHE = collections.OrderedDict()
_FETCH_CACHE_SIZE = 64
_FETCH_CACHE_KEY_LIMIT = 1024


class Header:
    """HEADER (no ``fields``), HEADER.FIELDS or HEADER.FIELDS.NOT (``negate``) of a section.

    ``raw_fields`` are the names as the client wrote them (the answer repeats them, as
    Dovecot does); ``fields`` the names to match: upper-cased, a quoted name unquoted.
    """

    __slots__ = ("fields", "raw_fields", "negate")

    def __init__(self, raw_fields=(), negate=False):
        self.raw_fields = list(raw_fields)
        self.fields = [_unquote(f).upper() for f in self.raw_fields]
        self.negate = negate


class Attribute:
    """One FETCH attribute: ``type`` ("flags", "body", "binary", "binarysize",
    "rfc822size"...) and, for BODY and BINARY, its section: ``peek``, ``empty`` (``[]``), ``header`` (a L{Header}), ``text``,
    ``mime``, ``part`` (0-based part numbers), ``partial_begin``/``partial_length``."""

    __slots__ = ("type", "peek", "empty", "header", "text", "mime", "part", "partial_begin", "partial_length")

    def __init__(self, type, peek=False, empty=False, header=None, text=False, mime=False, part=()):
        self.type = type
        self.peek = peek
        self.empty = empty
        self.header = header
        self.text = text
        self.mime = mime
        self.part = part
        self.partial_begin = None
        self.partial_length = None


def _unquote(name):
    if name[:1] == b'"':
        try:
            return wire.read_astring(name)[0]
        except wire.ParseError:
            pass
    return name


def _part(text):
    """0-based part numbers of a section-part (``1.2``), () for none."""
    if not text:
        return ()
    part = tuple(int(p) - 1 for p in text.split(b"."))
    if any(p < 0 for p in part):
        # RFC 3501 9: section-part = nz-number *("." nz-number)
        raise Bad("section part numbers start at 1")
    return part


def _partial(attr, begin, length):
    """Set ``<begin.length>`` on ``attr`` (both 32-bit numbers) when the item has it."""
    if begin is not None:
        if len(begin) > 10 or len(length) > 10 or max(int(begin), int(length)) > wire.MAX_NUMBER:
            raise Bad("partial offsets are 32-bit numbers")  # RFC 3501 9: number
        attr.partial_begin = int(begin)
        attr.partial_length = int(length)
    return attr


def _binary(m):
    """The L{Attribute} of a matched BINARY[...] or BINARY.SIZE[...] item (RFC 3516)."""
    if m.group(0)[:11].upper() == b"BINARY.SIZE":
        return Attribute("binarysize", part=_part(m.group("spart")))
    attr = Attribute("binary", peek=bool(m.group("bpeek")), part=_part(m.group("bpart")))
    if m.group("blength") is not None and int(m.group("blength")) == 0:
        raise Bad("a BINARY partial's length is at least 1")  # RFC 3516 7: nz-number
    return _partial(attr, m.group("bbegin"), m.group("blength"))


def _body(m):
    """The L{Attribute} of a matched BODY[...] item."""
    section = (m.group("section") or b"").upper()
    attr = Attribute("body", peek=bool(m.group("peek")), part=_part(m.group("part")))
    if not section:
        attr.empty = True
    elif section == b"TEXT":
        attr.text = True
    elif section == b"MIME":
        if not attr.part:
            raise Bad("MIME needs a part number")  # RFC 3501 9: section-part "." section-text
        attr.mime = True
    elif section == b"HEADER":
        attr.header = Header()
    else:
        names = m.group("names").split()
        if not names:
            raise Bad("HEADER.FIELDS needs at least one field name")  # RFC 3501 9: header-list
        attr.header = Header(names, negate=bool(m.group("negate")))
    return _partial(attr, m.group("begin"), m.group("length"))


def parse_fetch_attributes(text):
    """The L{Attribute}s of a fetch-att list: a macro, one item or ``(item ...)``; or Bad."""
    macro = _MACROS.get(text.upper())
    if macro is not None:
        return tuple(Attribute(kind) for kind in macro)
    listed = text[:1] == b"("
    if listed:
        if text[-1:] != b")":
            raise Bad("Bad FETCH attribute: missing )")
        text = text[1:-1]
    attrs = []
    simple = set()  # a simple item named twice is answered once, as Dovecot does
    pos = 0
    while pos < len(text):
        m = _ATT.match(text, pos)
        if m is None:
            raise Bad("Bad FETCH attribute: %s" % (text[pos : pos + 40].decode("ascii", "replace"),))
        if m.group("simple") is None:
            attrs.append(_binary(m) if m.group(0)[:6].upper() == b"BINARY" else _body(m))
        else:
            kind = _SIMPLE.get(m.group("simple").upper())
            if kind is None:
                raise Bad("Bad FETCH attribute: %s" % (m.group("simple")[:40].decode("ascii", "replace"),))
            if kind not in simple:
                simple.add(kind)
                attrs.append(Attribute(kind, peek=m.group("simple").upper() == b"BODY.PEEK"))
        pos = m.end()
        if pos < len(text):
            pos = _SPACE.match(text, pos).end()
            if pos == len(text) or not listed:
                raise Bad("Bad FETCH attribute: %s" % (text[pos : pos + 40].decode("ascii", "replace"),))
    return tuple(attrs)


def is_section(attr):
    """True for BODY[...] (a section), False for BODY (the structure)."""
    return bool(attr.empty or attr.header or attr.text or attr.mime or attr.part)


def sets_seen(attr):
    """True when fetching ``attr`` sets \\Seen (RFC 3501 6.4.5: BODY[...], RFC822, RFC822.TEXT;
    RFC 3516 4.2: BINARY[...])."""
    if attr.type == "body":
        return not attr.peek and is_section(attr)
    if attr.type == "binary":
        return not attr.peek
    return attr.type in ("rfc822", "rfc822text")


# Words in one FETCH attribute list (header field names included): each HEADER.FIELDS
# name is matched and echoed per message (20,000 names over 300 messages: 3 s).
MAX_FETCH_WORDS = 300


def fetch_attributes(attr_text):
    """(attributes, MODSEQ named?, sets \\Seen?) of a FETCH attribute list, or Bad.

    Clients repeat the same few attribute lists (``BODY.PEEK[]``, ``(FLAGS UID)``...):
    results are kept for the 64 most recently used texts (tuples of objects nothing
    changes afterwards), which saved a fifth of a one-message FETCH.
    """
    cached = _FETCH_CACHE.get(attr_text)
    if cached is not None:
        _FETCH_CACHE.move_to_end(attr_text)
        return cached
    if attr_text.count(b" ") >= MAX_FETCH_WORDS:
        raise Bad("Too many FETCH attributes (more than %d words)" % (MAX_FETCH_WORDS,))
    stripped = _MODSEQ_ATTR.sub(b"", attr_text)
    names_modseq = stripped != attr_text
    if names_modseq:
        # "(FLAGS MODSEQ)" leaves "(FLAGS )": the spaces MODSEQ leaves go with it
        stripped = b" ".join(stripped.split()).replace(b"( ", b"(").replace(b" )", b")")
    attrs = ()
    if stripped.strip(b"() "):
        attrs = parse_fetch_attributes(stripped)
    elif not names_modseq:
        raise Bad("Missing FETCH attributes")
    result = (attrs, names_modseq, any(sets_seen(a) for a in attrs))
    if len(attr_text) <= _FETCH_CACHE_KEY_LIMIT:
        _FETCH_CACHE[attr_text] = result
        if len(_FETCH_CACHE) > _FETCH_CACHE_SIZE:
            _FETCH_CACHE.popitem(last=False)  # the least recently used
    return result
