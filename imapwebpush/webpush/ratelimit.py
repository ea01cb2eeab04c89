"""A token bucket per subscription for new-mail pushes, the only pushes without a Topic.

Why: push services keep un-Topic'd (non-collapsible) messages for an offline
device one by one, and punish too many. FCM stores at most 100 of them per
device and then drops them all (the app only learns "messages were deleted");
it also caps a device at 240 messages a minute. Apple and ntfy answer 429.
A push with a Topic replaces the stored one of the same Topic, so it never
piles up.

So each subscription may get ``burst`` new-mail pushes at once, and the
bucket refills at ``per_hour`` pushes an hour. A flush whose new-mail pushes
do not all fit in the bucket is sent instead as one generic sync per mailbox
(``* SELECT "mbox"``), each with a Topic of its own (see the dispatcher): the
device still learns at once that mail arrived and where, and an offline device
holds at most one such push per mailbox.

The defaults keep an offline device under FCM's 100 for the whole TTL of a
new-mail push (86400 s): at most 20 + 3 x 24 = 92 un-Topic'd pushes can be
waiting for it. ``burst`` 0 turns the limit off.

The buckets that are not full are kept on disk (L{SavedBuckets}), so a restart
does not hand every subscription a fresh burst: without that, restarting the
server (or crashing it) would let a busy mailbox put another 20 un-Topic'd
pushes on an offline device each time.
"""

import os
import sqlite3

from twisted.logger import Logger

from imapwebpush.private import FOLDER_MODE, connect_sqlite

log = Logger()

DEFAULT_NEW_MAIL_BURST = 20
DEFAULT_NEW_MAIL_PER_HOUR = 3.0

_HOUR = 3600.0


class TokenBuckets:
    """Token buckets by key (``(account, subscription id)``), full when first seen.

    Only buckets that are not full are kept, so memory grows with the
    subscriptions that were recently busy, not with all of them.
    """

    def __init__(self, clock, burst=DEFAULT_NEW_MAIL_BURST, per_hour=DEFAULT_NEW_MAIL_PER_HOUR,
                 saved=None):
        if burst < 0 or per_hour < 0:
            raise ValueError("burst and per_hour must not be negative")
        self._clock = clock
        self.burst = burst
        self.per_hour = per_hour
        self._buckets = {}  # key -> (tokens, time they were counted)
        self._saved = saved  # SavedBuckets, or None: memory only
        self._save_call = None
        if saved is not None:
            self.restore(saved.load())

    @property
    def enabled(self):
        return self.burst > 0

    def tokens(self, key):
        """Tokens in the bucket of ``key`` now (``burst`` when unknown or full)."""
        tokens, stamp = self._buckets.get(key, (self.burst, None))
        if stamp is None:
            return float(self.burst)
        refill = (self._clock.seconds() - stamp) * self.per_hour / _HOUR
        return min(float(self.burst), tokens + max(0.0, refill))

    def take(self, key, n=1):
        """Spend ``n`` tokens of ``key``'s bucket if it holds them: True; else False, nothing spent."""
        if not self.enabled:
            return True
        tokens = self.tokens(key)
        if tokens < n:
            self._buckets[key] = (tokens, self._clock.seconds())
            return False
        self._buckets[key] = (tokens - n, self._clock.seconds())
        self._save_soon()
        return True

    def _save_soon(self):
        """Write the buckets at the end of this reactor turn: one commit for a burst of takes."""
        if self._saved is not None and self._save_call is None:
            self._save_call = self._clock.callLater(0, self._save_now)

    def _save_now(self):
        self._save_call = None
        try:
            self._saved.save(self.state())
        except sqlite3.Error:
            log.failure("could not save the new-mail rate limits to {path}", path=self._saved.path)

    def close(self):
        """Save the buckets a last time and close their file (the dispatcher's stop)."""
        if self._saved is None:
            return
        if self._save_call is not None and self._save_call.active():
            self._save_call.cancel()
        self._save_call = None
        try:
            self._save_now()
        finally:
            self._saved.close()
            self._saved = None

    def forget(self, key):
        self._buckets.pop(key, None)

    def state(self):
        """``{key: (tokens, stamp)}`` of the buckets that are not full, to persist."""
        now_full = [k for k in self._buckets if self.tokens(k) >= self.burst]
        for key in now_full:
            del self._buckets[key]
        return dict(self._buckets)

    def restore(self, state):
        """Take back what L{state} gave (after a restart)."""
        for key, (tokens, stamp) in state.items():
            self._buckets[key] = (min(float(self.burst), float(tokens)), float(stamp))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    account TEXT NOT NULL,
    subscription TEXT NOT NULL,
    tokens REAL NOT NULL,
    stamp REAL NOT NULL,
    PRIMARY KEY (account, subscription)
)
"""


class SavedBuckets:
    """The buckets that are not full, in one SQLite file, keyed by (account, subscription id).

    ``save`` replaces the whole table: it holds only the subscriptions that
    got new mail in the last few hours, a few rows.
    """

    def __init__(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), FOLDER_MODE, exist_ok=True)
        self.path = path
        self._db = connect_sqlite(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def load(self):
        """``{(account, subscription): (tokens, stamp)}`` as last saved."""
        return {(account, sid): (tokens, stamp) for account, sid, tokens, stamp
                in self._db.execute("SELECT account, subscription, tokens, stamp FROM buckets")}

    def save(self, state):
        rows = [(account, sid, tokens, stamp) for (account, sid), (tokens, stamp) in state.items()]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM buckets")
            self._db.executemany("INSERT INTO buckets VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except Exception:
            self._db.execute("ROLLBACK")
            raise

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None
