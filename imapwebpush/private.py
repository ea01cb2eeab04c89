"""Files 0600 and folders 0700 under the data folder, whatever the umask.

Why: the data folder holds password hashes, mail, and push endpoint URLs,
which are capability URLs (whoever knows one can push to the device). twistd
and the admin command run with whatever umask the shell had, often 022, so
nothing here relies on it: folders are made and files created with explicit
modes (L{imapwebpush.durable} writes files 0600 the same way), and a folder or
SQLite file that an older version left looser is tightened when it is opened.
"""

import os
import sqlite3

FILE_MODE = 0o600
FOLDER_MODE = 0o700

# The files SQLite keeps next to a database; it creates them with the
# database file's own mode.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_folders(path):
    """Make folder ``path`` (and missing parents) 0700; tighten it if it exists looser."""
    os.makedirs(path, FOLDER_MODE, exist_ok=True)
    _tighten(path, FOLDER_MODE)


def connect_sqlite(path, **kwargs):
    """``sqlite3.connect(path, **kwargs)`` to a database that stays 0600, side files included.

    The file is created 0600 before SQLite opens it, so the -wal, -shm and
    -journal files SQLite makes later get 0600 too; side files of an older
    version are tightened. ``:memory:`` is passed through.
    """
    if path != ":memory:":
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
        for suffix in SQLITE_SIDE_FILES:
            _tighten(path + suffix, FILE_MODE)
    return sqlite3.connect(path, **kwargs)


def _tighten(path, mode):
    try:
        os.chmod(path, mode)
    except FileNotFoundError:
        pass
