"""A message that arrives in pieces, kept in a temporary file until it is stored.

Why: Twisted hands SMTP DATA over line by line; keeping each line as its own
bytes object cost about 14 times the message (40 MiB of short lines: +575 MB
RSS, and three such clients took 2 GB). Here the first L{IN_MEMORY} octets stay
in a memory buffer (most mail is small and never touches the disk), the rest
goes to an unnamed temporary file in the spool folder, which disappears when it
is closed or the process dies. Readers get it back line by line with
``readline(limit)``, which is what the mail store copies from.
"""

import io
import os
import tempfile

# Octets a spool keeps in memory before it moves to its temporary file.
IN_MEMORY = 64 * 1024


class Spool:
    """One message being received: ``write`` pieces, then ``reader()`` it as often as needed.

    @param directory: where the temporary file goes (None: the system's temp folder).
        Put it on the same disk as the mail, not on a tmpfs: there it would be RAM again.
    """

    def __init__(self, directory=None, in_memory=IN_MEMORY):
        self._file = tempfile.SpooledTemporaryFile(max_size=in_memory, mode="w+b", dir=directory)
        self._in_memory = in_memory
        self.size = 0

    def write(self, data):
        self._file.write(data)
        self.size += len(data)

    def reader(self, prefix=b"", skip=()):
        """A readable of ``prefix`` then everything written, from the start.

        ``skip``: (start, end) offsets of written octets to leave out (whole
        lines: ``readline`` stops at each start). One reader at a time: each
        call rewinds the one file underneath.
        """
        self._file.seek(0)
        return _PrefixedReader(prefix, self._file, skip)

    def snapshot(self, prefix=b"", skip=()):
        """A L{Snapshot} of ``prefix`` and everything written (less the ``skip`` ranges,
        as L{reader}), for another thread to read.

        No copy of a spool on disk: the snapshot reads the same file through a
        file descriptor of its own, by offset, so it does not move this
        spool's readers and outlives ``close()``. No ``write`` after it.
        """
        if self.size <= self._in_memory:  # still in memory (the file rolls over past that)
            self._file.seek(0)
            return Snapshot(prefix, data=self._file.read(), skip=skip)
        self._file.flush()
        return Snapshot(prefix, fd=os.dup(self._file.fileno()), size=self.size, skip=skip)

    def range_snapshot(self, start, size):
        """A L{Snapshot} of the ``size`` octets written from offset ``start`` (one message of
        an IMAP APPEND), for another thread to read; it outlives ``close()``."""
        if self.size <= self._in_memory:
            self._file.seek(start)
            return Snapshot(b"", data=self._file.read(size))
        self._file.flush()
        return Snapshot(b"", fd=os.dup(self._file.fileno()), size=size, start=start)

    def range_reader(self, start, size):
        """A readable of the ``size`` octets written from offset ``start``: one of the
        messages of an IMAP APPEND, which stages them all in one spool (one file, not
        one per message). One reader at a time, and no ``write`` after it."""
        self._file.seek(start)
        return _RangeReader(self._file, size)

    def close(self):
        self._file.close()

    @property
    def closed(self):
        return self._file.closed


class Snapshot:
    """``prefix`` and a spool's content; ``reader()`` as often as needed, from any thread; ``close()``."""

    def __init__(self, prefix, data=None, fd=None, size=0, start=0, skip=()):
        self._prefix = bytes(prefix)
        self._data = data
        self._fd = fd
        self._start = start
        self._skip = tuple(skip)
        body = len(data) if data is not None else size
        self.size = len(self._prefix) + body - sum(end - begin for begin, end in self._skip)
        self._spooled = size

    def reader(self):
        """A readable of the prefix and the content (less the ``skip`` ranges), from the start."""
        if self._data is not None:
            return _PrefixedReader(self._prefix, io.BytesIO(self._data), self._skip)
        raw = _PositionalFile(self._fd, self._spooled, self._start)
        return _PrefixedReader(self._prefix, io.BufferedReader(raw, 65536), self._skip)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def closed_after(result, snapshot):
    """``addBoth`` callback: close ``snapshot`` once what read it is done; pass ``result`` on."""
    snapshot.close()
    return result


class _PositionalFile(io.RawIOBase):
    """``size`` octets of a file descriptor from offset ``start``, read with ``pread`` (no
    shared file offset); seekable within them (a reader jumps over skipped ranges)."""

    def __init__(self, fd, size, start=0):
        self._fd = fd
        self._size = size
        self._start = start
        self._position = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += self._size
        self._position = max(0, offset)
        return self._position

    def readinto(self, buffer):
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._start + self._position)
        buffer[:len(data)] = data
        self._position += len(data)
        return len(data)


class _PrefixedReader:
    """``prefix`` followed by a binary file (less its ``skip`` ranges), read with ``read`` and ``readline``."""

    def __init__(self, prefix, file, skip=()):
        self._prefix = bytes(prefix)
        self._file = file
        self._skip = sorted(skip)
        self._position = 0  # in the file

    def _room(self, size):
        """At most ``size`` (-1: any) octets of the file may come next; jumps over a skipped range."""
        while self._skip and self._position >= self._skip[0][0]:
            _, end = self._skip.pop(0)
            if self._position < end:
                self._file.seek(end)
                self._position = end
        if not self._skip:
            return size
        room = self._skip[0][0] - self._position
        return room if size is None or size < 0 else min(size, room)

    def readline(self, limit=-1):
        if self._prefix:
            end = self._prefix.find(b"\n") + 1 or len(self._prefix)
            if limit is not None and limit >= 0:
                end = min(end, limit)
            piece, self._prefix = self._prefix[:end], self._prefix[end:]
            return piece
        line = self._file.readline(self._room(limit))
        self._position += len(line)
        return line

    def read(self, size=-1):
        if self._prefix and size is not None and size >= 0:
            piece, self._prefix = self._prefix[:size], self._prefix[size:]
            return piece
        pieces, self._prefix = [self._prefix], b""
        wanted = -1 if size is None or size < 0 else size
        while wanted != 0:
            piece = self._file.read(self._room(wanted))
            if not piece:
                break
            self._position += len(piece)
            pieces.append(piece)
            if wanted > 0:
                wanted -= len(piece)
        return b"".join(pieces)


class _RangeReader:
    """At most ``size`` octets of a binary file from where it stands, read with
    ``read`` and ``readline``."""

    def __init__(self, file, size):
        self._file = file
        self._left = size

    def _allowed(self, size):
        if size is None or size < 0 or size > self._left:
            return self._left
        return size

    def readline(self, limit=-1):
        piece = self._file.readline(self._allowed(limit))
        self._left -= len(piece)
        return piece

    def read(self, size=-1):
        piece = self._file.read(self._allowed(size))
        self._left -= len(piece)
        return piece
