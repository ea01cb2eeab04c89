"""Durable file writes shared by every room: fsync a folder, write a file, replace one atomically.

Every piece of persistent state that is a plain file (the users file, VAPID
keys, the topic key, Maildir index files) is written through here, so a crash
at any line leaves either the old or the new content, never a torn file.
"""

import os


def fsync_dir(path):
    """Make the entries of folder ``path`` (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path, data, mtime=None, mode=0o600):
    """Write ``data`` to a new file (it must not exist) and fsync it; no folder fsync."""
    write_pieces(path, (data,), mtime=mtime, mode=mode)


def write_pieces(path, pieces, mtime=None, mode=0o600):
    """L{write_file} from an iterable of bytes (a message too large to hold); returns its size.

    If ``pieces`` raises, the exception goes on and the partial file stays: the
    caller removes it, as it would after a failed L{write_file}.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    size = 0
    try:
        os.fchmod(fd, mode)  # whatever the umask
        for data in pieces:
            view = memoryview(data)
            size += len(view)
            while view:
                view = view[os.write(fd, view):]
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def _temporary(path):
    return "%s.tmp-%d-%s" % (path, os.getpid(), os.urandom(4).hex())


def atomic_write(path, data, mode=0o600):
    """Replace ``path`` with ``data``: tmp file, fsync, rename, fsync the folder."""
    tmp = _temporary(path)
    try:
        write_file(tmp, data, mode=mode)
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(os.path.dirname(path) or ".")


def create_exclusive(path, data, mode=0o600):
    """Create ``path`` holding ``data`` durably, unless it exists; True if this call made it.

    Written under a temporary name and linked into place, so a reader never
    sees a partial file and a file another process made meanwhile is kept.
    """
    tmp = _temporary(path)
    try:
        write_file(tmp, data, mode=mode)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        _discard(tmp)
    fsync_dir(os.path.dirname(path) or ".")
    return True


def _discard(path):
    try:
        os.unlink(path)
    except OSError:
        pass
