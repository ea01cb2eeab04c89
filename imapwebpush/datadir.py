"""The data folder's layout: every name directly under ``--data``, in one place.

Why one module: the server (tap.py), the admin command (cli.py and the Web
Push admin groups) and the rooms that own each file must agree on where a
file lives; a second spelling of a name is a server that cannot see what the
admin command wrote. Each function takes the data folder and returns the path
of one thing in it::

    DATA/
      users.json                     users()          (store/users.py)
      .users.lock                    users_lock()     (store/users.py)
      mail/                          mail()           (store/account.py: one folder per account)
      vapid/                         vapid()          (webpush/vapid.py)
      webpush-subscriptions.sqlite   subscriptions()  (webpush/subscriptions.py)
      webpush-outbox.sqlite          outbox()         (webpush/outbox.py)
      webpush-topic.key              topic_key()      (webpush/topic.py)
      webpush-owed.sqlite            owed()           (webpush/owed.py)
      webpush-rate.sqlite            rate_limits()    (webpush/ratelimit.py)
      spool/                         spool()          (spool.py: SMTP DATA until it is stored)
      queue/                         queue()          (outbound/queue.py: mail for other domains)
      dkim/                          dkim()           (outbound/dkim.py: DKIM signing keys)

What lies inside ``mail/`` (Maildir++ folders and their index files) is the
store's own layout, described in docs/store.rst.
"""

import os
import sqlite3
import tempfile

from imapwebpush.private import connect_sqlite

DEFAULT_DATA = "imapwebpush-data"  # relative to the working directory

USERS_FILE = "users.json"
USERS_LOCK_FILE = ".users.lock"
MAIL_FOLDER = "mail"
VAPID_FOLDER = "vapid"
SUBSCRIPTIONS_FILE = "webpush-subscriptions.sqlite"
OUTBOX_FILE = "webpush-outbox.sqlite"
TOPIC_KEY_FILE = "webpush-topic.key"
OWED_FILE = "webpush-owed.sqlite"
RATE_FILE = "webpush-rate.sqlite"
SPOOL_FOLDER = "spool"
QUEUE_FOLDER = "queue"
DKIM_FOLDER = "dkim"

DATABASE_FILES = (SUBSCRIPTIONS_FILE, OUTBOX_FILE, OWED_FILE, RATE_FILE)


def _entry(name, doc):
    """The function that gives the path of ``name`` in a data folder."""

    def path(data_dir):
        return os.path.join(data_dir, name)

    path.__doc__ = doc
    return path


users = _entry(USERS_FILE, "The users and their password hashes (JSON, mode 0600).")
users_lock = _entry(USERS_LOCK_FILE, "The advisory lock taken while the users file is rewritten.")
mail = _entry(MAIL_FOLDER, "The mail store: ``mail/<address>/`` holds each account's Maildir++ folders.")
vapid = _entry(VAPID_FOLDER, "The VAPID keyring folder (one PEM file per key and a ``current`` file).")
subscriptions = _entry(SUBSCRIPTIONS_FILE, "The Web Push subscriptions (SQLite).")
outbox = _entry(OUTBOX_FILE, "The pushes waiting for delivery or a retry (SQLite).")
topic_key = _entry(TOPIC_KEY_FILE, "The secret behind the Topic header of pushes.")
owed = _entry(OWED_FILE, "The mailboxes the push dispatcher still owes a sync (SQLite).")
rate_limits = _entry(RATE_FILE, "The new-mail rate-limit buckets that are not full (SQLite).")
spool = _entry(
    SPOOL_FOLDER,
    "Messages being received (SMTP DATA beyond 64 KiB), in unnamed files until stored; on the "
    "data folder's disk, not in /tmp, where a tmpfs would put them back into RAM.",
)
dkim = _entry(DKIM_FOLDER, "The DKIM signing keys: ``DOMAIN.SELECTOR.pem`` per domain (0600).")
queue = _entry(QUEUE_FOLDER, "The outbound queue: ``ID.msg`` and ``ID.json`` per message for other domains.")


class DataDirError(Exception):
    """The data folder cannot be used; the message says why in one line."""


def prepare(path, create=True):
    """Make sure ``path`` is a usable data folder; return its absolute path.

    Creates the folder itself (mode 0700) when its parent exists, so the
    defaults work with no setup; never creates missing parents, since a typo in
    ``--data`` should be reported, not silently obeyed.
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise DataDirError("data folder %s exists and is not a folder" % (path,))
        if not create:
            raise DataDirError("data folder %s does not exist" % (path,))
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise DataDirError("cannot create data folder %s: %s does not exist" % (path, parent))
        try:
            os.mkdir(path, 0o700)
        except OSError as e:
            raise DataDirError("cannot create data folder %s: %s" % (path, e.strerror or e))
    try:
        os.listdir(path)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DataDirError("data folder %s is not usable: %s" % (path, e.strerror or e))
    return path


def check_databases(path):
    """DataDirError naming the first SQLite file of the data folder ``path`` that SQLite
    cannot read (not a database, damaged): one line at startup, not a traceback from
    whichever room opens it first. Files not there yet are left for their rooms to make."""
    for name in DATABASE_FILES:
        file = os.path.join(path, name)
        if not os.path.exists(file):
            continue
        try:
            db = connect_sqlite(file)
            try:
                db.execute("PRAGMA schema_version").fetchone()
            finally:
                db.close()
        except sqlite3.Error as e:
            raise DataDirError("%s: %s" % (file, e))
