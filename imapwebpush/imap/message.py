"""Messages of the store seen as twisted's imap4.IMessage, with exact raw MIME parts.

FETCH BODY[1.2.HEADER] must return the octets as stored, so the message is split on
its raw bytes (header/body at the first blank line, multiparts at their boundary
lines) instead of being re-serialised by the email package.
"""

import email.parser
import email.utils
import email.policy
import io
import re

from twisted.mail import imap4
from zope.interface import implementer

from imapwebpush.envelope import parse_envelope, render_envelope_wire

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))', re.I)


def split_header(raw):
    """(header block including the blank line, body) of one raw entity."""
    if raw.startswith(b"\r\n"):
        return b"\r\n", raw[2:]
    m = _HEADER_END.search(raw)
    if m is None:
        return raw, b""
    return raw[: m.end()], raw[m.end() :]


def parse_headers(header_block):
    """Ordered list of (lower-case name, unfolded value, raw lines) of a header block."""
    fields = []
    for line in header_block.split(b"\r\n" if b"\r\n" in header_block else b"\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, value, rawlines = fields[-1]
            fields[-1] = (name, value + b" " + line.strip(), rawlines + [line])
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        fields.append((name.strip().lower().decode("ascii", "replace"), value.strip(), [line]))
    return fields


def message_envelope(header_block):
    """The ENVELOPE octets FETCH sends for a raw header block (RFC 3501 7.4.2).

    The header text as is (encoded words stay encoded, 8-bit text goes as a
    literal); the same parser and renderer as pushes, minus their decoding.
    """
    return render_envelope_wire(parse_envelope(header_block, decode_words=False))


def _decode(value):
    return value.decode("utf-8", "replace")


class _Literal:
    """Makes collapseNestedLists send a value as a literal (it calls ``read``)."""

    def __init__(self, data):
        self.data = data

    def read(self):
        return self.data


def wire_safe(structure):
    """ENVELOPE/BODYSTRUCTURE lists with text as bytes; 8-bit text goes as a literal.

    twisted's collapseNestedLists encodes str as ASCII and would fail on raw UTF-8
    headers (RFC 6532); quoted strings must be 7-bit, literals may be anything.
    """
    if isinstance(structure, (list, tuple)):
        return [wire_safe(item) for item in structure]
    if isinstance(structure, str):
        structure = structure.encode("utf-8")
    if isinstance(structure, bytes) and any(b > 0x7F for b in structure):
        return _Literal(structure)
    return structure


@implementer(imap4.IMessagePart)
class RawPart:
    """One MIME entity over its exact octets."""

    def __init__(self, raw, default_type=b"text/plain"):
        self.raw = raw
        # the type without a Content-Type header: message/rfc822 in a multipart/digest
        # (RFC 2046 5.1.5), text/plain elsewhere (RFC 2045 5.2)
        self.default_type = default_type
        self._split = None
        self._parsed = None
        self._subparts = None

    # Split and parsed on first use: FETCH BODY[] / BODY.PEEK[] needs only ``raw``,
    # and parsing every header of a message it sends whole was 10% of a UID FETCH.

    @property
    def header(self):
        if self._split is None:
            self._split = split_header(self.raw)
        return self._split[0]

    @property
    def body(self):
        if self._split is None:
            self._split = split_header(self.raw)
        return self._split[1]

    @property
    def _fields(self):
        if self._parsed is None:
            self._parsed = parse_headers(self.header)
        return self._parsed

    # -- raw access used by the FETCH renderer ---------------------------------

    def header_fields(self, names, negate):
        """The raw header lines whose name is (not) in ``names``, plus the blank line."""
        wanted = {n.lower() for n in names}
        out = []
        for name, _value, rawlines in self._fields:
            if (name in wanted) != negate:
                out.extend(rawlines)
        return b"".join(line + b"\r\n" for line in out) + b"\r\n"

    def header_value(self, name):
        """The unfolded value of the first ``name`` field (lower-case str); b"" when none."""
        for field, value, _ in self._fields:
            if field == name:
                return value
        return b""

    def content_type(self):
        return self.header_value("content-type")

    def mime_type(self):
        """The lower-case ``type/subtype`` of this entity, its default when it names none."""
        value = self.content_type().split(b";", 1)[0].strip().lower()
        if not value:
            return self.default_type
        if b"/" not in value:
            return b"text/plain"  # RFC 2045 5.2: a syntax error means text/plain
        return value

    def is_encapsulated(self):
        """True for a message/rfc822 entity (its body is a whole message)."""
        return self.mime_type() == b"message/rfc822"

    def subparts(self):
        """The raw child entities of a multipart (or message/rfc822), else []."""
        if self._subparts is None:
            self._subparts = []
            if self.isMultipart():
                m = _BOUNDARY.search(self.content_type())
                if m:
                    boundary = m.group(1) or m.group(2)
                    default = b"message/rfc822" if self.mime_type() == b"multipart/digest" else b"text/plain"
                    self._subparts = [RawPart(p, default) for p in _split_multipart(self.body, boundary)]
            elif self.is_encapsulated():
                self._subparts = [RawPart(self.body)]
        return self._subparts

    def section(self, path):
        """The entity named by a 0-based part path (RFC 3501 6.4.5); KeyError when there is none.

        Numbers count the parts of a message: a multipart's children, or part 1, the body
        of a message that is not multipart (the entity itself, whose ``body`` it is). A
        message/rfc822 part's numbers go on into the message it holds. So for a message
        whose own type is message/rfc822, 1 is its body (the whole held message) and
        1.1 the body of the held message.
        """
        part, is_message = self, True
        for index in path:
            if not is_message and part.is_encapsulated():
                part = part.subparts()[0]  # the held message, whose parts come next
            if part.isMultipart():
                children = part.subparts()
                if index >= len(children):
                    raise KeyError(path)
                part = children[index]
            elif index != 0:
                raise KeyError(path)
            # else: part 1 of a message that is not multipart is its body (the same entity)
            is_message = False
        return part

    # -- imap4.IMessagePart ----------------------------------------------------

    def getHeaders(self, negate, *names):
        wanted = {n.lower() for n in names}
        headers = {}
        for name, value, _ in self._fields:
            if not names or ((name in wanted) != negate):
                headers.setdefault(name, _decode(value))
        return headers

    def getBodyFile(self):
        return io.BytesIO(self.body)

    # -- what BODYSTRUCTURE needs (imap/mime_map.py's MappedPart has them from a file map)

    def body_size(self):
        return len(self.body)

    def body_lines(self):
        return self.body.count(b"\n")

    def inner(self):
        """The message a message/rfc822 part holds."""
        return RawPart(self.body)

    def is_opaque(self):
        """True for a part not looked into (a file map's parts past its limits)."""
        return False

    def getSize(self):
        return len(self.raw)

    def isMultipart(self):
        return self.mime_type().startswith(b"multipart/")

    def getSubPart(self, part):
        children = self.subparts()
        if part >= len(children):
            raise IndexError(part)
        return children[part]


def _split_multipart(body, boundary):
    delim = b"--" + boundary
    parts = []
    # The body starts with a preamble; every delimiter line is CRLF "--boundary".
    text = b"\r\n" + body
    pieces = text.split(b"\r\n" + delim)
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        # drop the rest of the delimiter line (transport padding) and its CRLF
        nl = piece.find(b"\r\n")
        if nl == -1:
            continue
        parts.append(piece[nl + 2 :])
    return parts


@implementer(imap4.IMessage, imap4.IMessageFile)
class StoredMessage(RawPart):
    """An IStoredMessage as imap4.IMessage; ``seq`` is the session's sequence number."""

    def __init__(self, stored, flags=None):
        self.stored = stored
        self._flags = flags
        self._raw = None
        self.decoded = {}  # BINARY sections decoded for this FETCH, by part path
        self.mapped = None  # a large message: its MappedPart (imap/fetch.py), once built
        super().__init__(None)

    @property
    def raw(self):
        """The stored octets, read on first use: FETCH streams large BODY[] from the file."""
        if self._raw is None:
            self._raw = self.stored.read()
        return self._raw

    @raw.setter
    def raw(self, value):
        self._raw = value

    def open(self):
        """imap4.IMessageFile: the exact stored octets (twisted would re-serialise headers)."""
        return io.BytesIO(self.raw)

    def getUID(self):
        return self.stored.uid

    def getFlags(self):
        return sorted(self._flags if self._flags is not None else self.stored.flags)

    def getInternalDate(self):
        return email.utils.formatdate(self.stored.internaldate)


def header_message(raw_headers):
    """An email.message.Message of a raw header block (for SEARCH on dates, addresses)."""
    return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        raw_headers, headersonly=True
    )


def _b(value):
    if value is None:
        return None
    return str(value).encode("utf-8")


def _param_list(pairs):
    flat = []
    for key, value in pairs:
        if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
            try:
                value = email.utils.collapse_rfc2231_value(value)
            except (UnicodeError, ValueError):
                # a codec that raises whatever the error handler (undefined, idna):
                # the octets read as UTF-8, as an unknown charset is
                value = email.utils.collapse_rfc2231_value(("utf-8",) + tuple(value[1:]))
        flat.extend([_b(key.upper()), _b(value)])
    return flat or None


# MIME parts nested deeper than this are described as one opaque part: each level is
# a recursion here and in the list renderer (3000 levels were a RecursionError logged
# on every FETCH BODYSTRUCTURE). Real mail nests a handful of levels.
MAX_MIME_DEPTH = 50


def body_structure(part, extended=True, depth=0):
    """The BODY / BODYSTRUCTURE list of a RawPart (RFC 3501 7.4.2), from its raw octets."""
    if depth >= MAX_MIME_DEPTH or part.is_opaque():
        out = [b"APPLICATION", b"OCTET-STREAM", None, None, None, b"7BIT", part.getSize()]
        return out + [None, None, None, None] if extended else out
    headers = header_message(part.header)
    headers.set_default_type(part.default_type.decode("ascii"))
    ctype = headers.get_content_type()
    major, _, minor = ctype.partition("/")
    params = [(k, v) for k, v in headers.get_params(failobj=[], header="content-type")[1:]]
    if major == "text" and not any(k.lower() == "charset" for k, _ in params):
        params.append(("charset", "US-ASCII"))  # RFC 2045 5.2's default, as RFC 3501 7.4.2 shows it
    if major == "multipart":
        children = [body_structure(child, extended, depth + 1) for child in part.subparts()]
        if not children:  # no boundary, or none found: one empty text/plain part, as Dovecot
            empty = [b"TEXT", b"PLAIN", [b"CHARSET", b"US-ASCII"], None, None, b"7BIT", 0, 0]
            children = [empty + [None, None, None, None] if extended else empty]
        out = children + [_b(minor.upper())]
        if extended:
            out += [_param_list(params)] + _extension(headers)
        return out
    encoding = (headers.get("content-transfer-encoding") or "7BIT").strip().upper()
    out = [
        _b(major.upper()),
        _b(minor.upper()),
        _param_list(params),
        _b(headers.get("content-id")),
        _b(headers.get("content-description")),
        _b(encoding),
        part.body_size(),
    ]
    if ctype == "message/rfc822":
        inner = part.inner()
        envelope = imap4.DontQuoteMe(message_envelope(inner.header))  # collapseNestedLists keeps it as is
        out += [envelope, body_structure(inner, extended, depth + 1), part.body_lines()]
    elif major == "text":
        out.append(part.body_lines())
    if extended:
        out += [_b(headers.get("content-md5"))] + _extension(headers)
    return out


def _extension(headers):
    disposition = None
    value = headers.get("content-disposition")
    if value:
        kind = headers.get_content_disposition() or str(value).split(";")[0].strip()
        dparams = headers.get_params(failobj=[], header="content-disposition")[1:]
        disposition = [_b(kind.upper()), _param_list(dparams)]
    language = headers.get("content-language")
    return [disposition, _b(language.strip()) if language else None, _b(headers.get("content-location"))]
