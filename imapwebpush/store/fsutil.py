"""Maildir file-system steps: name a Maildir file, place it, remove a tree.

The durable writes themselves live in L{imapwebpush.durable}, re-exported here
for the store's modules.
"""

import itertools
import os
import shutil
import socket

from imapwebpush.durable import atomic_write, fsync_dir, write_file  # noqa: F401 (re-exported)

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


def place_file(tmp, target, data, mtime):
    """Write ``data`` to ``tmp`` (in tmp/), fsync, rename it to ``target``; no leftover on failure."""
    try:
        write_file(tmp, data, mtime=mtime)
        os.rename(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_tree(path):
    """Remove a directory tree; its entry must already be unreachable (renamed away)."""
    shutil.rmtree(path, ignore_errors=True)
