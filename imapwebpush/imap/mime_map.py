"""The MIME structure of a stored message, read from its file in bounded pieces.

FETCH BODY[1.2], BODYSTRUCTURE, BINARY[2] and SEARCH BODY of a large message used to
read it whole and split it in memory (imap/message.py's RawPart). ``build`` reads the
file once, PIECE octets at a time, and finds the same tree: every part's offsets
(where its header starts, where its body starts and ends) and its body's line count,
so a section is a byte range of the file and BODYSTRUCTURE needs only the part
headers (read back from the file, at most MAX_HEADER_BLOCK octets each).

The rules are RawPart's, so both give the same answers: a header block ends at the
first blank line (``\\r?\\n\\r?\\n``; a part that begins with CRLF has an empty one);
a multipart's children lie between its ``CRLF--boundary`` lines, searched in its
own body only (the body of a multipart starts with a virtual CRLF, so a first line
``--boundary`` counts); the rest of a delimiter line up to its CRLF is padding, a
delimiter line without a CRLF before the next one holds no part, and ``--`` after
the boundary ends the children; a message/rfc822 part holds one message, its body.
An inner part ends where the part around it ends, cut short by the outer
delimiter even inside its own header or delimiter line.

Bounds (a message is hostile input): parts deeper than MAX_MIME_DEPTH are kept
opaque, as BODYSTRUCTURE describes them; after ``max_parts`` parts (or twice as many
delimiter lines) the multipart being split takes no more children (its remaining
octets stay in its body). The
window held while reading is PIECE octets plus what the searches still look at (a
boundary line, the start of a header block: at most a few KiB for real mail; the
longest boundary is that of a header block cut at MAX_HEADER_BLOCK).
"""

import collections
import os
import re

from imapwebpush.constants import DEFAULT_MAX_MIME_PARTS
from imapwebpush.imap.message import _BOUNDARY, MAX_MIME_DEPTH, RawPart
from imapwebpush.imap.thread import run  # a generator run to its end
from imapwebpush.store.message import MAX_HEADER_BLOCK

PIECE = 64 * 1024
DEFAULT_MAX_PARTS = DEFAULT_MAX_MIME_PARTS  # --max-mime-parts
# Maps kept, by message file (files never change once stored).
CACHE_SIZE = 64

_HEADER_END = re.compile(rb"\r?\n\r?\n")

# frame states
_HEADER = 0  # looking for the end of the part's header block
_BODY = 1  # a multipart looking for its next delimiter (a child may be open above)
_DELIM = 2  # a multipart after a delimiter, looking for the CRLF that ends its line
_SHUT = 3  # nothing more to find (a leaf's body, a closed multipart, an opaque part)


class Node:
    """One MIME part of a message file: octets ``start``..``end`` of the file, its
    header block ``start``..``body``; ``lines`` counts the LFs of its body;
    ``children`` are the parts of a multipart, or the message a message/rfc822 holds;
    ``opaque`` when it lies deeper than MAX_MIME_DEPTH (not looked into)."""

    __slots__ = ("start", "body", "end", "lines", "default_type", "children", "opaque", "decoded")

    def __init__(self, start, default_type, opaque=False):
        self.start = start
        self.body = None
        self.end = None
        self.lines = 0
        self.default_type = default_type
        self.children = []
        self.opaque = opaque
        self.decoded = None  # BINARY: (decoded size, holds NUL) once computed


class _Frame:
    __slots__ = ("node", "depth", "state", "needle", "dpos", "found", "hpos", "virtual", "nl_body", "default")

    def __init__(self, node, depth, state):
        self.node = node
        self.depth = depth
        self.state = state
        self.needle = None
        self.dpos = 0  # where the next delimiter search starts
        self.found = None  # a delimiter found at or after dpos (final: it lies in the window)
        self.hpos = node.start  # where the header end (or delimiter line end) search starts
        self.virtual = False  # the body's virtual CRLF is not in the file (bare-LF header end)
        self.nl_body = 0
        self.default = b"text/plain"


class _Window:
    """The octets of the file from ``base`` that are still looked at."""

    def __init__(self, f, piece, start, stop):
        self.f = f
        self.piece = piece
        self.base = start
        self.stop = stop  # None: the end of the file
        self.buf = b""
        self.eof = False
        self.nl_pos = start  # LFs before nl_pos: nl_count
        self.nl_count = 0

    @property
    def end(self):
        return self.base + len(self.buf)

    def more(self, keep_from):
        keep_from = min(keep_from, self.end)
        if keep_from > self.nl_pos:
            self.newlines(keep_from)  # later positions are all past keep_from
        drop = keep_from - self.base
        if drop > 0:
            self.buf = self.buf[drop:]
            self.base = keep_from
        want = self.piece
        if self.stop is not None:
            want = min(want, self.stop - self.end)
        chunk = self.f.read(want) if want > 0 else b""
        if chunk:
            self.buf += chunk
        else:
            self.eof = True

    def newlines(self, pos):
        """LFs of the file before ``pos`` (within the window)."""
        b = self.base
        if pos >= self.nl_pos:
            self.nl_count += self.buf.count(b"\n", self.nl_pos - b, pos - b)
        else:
            self.nl_count -= self.buf.count(b"\n", pos - b, self.nl_pos - b)
        self.nl_pos = pos
        return self.nl_count


def _part_of_header(header, default):
    """(mime type, boundary or None, encapsulated?) of a header block, by RawPart's rules."""
    part = RawPart(header, default)
    boundary = None
    if part.isMultipart():
        m = _BOUNDARY.search(part.content_type())
        if m:
            boundary = m.group(1) or m.group(2)
    return part.mime_type(), boundary, part.is_encapsulated()


def read_header(f, node):
    """The header block of ``node`` from the open file ``f``: at most MAX_HEADER_BLOCK
    octets (cut after a line end, like the store's header reader)."""
    length = node.body - node.start
    if length <= MAX_HEADER_BLOCK:
        return os.pread(f.fileno(), length, node.start)
    data = os.pread(f.fileno(), MAX_HEADER_BLOCK, node.start)
    cut = data.rfind(b"\r\n")
    return data[: cut + 2] if cut >= 0 else data


class _Builder:
    def __init__(self, f, max_parts, piece, start, stop):
        self.f = f
        self.w = _Window(f, piece, start, stop)
        self.max_parts = max_parts
        self.parts = 1
        # delimiter lines acted on: those without a CRLF make no part, yet each costs a
        # turn of the loop ("\r\n--b" 7 million times in 50 MB would be seconds)
        self.delimiters_left = 2 * max_parts + 16
        self.root = Node(start, b"text/plain")
        self.stack = [_Frame(self.root, 0, _HEADER)]

    def run(self):
        """A generator that yields after each piece it reads and returns the root Node."""
        w = self.w
        while self.stack:
            event = self._next_event()
            if event is None:
                if w.eof:
                    self._close_above(-1, w.end)
                    break
                w.more(self._keep_from())
                yield
                continue
            index, kind, pos, end = event
            if kind == "delim":
                self._delimiter(index, pos)
            elif kind == "crlf":
                self._delimiter_line_end(index, pos)
            else:
                self._header_end(end)
        return self.root

    def _keep_from(self):
        keep = self.w.end
        for fr in self.stack:
            if fr.state == _SHUT:
                continue
            if fr.state != _BODY:
                keep = min(keep, fr.hpos)
            if fr.needle is not None:
                keep = min(keep, fr.dpos)
            if fr.found is not None:
                keep = min(keep, fr.found)
        return max(keep, self.w.base)

    # -- finding the next event ---------------------------------------------------

    def _find_delimiter(self, fr):
        """The next delimiter of ``fr`` in the window, or None (dpos moves past the window)."""
        if fr.found is not None:
            return fr.found
        w = self.w
        needle = fr.needle
        if fr.virtual:
            head = needle[2:]
            got = w.buf[fr.dpos - w.base : fr.dpos - w.base + len(head)]
            if len(got) < len(head) and not w.eof:
                if head.startswith(got):
                    return None  # not decided yet
            fr.virtual = False
            if got == head:
                fr.found = fr.dpos - 2
                return fr.found
        at = w.buf.find(needle, fr.dpos - w.base)
        if at < 0:
            fr.dpos = max(fr.dpos, w.end - len(needle) + 1)
            return None
        fr.found = w.base + at
        return fr.found

    def _header_candidate(self, fr):
        """(start, end) of the top part's header end in the window, or None."""
        w = self.w
        node = fr.node
        if fr.hpos == node.start and w.buf[node.start - w.base : node.start - w.base + 2] == b"\r\n":
            return node.start, node.start + 2
        m = _HEADER_END.search(w.buf, fr.hpos - w.base)
        if m is None:
            fr.hpos = max(fr.hpos, w.end - 3)
            return None
        return w.base + m.start(), w.base + m.end()

    def _crlf_candidate(self, fr):
        w = self.w
        at = w.buf.find(b"\r\n", fr.hpos - w.base)
        if at < 0:
            fr.hpos = max(fr.hpos, w.end - 1)
            return None
        return w.base + at, w.base + at + 2

    def _next_event(self):
        """(frame index, kind, position, end) of the next thing found, or None: read more."""
        w = self.w
        inf = float("inf")
        limit = inf  # where the innermost part seen so far ends (a delimiter around it)
        horizon = inf if w.eof else w.end  # no undecided delimiter starts before this
        best = None
        top = len(self.stack) - 1
        for i, fr in enumerate(self.stack):
            if fr.state in (_BODY, _DELIM):
                o = self._find_delimiter(fr)
                if o is None:
                    if fr.virtual:
                        return None  # a first "--boundary" line not yet decided
                    if not w.eof:
                        horizon = min(horizon, w.end - len(fr.needle) + 1)
                else:
                    end = o + len(fr.needle)
                    if end <= limit:
                        if end > horizon or (end + 2 > w.end and not w.eof):
                            return None
                        best = (i, "delim", o, end)
                        limit = o
                        horizon = min(horizon, o)
            if i != top:
                continue
            if fr.state == _HEADER:
                cand = self._header_candidate(fr)
                if cand is not None:
                    start, end = cand
                    if end <= limit:
                        if end > horizon or (end + 2 > w.end and not w.eof):
                            return None
                        best = (i, "header", start, end)
            elif fr.state == _DELIM:
                cand = self._crlf_candidate(fr)
                if cand is not None:
                    start, end = cand
                    if end <= limit:
                        if end > horizon:
                            return None
                        best = (i, "crlf", start, end)
        return best

    # -- acting on it ---------------------------------------------------------------

    def _close(self, fr, pos):
        node = fr.node
        node.end = pos
        if node.body is None:
            node.body = pos  # no blank line: all header, no body
            fr.nl_body = self.w.newlines(pos)
            _mime, _boundary, encapsulated = _part_of_header(read_header(self.f, node), node.default_type)
            if encapsulated:  # (a digest's empty part): it holds an empty message
                self.parts += 1
                self._open(fr, pos, b"text/plain", opaque=self.parts > self.max_parts)
                self._close(self.stack.pop(), pos)
        node.lines = self.w.newlines(pos) - fr.nl_body

    def _close_above(self, index, pos):
        """End the parts of the frames above ``index`` at ``pos``."""
        while len(self.stack) > index + 1:
            self._close(self.stack.pop(), pos)

    def _delimiter(self, index, pos):
        self._close_above(index, pos)
        fr = self.stack[index]
        w = self.w
        after = pos + len(fr.needle)
        fr.found = None
        fr.dpos = after
        self.delimiters_left -= 1
        if self.delimiters_left < 0:
            fr.state = _SHUT  # as after max_parts: the rest stays in this multipart's body
        elif w.buf[after - w.base : after - w.base + 2] == b"--":
            fr.state = _SHUT  # the close delimiter: the rest is the epilogue
        else:
            fr.state = _DELIM
            fr.hpos = after

    def _delimiter_line_end(self, index, pos):
        fr = self.stack[index]
        start = pos + 2
        fr.state = _BODY
        fr.hpos = start
        if self.parts >= self.max_parts:
            fr.state = _SHUT  # no more parts: the rest stays in this multipart's body
            return
        self.parts += 1
        self._open(fr, start, fr.default)

    def _open(self, parent, start, default, opaque=False):
        depth = parent.depth + 1
        node = Node(start, default, opaque=opaque or depth >= MAX_MIME_DEPTH)
        parent.node.children.append(node)
        child = _Frame(node, depth, _SHUT if node.opaque else _HEADER)
        if node.opaque:
            node.body = start
            child.nl_body = self.w.newlines(start)
        self.stack.append(child)

    def _header_end(self, end):
        fr = self.stack[-1]
        node = fr.node
        node.body = end
        fr.nl_body = self.w.newlines(end)
        mime, boundary, encapsulated = _part_of_header(read_header(self.f, node), node.default_type)
        if boundary is not None:
            fr.needle = b"\r\n--" + boundary
            fr.state = _BODY
            fr.default = b"message/rfc822" if mime == b"multipart/digest" else b"text/plain"
            if self.w.buf[end - 2 - self.w.base : end - self.w.base] == b"\r\n":
                fr.dpos = end - 2
            else:
                fr.dpos = end
                fr.virtual = True
            fr.hpos = end
        elif encapsulated:
            fr.state = _SHUT
            # past max_parts the held message is one opaque part (it is always there)
            self.parts += 1
            self._open(fr, end, b"text/plain", opaque=self.parts > self.max_parts)
        else:
            fr.state = _SHUT


def build(f, max_parts=DEFAULT_MAX_PARTS, piece=PIECE, start=0, stop=None):
    """The root L{Node} of the message in the open binary file ``f`` (octets ``start`` to
    ``stop``, by default the whole file)."""
    f.seek(start)
    return run(_Builder(f, max_parts, piece, start, stop).run())


class MappedPart(RawPart):
    """A RawPart over a L{Node} of a message file (``opener()`` opens it): the header
    is read from the file when asked for, the body stays there (``body_range``);
    BODYSTRUCTURE and section() work on it as on a RawPart."""

    def __init__(self, node, opener, stored=None):
        super().__init__(None, node.default_type)
        self.node = node
        self.opener = opener
        self.stored = stored  # the store's message, when it is one (FETCH streams from it)

    @property
    def raw(self):
        raise TypeError("a mapped part is read from its file, not held")

    @raw.setter
    def raw(self, value):
        pass

    @property
    def header(self):
        if self._split is None:
            with self.opener() as f:
                self._split = (read_header(f, self.node), None)
        return self._split[0]

    @property
    def body(self):
        raise TypeError("a mapped part is read from its file, not held")

    def getSize(self):
        return self.node.end - self.node.start

    def body_size(self):
        return self.node.end - self.node.body

    def body_lines(self):
        return self.node.lines

    def is_opaque(self):
        return self.node.opaque

    def subparts(self):
        if self._subparts is None:
            self._subparts = [MappedPart(child, self.opener, self.stored) for child in self.node.children]
        return self._subparts

    def inner(self):
        if self.is_encapsulated() and self.node.children:
            return self.subparts()[0]
        # BODYSTRUCTURE (the email package) saw message/rfc822 where RawPart's rules did
        # not: the body read as a message of its own, as RawPart.inner does
        with self.opener() as f:
            node = build(f, max_parts=1, start=self.node.body, stop=self.node.end)
        return MappedPart(node, self.opener, self.stored)

    def header_range(self):
        return self.node.start, self.node.body

    def body_range(self):
        return self.node.body, self.node.end

    def raw_range(self):
        return self.node.start, self.node.end

    def getBodyFile(self):
        raise TypeError("a mapped part is read from its file, not held")


_cache = collections.OrderedDict()


def _key(stored):
    path = stored.path()
    return os.path.dirname(os.path.dirname(path)), stored.base, stored.size


def message_map(stored, f, max_parts=DEFAULT_MAX_PARTS):
    """The root L{Node} of ``stored`` (its file open as ``f``), built once and kept for
    the CACHE_SIZE messages used last."""
    return run(_map_steps(stored, f, max_parts))


def is_mapped(stored, max_parts=DEFAULT_MAX_PARTS):
    """True when the map of ``stored`` is kept (message_map costs no read)."""
    try:
        return (_key(stored), max_parts) in _cache
    except AttributeError:
        return False


def map_steps(stored, max_parts=DEFAULT_MAX_PARTS):
    """message_map as a generator that yields after each piece of the file it reads
    (FETCH builds a large message's map a piece per step of its streamer)."""
    with stored.open() as f:
        return (yield from _map_steps(stored, f, max_parts))


def _map_steps(stored, f, max_parts):
    try:
        key = _key(stored), max_parts
    except AttributeError:  # a message that is no Maildir file (tests' memory store)
        f.seek(0)
        return (yield from _Builder(f, max_parts, PIECE, 0, None).run())
    root = _cache.get(key)
    if root is not None:
        _cache.move_to_end(key)
        return root
    f.seek(0)
    root = yield from _Builder(f, max_parts, PIECE, 0, None).run()
    _cache[key] = root
    if len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return root


def mapped_message(stored, max_parts=DEFAULT_MAX_PARTS):
    """The L{MappedPart} of the whole of ``stored`` (a store message: ``open()``...)."""
    with stored.open() as f:
        root = message_map(stored, f, max_parts)
    return MappedPart(root, stored.open, stored)
