"""SEARCH BODY and TEXT of a large message: its file read, decoded and case-folded a
piece at a time, the needle looked for across piece borders.

What SearchItem.text does at once (the message, or its body after RawPart's header
split, decoded as UTF-8 with replacement and case-folded) is done here PIECE octets
at a time: the incremental decoder keeps an unfinished UTF-8 sequence for the next
piece, case folding maps each character on its own, and the last ``len(needle) - 1``
characters of a piece are looked at again with the next, so the answer is the same
and memory stays a piece and a needle.
"""

import codecs
import re

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
    keep = len(needle) - 1
    tail = ""
    with stored.open() as f:
        pieces = _whole_pieces(f, piece) if whole else _body_pieces(f, piece)
        for data in pieces:
            text = tail + decoder.decode(data).casefold()
            if needle in text:
                return True
            tail = text[-keep:] if keep else ""
            yield
        return needle in tail + decoder.decode(b"", final=True).casefold()


def file_contains(stored, needle, whole, piece=PIECE):
    """L{contains_steps}' answer, all at once."""
    return run(contains_steps(stored, needle, whole, piece))
