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


def decoded_section(message, path):
    """The octets of ``BINARY[path]`` of a StoredMessage (``path``: 0-based part numbers);
    b"" for a section the message does not have."""
    if not path:
        return message.raw
    try:
        part = message.section(path)
    except (KeyError, IndexError):
        return b""
    if plain(part):
        return part.body
    encoding = transfer_encoding(part)
    decode = _DECODERS.get(encoding)
    if decode is None:
        raise UnknownCTE("Unknown Content-Transfer-Encoding %s" % (_name(encoding),))
    data = decode(part.body)
    if part.mime_type().startswith(b"text/"):
        data = _LINE_END.sub(b"\r\n", data)
    return data


def _name(value):
    return value[:40].decode("ascii", "replace")
