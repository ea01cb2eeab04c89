"""Durable file-system steps: fsync a directory, write a file atomically, name a Maildir file."""

import itertools
import os
import socket

_counter = itertools.count(1)


def _host():
    # Maildir: '/' and ':' are escaped as octal; ',' too, because ',S=' follows.
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


_HOST = _host()


def fsync_dir(path):
    """Make the entries of directory ``path`` (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path, data, mtime=None):
    """Write ``data`` to a new file and fsync it (no directory fsync)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data):
    """Replace ``path`` with ``data``: tmp file, fsync, rename, fsync the directory."""
    tmp = "%s.tmp-%d-%s" % (path, os.getpid(), os.urandom(4).hex())
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path) or ".")


def unique_name(now, size):
    """A Maildir base name (no ':2,' info), unique across processes and restarts."""
    seconds = int(now)
    micros = int((now - seconds) * 1000000)
    return "%d.M%dP%dQ%dR%s.%s,S=%d" % (
        seconds,
        micros,
        os.getpid(),
        next(_counter),
        os.urandom(4).hex(),
        _HOST,
        size,
    )


def remove_tree(path):
    """Remove a directory tree; its entry must already be unreachable (renamed away)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
