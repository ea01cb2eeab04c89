"""Mail store changes to decrypted pushes, with every real piece.

The Maildir store announces changes on its bus, the PushDispatcher renders
them, the PushDeliveryService encrypts, signs and POSTs them over HTTP to the
testing PushService, which checks VAPID and the headers and decrypts.
EndToEnd runs this in memory (StubTreq, task.Clock); ServerEndToEnd runs the
whole server over loopback, driven by smtplib and imaplib. The
subscriptions are made the way a client makes them: WEBPUSH (the service sends
a verification push), then ACKWEBPUSH with the token read from that push.
"""

import os
import re
import smtplib

from treq.testing import StubTreq
from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from imapwebpush import datadir, decisions
from imapwebpush.store.account import MailStore
from imapwebpush.testing import Answer, PushService
from imapwebpush.webpush.delivery import PushDeliveryService
from imapwebpush.webpush.dispatcher import PushDispatcher
from imapwebpush.webpush.limits import MAX_BODY, MAX_PLAINTEXT
from imapwebpush.webpush.policy import EndpointPolicy
from imapwebpush.webpush.service import WebPushService
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore
from imapwebpush.webpush.topic import load_or_create_topic_key, topic
from imapwebpush.webpush.vapid import VapidKeyring
from tests.harness.connections import track_server
from tests.harness.dns import dns_server_option
from tests.harness.settle import OutcomeWatch, received_until, settle
from tests.harness.wire import imaplib_session

ALICE = "alice@example.org"
WINDOW = 0.05  # coalesce window: short, so the loopback tests do not wait long
T0 = 1_700_000_000
SOON = 10  # seconds: EndToEnd.settle() runs what is due within this, not later timers

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
# A message stored by SMTP or APPEND, or copied or moved, comes with its RFC 8970 PREVIEW.
PREVIEWED = ENVELOPE + b' PREVIEW "Hello Joe, do you think we can meet at 3:30 tomorrow?"'


def inbox_vanished(pushes):
    """Every UID a ``* VANISHED`` line of these pushes says is gone from INBOX."""
    gone = set()
    for push in pushes:
        mailbox = None
        for line in (push.plaintext or b"").split(b"\r\n"):
            if line.startswith(b"* SELECT "):
                mailbox = line[len(b"* SELECT "):]
            elif line.startswith(b"* VANISHED ") and mailbox == b'"INBOX"':
                for part in line[len(b"* VANISHED "):].split(b","):
                    first, _, last = part.partition(b":")
                    gone.update(range(int(first), int(last or first) + 1))
    return gone


class PushHarness(unittest.TestCase):
    """The Web Push pieces on a mail store, and helpers to read what devices receive.

    Subclasses say how pushes are awaited: ``received(count, device)`` fires with the
    device's pushes once there are at least ``count``.
    """

    timeout = 60

    @defer.inlineCallbacks
    def subscribe(self, sid, acknowledge=True):
        """WEBPUSH, wait for the verification push, ACKWEBPUSH with its token."""
        device = self.pushservice.new_subscription()
        self.webpush.subscribe(ALICE, sid, device.endpoint, device.p256dh, device.auth)
        [verification] = yield self.received(1, device)
        token = re.match(rb"\A\* ACKWEBPUSH (\S+)\r\n\Z", verification.plaintext).group(1)
        if acknowledge:
            self.webpush.acknowledge(ALICE, token.decode("ascii"))
        return device

    @defer.inlineCallbacks
    def pushes(self, count, device=None):
        """The next ``count`` pushes after the verification one, all checked."""
        device = device or self.phone
        received = yield self.received(count + 1, device)
        received = received[1:]
        for push in received:
            self.assertEqual(push.problems, [])
            self.assertLessEqual(len(push.body), MAX_BODY)
            self.assertLessEqual(len(push.plaintext), MAX_PLAINTEXT)
            push.plaintext.decode("utf-8")
        return received


class EndToEnd(PushHarness):
    """Changes made through the store API (what APPEND, COPY, STORE... end up calling).

    Every piece is real but the network and the time: the push service is the
    testing PushService's resource behind StubTreq, and every timer (coalescing,
    retries, the outbox's batch) is on a task.Clock. ``settle()`` runs that world
    until nothing is left to do, so nothing here waits for the wall clock.
    """

    def setUp(self):
        tmp = self.mktemp()
        os.makedirs(tmp)
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.policy = EndpointPolicy()
        self.store = MailStore(datadir.mail(tmp), clock=self.clock)
        self.keyring = VapidKeyring(os.path.join(tmp, "vapid"), "mailto:postmaster@example.org",
                                    self.clock)
        self.subscriptions = SQLiteSubscriptionStore(os.path.join(tmp, "subscriptions.sqlite"))
        self.addCleanup(self.subscriptions.close)
        self.pushservice = PushService(reactor=self.clock, origin="https://push.example.net")
        self.http = StubTreq(self.pushservice.resource)
        self.webpush = WebPushService(self.subscriptions, self.keyring, self.policy, self.clock)
        self.sender = PushDeliveryService(
            self.clock, self.keyring, self.http, self.policy, os.path.join(tmp, "outbox.sqlite"),
            observer=self.webpush)
        self.webpush.sender = self.sender
        self.key = load_or_create_topic_key(os.path.join(tmp, "topic.key"))
        self.dispatcher = PushDispatcher(self.clock, self.subscriptions, self.sender, self.key,
                                         coalesce_window=WINDOW)
        self.webpush.dispatcher = self.dispatcher
        self.store.bus.subscribe(self.dispatcher)
        self.addCleanup(self.store.bus.unsubscribe, self.dispatcher)
        for svc in (self.sender, self.webpush, self.dispatcher):
            svc.startService()
            self.addCleanup(svc.stopService)
        self.inbox = self.store.account(ALICE).mailbox("INBOX")
        self.phone = self.successResultOf(self.subscribe("phone"))

    def settle(self, until=None):
        """Answer every request and run every timer due soon, until nothing is left to do.

        "Soon" is SOON seconds: coalescing windows and answers, not a silence's end.
        """
        settle(self.clock, self.http.flush, until=until, horizon=SOON)
        return defer.succeed(None)

    def received(self, count, device):
        self.settle(until=lambda: len(self.pushservice.received(device)) >= count)
        return defer.succeed(self.pushservice.received(device))

    @defer.inlineCallbacks
    def test_new_message(self):
        uid = self.inbox.add(MESSAGE)
        [push] = yield self.pushes(1)
        self.assertEqual(push.plaintext, b'* SELECT "INBOX"\r\n* %d UIDFETCH (FLAGS () ENVELOPE %s)\r\n'
                         % (uid, PREVIEWED))
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
                         % (new_uid, PREVIEWED))
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


class ServerHarness(PushHarness):
    """A server from start_server (makeService) with Alice and her subscribed phone.

    Nothing is wired by hand: the Web Push pieces are the ones makeService
    builds from the twistd options (``options`` adds some).
    """

    options = ()

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
        ] + dns_server_option(self) + list(self.options), reactor)
        self.addCleanup(self.server.stop)
        self.connections = track_server(self.server)
        c = self.server.components
        self.store, self.webpush = c.mail_store, c.webpush.service
        self.outcomes = OutcomeWatch(c.webpush.sender)
        self.pushservice = PushService(reactor)
        yield self.pushservice.start()
        self.addCleanup(self.pushservice.stop)
        self.addCleanup(self.outcomes.idle)  # runs first: no push left in flight at stop
        self.inbox = self.store.account(ALICE).mailbox("INBOX")
        self.phone = yield self.subscribe("phone")

    def received(self, count, device):
        return self.pushservice.wait_for(count, device)

    @defer.inlineCallbacks
    def client(self, work):
        """Run blocking client code in a thread; wait until the server closed its side too."""
        result = yield threads.deferToThread(work)
        yield self.connections.idle()
        return result

    def imap(self):
        return imaplib_session(self.server.ports["imap"], ALICE, "secret")



class ServerEndToEnd(ServerHarness):
    """The same, driven by real clients: smtplib and imaplib."""

    @defer.inlineCallbacks
    def test_smtp_delivery(self):
        def send():
            with smtplib.SMTP("127.0.0.1", self.server.ports["smtp"], timeout=10) as smtp:
                smtp.sendmail("fred@blurdybloop.example", [ALICE], MESSAGE)

        yield self.client(send)
        [push] = yield self.pushes(1)
        self.assertEqual(push.plaintext, b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS () ENVELOPE %s)\r\n'
                         % PREVIEWED)
        self.assertEqual(push.headers["urgency"], "high")

    @defer.inlineCallbacks
    def test_imap_session(self):
        """APPEND, STORE, CREATE, MOVE and EXPUNGE from imaplib, each with its push."""
        def append():
            with self.imap() as client:
                typ, data = client.append("INBOX", r"(\Flagged)", None, MESSAGE)
                assert typ == "OK", data

        yield self.client(append)
        [push] = yield self.pushes(1)
        self.assertEqual(push.plaintext, b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS (\\Flagged) ENVELOPE %s)'
                         b'\r\n' % PREVIEWED)

        def store_and_create():
            with self.imap() as client:
                client.select("INBOX")
                assert client.uid("STORE", "1", "+FLAGS", r"(\Seen)")[0] == "OK"
                assert client.create("Archive")[0] == "OK"
                assert client.subscribe("Archive")[0] == "OK"  # pushed: INBOX and subscribed

        yield self.client(store_and_create)
        pushes = yield self.pushes(3)
        self.assertEqual(sorted(p.plaintext for p in pushes[1:]), [
            b'* LIST () "/" "Archive"\r\n',
            b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS (\\Flagged \\Seen))\r\n',
        ])

        def move_and_expunge():
            with self.imap() as client:
                client.append("INBOX", None, None, MESSAGE)
                client.select("INBOX")
                assert client.uid("MOVE", "1", "Archive")[0] == "OK"
                client.uid("STORE", "2", "+FLAGS", r"(\Deleted)")
                assert client.expunge()[0] == "OK"

        yield self.client(move_and_expunge)
        new_mail = [
            b'* SELECT "INBOX"\r\n* 2 UIDFETCH (FLAGS () ENVELOPE %s)\r\n' % PREVIEWED,
            b'* SELECT "Archive"\r\n* 1 UIDFETCH (FLAGS (\\Flagged \\Seen) ENVELOPE %s)\r\n'
            % PREVIEWED,
        ]
        # MOVE's and EXPUNGE's removals share one VANISHED when they fall in one coalescing
        # window, and come in two when the machine is slow: wait for both UIDs either way
        yield received_until(self.pushservice, lambda pushes: all(
            e in [p.plaintext for p in pushes[4:]] for e in new_mail)
            and inbox_vanished(pushes[4:]) >= {1, 2}, self.phone)
        later = self.pushservice.received(self.phone)[4:]
        for expected in new_mail:
            self.assertIn(expected, [p.plaintext for p in later])
        self.assertEqual(inbox_vanished(later), {1, 2})
