"""Which parts of a message SEARCH BODY and TEXT read decoded, and how.

Matching the raw octets alone misses a word in a quoted-printable or base64 text part
or in an ISO-8859-1 one (Dovecot finds them). So besides the raw octets (kept: nothing
that matched before stops matching), each ``text/*`` leaf part is read with its
Content-Transfer-Encoding undone (imap/binary.py's piece decoders) and its charset
decoded. Non-text parts (attachments, application/*) are not decoded: their raw octets
are matched as before, so a base64 PDF is found by its base64 text, not by its content.

The same walk serves both paths: RawPart trees of a small message in memory and the
MappedPart tree (imap/mime_map.py) a large one is read through a piece at a time.
"""

import codecs
import re

from imapwebpush.imap.binary import UnknownCTE, piece_decoder
from imapwebpush.imap.message import MAX_MIME_DEPTH

_CHARSET = re.compile(rb'charset\s*=\s*(?:"([^"]*)"|([^\s;"]+))', re.I)

# Codecs that are no charset of mail text, or that buffer or cost without bound on
# hostile input: their parts are decoded as UTF-8 instead, and SEARCH CHARSET refuses
# them (BADCHARSET; idna and "undefined" raise whatever the error handler).
NOT_CHARSETS = frozenset(["idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"])


def charset_codec(part):
    """The Python codec name of a text part's charset; "utf-8" when it names none, names
    US-ASCII (8-bit octets there are mostly UTF-8 mislabelled) or one we do not know."""
    m = _CHARSET.search(part.content_type())
    if m is None:
        return "utf-8"
    name = (m.group(1) if m.group(1) is not None else m.group(2)).decode("ascii", "replace").strip()
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return "utf-8"
    if not getattr(info, "_is_text_encoding", True) or info.name in NOT_CHARSETS or info.name == "ascii":
        return "utf-8"
    return info.name


def decoded_parts(part, depth=0):
    """(part, CTE piece decoder or None, codec name) of each text leaf under ``part``
    whose decoded text can differ from its raw octets read as UTF-8; recursing into
    multipart and message/rfc822 parts, no deeper than MAX_MIME_DEPTH."""
    if depth >= MAX_MIME_DEPTH or part.is_opaque():
        return
    if part.isMultipart() or part.is_encapsulated():
        for child in part.subparts():
            yield from decoded_parts(child, depth + 1)
        return
    if not part.mime_type().startswith(b"text/"):
        return
    try:
        decoder = piece_decoder(part)
    except UnknownCTE:
        decoder = None  # read as stored, as the raw match does
    codec = charset_codec(part)
    if decoder is None and codec == "utf-8":
        return  # the raw match already reads it so
    yield part, decoder, codec


class _BOMDecoder:
    """UTF-16 or UTF-32 by its byte order mark, big-endian without one (RFC 2781 4.3):
    Python's decoders raise on a stream without a BOM, even with "replace"."""

    def __init__(self, codec, size):
        self.codec = codec
        self.size = size
        self.head = b""
        self.inner = None

    def decode(self, octets, final=False):
        if self.inner is None:
            self.head += octets
            if len(self.head) < self.size and not final:
                return ""
            octets, self.head = self.head, b""
            boms = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) if self.size == 2 else (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
            marked = octets.startswith(boms)
            name = self.codec if marked else self.codec + "-be"
            self.inner = codecs.getincrementaldecoder(name)("replace")
        return self.inner.decode(octets, final)


def _char_decoder(codec):
    if codec in ("utf-16", "utf-32"):
        return _BOMDecoder(codec, 2 if codec == "utf-16" else 4)
    return codecs.getincrementaldecoder(codec)("replace")


class TextDecoder:
    """A text part's body octets, fed a piece at a time, to case-folded text."""

    def __init__(self, decoder, codec):
        self.cte = decoder
        self.chars = _char_decoder(codec)

    def feed(self, octets):
        if self.cte is not None:
            octets = self.cte.feed(octets)
        return self.chars.decode(octets).casefold()

    def flush(self):
        octets = self.cte.flush() if self.cte is not None else b""
        return self.chars.decode(octets, final=True).casefold()


def decoded_texts(root):
    """The case-folded decoded text of each of L{decoded_parts}(root), a RawPart in memory."""
    out = []
    for part, decoder, codec in decoded_parts(root):
        text = TextDecoder(decoder, codec)
        out.append(text.feed(part.body) + text.flush())
    return out
