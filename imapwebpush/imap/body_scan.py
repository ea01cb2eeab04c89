"""SEARCH BODY and TEXT of a large message: its file read, decoded and case-folded a
piece at a time, the needle looked for across piece borders.

What SearchItem.text does at once (the message, or its body after RawPart's header
split, decoded as UTF-8 with replacement and case-folded) is done here PIECE octets
at a time: the incremental decoder keeps an unfinished UTF-8 sequence for the next
piece, case folding maps each character on its own, and the last ``len(needle) - 1``
characters of a piece are looked at again with the next, so the answer is the same
and memory stays a piece and a needle.

``decoded_steps`` does the same for the decoded text parts (imap/text_parts.py): the
message's MIME map (imap/mime_map.py) gives each part's body range, read a piece at a
time through its Content-Transfer-Encoding and charset decoders.
"""

import codecs
import itertools
import re

from imapwebpush.imap import mime_map
from imapwebpush.imap.text_parts import TextDecoder, decoded_parts
from imapwebpush.imap.thread import run  # a generator run to its end

PIECE = 64 * 1024

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _body_pieces(f, piece):
    """The octets after the header block (split_header's split), a piece at a time."""
    data = f.read(max(piece, 2))
    if data.startswith(b"\r\n"):
        yield data[2:]
    else:
        while True:
            m = _HEADER_END.search(data)
            more = b"" if m is not None and m.end() + 2 <= len(data) else f.read(piece)
            if m is not None and (m.end() + 2 <= len(data) or not more):
                yield data[m.end() :]
                yield more
                break
            if not more:
                return  # all header, no body
            data = data[-3:] + more if m is None else data + more
    while True:
        data = f.read(piece)
        if not data:
            return
        yield data


def _whole_pieces(f, piece):
    while True:
        data = f.read(piece)
        if not data:
            return
        yield data


def contains_steps(stored, needle, whole, piece=PIECE):
    """A generator that yields after each piece it reads and returns True when the
    case-folded ``needle`` (str) is in the message ``stored`` (``whole``) or its body:
    the same answer as ``needle in SearchItem.text(whole)``."""
    if not needle:
        return True
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    with stored.open() as f:
        pieces = _whole_pieces(f, piece) if whole else _body_pieces(f, piece)
        texts = (decoder.decode(data).casefold() for data in pieces)
        last = (decoder.decode(b"", final=True).casefold() for _ in (0,))
        return (yield from _find(needle, itertools.chain(texts, last)))


def _find(needle, pieces):
    """A generator yielding after each of ``pieces`` (case-folded str, read in turn) that
    returns True once ``needle`` is in their concatenation (looked for across borders)."""
    keep = len(needle) - 1
    tail = ""
    for text in pieces:
        text = tail + text
        if needle in text:
            return True
        tail = text[-keep:] if keep else ""
        yield
    return False


def _part_pieces(f, part, decoder, codec, piece):
    """The case-folded decoded text of a mapped part's body, a piece at a time."""
    text = TextDecoder(decoder, codec)
    start, end = part.body_range()
    f.seek(start)
    while start < end:
        data = f.read(min(piece, end - start))
        if not data:
            break
        start += len(data)
        yield text.feed(data)
    yield text.flush()


def decoded_steps(stored, needle, piece=PIECE, max_parts=mime_map.DEFAULT_MAX_PARTS):
    """A generator yielding after each piece it reads that returns True when ``needle``
    is in the decoded text of one of ``stored``'s text parts: the same answer as
    ``any(needle in t for t in text_parts.decoded_texts(RawPart(stored.read())))``."""
    root = yield from mime_map.map_steps(stored, max_parts)
    message = mime_map.MappedPart(root, stored.open, stored)
    parts = list(decoded_parts(message))
    if not parts:
        return False
    if not needle:
        return True
    with stored.open() as f:
        for part, decoder, codec in parts:
            if (yield from _find(needle, _part_pieces(f, part, decoder, codec, piece))):
                return True
    return False


def file_contains(stored, needle, whole, piece=PIECE):
    """L{contains_steps}' answer, all at once."""
    return run(contains_steps(stored, needle, whole, piece))
