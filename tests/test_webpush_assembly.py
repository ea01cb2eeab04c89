"""WebPush, the one object for the Web Push side, and its notifier for foreign stores."""

import os

from twisted.application import service
from twisted.internet import defer, reactor
from twisted.logger import capturedLogs
from twisted.trial import unittest

import imapwebpush
from imapwebpush.events import (
    FlagsChanged,
    MailboxCreated,
    MailboxDeleted,
    MailboxRenamed,
    MessageAdded,
    MessagesExpunged,
    canonical_mailbox,
)
from imapwebpush.interfaces import IWebPushAccount, IWebPushNotifier, IWebPushService
from imapwebpush.webpush.assembly import WebPush
from imapwebpush.webpush.notifier import Notifier
from imapwebpush.webpush.service import Refused
from tests.harness.webpush import ENDPOINT, UAKeys, WebPushTestBase
from zope.interface.verify import verifyObject

SUBJECT = "mailto:postmaster@example.org"


def messages(logs):
    return [e.get("log_format", "").format(**{k: v for k, v in e.items() if isinstance(k, str)})
            if "log_failure" not in e else "FAILURE" for e in logs]


class WebPushObjectTests(unittest.TestCase):

    def make(self, **kw):
        with capturedLogs():
            push = WebPush(os.path.join(self.mktemp(), "push"), reactor, subject=SUBJECT, **kw)
        self.addCleanup(push.store.close)
        return push

    def test_public_name(self):
        self.assertIs(imapwebpush.WebPush, WebPush)

    def test_children_in_start_order(self):
        """Sender first (started first, stopped last), then subscriptions, then dispatcher."""
        push = self.make()
        self.assertIsInstance(push, service.MultiService)
        self.assertEqual([(c.name, c) for c in push], [
            ("push-delivery", push.sender), ("subscriptions", push.service),
            ("push-dispatcher", push.dispatcher)])
        verifyObject(IWebPushService, push.service)
        verifyObject(IWebPushNotifier, push.notifier)
        self.assertIs(push.service.dispatcher, push.dispatcher)
        self.assertIs(push.service.sender, push.sender)

    @defer.inlineCallbacks
    def test_start_and_stop(self):
        push = self.make()
        started = []
        for child in push:
            original = child.startService
            child.startService = (lambda c, o: lambda: (started.append(c.name), o())[1])(
                child, original)
        push.startService()
        self.assertEqual(started, ["push-delivery", "subscriptions", "push-dispatcher"])
        self.assertTrue(all(child.running for child in push))
        yield push.stopService()
        self.assertFalse(any(child.running for child in push))

    def test_subject_is_required(self):
        e = self.assertRaises(ValueError, WebPush, self.mktemp(), reactor)
        self.assertIn("subject=", str(e))

    def test_data_dir_is_created(self):
        folder = os.path.join(os.path.abspath(self.mktemp()), "push")
        os.makedirs(os.path.dirname(folder))
        with capturedLogs():
            push = WebPush(folder, reactor, subject=SUBJECT)
        self.addCleanup(push.store.close)
        self.assertEqual(os.stat(folder).st_mode & 0o777, 0o700)
        self.assertIn("webpush-subscriptions.sqlite", os.listdir(folder))
        self.assertIn("webpush-topic.key", os.listdir(folder))

    def test_account(self):
        push = self.make()
        alice = push.account("alice")
        verifyObject(IWebPushAccount, alice)
        self.assertEqual(alice.account, "alice")
        self.assertIs(alice.webpush, push.service)

    def test_subscribe_refused_while_delivery_is_stopped(self):
        """WEBPUSH would answer OK and no verification push would ever come: a NO instead."""
        push = self.make()
        keys = UAKeys()
        with capturedLogs() as logs:
            for _ in range(2):
                e = self.assertRaises(Refused, push.service.subscribe, "alice", "phone-1",
                                      ENDPOINT, keys.p256dh_text, keys.auth_text)
        self.assertEqual(e.code, b"UNAVAILABLE")
        self.assertEqual(push.store.list("alice"), [])
        self.assertEqual(len(logs), 1)  # one line, not one per attempt
        self.assertIn("push delivery is not running", messages(logs)[0])


class NotRunningOverIMAP(WebPushTestBase):

    @defer.inlineCallbacks
    def test_webpush_answers_no(self):
        self.sender.running = False
        client = yield self.connect()
        with capturedLogs() as logs:
            lines, keys, token = yield self.subscribe(client)
        self.assertEqual(lines, [b"W NO [UNAVAILABLE] push delivery is not running on this"
                                 b" server; try again later"])
        self.assertIsNone(token)
        self.assertEqual(self.store.list("alice"), [])
        self.assertEqual(len(logs), 1)


class Recorder:
    def __init__(self):
        self.events = []

    def changed(self, event):
        self.events.append(event)


class Subscribed:
    """The part of ISubscriptionStore the notifier reads."""

    def __init__(self, *accounts):
        self.accounts = set(accounts)

    def count(self, account):
        return int(account in self.accounts)


class NotifierTests(unittest.TestCase):

    def setUp(self):
        self.recorder = Recorder()
        self.notifier = Notifier(self.recorder, Subscribed("alice"))

    def test_events(self):
        n = self.notifier
        with capturedLogs() as logs:
            n.message_added("alice", "INBOX", 7, flags=[b"\\Seen", "$Label"], headers=b"A: b\r\n\r\n")
            n.flags_changed("alice", "Archive", {9: ["\\Flagged"], 3: ()})
            n.expunged("alice", "INBOX", [5, 2])
            n.mailbox_created("alice", "Work")
            n.mailbox_renamed("alice", "Work", "Job")
            n.mailbox_deleted("alice", "Job")
        self.assertEqual(logs, [])
        self.assertEqual(self.recorder.events, [
            MessageAdded("alice", "INBOX", 7, frozenset({"\\Seen", "$Label"}),
                         headers=b"A: b\r\n\r\n"),
            FlagsChanged("alice", "Archive", ((3, frozenset(), 0), (9, frozenset({"\\Flagged"}), 0))),
            MessagesExpunged("alice", "INBOX", (2, 5), 0),
            MailboxCreated("alice", "Work"),
            MailboxRenamed("alice", "Work", "Job"),
            MailboxDeleted("alice", "Job"),
        ])

    def test_inbox_in_any_case(self):
        self.notifier.message_added("alice", "Inbox", 1)
        self.notifier.expunged("alice", "inbox/Drafts", [1])
        self.notifier.mailbox_renamed("alice", "iNbOx", "Old")
        self.assertEqual([getattr(e, "mailbox", None) or e.old for e in self.recorder.events],
                         ["INBOX", "INBOX/Drafts", "INBOX"])

    def test_canonical_mailbox(self):
        self.assertEqual(canonical_mailbox("inbox"), "INBOX")
        self.assertEqual(canonical_mailbox("Inbox/Sub"), "INBOX/Sub")
        self.assertEqual(canonical_mailbox("Inboxes"), "Inboxes")
        self.assertEqual(canonical_mailbox("Archive/inbox"), "Archive/inbox")

    def test_unknown_account_logs_once(self):
        """Subscriptions under 'alice', events for 'Alice': said once, still passed on."""
        with capturedLogs() as logs:
            for uid in (1, 2, 3):
                self.notifier.message_added("Alice", "INBOX", uid)
        self.assertEqual(len(logs), 1)
        self.assertIn("account 'Alice' has no WEBPUSH subscription", messages(logs)[0])
        self.assertIn("IWebPushAccount.account of the logged-in user", messages(logs)[0])
        self.assertEqual(len(self.recorder.events), 3)

    def test_account_in_use_is_known(self):
        self.notifier.account_in_use("bob")
        with capturedLogs() as logs:
            self.notifier.message_added("bob", "INBOX", 1)
        self.assertEqual(logs, [])

    def test_bad_arguments_are_one_line(self):
        with capturedLogs() as logs:
            self.notifier.message_added("alice", "INBOX", 0)
            self.notifier.message_added("alice", "", 1)
            self.notifier.flags_changed("alice", "INBOX", {"x": ()})
            self.notifier.publish("not an event")
        self.assertEqual(self.recorder.events, [])
        self.assertEqual(len(logs), 4)
        self.assertIn("a UID is a positive int, not 0", messages(logs)[0])
        self.assertIn("mailbox must be a non-empty string", messages(logs)[1])


class NotifierThroughWebPush(unittest.TestCase):
    """The notifier of a WebPush feeds its dispatcher: a subscribed account gets a push."""

    @defer.inlineCallbacks
    def test_message_added_is_pushed(self):
        from imapwebpush.testing import PushService

        pushservice = PushService(reactor)
        yield pushservice.start()
        self.addCleanup(pushservice.stop)
        with capturedLogs():
            push = WebPush(self.mktemp(), reactor, subject=SUBJECT, insecure=True)
        self.addCleanup(push.store.close)
        push.startService()
        self.addCleanup(push.stopService)
        phone = pushservice.new_subscription()
        push.service.subscribe("alice", "phone-1", phone.endpoint, phone.p256dh, phone.auth)
        [verification] = yield pushservice.wait_for(1, phone)
        token = verification.plaintext[len(b"* ACKWEBPUSH "):-2].decode()
        push.service.acknowledge("alice", token)
        push.notifier.message_added("alice", "Inbox", 42, flags=["\\Flagged"],
                                    headers=b"Subject: hi\r\n\r\n")
        pushes = yield pushservice.wait_for(2, phone)
        self.assertEqual(pushes[1].problems, [])
        self.assertTrue(pushes[1].plaintext.startswith(
            b'* SELECT "INBOX"\r\n* 42 UIDFETCH (FLAGS (\\Flagged) ENVELOPE ('), pushes[1].plaintext)
        self.assertIn(b'"hi"', pushes[1].plaintext)
