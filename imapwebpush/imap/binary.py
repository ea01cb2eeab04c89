"""What FETCH BINARY[section] and BINARY.SIZE[section] answer (RFC 3516): a section's
octets with its Content-Transfer-Encoding undone. Pure: raw MIME parts in, bytes out.

* Leaf parts: base64 and quoted-printable are decoded; 7bit, 8bit and binary (or no
  Content-Transfer-Encoding header) are sent as stored; any other encoding raises
  L{UnknownCTE} (the FETCH answers ``NO [UNKNOWN-CTE]``). Decoded ``text/*`` comes
  with CRLF line ends (RFC 3516 6), whatever the encoded text used.
* ``BINARY[]`` (the whole message) and composite parts (multipart/*, message/rfc822)
  have nothing to decode: RFC 2045 6.4 allows them only 7bit, 8bit or binary, so
  they are sent as ``BODY[...]`` sends them; one that claims another encoding
  raises L{UnknownCTE}.
"""

import binascii
import re

IDENTITY = frozenset([b"7bit", b"8bit", b"binary"])

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]+")
_LINE_END = re.compile(rb"\r?\n")


class UnknownCTE(ValueError):
    """A section whose Content-Transfer-Encoding cannot be undone; the text says which."""


def _base64(data):
    """base64 decoded leniently, as mail readers do: what is not base64 skipped,
    missing padding supplied, a dangling sixth of an octet dropped."""
    clean = _NOT_BASE64.sub(b"", data)
    usable = len(clean) - (len(clean) % 4 == 1)
    clean = clean[:usable]
    return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))


_DECODERS = {b"base64": _base64, b"quoted-printable": binascii.a2b_qp}


def transfer_encoding(part):
    """The lower-case Content-Transfer-Encoding of a RawPart (7bit when it names none)."""
    value = part.header_value("content-transfer-encoding")
    value = value.split(b"(", 1)[0].split(b";", 1)[0].strip().lower()
    return value or b"7bit"


def _is_composite(part):
    return part.isMultipart() or part.is_encapsulated()


def plain(part):
    """True when ``part``'s body is sent as stored (nothing to decode); UnknownCTE when a
    composite part claims an encoding RFC 2045 6.4 forbids it."""
    encoding = transfer_encoding(part)
    if encoding in IDENTITY:
        return True
    if _is_composite(part):
        raise UnknownCTE("A %s part cannot be %s-encoded" % (_name(part.mime_type()), _name(encoding)))
    return False


def _encoding_to_undo(part):
    """None when ``part``'s body is sent as stored, else its encoding (one we decode);
    UnknownCTE for one we cannot."""
    if plain(part):
        return None
    encoding = transfer_encoding(part)
    if encoding not in _DECODERS:
        raise UnknownCTE("Unknown Content-Transfer-Encoding %s" % (_name(encoding),))
    return encoding


def decoded_section(message, path):
    """The octets of ``BINARY[path]`` of a StoredMessage (``path``: 0-based part numbers);
    b"" for a section the message does not have."""
    if not path:
        return message.raw
    try:
        part = message.section(path)
    except (KeyError, IndexError):
        return b""
    encoding = _encoding_to_undo(part)
    if encoding is None:
        return part.body
    data = _DECODERS[encoding](part.body)
    if part.mime_type().startswith(b"text/"):
        data = _LINE_END.sub(b"\r\n", data)
    return data


# -- the same decoding a piece at a time (a large message's part, read from its file) ---


_NOT_BASE64_OCTETS = bytes(b for b in range(256) if _NOT_BASE64.fullmatch(bytes([b])))


class _Base64Pieces:
    """``_base64`` of the concatenated pieces: whole 4-character quanta decoded as they
    come, the rest kept for the next piece; the end as ``_base64`` ends."""

    def __init__(self):
        self.carry = b""

    def feed(self, piece):
        clean = self.carry + piece.translate(None, _NOT_BASE64_OCTETS)  # _NOT_BASE64's, 8 times faster
        usable = len(clean) - len(clean) % 4
        self.carry = clean[usable:]
        return binascii.a2b_base64(clean[:usable])

    def flush(self):
        clean, self.carry = self.carry, b""
        return _base64(clean)


_QP_SWALLOW = re.compile(rb"(?<!=)(?:==)*=\r")


class _QuotedPrintablePieces:
    """``binascii.a2b_qp`` of the concatenated pieces, decoded up to the last line end
    seen (a2b_qp reads no escape across an LF). A line longer than QP_LINE is cut
    where no escape is open: not within two octets after a ``=``; and when an
    ``=`` CR opens one (a2b_qp then drops everything up to the next LF), the rest is
    dropped up to that LF."""

    QP_LINE = 64 * 1024

    def __init__(self):
        self.pending = b""
        self.skipping = False

    def feed(self, piece):
        data = self.pending + piece
        if self.skipping:
            lf = data.find(b"\n")
            if lf < 0:
                self.pending = b""
                return b""
            data, self.skipping = data[lf + 1 :], False
        cut = data.rfind(b"\n") + 1
        out = b""
        if not cut and len(data) > self.QP_LINE:
            swallow = _QP_SWALLOW.search(data)
            if swallow is not None:
                self.pending, self.skipping = b"", True
                return binascii.a2b_qp(data[: swallow.end() - 2])
            cut = len(data)
            while cut > 2 and b"=" in data[cut - 2 : cut]:
                cut -= 1
            if cut <= 2:
                cut = 0
        if cut:
            out = binascii.a2b_qp(data[:cut])
        self.pending = data[cut:]
        return out

    def flush(self):
        data, self.pending = self.pending, b""
        return b"" if self.skipping else binascii.a2b_qp(data)


class _CRLFPieces:
    """``_LINE_END.sub(b"\\r\\n", ...)`` over another decoder's pieces (a CR that ends
    one piece waits for the next: an LF may follow)."""

    def __init__(self, inner):
        self.inner = inner
        self.cr = b""

    def _fix(self, data, last):
        data, self.cr = self.cr + data, b""
        if not last and data.endswith(b"\r"):
            data, self.cr = data[:-1], b"\r"
        if data.count(b"\n") == data.count(b"\r\n"):
            return data  # CRLF already (decoded mail text mostly is): nothing to copy
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # the regex's answer, 10 times faster

    def feed(self, piece):
        return self._fix(self.inner.feed(piece), False)

    def flush(self):
        return self._fix(self.inner.flush(), True)


_PIECE_DECODERS = {b"base64": _Base64Pieces, b"quoted-printable": _QuotedPrintablePieces}


def piece_decoder(part):
    """What decodes ``part``'s body a piece at a time (``feed(octets)`` and, after the
    last, ``flush()``, each returning decoded octets), as decoded_section does at once;
    None when the body is sent as stored; UnknownCTE as decoded_section raises it."""
    encoding = _encoding_to_undo(part)
    if encoding is None:
        return None
    decoder = _PIECE_DECODERS[encoding]()
    if part.mime_type().startswith(b"text/"):
        decoder = _CRLFPieces(decoder)
    return decoder


def _name(value):
    return value[:40].decode("ascii", "replace")
