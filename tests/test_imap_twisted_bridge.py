"""A stock twisted.mail IMAP4Server whose own mailboxes push, through the bridge.

The server is Twisted's ``IMAP4Server`` with the WEBPUSH mixin; the avatar a
``PushingMemoryAccount``; the mailboxes the in-memory ``MemoryMailbox`` with
``PushingMailboxMixin``. A client on the wire subscribes, acknowledges the
verification push, and then APPEND, STORE, CREATE and EXPUNGE reach the loopback
PushService as decrypted pushes.
"""

from twisted.cred import checkers, portal
from twisted.internet import defer, reactor, task
from twisted.logger import capturedLogs
from twisted.mail import imap4
from twisted.trial import unittest
from zope.interface import implementer

from imapwebpush import WebPush
from imapwebpush.imap.twisted_bridge import (
    MailboxPushListener,
    PushingMailboxMixin,
    PushingMemoryAccount,
)
from imapwebpush.imap.webpush_commands import webpush_server_class
from imapwebpush.interfaces import IWebPushAccount
from imapwebpush.testing import PushService
from imapwebpush.testing.memory_mailbox import MemoryMailbox
from tests.harness.connections import ConnectionTracker
from tests.harness.wire import connect_line_client
from tests.harness.webpush import ServerFactory

SUBJECT = "mailto:postmaster@example.org"
MESSAGE = b"From: Fred <fred@example.org>\r\nSubject: lunch?\r\n\r\nAt noon.\r\n"
ENVELOPE = b'(NIL "lunch?" (("Fred" NIL "fred" "example.org")) (("Fred" NIL "fred" "example.org")) ' \
           b'(("Fred" NIL "fred" "example.org")) NIL NIL NIL NIL NIL)'


class Mailbox(PushingMailboxMixin, MemoryMailbox):
    pass


class Account(PushingMemoryAccount):
    def _emptyMailbox(self, name, id):
        return Mailbox()


@implementer(portal.IRealm)
class Realm:
    def __init__(self, webpush, account_class=None):
        self.webpush = webpush
        self.account_class = account_class or Account
        self.avatars = {}

    def requestAvatar(self, avatarId, mind, *interfaces):
        name = avatarId.decode()
        if name not in self.avatars:
            self.avatars[name] = self.account_class(name, self.webpush)
            self.avatars[name].addMailbox("INBOX")
        return imap4.IAccount, self.avatars[name], lambda: None


class BridgeHarness(unittest.TestCase):
    """A stock IMAP4Server with WEBPUSH on loopback, user alice logged in, a PushService."""

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.pushservice = PushService(reactor)
        yield self.pushservice.start()
        self.addCleanup(self.pushservice.stop)
        with capturedLogs():
            self.webpush, account_class, server_class = self.stack()
        self.addCleanup(self.webpush.store.close)
        self.addCleanup(self.webpush.stopService)
        self.webpush.startService()
        checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
        self.realm = Realm(self.webpush, account_class)
        self.factory = ServerFactory(portal.Portal(self.realm, [checker]), server_class)
        tracker = ConnectionTracker()
        self.addCleanup(tracker.close)
        port = tracker.listen(self.factory)
        self.client = yield connect_line_client(tracker, port)
        lines = yield self.client.command(b"a LOGIN alice secret")
        self.assertEqual(lines[-1], b"a OK LOGIN succeeded")

    def stack(self):
        """(WebPush, avatar class, IMAP server class) of the server under test."""
        webpush = WebPush(self.mktemp(), reactor, subject=SUBJECT, insecure=True,
                          coalesce_window=0.05)
        return webpush, Account, webpush_server_class(imap4.IMAP4Server)

    @defer.inlineCallbacks
    def subscribe(self):
        phone = self.pushservice.new_subscription()
        lines = yield self.client.command(b"w WEBPUSH phone-1 %s %s %s" % (
            phone.endpoint.encode(), phone.p256dh.encode(), phone.auth.encode()))
        self.assertEqual(lines[-1], b"w OK WEBPUSH completed")
        [verification] = yield self.pushservice.wait_for(1, phone)
        token = verification.plaintext[len(b"* ACKWEBPUSH "):-2]
        lines = yield self.client.command(b"k ACKWEBPUSH " + token)
        self.assertEqual(lines[-1], b"k OK ACKWEBPUSH completed")
        return phone

    @defer.inlineCallbacks
    def push(self, phone, n):
        pushes = yield self.pushservice.wait_for(n, phone)
        self.assertEqual([p.problems for p in pushes], [[]] * len(pushes))
        return pushes[n - 1].plaintext

    @defer.inlineCallbacks
    def append(self, message, tag=b"p"):
        self.client.sendLine(tag + b" APPEND Inbox () {%d}" % len(message))
        yield self.client.continuation()
        self.client.transport.write(message)
        self.client.sendLine(b"")
        lines = yield self.client.expect(lambda line: line.startswith(tag + b" "))
        return lines


class BridgeOverIMAP(BridgeHarness):

    @defer.inlineCallbacks
    def test_append_store_create_expunge(self):
        phone = yield self.subscribe()
        lines = yield self.append(MESSAGE)
        self.assertEqual(lines[-1][:5], b"p OK ")
        plaintext = yield self.push(phone, 2)
        self.assertEqual(plaintext, b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS () ENVELOPE %s)\r\n'
                         % ENVELOPE)

        yield self.client.command(b"s SELECT INBOX")
        lines = yield self.client.command(b"f STORE 1 +FLAGS (\\Seen)")
        self.assertEqual(lines[-1], b"f OK STORE completed")
        plaintext = yield self.push(phone, 3)
        self.assertEqual(plaintext, b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS (\\Seen))\r\n')

        lines = yield self.client.command(b"c CREATE Archive")
        self.assertEqual(lines[-1], b"c OK Mailbox created")
        plaintext = yield self.push(phone, 4)
        self.assertEqual(plaintext, b'* LIST () "/" "ARCHIVE"\r\n')

        yield self.client.command(b"d STORE 1 +FLAGS (\\Deleted)")
        yield self.push(phone, 5)
        lines = yield self.client.command(b"e EXPUNGE")
        self.assertEqual(lines, [b"* 1 EXPUNGE", b"e OK EXPUNGE completed"])
        plaintext = yield self.push(phone, 6)
        self.assertEqual(plaintext, b'* SELECT "INBOX"\r\n* VANISHED 1\r\n')


class Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kw: self.calls.append((name,) + args + tuple(sorted(kw.items())))

    def account_in_use(self, account):
        pass


class FakeWebPush:
    def __init__(self):
        self.service = object()
        self.notifier = Recorder()


class NotifyingMailbox(MemoryMailbox):
    """A mailbox that tells its listeners, as a well-behaved IMailbox does."""

    def addMessage(self, message, flags=(), date=None):
        d = MemoryMailbox.addMessage(self, message, flags, date)
        for listener in self.listeners:
            listener.newMessages(len(self.messages), None)
        return d


class BridgeUnits(unittest.TestCase):

    def test_listener_for_a_mailbox_that_notifies(self):
        """No mixin: the account adds a MailboxPushListener with addListener."""

        class Plain(PushingMemoryAccount):
            def _emptyMailbox(self, name, id):
                return NotifyingMailbox()

        webpush = FakeWebPush()
        avatar = Plain("bob", webpush, account="bob@example.org")
        avatar.addMailbox("inbox")
        box = avatar.select("INBOX")
        self.assertIsInstance(box.listeners[0], MailboxPushListener)
        box.addMessage(MESSAGE, [b"\\Flagged"])
        [call] = webpush.notifier.calls
        self.assertEqual(call[:4], ("message_added", "bob@example.org", "INBOX", 1))
        self.assertEqual(dict(call[4:])["flags"], ["\\Flagged"])
        self.assertIn(b"Subject: lunch?\r\n", dict(call[4:])["headers"])

    def test_old_messages_are_not_announced(self):
        webpush = FakeWebPush()
        box = Mailbox()
        box.addMessage(MESSAGE)

        class WithBox(PushingMemoryAccount):
            pass

        avatar = WithBox("bob", webpush)
        avatar.addMailbox("INBOX", box)
        box.addMessage(MESSAGE)
        self.assertEqual([c[:4] for c in webpush.notifier.calls],
                         [("message_added", "bob", "INBOX", 2)])

    def test_rename_and_delete(self):
        webpush = FakeWebPush()
        avatar = Account("bob", webpush)
        avatar.create("Work/2024")
        avatar.rename("Work", "Job")
        avatar.select("JOB/2024").addMessage(MESSAGE)
        avatar.delete("JOB/2024")
        self.assertEqual(webpush.notifier.calls, [
            ("mailbox_created", "bob", "WORK"),
            ("mailbox_created", "bob", "WORK/2024"),
            ("mailbox_renamed", "bob", "WORK", "JOB"),
            ("mailbox_renamed", "bob", "WORK/2024", "JOB/2024"),
            ("message_added", "bob", "JOB/2024", 1, ("flags", []),
             ("headers", b"From: Fred <fred@example.org>\r\nSubject: lunch?\r\n\r\n")),
            ("mailbox_deleted", "bob", "JOB/2024"),
        ])

    def test_two_servers_in_one_process(self):
        """No global adapter: each avatar carries its own WebPush."""
        with capturedLogs():
            one = WebPush(self.mktemp(), task.Clock(), subject=SUBJECT)
            two = WebPush(self.mktemp(), task.Clock(), subject=SUBJECT)
        self.addCleanup(one.store.close)
        self.addCleanup(two.store.close)
        a, b = Account("alice", one), Account("alice", two)
        self.assertIs(IWebPushAccount(a).webpush, one.service)
        self.assertIs(IWebPushAccount(b).webpush, two.service)
        seen = []
        two.dispatcher.changed = seen.append
        b.addMailbox("INBOX")
        b.select("INBOX").addMessage(MESSAGE)
        a.addMailbox("INBOX")
        a.select("INBOX").addMessage(MESSAGE)
        self.assertEqual([(e.account, e.uid) for e in seen], [("alice", 1)])
