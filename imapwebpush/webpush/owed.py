"""What the dispatcher still owes, on disk, so a restart sends the generic syncs that cover it.

The dispatcher holds news in memory for a while: events inside the coalescing
window, the rest of a burst waiting for the previous push's answer, the
mailboxes a silenced subscription missed. Pushes already handed to the sender
are safe in the outbox; these are not. Rather than persisting every event, this
keeps the one thing a client needs after a crash: *which mailboxes* it must
resync. One row per (account, subscription, mailbox); subscription ``""``
means every active subscription of the account (events not yet flushed).

Writes are batched like the outbox's: ``mark(key)`` notes that a key's set
changed, and at the end of the reactor turn ``flush`` asks the dispatcher for
the current set of each marked key and replaces its rows in one transaction.
A burst of a thousand events costs one commit. A crash loses at most the
current turn.
"""

import os
import sqlite3

from twisted.logger import Logger

from imapwebpush.private import FOLDER_MODE, connect_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS owed (
    account TEXT NOT NULL,
    subscription TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    PRIMARY KEY (account, subscription, mailbox)
)
"""


class OwedSyncs:
    """The mailboxes owed a generic sync, by (account, subscription id or "")."""

    log = Logger()

    def __init__(self, path, reactor=None):
        os.makedirs(os.path.dirname(os.path.abspath(path)), FOLDER_MODE, exist_ok=True)
        self.path = path
        self._reactor = reactor
        self._db = connect_sqlite(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._dirty = set()
        self._written = {}  # key -> the mailboxes its rows hold now (a key marked again
        # with the same set, as every flag change of a busy mailbox does, costs no write)
        self._call = None
        self.source = None  # key -> iterable of mailbox names now (the dispatcher)

    def load(self):
        """{(account, subscription): [mailbox, ...]} as left by the last run."""
        owed = {}
        for account, sid, mailbox in self._db.execute(
                "SELECT account, subscription, mailbox FROM owed ORDER BY rowid"):
            owed.setdefault((account, sid), []).append(mailbox)
        self._written = {key: tuple(names) for key, names in owed.items()}
        return owed

    def mark(self, key):
        self._dirty.add(key)
        if self._reactor is None:
            self.flush()
        elif self._call is None:
            self._call = self._reactor.callLater(0, self._flush_later)

    def _flush_later(self):
        self._call = None
        try:
            self.flush()
        except sqlite3.Error:
            self.log.failure("could not write {path}", path=self.path)

    def flush(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if not self._dirty or self._db is None or self.source is None:
            return
        dirty, self._dirty = self._dirty, set()
        now = {}
        for key in dirty:
            names = tuple(self.source(key))
            if self._written.get(key) != names:  # None: not known to be on disk either way
                now[key] = names
        if not now:
            return
        rows = [(a, s, m) for (a, s), names in now.items() for m in names]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("DELETE FROM owed WHERE account=? AND subscription=?",
                                 list(now))
            self._db.executemany("INSERT OR IGNORE INTO owed VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except Exception:
            self._db.execute("ROLLBACK")
            self._dirty |= dirty
            raise
        self._written.update(now)

    def close(self):
        """Write what is marked, then close (the state at a clean stop is kept)."""
        if self._db is None:
            return
        try:
            self.flush()
        finally:
            self._db.close()
            self._db = None
