"""Durable dispatcher state: what the dispatcher held in memory is owed as generic syncs after a
restart (events in the coalescing window, the rest of a burst, a silenced subscription's misses)."""

import os

from twisted.internet import task
from twisted.trial import unittest

from imapwebpush import decisions
from imapwebpush.events import FlagsChanged, MailboxCreated
from imapwebpush.webpush import model
from imapwebpush.webpush.dispatcher import PushDispatcher
from imapwebpush.webpush.owed import OwedSyncs
from imapwebpush.webpush.topic import topic
from tests.test_webpush_dispatcher import ALICE, KEY, FakeSubscriptions, RecordingSender, added, sub

SEEN = frozenset(["\\Seen"])


class RestartTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.path = os.path.join(self.mktemp() + ".sqlite")
        self.subs = FakeSubscriptions(sub(ALICE, "phone"))
        self.dispatcher = None
        self.start()

    def start(self):
        """A new dispatcher (a new process) on the same file; the old one stopped first."""
        if self.dispatcher is not None:
            self.dispatcher.stopService()
        self.sender = RecordingSender()
        self.dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY,
                                         owed=OwedSyncs(self.path, self.clock))
        self.dispatcher.startService()
        self.addCleanup(self.dispatcher.stopService)

    def crash(self):
        """The process dies: nothing is written at stop (the end-of-turn writes are all)."""
        self.clock.advance(0)
        self.dispatcher._owed = None  # what a crash leaves: only what was flushed
        self.dispatcher = None
        self.start()

    def sent(self):
        self.clock.advance(0)
        return [(p, t, c["kind"]) for _, p, _, _, t, c in self.sender.sent]

    def test_events_in_the_coalescing_window(self):
        self.dispatcher.changed(FlagsChanged(ALICE, "INBOX", ((1, SEEN, 5),)))
        self.dispatcher.changed(MailboxCreated(ALICE, "Projects"))
        self.crash()
        self.assertEqual(self.sent(), [
            (b'* SELECT "INBOX"\r\n', topic(KEY, ALICE, "INBOX"), "sync"),
            (b'* SELECT "Projects"\r\n', topic(KEY, ALICE, "Projects"), "sync")])
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        self.sender.sent.clear()
        self.start()  # paid: a second restart owes nothing
        self.assertEqual(self.sent(), [])

    def test_clean_stop_keeps_what_is_owed(self):
        self.dispatcher.changed(FlagsChanged(ALICE, "Archive", ((1, SEEN, 5),)))
        self.start()  # stopService, then a new start
        self.assertEqual(self.sent(), [(b'* SELECT "Archive"\r\n',
                                        topic(KEY, ALICE, "Archive"), "sync")])

    def test_rest_of_a_burst(self):
        self.sender.hold = True
        self.subs.put(sub(ALICE, "phone", silenced_until=1010.0))
        self.dispatcher.changed(added(1, "Lists/A"))
        self.dispatcher.changed(added(2, "Lists/B"))
        self.clock.advance(0)
        self.subs.put(sub(ALICE, "phone"))
        self.clock.advance(10)  # the silence ends: two syncs, the second waits for the first
        self.assertEqual(len(self.sender.sent), 1)
        self.crash()  # the first is in the outbox; the second only owed
        self.assertEqual(self.sent(), [(b'* SELECT "Lists/B"\r\n',
                                        topic(KEY, ALICE, "Lists/B"), "sync")])

    def test_silenced_subscription_misses(self):
        self.subs.put(sub(ALICE, "phone", silenced_until=2000.0))
        self.dispatcher.changed(added(1))
        self.clock.advance(0)
        self.assertEqual(self.sender.sent, [])
        self.crash()
        self.assertEqual(self.sent(), [])  # still silenced
        self.clock.advance(1000)
        self.assertEqual(self.sent(), [(b'* SELECT "INBOX"\r\n', topic(KEY, ALICE, "INBOX"),
                                        "sync")])

    def test_nothing_owed_to_a_deleted_subscription(self):
        self.dispatcher.changed(FlagsChanged(ALICE, "INBOX", ((1, SEEN, 5),)))
        self.subs.delete(ALICE, "phone")
        self.crash()
        self.assertEqual(self.sent(), [])

    def test_delivered_news_is_not_owed(self):
        self.dispatcher.changed(added(1))
        self.clock.advance(0)
        self.assertEqual(len(self.sender.sent), 1)
        self.crash()
        self.assertEqual(self.sent(), [])

    def test_pending_subscriptions_are_skipped(self):
        self.dispatcher.changed(FlagsChanged(ALICE, "INBOX", ((1, SEEN, 5),)))
        self.subs.put(sub(ALICE, "phone", model.PENDING))
        self.crash()
        self.assertEqual(self.sent(), [])


class OwedRowsTests(unittest.TestCase):
    """The rows of OwedSyncs, read with a second connection as a restart would read them."""

    def setUp(self):
        self.path = self.mktemp() + ".sqlite"
        self.names = {}
        self.owed = OwedSyncs(self.path)  # no reactor: every mark writes at once
        self.owed.source = lambda key: self.names.get(key, [])
        self.owed.load()
        self.addCleanup(self.owed.close)

    def rows(self):
        import sqlite3

        db = sqlite3.connect(self.path)
        try:
            return db.execute("SELECT rowid, account, subscription, mailbox FROM owed ORDER BY rowid").fetchall()
        finally:
            db.close()

    def test_a_key_marked_again_with_the_same_mailboxes_is_not_rewritten(self):
        key = (ALICE, "")
        self.names[key] = ["INBOX", "Sent"]
        self.owed.mark(key)
        first = self.rows()
        self.assertEqual([r[1:] for r in first], [(ALICE, "", "INBOX"), (ALICE, "", "Sent")])
        self.owed.mark(key)  # every flag change in a busy mailbox marks it again
        self.assertEqual(self.rows(), first)  # same rowids: no DELETE and INSERT
        self.names[key] = ["Sent"]
        self.owed.mark(key)
        self.assertEqual([r[1:] for r in self.rows()], [(ALICE, "", "Sent")])
        self.names[key] = []
        self.owed.mark(key)
        self.assertEqual(self.rows(), [])

    def test_rows_left_by_an_earlier_run_go_when_nothing_is_owed(self):
        key = (ALICE, "phone")
        self.names[key] = ["INBOX"]
        self.owed.mark(key)
        self.owed.close()
        again = OwedSyncs(self.path)
        again.source = lambda key: []  # nothing owed any more; load() not asked
        self.addCleanup(again.close)
        again.mark(key)
        self.assertEqual(self.rows(), [])
