"""The RFC 8970 PREVIEW text of a new message, from its headers and the start of its body.

Why here and not in the store: most messages are never pushed with a
preview (no subscription, privacy not ``full``, no room in the body), so the
store only hands the first ``events.BODY_START_OCTETS`` of the body along and
this module does the MIME work, once, when a push has room for it.

What it gives: the start of the first ``text/plain`` part (the message itself
when it is not multipart), transfer encoding and charset decoded, runs of
white space made one space, at most ``max_chars`` characters (RFC 8970: at
most 256). A message with no plain text but an HTML part (many newsletters and
phone mailers) gets the text of that HTML: tags dropped, ``<head>``,
``<style>`` and ``<script>`` skipped, entities decoded. Characters are cut,
never octets, and an incomplete multi-octet sequence at the end of the
truncated body is left out rather than replaced, so the text is always valid
UTF-8 when encoded. None when there is no text to show (an attachment, an
encrypted message, HTML whose first octets are all style sheet).
"""

import base64
import binascii
import codecs
import quopri
import re
from email.parser import BytesHeaderParser
from html.parser import HTMLParser

__all__ = ["preview_text", "MAX_PREVIEW_CHARS", "DEFAULT_PREVIEW_CHARS"]

MAX_PREVIEW_CHARS = 256  # RFC 8970 section 3.1
DEFAULT_PREVIEW_CHARS = 200
_MAX_DEPTH = 5  # nested multiparts looked into

_SPACE = re.compile(r"\s+")


def preview_text(headers, body, max_chars=DEFAULT_PREVIEW_CHARS):
    """The preview (str) of a message with raw ``headers`` and body start ``body``; or None."""
    if max_chars <= 0 or not body:
        return None
    try:
        text = _text(headers, body, 0, "plain")
        if not text:
            text = _text(headers, body, 0, "html")
            text = _html_text(text) if text else None
    except (LookupError, ValueError, TypeError, binascii.Error):
        return None
    if text is None:
        return None
    text = _SPACE.sub(" ", text).strip()
    return text[:max_chars] or None


def _parse(headers):
    return BytesHeaderParser().parsebytes(headers, headersonly=True)


def _text(headers, body, depth, subtype):
    """The decoded start of the first ``text/<subtype>`` part that is not an attachment."""
    message = _parse(headers)
    ctype = message.get_content_type()
    if ctype == "text/" + subtype:
        disposition = (message.get("Content-Disposition") or "").split(";")[0].strip().lower()
        if disposition == "attachment":
            return None
        raw = _decode_transfer(message.get("Content-Transfer-Encoding", ""), body)
        return _decode_charset(raw, message.get_content_charset() or "us-ascii")
    if message.get_content_maintype() == "multipart" and depth < _MAX_DEPTH:
        boundary = message.get_boundary()
        if not boundary:
            return None
        for part in _parts(body, boundary.encode("utf-8", "replace")):
            split = part.find(b"\r\n\r\n")
            if split < 0:
                continue
            text = _text(part[:split + 4], part[split + 4:], depth + 1, subtype)
            if text:
                return text
    return None


def _parts(body, boundary):
    """The parts between ``--boundary`` lines; the last one may be cut short."""
    marker = b"--" + boundary
    pieces = body.split(marker)
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            return  # the closing boundary
        yield piece.split(b"\r\n", 1)[1] if b"\r\n" in piece else b""


def _decode_transfer(encoding, raw):
    encoding = encoding.strip().lower()
    if encoding == "base64":
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
        data = data[: len(data) - len(data) % 4]  # cut to whole quanta: the body may be cut
        return base64.b64decode(data)
    if encoding == "quoted-printable":
        # a soft break or escape cut at the end of the truncated body is dropped
        raw = re.sub(rb"=[0-9A-Fa-f]?$", b"", raw)
        return quopri.decodestring(raw)
    return raw


def _decode_charset(raw, charset):
    try:
        decoder = codecs.getincrementaldecoder(charset)(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # final=False: an incomplete sequence at the end (the body was cut) is held back
    return decoder.decode(raw, final=False)


class _HTMLText(HTMLParser):
    """The character data of an HTML document, outside head, style and script."""

    _SKIPPED = frozenset(["head", "style", "script", "title", "template"])

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.pieces = []
        self._skipping = []

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self._skipping = []  # a <head> (or <style>) never closed ends where the body starts
        if tag in self._SKIPPED:
            self._skipping.append(tag)
        self.pieces.append(" ")  # <br>, <p>, <td>: a word ends there

    def handle_endtag(self, tag):
        if self._skipping and tag == self._skipping[-1]:
            self._skipping.pop()
        self.pieces.append(" ")

    def handle_data(self, data):
        if not self._skipping:
            self.pieces.append(data)


def _html_text(html):
    parser = _HTMLText()
    parser.feed(html)  # no close(): the body may be cut inside a tag; what was complete counts
    return "".join(parser.pieces)
