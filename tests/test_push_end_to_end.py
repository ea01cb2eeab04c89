"""Mail store changes to decrypted pushes, with every real piece over loopback.

The Maildir store announces changes on its bus, the PushDispatcher renders
them, the PushDeliveryService encrypts, signs and POSTs them over HTTP to the
testing PushService, which checks VAPID and the headers and decrypts. The
subscriptions are made the way a client makes them: WEBPUSH (the service sends
a verification push), then ACKWEBPUSH with the token read from that push.
"""

import imaplib
import os
import re
import smtplib

from twisted.internet import defer, reactor, task, tcp, threads
from twisted.logger import capturedLogs
from twisted.trial import unittest

from imapwebpush import datadir, decisions
from imapwebpush.store.account import MailStore
from imapwebpush.testing import Answer, PushService
from imapwebpush.webpush.delivery import PushDeliveryService
from imapwebpush.webpush.dispatcher import PushDispatcher
from imapwebpush.webpush.http import make_http_client
from imapwebpush.webpush.limits import MAX_BODY, MAX_PLAINTEXT
from imapwebpush.webpush.policy import EndpointPolicy
from imapwebpush.webpush.service import WebPushService
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore
from imapwebpush.webpush.topic import load_or_create_topic_key, topic
from imapwebpush.webpush.vapid import VapidKeyring

ALICE = "alice@example.org"
WINDOW = 0.05  # coalesce window: short, so the tests do not wait long

MESSAGE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)
ENVELOPE = (
    b'("Mon, 7 Feb 1994 21:52:25 -0800" "afternoon meeting" '
    b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) (("Fred Foobar" NIL "foobar" '
    b'"Blurdybloop.example")) (("Fred Foobar" NIL "foobar" "Blurdybloop.example")) ((NIL NIL '
    b'"mooch" "owatagu.siam.edu.example")) NIL NIL NIL "<B27397-0100000@Blurdybloop.example>")'
)


class PushHarness(unittest.TestCase):
    """The Web Push pieces on a mail store, and helpers to read what devices receive."""

    timeout = 60

    @defer.inlineCallbacks
    def wire(self, mail_store, tmp):
        """Subscription store, keyring, delivery service and dispatcher on ``mail_store``'s bus."""
        with capturedLogs():
            self.policy = EndpointPolicy(insecure=True)
        self.store = mail_store
        self.keyring = VapidKeyring(os.path.join(tmp, "vapid"), "mailto:postmaster@example.org",
                                    reactor)
        self.subscriptions = SQLiteSubscriptionStore(os.path.join(tmp, "subscriptions.sqlite"))
        self.addCleanup(self.subscriptions.close)
        self.webpush = WebPushService(self.subscriptions, self.keyring, self.policy, reactor)
        self.sender = PushDeliveryService(
            reactor, self.keyring, make_http_client(reactor, self.policy), self.policy,
            os.path.join(tmp, "outbox.sqlite"), observer=self.webpush)
        self.webpush.sender = self.sender
        self.key = load_or_create_topic_key(os.path.join(tmp, "topic.key"))
        self.dispatcher = PushDispatcher(reactor, self.subscriptions, self.sender, self.key,
                                         coalesce_window=WINDOW)
        self.webpush.dispatcher = self.dispatcher
        self.store.bus.subscribe(self.dispatcher)
        self.addCleanup(self.store.bus.unsubscribe, self.dispatcher)
        for svc in (self.sender, self.webpush, self.dispatcher):
            svc.startService()
            self.addCleanup(svc.stopService)
        yield self.meet_phone()

    @defer.inlineCallbacks
    def meet_phone(self):
        """Start the testing push service and subscribe the "phone" device."""
        self.pushservice = PushService(reactor)
        yield self.pushservice.start()
        self.addCleanup(self.pushservice.stop)
        self.addCleanup(self.settle)  # runs first: no response left in flight at stop
        self.inbox = self.store.account(ALICE).mailbox("INBOX")
        self.phone = yield self.subscribe("phone")

    @defer.inlineCallbacks
    def subscribe(self, sid, acknowledge=True):
        """WEBPUSH, wait for the verification push, ACKWEBPUSH with its token."""
        device = self.pushservice.new_subscription()
        self.webpush.subscribe(ALICE, sid, device.endpoint, device.p256dh, device.auth)
        [verification] = yield self.pushservice.wait_for(1, device)
        token = re.match(rb"\A\* ACKWEBPUSH (\S+)\r\n\Z", verification.plaintext).group(1)
        if acknowledge:
            self.webpush.acknowledge(ALICE, token.decode("ascii"))
        return device

    @defer.inlineCallbacks
    def pushes(self, count, device=None):
        """The next ``count`` pushes after the verification one, all checked."""
        device = device or self.phone
        received = yield self.pushservice.wait_for(count + 1, device)
        received = received[1:]
        for push in received:
            self.assertEqual(push.problems, [])
            self.assertLessEqual(len(push.body), MAX_BODY)
            self.assertLessEqual(len(push.plaintext), MAX_PLAINTEXT)
            push.plaintext.decode("utf-8")
        return received

    @defer.inlineCallbacks
    def settle(self):
        """Wait until no delivery is waiting and no dispatcher timer is due soon."""
        for _ in range(500):
            yield task.deferLater(reactor, 0.01, lambda: None)
            if self.sender.pending() == 0 and not self.dispatcher._accounts:
                return
        self.fail("deliveries did not settle")



class EndToEnd(PushHarness):
    """Changes made through the store API (what APPEND, COPY, STORE... end up calling)."""

    @defer.inlineCallbacks
    def setUp(self):
        tmp = self.mktemp()
        os.makedirs(tmp)
        yield self.wire(MailStore(datadir.mail(tmp), clock=reactor), tmp)

    @defer.inlineCallbacks
    def test_new_message(self):
        uid = self.inbox.add(MESSAGE)
        [push] = yield self.pushes(1)
        self.assertEqual(push.plaintext, b'* SELECT "INBOX"\r\n* %d UIDFETCH (FLAGS () ENVELOPE %s)\r\n'
                         % (uid, ENVELOPE))
        self.assertEqual(push.headers["urgency"], "high")
        self.assertEqual(push.headers["ttl"], str(decisions.TTL_NEW_MAIL))
        self.assertNotIn("topic", push.headers)

    @defer.inlineCallbacks
    def test_flag_change(self):
        uid = self.inbox.add(MESSAGE)
        yield self.pushes(1)
        self.inbox.set_flags([uid], ["\\Seen"], "add")
        self.inbox.set_flags([uid], ["\\Flagged"], "add")
        pushes = yield self.pushes(2)
        self.assertEqual(pushes[1].plaintext,
                         b'* SELECT "INBOX"\r\n* %d UIDFETCH (FLAGS (\\Flagged \\Seen))\r\n' % uid)
        self.assertEqual(pushes[1].headers["urgency"], "low")
        self.assertEqual(pushes[1].headers["topic"], topic(self.key, ALICE, "INBOX"))
        yield self.settle()
        self.assertEqual(len(self.pushservice.received(self.phone)), 3)  # merged into one

    @defer.inlineCallbacks
    def test_expunge(self):
        uids = [self.inbox.add(MESSAGE) for _ in range(4)]
        yield self.pushes(1)
        self.inbox.set_flags(uids[:3], ["\\Deleted"], "add")
        self.inbox.expunge()
        pushes = yield self.pushes(2)
        self.assertEqual(pushes[1].plaintext,
                         b'* SELECT "INBOX"\r\n* VANISHED %d:%d\r\n' % (uids[0], uids[2]))

    @defer.inlineCallbacks
    def test_move(self):
        account = self.store.account(ALICE)
        account.create_mailbox("Archive")
        archive = account.mailbox("Archive")
        uid = self.inbox.add(MESSAGE)
        yield self.pushes(1)
        [(_, new_uid)] = self.inbox.move([uid], archive)
        pushes = yield self.pushes(3)
        by_kind = {p.plaintext.split(b"\r\n")[0]: p for p in pushes[1:]}
        moved = by_kind[b'* SELECT "Archive"']
        self.assertEqual(moved.plaintext, b'* SELECT "Archive"\r\n* %d UIDFETCH (FLAGS () ENVELOPE %s)\r\n'
                         % (new_uid, ENVELOPE))
        self.assertEqual(moved.headers["urgency"], "normal")
        rest = [p.plaintext for p in pushes[1:] if p is not moved]
        self.assertIn(b'* SELECT "INBOX"\r\n* VANISHED %d\r\n' % uid, rest)

    @defer.inlineCallbacks
    def test_long_subject(self):
        subject = "Ünïcödé " * 1250  # 10,000 characters
        message = MESSAGE.replace(b"afternoon meeting", subject.encode("utf-8"))
        self.inbox.add(message)
        [push] = yield self.pushes(1)
        text = push.plaintext.decode("utf-8")
        self.assertIn('"Ünïcödé Ünïcödé ', text)
        self.assertTrue(text.endswith('"<B27397-0100000@Blurdybloop.example>"))\r\n'))

    @defer.inlineCallbacks
    def test_burst_of_500(self):
        for i in range(500):
            self.inbox.add(MESSAGE.replace(b"meeting", b"meeting %d" % i))
        [push] = yield self.pushes(1)
        self.assertEqual(push.plaintext, b'* SELECT "INBOX"\r\n')
        self.assertEqual(push.headers["urgency"], "high")
        yield self.settle()
        self.assertEqual(len(self.pushservice.received(self.phone)), 2)

    @defer.inlineCallbacks
    def test_silence(self):
        self.webpush.silence(ALICE, "phone", 600, None)
        self.inbox.add(MESSAGE)
        yield self.settle()
        self.assertEqual(len(self.pushservice.received(self.phone)), 1)  # the verification
        self.webpush.silence(ALICE, "phone", 0, None)
        [push] = yield self.pushes(1)
        self.assertEqual(push.plaintext, b'* SELECT "INBOX"\r\n')
        self.assertEqual(push.headers["urgency"], "low")
        self.assertEqual(push.headers["topic"], topic(self.key, ALICE, "INBOX"))

    @defer.inlineCallbacks
    def test_pending_gets_nothing(self):
        tablet = yield self.subscribe("tablet", acknowledge=False)
        self.inbox.add(MESSAGE)
        yield self.pushes(1)
        yield self.settle()
        self.assertEqual(len(self.pushservice.received(tablet)), 1)  # only its verification

    @defer.inlineCallbacks
    def test_gone_during_a_burst(self):
        laptop = yield self.subscribe("laptop")
        self.phone.respond(Answer.gone())
        for i in range(250):  # more than one push's worth of responses
            self.inbox.add(MESSAGE)
        yield self.settle()
        laptop_pushes = self.pushservice.received(laptop)[1:]
        self.assertGreater(len(laptop_pushes), 1)
        self.assertLessEqual(len(laptop_pushes), decisions.MAX_PUSHES_PER_BURST)
        self.assertEqual([p.plaintext.split(b"\r\n")[0] for p in laptop_pushes],
                         [b'* SELECT "INBOX"'] * len(laptop_pushes))
        phone_pushes = self.pushservice.received(self.phone)
        self.assertEqual([p.status for p in phone_pushes], [201, 410])  # nothing after the 410
        self.assertIsNone(self.subscriptions.get(ALICE, "phone"))
        self.inbox.add(MESSAGE)
        yield self.pushes(len(laptop_pushes) + 1, laptop)
        yield self.settle()
        self.assertEqual(len(self.pushservice.received(self.phone)), 2)


class ServerEndToEnd(PushHarness):
    """The same, driven by real clients: smtplib and imaplib against start_server (makeService).

    Nothing is wired by hand: the Web Push pieces are the ones makeService
    builds from the twistd options.
    """

    @defer.inlineCallbacks
    def setUp(self):
        from imapwebpush.store.users import UserDatabase
        from imapwebpush.tap import start_server

        tmp = os.path.abspath(self.mktemp())
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        UserDatabase(data, scrypt_params={"n": 2, "r": 1, "p": 1}).add(ALICE, "secret")
        self.server = yield start_server([
            "--data", data, "--domain", "example.org", "--hostname", "mx.example.org",
            "--smtp", "tcp:0:interface=127.0.0.1", "--imap", "tcp:0:interface=127.0.0.1",
            "--allow-plaintext-auth", "--insecure-push-endpoints", "--push-coalesce", str(WINDOW),
        ], reactor)
        self.addCleanup(self.server.stop)
        c = self.server.components
        self.store, self.webpush, self.dispatcher = c.mail_store, c.webpush.service, c.dispatcher
        self.sender, self.keyring, self.subscriptions = c.webpush.sender, c.webpush.keyring, c.webpush.store
        yield self.meet_phone()

    @defer.inlineCallbacks
    def client(self, work):
        """Run blocking client code in a thread; wait until its connections are closed."""
        result = yield threads.deferToThread(work)
        ports = set(self.server.ports.values())
        for _ in range(500):
            if not any(isinstance(r, tcp.Server) and r.getHost().port in ports
                       for r in reactor.getReaders() + reactor.getWriters()):
                return result
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.fail("the server kept a client connection open")

    def imap(self):
        client = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
        client.login(ALICE, "secret")
        return client

    @defer.inlineCallbacks
    def test_smtp_delivery(self):
        def send():
            with smtplib.SMTP("127.0.0.1", self.server.ports["smtp"], timeout=10) as smtp:
                smtp.sendmail("fred@blurdybloop.example", [ALICE], MESSAGE)

        yield self.client(send)
        [push] = yield self.pushes(1)
        self.assertEqual(push.plaintext, b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS () ENVELOPE %s)\r\n'
                         % ENVELOPE)
        self.assertEqual(push.headers["urgency"], "high")

    @defer.inlineCallbacks
    def test_imap_session(self):
        """APPEND, STORE, CREATE, MOVE and EXPUNGE from imaplib, each with its push."""
        def append():
            client = self.imap()
            try:
                typ, data = client.append("INBOX", r"(\Flagged)", None, MESSAGE)
                assert typ == "OK", data
            finally:
                client.logout()

        yield self.client(append)
        [push] = yield self.pushes(1)
        self.assertEqual(push.plaintext, b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS (\\Flagged) ENVELOPE %s)'
                         b'\r\n' % ENVELOPE)

        def store_and_create():
            client = self.imap()
            try:
                client.select("INBOX")
                assert client.uid("STORE", "1", "+FLAGS", r"(\Seen)")[0] == "OK"
                assert client.create("Archive")[0] == "OK"
            finally:
                client.logout()

        yield self.client(store_and_create)
        pushes = yield self.pushes(3)
        self.assertEqual(sorted(p.plaintext for p in pushes[1:]), [
            b'* LIST () "/" "Archive"\r\n',
            b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS (\\Flagged \\Seen))\r\n',
        ])

        def move_and_expunge():
            client = self.imap()
            try:
                client.append("INBOX", None, None, MESSAGE)
                client.select("INBOX")
                assert client.uid("MOVE", "1", "Archive")[0] == "OK"
                client.uid("STORE", "2", "+FLAGS", r"(\Deleted)")
                assert client.expunge()[0] == "OK"
            finally:
                client.logout()

        yield self.client(move_and_expunge)
        yield self.settle()
        later = [p.plaintext for p in self.pushservice.received(self.phone)[4:]]
        self.assertIn(b'* SELECT "INBOX"\r\n* 2 UIDFETCH (FLAGS () ENVELOPE %s)\r\n' % ENVELOPE, later)
        self.assertIn(b'* SELECT "Archive"\r\n* 1 UIDFETCH (FLAGS (\\Flagged \\Seen) ENVELOPE %s)\r\n'
                      % ENVELOPE, later)
        self.assertIn(b'* SELECT "INBOX"\r\n* VANISHED 1:2\r\n', later)
