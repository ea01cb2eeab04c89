"""The SQLite subscription store (SPEC 3, 4): states, tokens, silences, failures, erasure."""

import os

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from imapwebpush.interfaces import ISubscriptionStore
from imapwebpush.webpush import model
from imapwebpush.webpush.subscriptions import (
    LAST_SUCCESS_RESOLUTION, SQLiteSubscriptionStore, SubscriptionLimitReached, token_hash)

NOW = 1_700_000_000.0
KEY1 = "K" * 87
KEY2 = "L" * 87
P256 = b"\x04" + os.urandom(64)
AUTH = os.urandom(16)
EP = "https://push.example.net/p/1"


class StoreTests(unittest.TestCase):

    def setUp(self):
        self.path = os.path.join(self.mktemp() + ".sqlite")
        self.store = SQLiteSubscriptionStore(self.path)
        self.addCleanup(lambda: self.store.close())

    def pending(self, sid="s1", account="a@example.org", endpoint=EP, key=KEY1, token="tok",
                now=NOW, limit=20, p256dh=P256, auth=AUTH):
        return self.store.set_pending(account, sid, endpoint, p256dh, auth, key, now, limit,
                                      token_hash(token))

    def reopen(self):
        self.store.close()
        self.store = SQLiteSubscriptionStore(self.path)

    def test_interface(self):
        verifyObject(ISubscriptionStore, self.store)

    def test_file_is_private(self):
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    def test_pending_then_acknowledged(self):
        sub = self.pending()
        self.assertEqual((sub.state, sub.vapid_key, sub.created), (model.PENDING, None, NOW))
        self.assertEqual(self.store.active("a@example.org"), [])
        got = self.store.acknowledge("a@example.org", token_hash("tok"), NOW + 1, 600)
        self.assertEqual((got.state, got.vapid_key), (model.ACTIVE, KEY1))
        self.assertEqual(self.store.active("a@example.org"), [got])
        self.assertEqual(self.store.token_count(), 0)
        self.reopen()
        self.assertEqual(self.store.get("a@example.org", "s1"), got)

    def test_wrong_expired_foreign_tokens(self):
        self.pending()
        self.assertIsNone(self.store.acknowledge("a@example.org", token_hash("nope"), NOW, 600))
        self.assertIsNone(self.store.acknowledge("b@example.org", token_hash("tok"), NOW, 600))
        self.assertEqual(self.store.token_count(), 1)
        self.assertIsNone(self.store.acknowledge("a@example.org", token_hash("tok"), NOW + 600,
                                                 600))
        self.assertEqual(self.store.token_count(), 0)  # spent even though it had expired

    def test_version_binding(self):
        self.pending(token="t1")
        self.pending(token="t2", key=KEY2)  # same endpoint and keys, new VAPID key
        self.assertEqual(self.store.token_count(), 1)
        self.assertIsNone(self.store.acknowledge("a@example.org", token_hash("t1"), NOW, 600))
        sub = self.store.acknowledge("a@example.org", token_hash("t2"), NOW, 600)
        self.assertEqual(sub.vapid_key, KEY2)

    def test_limit_and_ids_per_account(self):
        self.pending("s1", limit=2)
        self.pending("s2", limit=2, token="t2")
        with self.assertRaises(SubscriptionLimitReached):
            self.pending("s3", limit=2, token="t3")
        self.assertIsNone(self.store.get("a@example.org", "s3"))
        self.assertEqual(self.store.token_count(), 2)  # nothing of s3 was written
        self.pending("s2", limit=2, token="t4", endpoint=EP + "x")  # update is fine
        self.pending("s1", account="b@example.org", limit=2, token="t5")
        self.assertEqual(self.store.accounts(), ["a@example.org", "b@example.org"])
        self.assertEqual([s.id for s in self.store.list("a@example.org")], ["s1", "s2"])

    def test_silences(self):
        self.pending()
        before, after = self.store.silence("a@example.org", "s1", until=NOW + 60)
        self.assertEqual((before.silenced_until, after.silenced_until), (None, NOW + 60))
        self.store.silence("a@example.org", "s1", connection="c1")
        self.assertEqual(self.store.end_connection("c2"), [])
        self.assertEqual(self.store.end_connection("c1"), [("a@example.org", "s1")])
        self.assertIsNone(self.store.get("a@example.org", "s1").silenced_connection)
        self.store.silence("a@example.org", "s1", connection="c3")
        self.reopen()
        self.assertIsNone(self.store.get("a@example.org", "s1").silenced_connection)
        self.assertIsNone(self.store.silence("a@example.org", "nope", until=1))

    def test_failures(self):
        self.pending()
        self.store.acknowledge("a@example.org", token_hash("tok"), NOW, 600)
        self.assertEqual(self.store.record_failure("a@example.org", "s1", NOW + 5, False),
                         (0, NOW + 5))
        self.assertEqual(self.store.record_failure("a@example.org", "s1", NOW + 6, True),
                         (1, NOW + 5))
        self.store.record_success("a@example.org", "s1", NOW + 7)
        health = self.store.health("a@example.org", "s1")
        self.assertEqual((health["rejections"], health["first_failure"], health["last_success"]),
                         (0, None, NOW + 7))
        # Later successes within the resolution write nothing; past it, the time moves.
        changes = self.store.rows_changed()
        self.store.record_success("a@example.org", "s1", NOW + 8)
        self.assertEqual(self.store.rows_changed(), changes)
        self.assertEqual(self.store.health("a@example.org", "s1")["last_success"], NOW + 7)
        self.store.record_success("a@example.org", "s1", NOW + 7 + LAST_SUCCESS_RESOLUTION)
        self.assertEqual(self.store.health("a@example.org", "s1")["last_success"],
                         NOW + 7 + LAST_SUCCESS_RESOLUTION)
        # A failure in between is cleared by the next success at once.
        self.store.record_failure("a@example.org", "s1", NOW + 100, False)
        self.store.record_success("a@example.org", "s1", NOW + 101)
        self.assertEqual(self.store.health("a@example.org", "s1")["first_failure"], None)
        self.assertTrue(self.store.make_pending("a@example.org", "s1", NOW + 8))
        self.assertFalse(self.store.make_pending("a@example.org", "s1", NOW + 8))
        self.assertEqual(self.store.get("a@example.org", "s1").state, model.PENDING)
        self.assertIsNone(self.store.record_failure("a@example.org", "nope", NOW, True))

    def test_prune(self):
        self.pending("old")
        self.pending("fresh", now=NOW + 100, token="t2")
        self.pending("failing", token="t3")
        self.store.acknowledge("a@example.org", token_hash("t3"), NOW, 600)
        self.store.record_failure("a@example.org", "failing", NOW, False)
        gone = self.store.prune(NOW + 86400, 86400, 7 * 86400, 600)
        self.assertEqual(gone, [("a@example.org", "old", "pending and not acknowledged in 86400 s")])
        self.assertEqual(self.store.token_count(), 0)  # every token had expired
        gone = self.store.prune(NOW + 7 * 86400, 86400, 7 * 86400, 600)
        self.assertEqual(sorted(g[1] for g in gone), ["failing", "fresh"])

    def test_delete_erases_secrets_from_the_file(self):
        secret_key = b"\x04" + b"\xab\xcd" * 32
        secret_auth = b"\xee\x11" * 8
        self.pending(p256dh=secret_key, auth=secret_auth, token="secret-token")
        self.store.close()
        with open(self.path, "rb") as f:
            data = f.read()
        self.assertIn(secret_key, data)
        self.assertIn(token_hash("secret-token"), data)
        self.reopen()
        self.assertTrue(self.store.delete("a@example.org", "s1"))
        self.assertFalse(self.store.delete("a@example.org", "s1"))
        self.store.close()
        with open(self.path, "rb") as f:
            data = f.read()
        self.assertNotIn(secret_key, data)
        self.assertNotIn(secret_auth, data)
        self.assertNotIn(token_hash("secret-token"), data)
        self.reopen()

    def test_delete_account(self):
        self.pending("s1")
        self.pending("s2", token="t2")
        self.pending("s1", account="b@example.org", token="t3")
        self.assertEqual(self.store.delete_account("a@example.org"), 2)
        self.assertEqual(self.store.accounts(), ["b@example.org"])
        self.assertEqual(self.store.token_count(), 1)

    def test_failed_transaction_changes_nothing(self):
        self.pending("s1", token="same")
        import sqlite3
        with self.assertRaises(sqlite3.IntegrityError):  # duplicate token hash
            self.pending("s2", token="same")
        self.assertIsNone(self.store.get("a@example.org", "s2"))
