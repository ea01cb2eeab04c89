"""The new-mail rate limit: a token bucket per subscription, then one Topic'd sync per mailbox."""

from twisted.internet import task
from twisted.trial import unittest

from imapwebpush import decisions
from imapwebpush.webpush import model
from imapwebpush.webpush.dispatcher import PushDispatcher
from imapwebpush.webpush.ratelimit import (
    DEFAULT_NEW_MAIL_BURST,
    DEFAULT_NEW_MAIL_PER_HOUR,
    SavedBuckets,
    TokenBuckets,
)
from imapwebpush.webpush.topic import topic
from tests.test_webpush_dispatcher import (
    ALICE,
    KEY,
    FakeSubscriptions,
    RecordingSender,
    added,
    sub,
)
from imapwebpush.events import FlagsChanged


class TokenBucketTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.buckets = TokenBuckets(self.clock, burst=3, per_hour=3600)  # one a second

    def test_burst_then_refill(self):
        self.assertEqual([self.buckets.take("k") for _ in range(4)], [True, True, True, False])
        self.clock.advance(1)
        self.assertEqual([self.buckets.take("k") for _ in range(2)], [True, False])

    def test_take_several_is_all_or_nothing(self):
        self.assertTrue(self.buckets.take("k", 2))
        self.assertFalse(self.buckets.take("k", 2))
        self.assertTrue(self.buckets.take("k", 1))

    def test_keys_are_separate_and_full_buckets_are_not_kept(self):
        self.buckets.take("a", 3)
        self.assertTrue(self.buckets.take("b", 3))
        self.clock.advance(10)
        self.assertEqual(self.buckets.state(), {})
        self.assertEqual(self.buckets.tokens("a"), 3)

    def test_state_survives_in_a_new_object(self):
        self.buckets.take("a", 3)
        again = TokenBuckets(self.clock, burst=3, per_hour=3600)
        again.restore(self.buckets.state())
        self.assertFalse(again.take("a"))

    def test_saved_buckets_outlive_the_object(self):
        path, key = self.mktemp(), (ALICE, "phone")
        first = TokenBuckets(self.clock, burst=3, per_hour=3600, saved=SavedBuckets(path))
        self.assertTrue(first.take(key, 3))
        self.clock.advance(0)  # saved at the end of the turn, before any stop
        again = TokenBuckets(self.clock, burst=3, per_hour=3600, saved=SavedBuckets(path))
        self.assertFalse(again.take(key))
        self.clock.advance(1)  # refilled as time passed, saved or not
        self.assertTrue(again.take(key))
        first.close()
        again.close()

    def test_close_saves_what_the_turn_has_not(self):
        path, key = self.mktemp(), (ALICE, "phone")
        first = TokenBuckets(self.clock, burst=3, per_hour=3600, saved=SavedBuckets(path))
        first.take(key, 2)
        first.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        saved = SavedBuckets(path)
        self.assertEqual(saved.load(), {key: (1.0, self.clock.seconds())})
        saved.close()

    def test_zero_burst_is_no_limit(self):
        off = TokenBuckets(self.clock, burst=0)
        self.assertTrue(all(off.take("k") for _ in range(1000)))

    def test_defaults_keep_an_offline_fcm_device_under_100(self):
        """At most burst + per_hour * 24 un-Topic'd pushes within one new-mail TTL."""
        clock = task.Clock()
        buckets = TokenBuckets(clock)
        sent = 0
        for _ in range(decisions.TTL_NEW_MAIL // 60):
            while buckets.take("k"):
                sent += 1
            clock.advance(60)
        self.assertLessEqual(sent, 100)
        self.assertEqual(sent, DEFAULT_NEW_MAIL_BURST + int(DEFAULT_NEW_MAIL_PER_HOUR * 24) - 1)


class DispatcherLimitTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.subs = FakeSubscriptions(sub(ALICE, "phone"), sub(ALICE, "tablet"))
        self.sender = RecordingSender()
        self.buckets = TokenBuckets(self.clock, burst=2, per_hour=3600)
        self.dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY,
                                         limiter=self.buckets)
        self.dispatcher.startService()
        self.addCleanup(self.dispatcher.stopService)

    def flush(self, *events):
        del self.sender.sent[:]
        for event in events:
            self.dispatcher.changed(event)
        self.clock.advance(0)
        return [s for s in self.sender.sent if s[0] == "phone"]

    def test_past_the_burst_one_topic_sync_per_mailbox(self):
        for uid in (1, 2):
            [(_, payload, urgency, _, topic_, context)] = self.flush(added(uid))
            self.assertIsNone(topic_)
            self.assertEqual(context["kind"], "new")
        sent = self.flush(added(3), added(4, "Lists/Twisted"))
        self.assertEqual([(p, u, ttl, t, c["kind"]) for _, p, u, ttl, t, c in sent], [
            (b'* SELECT "INBOX"\r\n', "high", decisions.TTL_NEW_MAIL,
             topic(KEY, ALICE, "INBOX", "new"), "limited"),
            (b'* SELECT "Lists/Twisted"\r\n', "normal", decisions.TTL_NEW_MAIL,
             topic(KEY, ALICE, "Lists/Twisted", "new"), "limited"),
        ])

    def test_a_restart_does_not_refill_the_bucket(self):
        """The dispatcher of the next start sees the spent bucket: generic syncs, no new burst."""
        path = self.mktemp()
        self.dispatcher.stopService()
        dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY,
                                    limiter=TokenBuckets(self.clock, burst=2, per_hour=3600,
                                                         saved=SavedBuckets(path)))
        dispatcher.startService()
        self.dispatcher = dispatcher
        self.flush(added(1))
        self.flush(added(2))
        dispatcher.stopService()

        self.dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY,
                                         limiter=TokenBuckets(self.clock, burst=2, per_hour=3600,
                                                              saved=SavedBuckets(path)))
        self.dispatcher.startService()
        self.addCleanup(self.dispatcher.stopService)
        [(_, payload, _, _, topic_, context)] = self.flush(added(3))
        self.assertEqual((payload, topic_, context["kind"]),
                         (b'* SELECT "INBOX"\r\n', topic(KEY, ALICE, "INBOX", "new"), "limited"))

    def test_the_new_mail_topic_is_not_the_flag_topic(self):
        self.assertNotEqual(topic(KEY, ALICE, "INBOX", "new"), topic(KEY, ALICE, "INBOX"))

    def test_bucket_refills(self):
        self.flush(added(1), added(2, "Archive"))  # two mailboxes, one push: one token
        self.flush(added(3))
        [(_, _, _, _, topic_, _)] = self.flush(added(4))
        self.assertIsNotNone(topic_)
        self.clock.advance(1)
        [(_, payload, _, _, topic_, _)] = self.flush(added(5))
        self.assertIsNone(topic_)
        self.assertIn(b"* 5 UIDFETCH (FLAGS () ENVELOPE (", payload)

    def test_each_subscription_has_its_own_bucket(self):
        self.buckets.take((ALICE, "phone"), 2)
        self.flush(added(1))
        by_sid = {s[0]: s for s in self.sender.sent}
        self.assertIsNotNone(by_sid["phone"][4])
        self.assertIsNone(by_sid["tablet"][4])

    def test_flag_pushes_are_not_limited(self):
        self.buckets.take((ALICE, "phone"), 2)
        self.dispatcher.changed(FlagsChanged(ALICE, "INBOX", ((1, frozenset(["\\Seen"]), 5),)))
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        [(_, payload, *_)] = [s for s in self.sender.sent if s[0] == "phone"]
        self.assertEqual(payload, b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS (\\Seen))\r\n')

    def test_pending_subscriptions_spend_nothing(self):
        self.subs.put(sub(ALICE, "phone", model.PENDING))
        self.flush(added(1), added(2))
        self.assertEqual(self.buckets.tokens((ALICE, "phone")), 2)
