"""The IMAP ENVELOPE of a message, from its raw header block (RFC 3501 7.4.2).

One parser and one renderer for both places that send an ENVELOPE, so they
cannot disagree on the grammar (``"(" 1*address ")"``, no space between
addresses; a group is a start and an end marker, an empty group included):

* IMAP FETCH: ``parse_envelope(headers, decode_words=False)`` then
  ``render_envelope_wire``. The fields carry the header text as is (the client
  decodes RFC 2047 words); 8-bit header octets are sent unchanged, in a literal,
  since a quoted string must be 7-bit.
* Web Push (SPEC 5.1): ``parse_envelope(headers)`` then ``render_envelope``.
  Every string is a quoted string, never a literal; text is UTF-8 (the payload
  is UTF-8): raw 8-bit headers are decoded as UTF-8 when they are valid UTF-8
  and as Latin-1 otherwise, and RFC 2047 encoded words in the subject and in
  display names are decoded. ``render_envelope`` can cap every string at a
  number of UTF-8 octets so one huge header (a 10,000-character subject) cannot
  make a response too big for a push; the cut is made at a character boundary,
  before quoting, so no UTF-8 sequence and no escape is ever cut.

In both, CR, LF and NUL (which no IMAP string may hold) become spaces.

This module is shared by ``imapwebpush.imap`` and ``imapwebpush.webpush`` and
imports neither; its strings are written by L{imapwebpush.wire}.
"""

import base64
import binascii
import codecs
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from imapwebpush import wire

__all__ = [
    "Address",
    "Envelope",
    "parse_envelope",
    "render_envelope",
    "render_envelope_wire",
    "decode_encoded_words",
]


@dataclass(frozen=True)
class Address:
    """One element of an address list: (name adl mailbox host).

    A group start is ``Address(None, None, group name, None)`` and a group end
    ``Address(None, None, None, None)`` (RFC 3501 7.4.2).
    """

    name: Optional[str]
    adl: Optional[str]
    mailbox: Optional[str]
    host: Optional[str]


@dataclass(frozen=True)
class Envelope:
    """The ten ENVELOPE fields; None is NIL, address lists are tuples of L{Address}."""

    date: Optional[str]
    subject: Optional[str]
    from_: Optional[Tuple[Address, ...]]
    sender: Optional[Tuple[Address, ...]]
    reply_to: Optional[Tuple[Address, ...]]
    to: Optional[Tuple[Address, ...]]
    cc: Optional[Tuple[Address, ...]]
    bcc: Optional[Tuple[Address, ...]]
    in_reply_to: Optional[str]
    message_id: Optional[str]


# ---------------------------------------------------------------------------
# Header block
# ---------------------------------------------------------------------------

_WANTED = frozenset(
    [b"date", b"subject", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc",
     b"in-reply-to", b"message-id"]
)


def _header_fields(headers):
    """Map lower-cased field name -> raw value bytes (first occurrence), unfolded."""
    fields = {}
    name = None
    value = []

    def finish():
        if name is not None and name in _WANTED and name not in fields:
            fields[name] = b"".join(value)

    for line in re.split(rb"\r?\n", headers):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if name is not None or fields:
                # the blank line ends the header block
                break
            continue
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line)  # unfolding: the CRLF goes, the WSP stays
            continue
        finish()
        colon = line.find(b":")
        if colon <= 0:
            name = None  # not a header field (e.g. an mbox "From " line): skip
            value = []
            continue
        name = line[:colon].strip().lower()
        value = [line[colon + 1:]]
    finish()
    return fields


def _to_text(raw):
    """Header bytes to str: UTF-8 (RFC 6532) when valid, else Latin-1 (never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _to_text_exact(raw):
    """Header bytes to str that encodes back to the same octets (surrogateescape)."""
    return raw.decode("utf-8", "surrogateescape")


def _as_is(text):
    return text


# ---------------------------------------------------------------------------
# RFC 2047
# ---------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"\A[ \t\r\n]*\Z")


def _decode_word(charset, encoding, text):
    """One encoded word's text, or None when it cannot be decoded (left as is)."""
    try:
        codecs.lookup(charset)
    except LookupError:
        return None
    try:
        if encoding in "Bb":
            data = text.encode("ascii")
            data += b"=" * (-len(data) % 4)
            raw = base64.b64decode(data, validate=False)
        else:
            raw = re.sub(
                rb"=([0-9A-Fa-f]{2})",
                lambda m: bytes([int(m.group(1), 16)]),
                text.replace("_", " ").encode("ascii", "replace"),
            )
        return raw.decode(charset, "replace")
    except (binascii.Error, ValueError, UnicodeError, LookupError):
        return None


def decode_encoded_words(text):
    """Decode the RFC 2047 encoded words of ``text``; whitespace between adjacent words goes."""
    if "=?" not in text:
        return text
    out = []
    pos = 0
    last_was_word = False
    for m in _ENCODED_WORD.finditer(text):
        between = text[pos:m.start()]
        decoded = _decode_word(m.group(1), m.group(2), m.group(3))
        if decoded is None:
            out.append(between)
            out.append(m.group(0))
            last_was_word = False
        else:
            if not (last_was_word and _BETWEEN_WORDS.match(between)):
                out.append(between)
            out.append(decoded)
            last_was_word = True
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------
# Address lists (RFC 5322 3.4, with the obsolete forms and common breakage)
# ---------------------------------------------------------------------------

_SPECIALS = "<>@,;:"


def _tokens(text):
    """Yield (kind, value): 'q' quoted string, 'c' comment, 'l' domain literal,
    'a' atom (dots included), or a special character itself."""
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == '"':
            i += 1
            buf = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1
            yield "q", "".join(buf)
        elif ch == "(":
            depth = 1
            i += 1
            buf = []
            while i < n and depth:
                c = text[i]
                if c == "\\" and i + 1 < n:
                    i += 1
                    buf.append(text[i])
                elif c == "(":
                    depth += 1
                    buf.append(c)
                elif c == ")":
                    depth -= 1
                    if depth:
                        buf.append(c)
                else:
                    buf.append(c)
                i += 1
            yield "c", "".join(buf)
        elif ch == "[":
            j = text.find("]", i)
            j = n if j < 0 else j + 1
            yield "l", text[i:j]
            i = j
        elif ch in _SPECIALS:
            yield ch, ch
            i += 1
        elif ch == ")":
            i += 1  # stray: ignore
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n"()[' + _SPECIALS:
                j += 1
            yield "a", text[i:j]
            i = j


def _phrase(words, decode):
    """Display name from its words: joined by one space, then ``decode``d."""
    if not words:
        return None
    return decode(" ".join(words)) or None


def _addr_spec(parts):
    """(mailbox, host) from the tokens of an addr-spec (possibly without '@')."""
    at = None
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "@":
            at = i
            break
    if at is None:
        local = "".join(p for p in parts if p != "@")
        return local, ""
    local = "".join(p for p in parts[:at] if p != "@")
    host = "".join(parts[at + 1:])
    return local, host


class _AddressParser:
    def __init__(self, text, decode=decode_encoded_words):
        self.toks = list(_tokens(text))
        self.i = 0
        self.decode = decode  # applied to display names (RFC 2047 words or as is)

    def peek(self):
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def take(self):
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self):
        out = []
        while self.peek() is not None:
            self.item(out, in_group=False)
        return out

    def item(self, out, in_group):
        """Parse one mailbox or group (up to and including its ',' or ';')."""
        words = []  # display-name words, or addr-spec pieces
        pieces = []
        comment = None
        while True:
            kind = self.peek()
            if kind is None or kind == "," or (kind == ";" and in_group):
                if kind == ",":
                    self.take()
                if pieces:
                    mailbox, host = _addr_spec(pieces)
                    name = self.decode(comment) if comment else None
                    out.append(Address(name or None, None, mailbox, host))
                return
            kind, value = self.take()
            if kind == ":" and not in_group:
                self.group(out, _phrase(words, self.decode) or "".join(pieces))
                return
            if kind == "<":
                self.angle(out, _phrase(words, self.decode))
                # skip whatever follows the '>' (comments, junk) up to the separator
                while self.peek() not in (None, ",") and not (in_group and self.peek() == ";"):
                    self.take()
                if self.peek() == ",":
                    self.take()
                return
            if kind == "c":
                comment = value.strip() or comment
                continue
            if kind == ";":
                continue  # stray group end outside a group
            if kind == ":":
                continue
            if kind in ("a", "q"):
                words.append(value)
                pieces.append(value)
            elif kind == "l":
                pieces.append(value)
            elif kind == "@":
                pieces.append("@")

    def group(self, out, name):
        out.append(Address(None, None, name, None))
        while True:
            kind = self.peek()
            if kind is None:
                break
            if kind == ";":
                self.take()
                break
            if kind == ",":
                self.take()
                continue
            self.item(out, in_group=True)
        out.append(Address(None, None, None, None))
        # the group may be followed by ',' before the next item
        if self.peek() == ",":
            self.take()

    def angle(self, out, name):
        """After '<': optional obsolete route '@a,@b:', then addr-spec, up to '>'."""
        parts = []
        while self.i < len(self.toks):
            kind, value = self.take()
            if kind == ">":
                break
            if kind != "c":
                parts.append(value)
        adl = None
        if parts and parts[0] == "@" and ":" in parts:
            colon = parts.index(":")
            adl = "".join(parts[:colon])
            parts = parts[colon + 1:]
        parts = [p for p in parts if p not in (",", ":", ";", "<")]
        if not parts:
            # "<>" (the null reverse path): an address with an empty mailbox
            out.append(Address(name, adl, "", ""))
            return
        mailbox, host = _addr_spec(parts)
        out.append(Address(name, adl, mailbox, host))


def _address_list(raw, to_text=_to_text, decode=decode_encoded_words):
    """The address list of a header value, or None (NIL) when absent or empty."""
    if raw is None:
        return None
    text = to_text(raw)
    if not text.strip():
        return None
    try:
        addresses = _AddressParser(text, decode).parse()
    except (IndexError, ValueError):  # defensive: a parser bug must not lose the push
        addresses = []
    return tuple(addresses) or None


def parse_envelope(headers, decode_words=True):
    """The L{Envelope} of a raw header block (bytes, any line ends, any charset).

    ``decode_words=True`` (pushes, SPEC 5.1): RFC 2047 words of the subject and
    display names are decoded and 8-bit text is read as UTF-8, else Latin-1.
    ``decode_words=False`` (IMAP FETCH, RFC 3501): the text stays as it is in
    the header, encoded words included, and 8-bit octets are kept exactly
    (``render_envelope_wire`` sends them back unchanged).
    """
    fields = _header_fields(headers)
    get = fields.get
    to_text = _to_text if decode_words else _to_text_exact
    decode = decode_encoded_words if decode_words else _as_is

    def text(name):
        raw = get(name)
        return None if raw is None else to_text(raw).strip(" \t")

    def addresses(name):
        return _address_list(get(name), to_text, decode)

    subject = text(b"subject")
    if subject is not None:
        subject = decode(subject)
    from_ = addresses(b"from")
    sender = addresses(b"sender") or from_
    reply_to = addresses(b"reply-to") or from_
    return Envelope(
        date=text(b"date"),
        subject=subject,
        from_=from_,
        sender=sender,
        reply_to=reply_to,
        to=addresses(b"to"),
        cc=addresses(b"cc"),
        bcc=addresses(b"bcc"),
        in_reply_to=text(b"in-reply-to"),
        message_id=text(b"message-id"),
    )


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

def _wire_string(text):
    """An IMAP string (bytes) of ``text`` with its octets unchanged: quoted when 7-bit, else a literal."""
    return wire.string(wire.printable(text).encode("utf-8", "surrogateescape"))


def _render(envelope, string, nil, join):
    """The ENVELOPE of ``envelope`` with ``string`` making each string (str or bytes)."""
    def nstring(value):
        return nil if value is None else string(value)

    def address_list(addresses):
        if not addresses:
            return nil
        # RFC 3501: "(" 1*address ")", addresses side by side with no space
        return join["("] + join[""].join(
            join["("] + join[" "].join([
                nstring(a.name), nstring(a.adl), nstring(a.mailbox), nstring(a.host),
            ]) + join[")"]
            for a in addresses
        ) + join[")"]

    return join["("] + join[" "].join([
        nstring(envelope.date),
        nstring(envelope.subject),
        address_list(envelope.from_),
        address_list(envelope.sender),
        address_list(envelope.reply_to),
        address_list(envelope.to),
        address_list(envelope.cc),
        address_list(envelope.bcc),
        nstring(envelope.in_reply_to),
        nstring(envelope.message_id),
    ]) + join[")"]


_STR = {"(": "(", ")": ")", " ": " ", "": ""}
_BYTES = {k: v.encode("ascii") for k, v in _STR.items()}


def render_envelope(envelope, max_string_bytes=None):
    """The ENVELOPE text (str) for a push: quoted strings only, each capped at ``max_string_bytes``."""
    return _render(envelope, lambda value: wire.push_quoted(value, max_string_bytes), "NIL", _STR)


def render_envelope_wire(envelope):
    """The ENVELOPE octets for IMAP FETCH: 7-bit strings quoted, 8-bit ones as literals.

    Meant for an envelope parsed with ``decode_words=False``, whose 8-bit text
    goes back to the client as the octets of the header.
    """
    return _render(envelope, _wire_string, b"NIL", _BYTES)
