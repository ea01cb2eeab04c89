"""Privacy levels: what a push reveals per account (full, minimal, sync), set by option or admin."""

import io
import os

from twisted.internet import task
from twisted.trial import unittest
from twisted.python import usage

from imapwebpush import datadir
from imapwebpush.cli import main
from imapwebpush.events import FlagsChanged, MailboxCreated, MessagesExpunged
from imapwebpush.tap import Options
from imapwebpush.webpush.dispatcher import PushDispatcher
from imapwebpush.webpush.privacy import AccountPrivacy, check_level
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore
from tests.test_webpush_dispatcher import (
    ALICE,
    BOB,
    ENVELOPE,
    KEY,
    FakeSubscriptions,
    RecordingSender,
    added,
    sub,
)

BODY = b"Lunch at noon?\r\n"


class FakeLevels(FakeSubscriptions):
    def __init__(self, *subs):
        FakeSubscriptions.__init__(self, *subs)
        self.levels = {}

    def privacy(self, account):
        return self.levels.get(account)


class DispatcherPrivacyTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.subs = FakeLevels(sub(ALICE, "phone"), sub(BOB, "bobs"))
        self.sender = RecordingSender()
        self.dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY,
                                         privacy=AccountPrivacy(self.subs, "full"))
        self.dispatcher.startService()
        self.addCleanup(self.dispatcher.stopService)

    def pushes(self, *events, wait=0):
        del self.sender.sent[:]
        for event in events:
            self.dispatcher.changed(event)
        self.clock.advance(wait)
        return self.sender.payloads()

    def new_mail(self):
        event = added(7)
        return type(event)(**dict(event.__dict__, body=BODY))

    def test_full_has_envelope_and_preview(self):
        self.assertEqual(self.pushes(self.new_mail()), [
            b'* SELECT "INBOX"\r\n* 7 UIDFETCH (FLAGS () ENVELOPE ' + ENVELOPE
            + b' PREVIEW "Lunch at noon?")\r\n'])

    def test_minimal_is_uid_and_flags(self):
        self.subs.levels[ALICE] = "minimal"
        self.assertEqual(self.pushes(self.new_mail()),
                         [b'* SELECT "INBOX"\r\n* 7 UIDFETCH (FLAGS ())\r\n'])
        flags = FlagsChanged(ALICE, "INBOX", ((7, frozenset(["\\Seen"]), 9),))
        self.assertEqual(self.pushes(flags, wait=2),
                         [b'* SELECT "INBOX"\r\n* 7 UIDFETCH (FLAGS (\\Seen))\r\n'])

    def test_sync_is_the_mailbox_name_only(self):
        self.subs.levels[ALICE] = "sync"
        self.assertEqual(self.pushes(self.new_mail()), [b'* SELECT "INBOX"\r\n'])
        events = (FlagsChanged(ALICE, "INBOX", ((7, frozenset(["\\Seen"]), 9),)),
                  MessagesExpunged(ALICE, "Archive", (3,), 10))
        self.assertEqual(self.pushes(*events, wait=2),
                         [b'* SELECT "INBOX"\r\n* SELECT "Archive"\r\n'])
        self.assertEqual(self.pushes(MailboxCreated(ALICE, "Projects"), wait=2),
                         [b'* LIST () "/" "Projects"\r\n'])

    def test_levels_are_per_account(self):
        self.subs.levels[ALICE] = "sync"
        bob = added(7, account=BOB)
        self.pushes(self.new_mail(), bob)
        by_sid = {s: p for s, p, *_ in self.sender.sent}
        self.assertEqual(by_sid["phone"], b'* SELECT "INBOX"\r\n')
        self.assertIn(b"ENVELOPE", by_sid["bobs"])

    def test_server_default(self):
        dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY,
                                    privacy=AccountPrivacy(self.subs, "minimal"))
        dispatcher.startService()
        self.addCleanup(dispatcher.stopService)
        self.dispatcher.stop()
        self.assertEqual(self.pushes(), [])
        dispatcher.changed(added(7))
        self.clock.advance(0)
        self.assertEqual(self.sender.payloads("phone"),
                         [b'* SELECT "INBOX"\r\n* 7 UIDFETCH (FLAGS ())\r\n'])

    def test_check_level(self):
        self.assertEqual(check_level(" Minimal "), "minimal")
        self.assertRaises(ValueError, check_level, "none")


class AdminPrivacyTests(unittest.TestCase):
    def setUp(self):
        self.data = os.path.abspath(self.mktemp())
        os.makedirs(self.data)

    def cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        status = main(["--data", self.data] + list(argv), stdout=out, stderr=err)
        return status, out.getvalue(), err.getvalue()

    def test_set_show_list_and_reset(self):
        self.assertEqual(self.cli("push", "privacy", ALICE), (0, ALICE + " default\n", ""))
        self.assertEqual(self.cli("push", "privacy", "Alice@Example.org", "SYNC"),
                         (0, ALICE + " sync\n", ""))
        self.assertEqual(self.cli("push", "privacy"), (0, ALICE + " sync\n", ""))
        store = SQLiteSubscriptionStore(datadir.subscriptions(self.data))
        self.addCleanup(store.close)
        self.assertEqual(AccountPrivacy(store, "full").level(ALICE), "sync")
        self.assertEqual(AccountPrivacy(store, "full").level(BOB), "full")
        self.assertEqual(self.cli("push", "privacy", ALICE, "default"),
                         (0, ALICE + " default\n", ""))
        self.assertIsNone(store.privacy(ALICE))

    def test_bad_level_is_a_usage_error(self):
        status, out, err = self.cli("push", "privacy", ALICE, "secret")
        self.assertEqual((status, out), (2, ""))
        self.assertEqual(err, "imapwebpush: error: privacy level must be one of full, minimal,"
                              " sync, not 'secret'\n")

    def test_deleting_the_account_forgets_its_level(self):
        store = SQLiteSubscriptionStore(datadir.subscriptions(self.data))
        self.addCleanup(store.close)
        store.set_privacy(ALICE, "minimal")
        store.delete_account(ALICE)
        self.assertIsNone(store.privacy(ALICE))


class OptionTests(unittest.TestCase):
    def parse(self, *argv):
        options = Options()
        options.parseOptions(["--data", self.mktemp()] + list(argv))
        return options

    def test_defaults(self):
        options = self.parse()
        self.assertEqual((options["push-privacy"], options["new-mail-burst"],
                          options["new-mail-per-hour"], options["push-preview"]),
                         ("full", 20, 3.0, 200))

    def test_values(self):
        options = self.parse("--push-privacy", "Sync", "--new-mail-burst", "0",
                             "--push-preview", "0")
        self.assertEqual((options["push-privacy"], options["new-mail-burst"],
                          options["push-preview"]), ("sync", 0, 0))

    def test_refused(self):
        for argv in (("--push-privacy", "everything"), ("--new-mail-burst", "-1"),
                     ("--new-mail-per-hour", "-2"), ("--push-preview", "257")):
            self.assertRaises(usage.UsageError, self.parse, *argv)
