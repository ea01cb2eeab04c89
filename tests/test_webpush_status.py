""""Is push working?": the last delivery and the last failure of each subscription, with the
push service's answer, kept in the store and shown by `imapwebpush subscriptions list`."""

import io
import os
import sqlite3

from twisted.internet import task
from twisted.trial import unittest

from imapwebpush import datadir
from imapwebpush.cli import main
from imapwebpush.webpush import model
from imapwebpush.webpush.service import WebPushService
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore, token_hash
from tests.test_imap_webpush import ENDPOINT, UAKeys

ALICE = "alice@example.org"
T0 = 1_764_560_000  # 2025-12-01T03:33:20Z


class StatusTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.data = os.path.abspath(self.mktemp())
        os.makedirs(self.data)
        self.store = SQLiteSubscriptionStore(datadir.subscriptions(self.data))
        self.addCleanup(self.store.close)
        self.service = WebPushService(self.store, None, None, self.clock)
        keys = UAKeys()
        self.store.set_pending(ALICE, "phone", ENDPOINT, keys.p256dh, keys.auth, "K" * 87,
                               T0, 20, token_hash("t"))
        self.store.acknowledge(ALICE, token_hash("t"), T0, 600)

    def outcome(self, kind, status, reason=""):
        self.service.pushOutcome(model.PushOutcome(kind, ALICE, "phone", status, reason,
                                                   {"endpoint": ENDPOINT}))

    def listed(self):
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main(["--data", self.data, "subscriptions", "list"], stdout=out,
                              stderr=err), 0, err.getvalue())
        return out.getvalue().splitlines()[1:]

    def test_nothing_yet(self):
        self.assertEqual(self.listed(), [])

    def test_delivery_then_failure_then_413(self):
        self.outcome(model.DELIVERED, 201)
        self.assertEqual(self.listed(), ["  last delivery: 2025-12-01T03:33:20Z 201 delivered"])
        self.clock.advance(90)
        self.outcome(model.EXPIRED, 503, "its TTL of 600 s passed before delivery")
        self.assertEqual(self.listed(), [
            "  last delivery: 2025-12-01T03:33:20Z 201 delivered",
            "  last failure: 2025-12-01T03:34:50Z 503 expired: its TTL of 600 s passed before"
            " delivery"])
        self.clock.advance(10)
        self.outcome(model.TOO_LARGE, 413, "push service answered 413: the body is too large")
        health = self.store.health(ALICE, "phone")
        self.assertEqual((health["last_failure"], health["last_failure_answer"]),
                         (T0 + 100, "413 too_large: push service answered 413: the body is too"
                                    " large"))
        self.assertEqual(health["rejections"], 0)
        self.assertEqual(health["first_failure"], T0 + 90)  # a 413 moves no counter

    def test_long_answers_are_cut(self):
        self.outcome(model.FAILED, 500, "x" * 1000)
        self.assertEqual(len(self.store.health(ALICE, "phone")["last_failure_answer"]), 200)

    def test_older_files_get_the_new_columns(self):
        path = os.path.join(self.mktemp() + ".sqlite")
        db = sqlite3.connect(path)
        db.executescript(
            "CREATE TABLE subscriptions (account TEXT NOT NULL, id TEXT NOT NULL,"
            " endpoint TEXT NOT NULL, p256dh BLOB NOT NULL, auth BLOB NOT NULL,"
            " state TEXT NOT NULL, vapid_key TEXT, pending_key TEXT, created REAL NOT NULL,"
            " pending_since REAL, silenced_until REAL, silenced_connection TEXT,"
            " rejections INTEGER NOT NULL DEFAULT 0, first_failure REAL, last_success REAL,"
            " PRIMARY KEY (account, id));"
            "INSERT INTO subscriptions (account, id, endpoint, p256dh, auth, state, created)"
            " VALUES ('a@example.org', 's', 'https://push.example/', x'04', x'00', 'active', 1);")
        db.close()
        store = SQLiteSubscriptionStore(path)
        self.addCleanup(store.close)
        store.record_failure("a@example.org", "s", 5.0, False, "500 failed")
        self.assertEqual(store.health("a@example.org", "s")["last_failure_answer"], "500 failed")

    def test_a_gone_subscription_is_no_longer_listed(self):
        """How a client (LWEBPUSH) and the admin learn the server dropped it."""
        self.outcome(model.GONE, 410)
        self.assertEqual(self.service.list(ALICE, "*"), [])
        out = io.StringIO()
        main(["--data", self.data, "subscriptions", "list"], stdout=out, stderr=io.StringIO())
        self.assertEqual(out.getvalue(), "")
