"""Maildir file-system steps: name a Maildir file, place it, remove a tree.

The durable writes themselves live in L{imapwebpush.durable}, re-exported here
for the store's modules.
"""

import itertools
import os
import re
import shutil
import socket

from imapwebpush.durable import atomic_write, fsync_dir, write_file, write_pieces  # noqa: F401 (re-exported)

_counter = itertools.count(1)


def _host():
    # Maildir: '/' and ':' are escaped as octal; ',' too, because ',S=' follows.
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


_HOST = _host()


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


_UNIQUE_NAME_TIME = re.compile(r"(?:new|cur)/(\d+)\.M(\d{1,6})P\d+Q\d+R")


def name_time(filename):
    """The time ``unique_name`` wrote at the start of ``filename`` ('new/...' or 'cur/...'),
    or None for a file named otherwise (by another tool)."""
    m = _UNIQUE_NAME_TIME.match(filename)
    if m is None:
        return None
    return int(m.group(1)) + int(m.group(2)) / 1000000


def place_file(tmp, target, data, mtime):
    """Write ``data`` to ``tmp`` (in tmp/), fsync, rename it to ``target``; no leftover on failure."""
    stage_file(tmp, (data,), mtime)
    move_into_place(tmp, target)


def stage_file(tmp, pieces, mtime):
    """Write the bytes of ``pieces`` to ``tmp`` (in tmp/) and fsync; return the size.

    No leftover on failure (``pieces`` may raise, e.g. when a size limit is hit).
    """
    try:
        return write_pieces(tmp, pieces, mtime=mtime)
    except BaseException:
        _discard(tmp)
        raise


def move_into_place(tmp, target):
    """Rename a staged file to ``target`` (in new/ or cur/); no leftover on failure."""
    try:
        os.rename(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


def _discard(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_tree(path):
    """Remove a directory tree; its entry must already be unreachable (renamed away)."""
    shutil.rmtree(path, ignore_errors=True)
