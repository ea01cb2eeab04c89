"""SEARCH criteria (RFC 3501 6.4.4, RFC 7162 MODSEQ) compiled into a predicate over messages.

Pure: no server, no session. ``compile_search(tokens, uids)`` takes the parsed criteria
(bytes and nested lists, as ``imap4.parseNestedParens`` gives them) and the UIDs the
session sees, in sequence order (``*`` is the last of them); it answers a L{SearchQuery}
whose ``predicate`` is called with a L{SearchItem} per message. Bad criteria raise
L{imapwebpush.wire.ParseError} (the server answers BAD with its text).

A new search key is one function ``_key_NAME(compiler, key, tokens)`` registered in
``_KEYS``; ESEARCH, SORT and THREAD reuse ``compile_search`` as it is.
"""

import collections
import email.header
import email.utils
import time

from imapwebpush import wire
from imapwebpush.constants import DEFAULT_MAX_MIME_PARTS, DEFAULT_MAX_NESTING
from imapwebpush.envelope import parse_envelope
from imapwebpush.imap import body_scan
from imapwebpush.imap.message import RawPart, parse_headers, split_header
from imapwebpush.imap.text_parts import decoded_texts
from imapwebpush.imap.thread import run  # a generator run to its end

# SEARCH keys that test a system flag (UN<key> tests its absence)
_SEARCH_FLAGS = {
    b"ANSWERED": "\\Answered",
    b"DELETED": "\\Deleted",
    b"DRAFT": "\\Draft",
    b"FLAGGED": "\\Flagged",
    b"SEEN": "\\Seen",
}


# Every key runs on every message: 16,000 keys on a line of 64 KiB over a mailbox the
# attacker filled would hold the reactor for seconds. Real clients send a few dozen.
MAX_SEARCH_KEYS = 1000


class SearchQuery:
    """A compiled SEARCH: ``predicate(item)``, and whether it named MODSEQ (RFC 7162 3.1.5)."""

    def __init__(self, predicate, uses_modseq):
        self.predicate = predicate
        self.uses_modseq = uses_modseq


def compile_search(tokens, uids, max_nesting=DEFAULT_MAX_NESTING, saved=(), charset="utf-8"):
    """The L{SearchQuery} of parsed criteria ``tokens`` over a mailbox whose UIDs are ``uids``.

    ``max_nesting``: how deep parentheses, NOT and OR may nest (each level is a
    recursion here and in the predicate); deeper criteria raise ParseError.
    ``saved``: the UIDs ``$`` names (RFC 5182 SEARCHRES).
    ``charset``: the Python codec the search strings are written in (SEARCH CHARSET).
    """
    compiler = _Compiler(uids, max_nesting, saved, charset)
    predicate = compiler.all_of(tokens, 0)
    return SearchQuery(predicate, compiler.uses_modseq)


class _Compiler:
    def __init__(self, uids, max_nesting, saved=(), charset="utf-8"):
        self.uids = uids
        self.charset = charset
        self.saved = frozenset(saved)
        self.max_nesting = max_nesting
        self.uses_modseq = False
        self.keys = 0

    def all_of(self, tokens, depth):
        if depth > self.max_nesting:
            raise wire.ParseError(wire.too_deep(self.max_nesting))
        tokens = collections.deque(tokens)  # popped from the left, key by key
        if not tokens:
            raise wire.ParseError("Missing search criteria")
        preds = []
        while tokens:
            preds.append(self.key(tokens, depth))
        if len(preds) == 1:
            return preds[0]
        return lambda m: all(p(m) for p in preds)

    def operand(self, tokens, depth, key):
        """The predicate of the search key that ``key`` (NOT, OR) applies to, one level deeper."""
        if not tokens:
            raise wire.ParseError("Missing search key after %s" % (key.decode("ascii"),))
        if depth + 1 > self.max_nesting:
            raise wire.ParseError(wire.too_deep(self.max_nesting))
        return self.key(tokens, depth + 1)

    def key(self, tokens, depth):
        """The predicate of the search key at the head of ``tokens`` (consumed)."""
        self.keys += 1
        if self.keys > MAX_SEARCH_KEYS:
            raise wire.ParseError("Too many search keys (more than %d)" % (MAX_SEARCH_KEYS,))
        token = tokens.popleft()
        if isinstance(token, list):
            return self.all_of(token, depth + 1)
        if not isinstance(token, bytes):  # NIL, or a literal tuple twisted left
            raise wire.ParseError("Unknown search key NIL" if token is None else "Bad search key")
        key = token.upper()
        if key in _SEARCH_FLAGS:
            flag = _SEARCH_FLAGS[key]
            return lambda m: flag in m.flags
        if key[:2] == b"UN" and key[2:] in _SEARCH_FLAGS:
            flag = _SEARCH_FLAGS[key[2:]]
            return lambda m: flag not in m.flags
        handler = _KEYS.get(key)
        if handler is not None:
            if handler in (_key_not, _key_or):
                return handler(self, key, tokens, depth)
            return handler(self, key, tokens)
        if key[:1].isdigit() or key[:1] in (b"*", b"$"):
            return self.in_set(key, by_uid=False)
        raise wire.ParseError("Unknown search key %s" % (key.decode("ascii", "replace"),))

    def in_set(self, text, by_uid):
        """Predicate of a sequence set (by UID or number); ``*`` is the last message,
        ``$`` the saved result (by UID either way)."""
        if text == b"$":
            saved = self.saved
            return lambda m: m.uid in saved
        ranges = wire.parse_sequence_set(text)
        uids = self.uids
        bounds = wire.normalize(wire.with_star(ranges, (uids[-1] if uids else 0) if by_uid else len(uids)))
        if len(bounds) == 1:
            ((lo, hi),) = bounds
            if by_uid:
                return lambda m: lo <= m.uid <= hi
            return lambda m: lo <= m.seq <= hi
        contains = wire.contains  # bisection: a 64 KiB set is ~10,000 ranges
        if by_uid:
            return lambda m: contains(bounds, m.uid)
        return lambda m: contains(bounds, m.seq)


def _arg(key, tokens):
    """The argument after ``key``; NIL is the string "NIL" there (an astring, RFC 3501 9)."""
    if not tokens or isinstance(tokens[0], list):
        raise wire.ParseError("Missing argument for %s" % (key.decode("ascii", "replace"),))
    value = tokens.popleft()
    if value is None:
        return b"NIL"
    if not isinstance(value, bytes):
        raise wire.ParseError("Bad argument for %s" % (key.decode("ascii", "replace"),))
    return value


def _number(key, tokens):
    value = _arg(key, tokens)
    if not value.isdigit() or len(value) > 10 or int(value) > wire.MAX_NUMBER:  # a 32-bit number
        raise wire.ParseError("Expected a number after %s" % (key.decode("ascii", "replace"),))
    return int(value)


def _text(value, charset="utf-8"):
    return value.decode(charset, "replace").casefold()


def _key_all(compiler, key, tokens):
    return lambda m: True


def _key_recent(compiler, key, tokens):
    if key == b"RECENT":
        return lambda m: m.recent
    if key == b"OLD":
        return lambda m: not m.recent
    return lambda m: m.recent and "\\Seen" not in m.flags  # NEW


def _key_keyword(compiler, key, tokens):
    word = _arg(key, tokens).decode("utf-8", "replace").lower()
    has = key == b"KEYWORD"
    return lambda m: (word in {f.lower() for f in m.flags}) == has


def _key_size(compiler, key, tokens):
    n = _number(key, tokens)
    if key == b"LARGER":
        return lambda m: m.stored.size > n
    return lambda m: m.stored.size < n


def _key_date(compiler, key, tokens):
    day = wire.parse_date(_arg(key, tokens))
    compare = {b"BEFORE": lambda d: d < day, b"ON": lambda d: d == day, b"SINCE": lambda d: d >= day}
    if key.startswith(b"SENT"):
        test = compare[key[4:]]
        return lambda m: m.sent_date() is not None and test(m.sent_date())
    if key.startswith(b"SAVED"):  # RFC 8514 4.3
        test = compare[key[5:]]
        return lambda m: test(m.save_date())
    test = compare[key]
    return lambda m: test(m.internal_date())


def _key_savedatesupported(compiler, key, tokens):
    return lambda m: True  # every mailbox keeps save dates (RFC 8514 4.3)


def _key_address(compiler, key, tokens):
    name = key.decode("ascii").lower()
    needle = _text(_arg(key, tokens), compiler.charset)
    # A message without the field has nothing to contain the string, not even "" (as
    # Dovecot: SUBJECT "" finds the messages that have a Subject).
    if name == "subject":
        return lambda m: m.has_header(name) and needle in m.header(name).casefold()
    # the header text and its addresses as mailbox@host (comments and folding gone), as Dovecot
    return lambda m: m.has_header(name) and (needle in m.header(name).casefold() or needle in m.addresses(name))


def _key_header(compiler, key, tokens):
    name = _arg(key, tokens).decode("ascii", "replace").lower()
    needle = _text(_arg(key, tokens), compiler.charset)
    return lambda m: m.has_header(name) and needle in m.header(name).casefold()


def _key_body(compiler, key, tokens):
    needle = _text(_arg(key, tokens), compiler.charset)
    whole = key == b"TEXT"
    return lambda m: m.contains(needle, whole)


def _key_not(compiler, key, tokens, depth):
    inner = compiler.operand(tokens, depth, key)
    return lambda m: not inner(m)


def _key_or(compiler, key, tokens, depth):
    left = compiler.operand(tokens, depth, key)
    right = compiler.operand(tokens, depth, key)
    return lambda m: left(m) or right(m)


def _key_uid(compiler, key, tokens):
    return compiler.in_set(_arg(key, tokens), by_uid=True)


def _key_modseq(compiler, key, tokens):
    value = _arg(key, tokens)
    if not value.isdigit():
        # entry-name and entry-type-req (RFC 7162): only the number matters here
        _arg(key, tokens)
        value = _arg(key, tokens)
    if not value.isdigit():
        raise wire.ParseError("Expected a mod-sequence")
    compiler.uses_modseq = True
    n = int(value)
    return lambda m: m.stored.modseq >= n


_KEYS = {
    b"ALL": _key_all,
    b"RECENT": _key_recent,
    b"OLD": _key_recent,
    b"NEW": _key_recent,
    b"KEYWORD": _key_keyword,
    b"UNKEYWORD": _key_keyword,
    b"LARGER": _key_size,
    b"SMALLER": _key_size,
    b"NOT": _key_not,
    b"OR": _key_or,
    b"UID": _key_uid,
    b"MODSEQ": _key_modseq,
    b"HEADER": _key_header,
    b"BODY": _key_body,
    b"TEXT": _key_body,
}
_KEYS[b"SAVEDATESUPPORTED"] = _key_savedatesupported
_DATE_KEYS = (b"BEFORE", b"ON", b"SINCE", b"SENTBEFORE", b"SENTON", b"SENTSINCE", b"SAVEDBEFORE", b"SAVEDON", b"SAVEDSINCE")
_KEYS.update(dict.fromkeys(_DATE_KEYS, _key_date))
_KEYS.update(dict.fromkeys((b"FROM", b"TO", b"CC", b"BCC", b"SUBJECT"), _key_address))


# SEARCH BODY/TEXT reads a message larger than this from its file in pieces (what FETCH
# streams from, imap/fetch.py's STREAM_MIN)
LARGE_MESSAGE = 256 * 1024


def _decoded_header(value):
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:
        return value


class NeedsScan(Exception):
    """A large message's BODY/TEXT answer is not known yet: ``steps`` (a generator, one
    step per piece of its file) finds it; then the predicate is asked again."""

    def __init__(self, steps):
        self.steps = steps


class SearchItem:
    """One message as SEARCH predicates see it; parses the message only when asked.

    ``seq`` and ``uid`` are its numbers, ``stored`` the store's message (``flags``,
    ``size``, ``modseq``, ``internaldate``, ``headers()``, ``read()``), ``recent``
    whether the session sees it as \\Recent.
    """

    def __init__(self, seq, uid, stored, recent, max_parts=DEFAULT_MAX_MIME_PARTS):
        self.seq = seq
        self.max_parts = max_parts  # --max-mime-parts: the MIME map of a large message
        self.uid = uid
        self.stored = stored
        self.flags = stored.flags
        self.recent = recent
        self._headers = None
        self._envelope = None
        self._raw = None
        self._texts = {}
        self._decoded = None  # the decoded text parts of a small message
        self._header_text = None
        self._found = {}  # (needle, whole) -> answer, for a large message
        self.scans = False

    def _fields(self):
        if self._headers is None:
            self._headers = {}
            for name, value, _ in parse_headers(self.stored.headers()):
                try:
                    text = value.decode("utf-8")  # raw UTF-8 headers (RFC 6532)
                except UnicodeDecodeError:
                    text = value.decode("latin-1")
                self._headers.setdefault(name, []).append(_decoded_header(text))
        return self._headers

    def has_header(self, name):
        return name in self._fields()

    def header(self, name):
        return " ".join(self._fields().get(name, []))

    def addresses(self, name):
        """The addresses of header ``name`` (from, to, cc, bcc) as "display name <mailbox@host>"
        lines, case-folded: what FROM/TO/CC/BCC look in besides the header text."""
        if self._envelope is None:
            self._envelope = parse_envelope(self.stored.headers())
        out = []
        for address in getattr(self._envelope, "from_" if name == "from" else name) or ():
            if address.mailbox is not None and address.host is not None:
                out.append("%s <%s@%s>" % (address.name or "", address.mailbox, address.host))
        return "\n".join(out).casefold()

    def text(self, whole):
        """The message (``whole``) or its body, decoded and casefolded once per SEARCH."""
        cached = self._texts.get(whole)
        if cached is not None:
            return cached
        if self._raw is None:
            self._raw = self.stored.read()
        data = self._raw
        if not whole:
            data = split_header(data)[1]
        text = self._texts[whole] = data.decode("utf-8", "replace").casefold()
        return text

    def decoded_texts(self):
        """The case-folded decoded text of each text part of a small message whose
        Content-Transfer-Encoding or charset is more than UTF-8 as stored
        (imap/text_parts.py)."""
        if self._decoded is None:
            if self._raw is None:
                self._raw = self.stored.read()
            self._decoded = decoded_texts(RawPart(self._raw))
        return self._decoded

    def header_text(self):
        """The header fields with RFC 2047 encoded words decoded, case-folded: what TEXT
        looks in besides the raw octets."""
        if self._header_text is None:
            fields = self._fields()
            lines = ("%s: %s" % (name, value) for name, values in fields.items() for value in values)
            self._header_text = "\n".join(lines).casefold()
        return self._header_text

    def contains(self, needle, whole):
        """True when ``needle`` (case-folded) is in ``text(whole)``, in the decoded text of
        a text part, or (TEXT) in the decoded header. A large message is read from its
        file a piece at a time (imap/body_scan.py), not held. With ``scans`` set
        (search_scan's matching) the first time raises L{NeedsScan}: the matcher runs
        the reading in its slices, then asks again."""
        if self.stored.size <= LARGE_MESSAGE:
            return (
                needle in self.text(whole)
                or (whole and needle in self.header_text())
                or any(needle in text for text in self.decoded_texts())
            )
        key = (needle, whole)
        found = self._found.get(key)
        if found is None:
            if not self.scans:
                run(self._scan(key))
                return self._found[key]
            raise NeedsScan(self._scan(key))
        return found

    def _scan(self, key):
        needle, whole = key
        found = yield from body_scan.contains_steps(self.stored, needle, whole)
        if not found and whole:
            found = needle in self.header_text()
        if not found:
            found = yield from body_scan.decoded_steps(self.stored, needle, max_parts=self.max_parts)
        self._found[key] = found

    def internal_date(self):
        t = time.gmtime(self.stored.internaldate)
        return (t.tm_year, t.tm_mon, t.tm_mday)

    def save_date(self):
        """The day (UTC) the message was saved into the mailbox; its INTERNALDATE's when
        that is not known (RFC 8514 4.3)."""
        saved = self.stored.saved
        if saved is None:
            return self.internal_date()
        t = time.gmtime(saved)
        return (t.tm_year, t.tm_mon, t.tm_mday)

    def sent_date(self):
        value = self.header("date")
        if not value:
            return None
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return parsed[:3]
