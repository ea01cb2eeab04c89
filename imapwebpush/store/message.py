"""A stored message: one file in new/ or cur/ of a mailbox, read on demand.

Its UID, flags and modseq come from the mailbox's index (``index.py``), which
keeps them in step with the journal; its bytes stay on disk. Header blocks,
read for FETCH ENVELOPE and push payloads, are kept in a small cache per
mailbox so a busy mailbox does not reopen the same files.
"""

import os
from collections import OrderedDict

from zope.interface import implementer

from imapwebpush.interfaces import IStoredMessage
from imapwebpush.store import flags as flagsmod

# Header blocks kept in memory per mailbox (FETCH ENVELOPE, push payloads).
HEADER_CACHE_SIZE = 2048
# The longest header block read, cached and announced (Postfix keeps 100 KiB).
MAX_HEADER_BLOCK = 128 * 1024

# Flag sets shared by the messages that have the same flags (a mailbox has a few
# combinations): three sets per message made 60,000 of the 120,000 objects the garbage
# collector walks in a server holding a 20,000-message mailbox, and a full collection
# holds every session (48 ms, 32 ms shared). At most this many kept.
_SHARED_FLAG_SETS = 1024
_flag_sets = {}


def _shared(flags):
    """One frozenset object for equal sets of flags."""
    kept = _flag_sets.get(flags)
    if kept is not None:
        return kept
    if len(_flag_sets) < _SHARED_FLAG_SETS:
        _flag_sets[flags] = flags
    return flags


def to_crlf(data):
    """``data`` with every line ending as CRLF (bare LF becomes CRLF)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    data = bytes(data)
    # Mail from SMTP and most IMAP clients is CRLF already: counting (no
    # allocation) is cheaper than two copies that would change nothing.
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def crlf_pieces(source, size=65536):
    """What L{to_crlf} makes of ``source`` (a binary readable), read and given out in pieces.

    Each piece is at most ``size`` octets plus one (a CR added to a bare LF);
    every LF ends a piece, so whether it follows a CR is known at once.
    """
    carry = b""  # a CR that ended the previous piece: the LF may start the next
    while True:
        piece = source.readline(size)
        if not piece:
            if carry:
                yield carry
            return
        if carry:
            piece, carry = carry + piece, b""
        if piece.endswith(b"\n"):
            if not piece.endswith(b"\r\n"):
                piece = piece[:-1] + b"\r\n"
        elif piece.endswith(b"\r"):
            piece, carry = piece[:-1], b"\r"
        if piece:
            yield piece


def header_block(data):
    """The raw header block of a message: up to and including the blank line.

    At most L{MAX_HEADER_BLOCK} octets, cut after a line end: a message of
    headers only (up to the size limit) would otherwise be kept whole in the
    header cache and in every MessageAdded event.
    """
    if data.startswith(b"\r\n"):
        return b"\r\n"
    end = data.find(b"\r\n\r\n", 0, MAX_HEADER_BLOCK)
    if end >= 0:
        return data[: end + 4]
    if len(data) <= MAX_HEADER_BLOCK:
        return data
    cut = data.rfind(b"\r\n", 0, MAX_HEADER_BLOCK)
    return data[: cut + 2] if cut >= 0 else data[:MAX_HEADER_BLOCK]


class HeaderCache:
    """The header blocks of the messages of one mailbox read last, by UID (or any
    other value kept by UID: at most ``size`` of them, the least recently used go)."""

    def __init__(self, size=HEADER_CACHE_SIZE):
        self._blocks = OrderedDict()
        self._size = size

    def get(self, uid):
        """The cached block of ``uid`` (now the freshest), or None."""
        block = self._blocks.get(uid)
        if block is not None:
            self._blocks.move_to_end(uid)
        return block

    def put(self, uid, block):
        self._blocks[uid] = block
        if len(self._blocks) > self._size:
            self._blocks.popitem(last=False)

    def drop(self, uid):
        self._blocks.pop(uid, None)


@implementer(IStoredMessage)
class StoredMessage:
    """A message of a L{imapwebpush.store.maildir.Mailbox}; its attributes
    follow the mailbox's changes (the index calls L{set_file})."""

    __slots__ = (
        "uid",
        "flags",
        "modseq",
        "size",
        "internaldate",
        "saved",
        "system",
        "keywords",
        "extra",
        "filename",
        "base",
        "_mailbox",
    )

    def __init__(self, mailbox, uid, filename, modseq, size, internaldate, keywords, saved=None):
        self._mailbox = mailbox
        self.uid = uid
        self.modseq = modseq
        self.size = size
        self.internaldate = internaldate
        self.saved = saved  # seconds, or None (a journal line from before save dates, and no name to tell it)
        self.set_file(filename, keywords)

    def set_file(self, filename, keywords):
        """Take a new file name and keywords (memory only: the index's step)."""
        self.filename = filename  # 'new/<base>' or 'cur/<base>:2,<letters>'
        self.base, system, self.extra = flagsmod.parse_name(filename[4:])
        self.system = _shared(system)
        self.keywords = _shared(frozenset(keywords))
        self.flags = _shared(system | self.keywords)

    @property
    def recent(self):
        """True while the file is in new/ (not yet claimed by a session)."""
        return self.filename.startswith("new/")

    def path(self):
        return os.path.join(self._mailbox.path, self.filename)

    def open(self):
        """The message as a binary file object (the caller closes it), for partial reads.

        KeyError when the message is gone (expunged, or removed by another tool).
        """
        try:
            return open(self.path(), "rb")
        except FileNotFoundError:
            pass
        # Renamed by another tool since our last look? Rescan once.
        self._mailbox.refresh()
        try:
            current = self._mailbox.message(self.uid)
        except KeyError:
            current = None
        if current is not self:
            raise KeyError(self.uid)
        try:
            return open(self.path(), "rb")
        except FileNotFoundError:
            raise KeyError(self.uid)

    def read(self):
        with self.open() as f:
            return f.read()

    def headers(self):
        cache = self._mailbox.header_cache
        block = cache.get(self.uid)
        if block is not None:
            return block
        with self.open() as f:
            data = bytearray()
            while True:
                start = max(0, len(data) - 3)
                chunk = f.read(16384)
                data += chunk
                if (
                    not chunk
                    or data.find(b"\r\n\r\n", start) >= 0
                    or data.startswith(b"\r\n")
                    or len(data) > MAX_HEADER_BLOCK  # header_block cuts it at a line end
                ):
                    block = header_block(bytes(data))
                    break
        cache.put(self.uid, block)
        return block

    def __repr__(self):
        return "<StoredMessage uid=%d flags=%s modseq=%d>" % (
            self.uid,
            sorted(self.flags),
            self.modseq,
        )
