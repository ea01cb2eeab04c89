"""Pending push deliveries on disk, so they survive a restart (SPEC 6.1).

One SQLite file in WAL mode, one row per delivery (its JSON record), one
statement per change (each its own transaction). With ``synchronous=NORMAL``
a commit costs no fsync, which keeps thousands of pushes per second cheap; a
process crash loses nothing, a power cut may lose the last commits.
"""

import json
import os
import sqlite3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
)
"""


class Outbox:
    """Deliveries that have no final outcome yet, keyed by delivery id."""

    def __init__(self, path):
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        try:
            os.chmod(path, 0o600)
        except OSError:
            pass

    def put(self, record):
        """Insert or replace the delivery ``record`` (a dict with an ``id``)."""
        self._db.execute(
            "INSERT INTO deliveries (id, record) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            (record["id"], json.dumps(record, separators=(",", ":"))),
        )

    def remove(self, delivery_id):
        self._db.execute("DELETE FROM deliveries WHERE id = ?", (delivery_id,))

    def records(self):
        """Every stored record, oldest first; unreadable rows are deleted."""
        out = []
        for delivery_id, text in self._db.execute("SELECT id, record FROM deliveries ORDER BY seq"):
            try:
                out.append(json.loads(text))
            except ValueError:
                self.remove(delivery_id)
        return out

    def __len__(self):
        return self._db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None
