"""Pending push deliveries on disk, so they survive a restart (SPEC 6.1).

One SQLite file in WAL mode, one row per delivery (its JSON record). Changes
are batched: ``put`` and ``remove`` only note the change, and ``flush`` (run by
the reactor at the end of the current turn when a ``reactor`` is given, or at
once without one) writes them all in one transaction. A delivery that ends
within the turn it was queued in never touches the disk, and a burst of
thousands of pushes costs one commit per reactor turn instead of two per push.
With ``synchronous=NORMAL`` a commit costs no fsync: a process crash loses
at most the current turn, a power cut may lose the last commits.
"""

import json
import os
import sqlite3

from twisted.logger import Logger

from imapwebpush.private import FOLDER_MODE, connect_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
)
"""


class Outbox:
    """Deliveries that have no final outcome yet, keyed by delivery id."""

    log = Logger()

    def __init__(self, path, reactor=None):
        os.makedirs(os.path.dirname(os.path.abspath(path)), FOLDER_MODE, exist_ok=True)
        self.path = path
        self._reactor = reactor
        # 0600 with its -wal and -shm: the records hold endpoint URLs (secrets).
        self._db = connect_sqlite(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._stored = {row[0] for row in self._db.execute("SELECT id FROM deliveries")}
        self._pending = {}  # id -> record to write, or None to delete
        self._call = None

    def put(self, record):
        """Insert or replace the delivery ``record`` (a dict with an ``id``)."""
        self._pending[record["id"]] = json.dumps(record, separators=(",", ":"))
        self._schedule()

    def remove(self, delivery_id):
        if delivery_id in self._stored:
            self._pending[delivery_id] = None
            self._schedule()
        else:
            self._pending.pop(delivery_id, None)  # never written: nothing to undo

    def _schedule(self):
        if self._reactor is None:
            self.flush()
        elif self._call is None:
            self._call = self._reactor.callLater(0, self._flush_later)

    def _flush_later(self):
        """The end-of-turn flush: a failure is logged (its changes wait for the next flush)."""
        try:
            self.flush()
        except sqlite3.Error:
            self.log.failure("could not write the push outbox {path}", path=self.path)

    def flush(self):
        """Write every noted change in one transaction."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        if not self._pending or self._db is None:
            return
        pending, self._pending = self._pending, {}
        gone = [(delivery_id,) for delivery_id, text in pending.items() if text is None]
        kept = [(delivery_id, text) for delivery_id, text in pending.items() if text is not None]
        db = self._db
        try:
            db.execute("BEGIN")
            # each id appears once in pending, so deleting first and then upserting is the same
            # as applying the changes in order; executemany keeps a burst of rows in C
            if gone:
                db.executemany("DELETE FROM deliveries WHERE id = ?", gone)
            if kept:
                db.executemany(
                    "INSERT INTO deliveries (id, record) VALUES (?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                    kept,
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._pending = dict(pending, **self._pending)  # kept for the next flush
            raise
        self._stored.difference_update(row[0] for row in gone)
        self._stored.update(row[0] for row in kept)

    def records(self):
        """Every stored record, oldest first; unreadable rows are deleted.

        A row is unreadable unless it holds a JSON object whose ``id`` is the
        row's, so every record returned can be removed by its ``id``.
        """
        self.flush()
        out = []
        bad = []
        for delivery_id, text in self._db.execute("SELECT id, record FROM deliveries ORDER BY seq"):
            try:
                record = json.loads(text)
            except ValueError:
                record = None
            if isinstance(record, dict) and record.get("id") == delivery_id:
                out.append(record)
            else:
                bad.append(delivery_id)
        for delivery_id in bad:
            self.remove(delivery_id)
        self.flush()
        return out

    def __len__(self):
        self.flush()
        return self._db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]

    def close(self):
        """Write what is noted, then close the database."""
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None
