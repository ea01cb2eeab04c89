"""The WEBPUSH subscriptions of every account, persisted in one SQLite file.

SPEC 3 and 4: a subscription is pending until a verification token comes back
(ACKWEBPUSH), then active and bound to the VAPID key it was acknowledged under.
Every change is one SQLite transaction, so a crash leaves either the old or the
new state and never half a subscription. Secrets (keys, token hashes) are
overwritten on delete (``PRAGMA secure_delete``), not just flagged.

The store decides nothing about limits or timing policy: the caller passes
``now``, limits and lifetimes (see L{imapwebpush.webpush.service}).
"""

import hashlib
import hmac
import struct

from zope.interface import implementer

from imapwebpush.interfaces import ISubscriptionStore
from imapwebpush.private import connect_sqlite
from imapwebpush.webpush.model import ACTIVE, PENDING, Subscription

# ``last_success`` is kept to this many seconds: a delivered push rewrites the
# row only when it clears failures or the recorded time is older than this.
LAST_SUCCESS_RESOLUTION = 60

# The push service's answer kept with the last delivery and the last failure.
MAX_ANSWER_LENGTH = 200

# Columns added after the first release: (name, type), added to older files when opened.
_ADDED_COLUMNS = (("last_success_answer", "TEXT"), ("last_failure", "REAL"),
                  ("last_failure_answer", "TEXT"))


SCHEMA_VERSION = 1

# The abuse counters count in one-hour windows (SPEC 3.3, 4); older windows are pruned.
HOURLY_WINDOW = 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    account TEXT NOT NULL,
    id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    p256dh BLOB NOT NULL,
    auth BLOB NOT NULL,
    state TEXT NOT NULL,
    vapid_key TEXT,
    pending_key TEXT,
    created REAL NOT NULL,
    pending_since REAL,
    silenced_until REAL,
    silenced_connection TEXT,
    rejections INTEGER NOT NULL DEFAULT 0,
    first_failure REAL,
    last_success REAL,
    last_success_answer TEXT,
    last_failure REAL,
    last_failure_answer TEXT,
    PRIMARY KEY (account, id)
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash BLOB PRIMARY KEY,
    account TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    version BLOB NOT NULL,
    vapid_key TEXT NOT NULL,
    issued REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_by_account ON tokens (account, subscription_id);
CREATE TABLE IF NOT EXISTS privacy (
    account TEXT PRIMARY KEY,
    level TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hourly_windows (
    kind TEXT NOT NULL,
    account TEXT NOT NULL,
    start REAL NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (kind, account)
);
"""

_COLUMNS = (
    "account, id, endpoint, p256dh, auth, state, vapid_key, created,"
    " silenced_until, silenced_connection"
)


class SubscriptionLimitReached(Exception):
    """The account already has as many subscriptions as it may have."""


def token_hash(token):
    """What the store keeps of an ACK token: its SHA-256 (the token itself is never stored)."""
    if isinstance(token, str):
        token = token.encode("utf-8")
    return hashlib.sha256(token).digest()


def version_hash(endpoint, p256dh, auth, vapid_key):
    """Names one exact version of a subscription: endpoint + keys + VAPID key (SPEC 3.3)."""
    h = hashlib.sha256()
    for part in (endpoint.encode("utf-8"), bytes(p256dh), bytes(auth), vapid_key.encode("ascii")):
        h.update(struct.pack(">I", len(part)))
        h.update(part)
    return h.digest()


def _row_to_subscription(row):
    (account, sid, endpoint, p256dh, auth, state, vapid_key, created,
     silenced_until, silenced_connection) = row
    return Subscription(
        account=account,
        id=sid,
        endpoint=endpoint,
        p256dh=bytes(p256dh),
        auth=bytes(auth),
        state=state,
        vapid_key=vapid_key,
        created=created,
        silenced_until=silenced_until,
        silenced_connection=silenced_connection,
    )


@implementer(ISubscriptionStore)
class SQLiteSubscriptionStore:
    """ISubscriptionStore on one SQLite file.

    @param path: the database file (created when missing), or ":memory:".
    Opening it ends every "until the connection ends" silence: a restart ends
    every connection (SPEC 3.5).
    """

    def __init__(self, path):
        self.path = path
        # 0600, side files too: endpoints and keys are the users' secrets.
        self._db = connect_sqlite(path, isolation_level=None)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=2000")
        # executescript commits on its own: it runs outside our transaction helper.
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(subscriptions)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:
                self._db.execute("ALTER TABLE subscriptions ADD COLUMN %s %s" % (name, kind))
        self._db.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
        self.clear_connection_silences()

    # -- plumbing -----------------------------------------------------------

    def _transaction(self):
        return _Transaction(self._db)

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    def rows_changed(self):
        """How many rows this store has inserted, updated or deleted since it opened.

        A hot path that should write nothing (a success within the resolution) is
        checked by this number staying the same.
        """
        return self._db.total_changes

    # -- ISubscriptionStore (reads) ----------------------------------------

    def _select(self, where, args):
        """The subscriptions matching ``where`` (SQL after WHERE), as L{Subscription}s."""
        rows = self._db.execute(
            "SELECT " + _COLUMNS + " FROM subscriptions WHERE " + where, args).fetchall()
        return [_row_to_subscription(r) for r in rows]

    def get(self, account, subscription_id):
        found = self._select("account=? AND id=?", (account, subscription_id))
        return found[0] if found else None

    def list(self, account):
        return self._select("account=? ORDER BY id", (account,))

    def active(self, account):
        return self._select("account=? AND state=? ORDER BY id", (account, ACTIVE))

    def accounts(self):
        """Sorted accounts that have at least one subscription."""
        return [r[0] for r in self._db.execute(
            "SELECT DISTINCT account FROM subscriptions ORDER BY account")]

    def count(self, account):
        return self._db.execute(
            "SELECT COUNT(*) FROM subscriptions WHERE account=?", (account,)).fetchone()[0]

    def health(self, account, subscription_id):
        """Failure bookkeeping of one subscription, for operators and tests.

        A dict with ``rejections``, ``first_failure``, ``last_success`` (the
        last delivery, to LAST_SUCCESS_RESOLUTION), ``last_success_answer``,
        ``last_failure``, ``last_failure_answer``, ``pending_since`` and
        ``pending_key``; None when unknown.
        """
        names = ("rejections", "first_failure", "last_success", "last_success_answer",
                 "last_failure", "last_failure_answer", "pending_since", "pending_key")
        row = self._db.execute(
            "SELECT " + ", ".join(names) + " FROM subscriptions WHERE account=? AND id=?",
            (account, subscription_id),
        ).fetchone()
        if row is None:
            return None
        return dict(zip(names, row))

    def privacy(self, account):
        """The privacy level set for ``account`` (see L{imapwebpush.webpush.privacy}), or None."""
        row = self._db.execute("SELECT level FROM privacy WHERE account=?", (account,)).fetchone()
        return row[0] if row else None

    def privacy_levels(self):
        """``{account: level}`` of every account that has a level of its own."""
        return dict(self._db.execute("SELECT account, level FROM privacy ORDER BY account"))

    def set_privacy(self, account, level):
        """Set the account's own level, or with None go back to the server default."""
        with self._transaction() as db:
            if level is None:
                db.execute("DELETE FROM privacy WHERE account=?", (account,))
            else:
                db.execute("INSERT OR REPLACE INTO privacy (account, level) VALUES (?, ?)",
                           (account, level))

    def hourly_window(self, kind, account):
        """``(start, count)`` of the account's last window of ``kind``, or None.

        The abuse counters of SPEC 3.3 and 4 (wrong ACKWEBPUSH tokens,
        verification pushes) live here so a restart does not reset them.
        """
        row = self._db.execute("SELECT start, count FROM hourly_windows WHERE kind=? AND account=?",
                               (kind, account)).fetchone()
        return tuple(row) if row else None

    def set_hourly_window(self, kind, account, start, count):
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO hourly_windows (kind, account, start, count)"
                       " VALUES (?, ?, ?, ?)", (kind, account, start, count))

    def token_count(self, account=None):
        """How many unexpired-or-not tokens are stored (for tests and operators)."""
        if account is None:
            return self._db.execute("SELECT COUNT(*) FROM tokens").fetchone()[0]
        return self._db.execute(
            "SELECT COUNT(*) FROM tokens WHERE account=?", (account,)).fetchone()[0]

    # -- changes ------------------------------------------------------------

    def set_pending(self, account, subscription_id, endpoint, p256dh, auth, vapid_key,
                    now, limit, token_digest):
        """Create or update a subscription as pending under ``vapid_key`` and store its token.

        One transaction: the subscription row and the token hash are written
        together, before any push is sent. Tokens issued for another version
        of the subscription are erased. Raises L{SubscriptionLimitReached} when
        the id is new and the account already has ``limit`` subscriptions.
        Returns the new L{Subscription}.
        """
        version = version_hash(endpoint, p256dh, auth, vapid_key)
        with self._transaction() as db:
            exists = db.execute(
                "SELECT 1 FROM subscriptions WHERE account=? AND id=?",
                (account, subscription_id)).fetchone()
            if exists is None:
                n = db.execute("SELECT COUNT(*) FROM subscriptions WHERE account=?",
                               (account,)).fetchone()[0]
                if n >= limit:
                    raise SubscriptionLimitReached(
                        "the account has %d subscriptions, the limit" % (n,))
                db.execute(
                    "INSERT INTO subscriptions (account, id, endpoint, p256dh, auth, state,"
                    " vapid_key, pending_key, created, pending_since)"
                    " VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                    (account, subscription_id, endpoint, bytes(p256dh), bytes(auth), PENDING,
                     vapid_key, now, now))
            else:
                db.execute(
                    "UPDATE subscriptions SET endpoint=?, p256dh=?, auth=?, state=?,"
                    " pending_key=?, pending_since=?, rejections=0, first_failure=NULL"
                    " WHERE account=? AND id=?",
                    (endpoint, bytes(p256dh), bytes(auth), PENDING, vapid_key, now,
                     account, subscription_id))
                db.execute(
                    "DELETE FROM tokens WHERE account=? AND subscription_id=? AND version<>?",
                    (account, subscription_id, version))
            db.execute(
                "INSERT INTO tokens (token_hash, account, subscription_id, version, vapid_key,"
                " issued) VALUES (?, ?, ?, ?, ?, ?)",
                (token_digest, account, subscription_id, version, vapid_key, now))
        return self.get(account, subscription_id)

    def acknowledge(self, account, token_digest, now, lifetime):
        """Spend an ACK token: the acknowledged L{Subscription}, or None.

        The token hash is compared in constant time with every token of the
        account. A matching token is erased whatever happens (single use); it
        activates its subscription only when it is younger than ``lifetime``
        and the subscription is still exactly the version it was issued for.
        """
        with self._transaction() as db:
            rows = db.execute(
                "SELECT token_hash, subscription_id, version, vapid_key, issued"
                " FROM tokens WHERE account=?", (account,)).fetchall()
            found = None
            for row in rows:
                if hmac.compare_digest(bytes(row[0]), token_digest):
                    found = row
            if found is None:
                return None
            stored_hash, sid, version, vapid_key, issued = found
            db.execute("DELETE FROM tokens WHERE token_hash=?", (stored_hash,))
            if now - issued >= lifetime:
                return None
            sub = db.execute(
                "SELECT endpoint, p256dh, auth, pending_key, state FROM subscriptions"
                " WHERE account=? AND id=?", (account, sid)).fetchone()
            if sub is None:
                return None
            endpoint, p256dh, auth, pending_key, state = sub
            if state != PENDING or pending_key != vapid_key:
                return None
            if not hmac.compare_digest(version_hash(endpoint, p256dh, auth, vapid_key), version):
                return None
            db.execute(
                "UPDATE subscriptions SET state=?, vapid_key=?, pending_key=NULL,"
                " pending_since=NULL, rejections=0, first_failure=NULL"
                " WHERE account=? AND id=?", (ACTIVE, vapid_key, account, sid))
            db.execute("DELETE FROM tokens WHERE account=? AND subscription_id=?", (account, sid))
        return self.get(account, sid)

    def delete(self, account, subscription_id):
        """Erase a subscription and its tokens; True when it existed."""
        with self._transaction() as db:
            cur = db.execute("DELETE FROM subscriptions WHERE account=? AND id=?",
                             (account, subscription_id))
            db.execute("DELETE FROM tokens WHERE account=? AND subscription_id=?",
                       (account, subscription_id))
            return cur.rowcount > 0

    def delete_account(self, account):
        """Erase every subscription and token of an account; returns how many subscriptions."""
        with self._transaction() as db:
            cur = db.execute("DELETE FROM subscriptions WHERE account=?", (account,))
            db.execute("DELETE FROM tokens WHERE account=?", (account,))
            db.execute("DELETE FROM privacy WHERE account=?", (account,))
            db.execute("DELETE FROM hourly_windows WHERE account=?", (account,))
            return cur.rowcount

    def silence(self, account, subscription_id, until=None, connection=None):
        """Set (or with neither argument clear) the silence; returns (before, after) or None.

        ``until`` is epoch seconds; ``connection`` an opaque connection id for
        "until this connection ends". None when the subscription is unknown.
        """
        with self._transaction() as db:
            before = self._select("account=? AND id=?", (account, subscription_id))
            if not before:
                return None
            db.execute(
                "UPDATE subscriptions SET silenced_until=?, silenced_connection=?"
                " WHERE account=? AND id=?", (until, connection, account, subscription_id))
        return before[0], self.get(account, subscription_id)

    def end_connection(self, connection):
        """End every silence tied to ``connection``; the (account, id) pairs it ended."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT account, id FROM subscriptions WHERE silenced_connection=?"
                " ORDER BY account, id", (connection,)).fetchall()
            db.execute("UPDATE subscriptions SET silenced_connection=NULL"
                       " WHERE silenced_connection=?", (connection,))
        return [tuple(r) for r in rows]

    def clear_connection_silences(self):
        """End every connection silence (at startup: a restart ended every connection)."""
        with self._transaction() as db:
            db.execute("UPDATE subscriptions SET silenced_connection=NULL"
                       " WHERE silenced_connection IS NOT NULL")

    def record_success(self, account, subscription_id, now, answer=None):
        """A push was delivered (``answer``: what the push service said): failure counters reset.

        Called for every delivered push, so it writes only when there is
        something to change: failure counters to clear, or a ``last_success``
        older than LAST_SUCCESS_RESOLUTION. An UPDATE that matches no row
        modifies no page, and its commit costs no fsync.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE subscriptions SET rejections=0, first_failure=NULL, last_success=?,"
                " last_success_answer=?"
                " WHERE account=? AND id=? AND (rejections != 0 OR first_failure IS NOT NULL"
                " OR last_success IS NULL OR last_success <= ?)",
                (now, _answer(answer), account, subscription_id,
                 now - LAST_SUCCESS_RESOLUTION))

    def record_failure(self, account, subscription_id, now, rejected, answer=None):
        """A push failed; returns (consecutive rejections, first failure time) or None.

        ``answer`` (what the push service said) is kept as the last failure.

        ``rejected`` is True for 400/401/403 answers, which count towards
        making the subscription pending again; any failure starts the clock
        of the failing-subscription lifetime.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT rejections, first_failure FROM subscriptions WHERE account=? AND id=?",
                (account, subscription_id)).fetchone()
            if row is None:
                return None
            rejections, first = row
            rejections = rejections + 1 if rejected else rejections
            first = now if first is None else first
            db.execute(
                "UPDATE subscriptions SET rejections=?, first_failure=?, last_failure=?,"
                " last_failure_answer=? WHERE account=? AND id=?",
                (rejections, first, now, _answer(answer), account, subscription_id))
        return rejections, first

    def record_refusal(self, account, subscription_id, now, answer):
        """One body was refused (413) without anything wrong with the subscription: kept as
        the last failure, no counter moves."""
        with self._transaction() as db:
            db.execute(
                "UPDATE subscriptions SET last_failure=?, last_failure_answer=?"
                " WHERE account=? AND id=?", (now, _answer(answer), account, subscription_id))

    def make_pending(self, account, subscription_id, now):
        """An active subscription gets no more event pushes until it is acknowledged again."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE subscriptions SET state=?, pending_key=NULL, pending_since=?, rejections=0"
                " WHERE account=? AND id=? AND state=?",
                (PENDING, now, account, subscription_id, ACTIVE))
            return cur.rowcount > 0

    def prune(self, now, pending_lifetime, failing_lifetime, token_lifetime):
        """Delete what has outlived its welcome; returns [(account, id, reason), ...].

        Pending subscriptions not acknowledged within ``pending_lifetime`` of
        their last WEBPUSH, subscriptions failing for ``failing_lifetime``
        without a success; expired tokens are erased too.
        """
        with self._transaction() as db:
            reasons = {}  # (account, id) -> reason; the first reason found wins
            for query, args, reason in (
                    ("state=? AND pending_since<=?", (PENDING, now - pending_lifetime),
                     "pending and not acknowledged in %d s" % pending_lifetime),
                    ("first_failure<=?", (now - failing_lifetime,),
                     "failing for %d s without a success" % failing_lifetime)):
                for key in db.execute(
                        "SELECT account, id FROM subscriptions WHERE " + query, args).fetchall():
                    reasons.setdefault(tuple(key), reason)
            db.executemany("DELETE FROM subscriptions WHERE account=? AND id=?", list(reasons))
            db.executemany("DELETE FROM tokens WHERE account=? AND subscription_id=?",
                           list(reasons))
            db.execute("DELETE FROM tokens WHERE issued<=?", (now - token_lifetime,))
            db.execute("DELETE FROM hourly_windows WHERE start<=?", (now - HOURLY_WINDOW,))
        return [key + (reason,) for key, reason in reasons.items()]


def _answer(text):
    return None if text is None else text[:MAX_ANSWER_LENGTH]


class _Transaction:
    """``with`` block = one IMMEDIATE transaction: committed on success, rolled back on error."""

    def __init__(self, db):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
        return False
