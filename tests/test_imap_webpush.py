"""WEBPUSH create / update / delete over a real IMAP connection on loopback (SPEC 3.2).

The top of this module is the harness the other WEBPUSH test modules import:
a twisted IMAP4Server with the WEBPUSH mixin, an avatar that is a plain
twisted MemoryAccount made to provide IWebPushAccount, a line client that
reads exact wire lines, and a push sender that records verification pushes.
"""

import base64
import os
import sqlite3
from contextlib import closing

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization
from twisted.cred import checkers, portal
from twisted.internet import defer, protocol, reactor, task
from twisted.mail import imap4
from twisted.trial import unittest
from zope.interface import implementer

from imapwebpush import decisions
from imapwebpush.imap.webpush_commands import WebPushCommandsMixin
from imapwebpush.interfaces import IPushSender, IWebPushAccount
from imapwebpush.webpush import model
from imapwebpush.webpush.policy import EndpointPolicy
from imapwebpush.webpush.service import WebPushService
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore
from imapwebpush.webpush.vapid import VapidKeyring
from tests.harness.connections import ConnectionTracker
from tests.harness.wire import connect_line_client

SUBJECT = "mailto:postmaster@example.org"
START = 1_700_000_000.0
ENDPOINT = "https://push.example.net/p/JzLQ3raZ"
ENDPOINT2 = "https://ntfy.example.org/upAbC123?up=1"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class UAKeys:
    """A user agent's RFC 8291 keys: a P-256 key pair and a 16-byte auth secret."""

    def __init__(self):
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.p256dh = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self.auth = os.urandom(16)
        self.p256dh_text = b64url(self.p256dh)
        self.auth_text = b64url(self.auth)


@implementer(IPushSender)
class RecordingSender:
    running = True  # a started IPushSender
    """An IPushSender that records what it is asked to send; outcomes are fired by the test."""

    def __init__(self):
        self.sent = []  # (target, payload, urgency, ttl, topic, context, deferred)
        self.cancelled = []  # (account, subscription id) of each cancel()
        self.on_send = None  # called with (target, payload) before recording, if set

    def send(self, target, payload, urgency, ttl, topic=None, context=None):
        if self.on_send is not None:
            self.on_send(target, payload)
        d = defer.Deferred()
        self.sent.append((target, payload, urgency, ttl, topic, context or {}, d))
        return d

    def cancel(self, account, subscription_id):
        """Record the cancellation; the test fires outcomes itself."""
        self.cancelled.append((account, subscription_id))
        return 0

    def tokens(self):
        out = []
        for _, payload, *_rest in self.sent:
            assert payload.startswith(b"* ACKWEBPUSH ") and payload.endswith(b"\r\n"), payload
            out.append(payload[len(b"* ACKWEBPUSH "):-2].decode("ascii"))
        return out


@implementer(imap4.IMailboxInfo, imap4.IMailbox)
class EmptyMailbox:
    """Just enough of a twisted mailbox to SELECT it."""

    def __init__(self):
        self.listeners = []

    def getFlags(self):
        return [r"\Seen", r"\Deleted"]

    def getHierarchicalDelimiter(self):
        return "/"

    def getUIDValidity(self):
        return 1

    def getUIDNext(self):
        return 1

    def getMessageCount(self):
        return 0

    def getRecentCount(self):
        return 0

    def getUnseenCount(self):
        return 0

    def isWriteable(self):
        return True

    def destroy(self):
        pass

    def requestStatus(self, names):
        return {}

    def addListener(self, listener):
        self.listeners.append(listener)

    def removeListener(self, listener):
        self.listeners.remove(listener)


@implementer(IWebPushAccount)
class WebPushAvatar(imap4.MemoryAccount):
    """A stock twisted MemoryAccount that also provides IWebPushAccount."""

    def __init__(self, name, webpush):
        imap4.MemoryAccount.__init__(self, name)
        self.addMailbox("INBOX")
        self.account = name
        self.webpush = webpush

    def _emptyMailbox(self, name, id):
        return EmptyMailbox()


@implementer(portal.IRealm)
class Realm:
    def __init__(self, make_avatar):
        self.make_avatar = make_avatar

    def requestAvatar(self, avatarId, mind, *interfaces):
        if imap4.IAccount not in interfaces:
            raise NotImplementedError()
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        return imap4.IAccount, self.make_avatar(name), lambda: None


class WebPushIMAPServer(WebPushCommandsMixin, imap4.IMAP4Server):
    """A plain twisted IMAP4Server with the WEBPUSH commands."""


class ServerFactory(protocol.ServerFactory):
    def __init__(self, portal_, server_class=WebPushIMAPServer):
        self.portal = portal_
        self.server_class = server_class

    def buildProtocol(self, addr):
        p = self.server_class()
        p.portal = self.portal
        p.factory = self
        return p


class WebPushTestBase(unittest.TestCase):
    """Starts a WEBPUSH IMAP server on 127.0.0.1:0 with a fresh store; users alice and bob."""

    avatar_factory = None  # (name, service) -> avatar; None means WebPushAvatar
    server_class = WebPushIMAPServer
    max_subscriptions = decisions.DEFAULT_MAX_SUBSCRIPTIONS

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(START)
        base = self.mktemp()
        os.makedirs(base)
        self.db_path = os.path.join(base, "subscriptions.sqlite")
        self.store = SQLiteSubscriptionStore(self.db_path)
        self.keyring = VapidKeyring(os.path.join(base, "vapid"), SUBJECT, self.clock)
        self.pushservice = None
        if self.real_push:
            self.start_real_push(base)
        else:
            self.sender = RecordingSender()
            self.policy = EndpointPolicy()
            self.service = self.make_service()
        self.factory = self.make_factory()
        self.connections = ConnectionTracker(reactor)
        self.addCleanup(self.stop_services)
        self.addCleanup(self.connections.close, abort=False)  # first: LIFO
        self.portno = self.connections.listen(self.factory)

    real_push = False  # True: real PushDeliveryService and a loopback PushService

    def start_real_push(self, base):
        """Deliver for real: PushDeliveryService -> imapwebpush.testing's PushService.

        The keyring signs with the real time (the push service checks ``exp``);
        the WEBPUSH service itself keeps the test's task.Clock.
        """
        from imapwebpush.testing.pushservice import PushService
        from imapwebpush.webpush.delivery import PushDeliveryService
        from imapwebpush.webpush.http import make_http_client

        self.keyring = VapidKeyring(os.path.join(base, "vapid-real"), SUBJECT, reactor)
        self.policy = EndpointPolicy(insecure=True)
        self.pushservice = PushService()
        self.pushservice.start()
        self.service = self.make_service()
        self.sender = PushDeliveryService(
            reactor, self.keyring, make_http_client(reactor, self.policy), self.policy,
            os.path.join(base, "outbox.sqlite"), observer=self.service)
        self.service.sender = self.sender
        self.sender.startService()

    def make_service(self):
        return WebPushService(self.store, self.keyring, self.policy, self.clock,
                              sender=getattr(self, "sender", None),
                              max_subscriptions=self.max_subscriptions)

    def make_factory(self):
        make = self.avatar_factory or (lambda name, svc: WebPushAvatar(name, svc))
        checker = checkers.InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(b"alice", b"secret")
        checker.addUser(b"bob", b"secret")
        return ServerFactory(
            portal.Portal(Realm(lambda name: make(name, self.service)), [checker]),
            self.server_class)

    @defer.inlineCallbacks
    def stop_services(self):
        if self.pushservice is not None:
            yield self.sender.stopService()
            yield self.pushservice.stop()
        if self.service.running:
            yield self.service.stopService()
        self.store.close()

    def connect(self, user=b"alice"):
        """A LineClient past the greeting, logged in as ``user`` unless it is None."""
        return connect_line_client(self.connections, self.portno, user)

    def webpush_line(self, sid, endpoint, keys):
        return ("W WEBPUSH %s %s %s %s" % (sid, endpoint, keys.p256dh_text,
                                           keys.auth_text)).encode("ascii")

    @defer.inlineCallbacks
    def subscribe(self, client, sid="phone-1", endpoint=ENDPOINT, keys=None, tag=b"W"):
        """Send WEBPUSH; returns (lines, keys, token of the verification push or None)."""
        keys = keys or UAKeys()
        before = len(self.sender.sent)
        lines = yield client.command(tag + self.webpush_line(sid, endpoint, keys)[1:])
        token = None
        if len(self.sender.sent) > before:
            token = self.sender.tokens()[-1]
        return lines, keys, token

    @defer.inlineCallbacks
    def subscribe_active(self, client, sid="phone-1", endpoint=ENDPOINT, keys=None):
        lines, keys, token = yield self.subscribe(client, sid, endpoint, keys)
        ack = yield client.command(b"K ACKWEBPUSH " + token.encode("ascii"))
        self.assertEqual(ack[-1], b"K OK ACKWEBPUSH completed")
        return keys

    def vapid_line(self):
        return b"* VAPID " + self.keyring.current().encode("ascii")

    def snapshot(self):
        """The whole store, for "nothing changed" assertions."""
        accounts = self.store.accounts()
        return ({a: self.store.list(a) for a in accounts},
                {a: [self.store.health(a, s.id) for s in self.store.list(a)] for a in accounts},
                self.store.token_count())


class WebPushCommandTests(WebPushTestBase):

    @defer.inlineCallbacks
    def test_create_answers_vapid_then_webpush_then_ok(self):
        client = yield self.connect()
        lines, keys, token = yield self.subscribe(client)
        self.assertEqual(lines, [
            self.vapid_line(),
            b"* WEBPUSH phone-1 " + ENDPOINT.encode() + b" NIL",
            b"W OK WEBPUSH completed",
        ])
        sub = self.store.get("alice", "phone-1")
        self.assertEqual(sub.state, model.PENDING)
        self.assertEqual((sub.endpoint, sub.p256dh, sub.auth), (ENDPOINT, keys.p256dh, keys.auth))
        self.assertIsNone(sub.vapid_key)

    @defer.inlineCallbacks
    def test_verification_push(self):
        """One push: '* ACKWEBPUSH <token>', Urgency high, TTL 600, current key, token stored first."""
        client = yield self.connect()
        lines, keys, token = yield self.subscribe(client)
        self.assertEqual(len(self.sender.sent), 1)
        target, payload, urgency, ttl, topic, context, _ = self.sender.sent[0]
        self.assertEqual(payload, b"* ACKWEBPUSH " + token.encode() + b"\r\n")
        self.assertEqual((urgency, ttl, topic), ("high", decisions.TTL_VERIFICATION, None))
        self.assertEqual(target, model.PushTarget("alice", "phone-1", ENDPOINT, keys.p256dh,
                                                  keys.auth, self.keyring.current()))
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        self.assertGreaterEqual(len(raw) * 8, 128)
        self.assertEqual(self.store.token_count("alice"), 1)

    @defer.inlineCallbacks
    def test_token_is_stored_before_the_push_is_sent(self):
        from imapwebpush.webpush.subscriptions import token_hash
        seen = []

        def on_send(target, payload):
            token = payload[len(b"* ACKWEBPUSH "):-2]
            # the hash is in the store: spending it now (in a copy) would succeed
            with closing(sqlite3.connect(self.db_path)) as copy:  # committed, not just ours
                rows = copy.execute("SELECT COUNT(*) FROM tokens WHERE token_hash=?",
                                    (token_hash(token),)).fetchone()[0]
            seen.append((rows, self.store.get("alice", "phone-1").state))
        self.sender.on_send = on_send
        client = yield self.connect()
        yield self.subscribe(client)
        self.assertEqual(seen, [(1, model.PENDING)])

    @defer.inlineCallbacks
    def test_two_sessions_same_id_at_once(self):
        """Pipelined from two connections: one whole subscription, the last one written."""
        first = yield self.connect()
        second = yield self.connect()
        k1, k2 = UAKeys(), UAKeys()
        first.transport.write(self.webpush_line("phone-1", ENDPOINT, k1).replace(
            b"W ", b"A ", 1) + b"\r\n")
        second.transport.write(self.webpush_line("phone-1", ENDPOINT2, k2).replace(
            b"W ", b"B ", 1) + b"\r\n")
        a = yield first.expect(lambda l: l.startswith(b"A "))
        b = yield second.expect(lambda l: l.startswith(b"B "))
        self.assertEqual((a[-1], b[-1]), (b"A OK WEBPUSH completed", b"B OK WEBPUSH completed"))
        subs = self.store.list("alice")
        self.assertEqual(len(subs), 1)
        sub = subs[0]
        winner = (sub.endpoint, sub.p256dh, sub.auth)
        self.assertIn(winner, [(ENDPOINT, k1.p256dh, k1.auth), (ENDPOINT2, k2.p256dh, k2.auth)])
        # only the token of the version that was written last is left, and it works
        self.assertEqual(self.store.token_count(), 1)
        last = self.sender.sent[-1][0]
        self.assertEqual((last.endpoint, last.p256dh, last.auth), winner)
        lines = yield first.command(b"K ACKWEBPUSH " + self.sender.tokens()[-1].encode())
        self.assertEqual(lines[-1], b"K OK ACKWEBPUSH completed")

    @defer.inlineCallbacks
    def test_literal_and_quoted_arguments(self):
        client = yield self.connect()
        keys = UAKeys()
        client.sendLine(b'W WEBPUSH {7}')
        yield client.continuation()
        client.sendLine(b'phone-1 "' + ENDPOINT.encode() + b'" ' + keys.p256dh_text.encode()
                        + b" {22}")
        yield client.continuation()
        client.transport.write(keys.auth_text.encode() + b"\r\n")
        lines = yield client.expect(lambda l: l.startswith(b"W "))
        self.assertEqual(lines[-3:], [self.vapid_line(),
                                      b"* WEBPUSH phone-1 " + ENDPOINT.encode() + b" NIL",
                                      b"W OK WEBPUSH completed"])
        self.assertEqual(self.store.get("alice", "phone-1").auth, keys.auth)

    @defer.inlineCallbacks
    def test_identical_resend_keeps_active(self):
        client = yield self.connect()
        keys = yield self.subscribe_active(client)
        lines, _, token = yield self.subscribe(client, keys=keys)
        self.assertIsNone(token)
        self.assertEqual(len(self.sender.sent), 1)
        self.assertEqual(lines[-1], b"W OK WEBPUSH completed")
        self.assertEqual(self.store.get("alice", "phone-1").state, model.ACTIVE)

    @defer.inlineCallbacks
    def test_update_makes_pending(self):
        client = yield self.connect()
        keys = yield self.subscribe_active(client)
        lines, _, token = yield self.subscribe(client, endpoint=ENDPOINT2, keys=keys)
        self.assertEqual(lines, [self.vapid_line(),
                                 b"* WEBPUSH phone-1 " + ENDPOINT2.encode() + b" NIL",
                                 b"W OK WEBPUSH completed"])
        self.assertIsNotNone(token)
        sub = self.store.get("alice", "phone-1")
        self.assertEqual((sub.state, sub.endpoint), (model.PENDING, ENDPOINT2))
        lines, _, _ = yield self.subscribe(client, endpoint=ENDPOINT2)  # new keys
        self.assertEqual(self.store.get("alice", "phone-1").state, model.PENDING)

    @defer.inlineCallbacks
    def test_update_erases_tokens_of_the_old_version(self):
        client = yield self.connect()
        _, keys, old = yield self.subscribe(client)
        yield self.subscribe(client, endpoint=ENDPOINT2, keys=keys)
        lines = yield client.command(b"K ACKWEBPUSH " + old.encode())
        self.assertEqual(lines, [b"K NO unknown, expired or already used token"])
        self.assertEqual(self.store.token_count("alice"), 1)

    @defer.inlineCallbacks
    def test_delete_is_idempotent(self):
        client = yield self.connect()
        yield self.subscribe(client)
        lines = yield client.command(b"D WEBPUSH phone-1 NIL")
        self.assertEqual(lines, [b"D OK WEBPUSH completed"])
        self.assertIsNone(self.store.get("alice", "phone-1"))
        self.assertEqual(self.store.token_count(), 0)
        lines = yield client.command(b"E WEBPUSH phone-1 nil")
        self.assertEqual(lines, [b"E OK WEBPUSH completed"])
        lines = yield client.command(b"F WEBPUSH never-seen NIL")
        self.assertEqual(lines, [b"F OK WEBPUSH completed"])

    @defer.inlineCallbacks
    def test_quoted_nil_is_an_endpoint_not_a_delete(self):
        client = yield self.connect()
        yield self.subscribe(client)
        lines = yield client.command(b'D WEBPUSH phone-1 "NIL"')
        self.assertEqual(lines, [b"D BAD WEBPUSH needs an id, an endpoint, p256dh and auth"])
        self.assertIsNotNone(self.store.get("alice", "phone-1"))

    @defer.inlineCallbacks
    def test_bad_arguments(self):
        client = yield self.connect()
        yield self.subscribe(client)
        before = self.snapshot()
        keys = UAKeys()
        p, a = keys.p256dh_text.encode(), keys.auth_text.encode()
        e = ENDPOINT.encode()
        cases = [
            (b"WEBPUSH", b"Illegal syntax: Missing argument"),
            (b"WEBPUSH phone-1", b"Illegal syntax: Missing argument"),
            (b"WEBPUSH phone-1 " + e, b"WEBPUSH needs an id, an endpoint, p256dh and auth"),
            (b"WEBPUSH phone-1 " + e + b" " + p,
             b"WEBPUSH needs an id, an endpoint, p256dh and auth"),
            (b"WEBPUSH phone-1 NIL " + p, b"WEBPUSH <id> NIL takes no further arguments"),
            (b"WEBPUSH phone-1 " + e + b" " + p + b" " + a + b" extra",
             b"Illegal syntax: Too many arguments for command: b'extra'"),
            (b"WEBPUSH phone-1 " + e + b" NIL " + a,
             b"p256dh and auth are required (NIL is not allowed)"),
            (b"WEBPUSH bad/id " + e + b" " + p + b" " + a,
             b"subscription id must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
            (b"WEBPUSH " + b"x" * 65 + b" " + e + b" " + p + b" " + a,
             b"subscription id must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
            (b"WEBPUSH phone-1 push.example.net/x " + p + b" " + a,
             b"endpoint must be an absolute https URL"),
            (b"WEBPUSH phone-1 https://u:p@push.example.net/x " + p + b" " + a,
             b"endpoint must not contain userinfo"),
            (b"WEBPUSH phone-1 https://push.example.net/x#f " + p + b" " + a,
             b"endpoint must not contain a fragment"),
            (b"WEBPUSH phone-1 https://push.example.net/" + b"a" * 1010 + b" " + p + b" " + a,
             b"endpoint is longer than 1024 octets"),
            (b"WEBPUSH phone-1 " + e + b" " + p[:-4] + b" " + a, (b"p256dh must be ",)),
            (b"WEBPUSH phone-1 " + e + b" BA" + b"A" * 85 + b" " + a,
             (b"p256dh is not a point on the P-256 curve",)),
            (b"WEBPUSH phone-1 " + e + b" " + p + b" " + a + b"AAAA",
             (b"auth must be exactly 16 octets",)),
            (b"WEBPUSH phone-1 " + e + b" " + p + b" a+b/", (b"auth is not ",)),
            (b'WEBPUSH "phone-1 ' + e, b"Illegal syntax: Unmatched quotes"),
        ]
        for i, (args, reason) in enumerate(cases):
            tag = b"B%d" % i
            lines = yield client.command(tag + b" " + args)
            if isinstance(reason, tuple):  # worded by the crypto module: check the start
                self.assertEqual(len(lines), 1, args)
                self.assertTrue(lines[0].startswith(tag + b" BAD " + reason[0]), (lines, args))
            else:
                self.assertEqual(lines, [tag + b" BAD " + reason], args)
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(len(self.sender.sent), 1)

    @defer.inlineCallbacks
    def test_policy_refusal_is_no(self):
        client = yield self.connect()
        keys = UAKeys()
        lines = yield client.command(self.webpush_line("phone-1", "http://push.example.net/x",
                                                       keys))
        self.assertEqual(lines, [b"W NO endpoint refused: the endpoint must be an https URL"])
        lines = yield client.command(self.webpush_line("phone-1", "https://127.0.0.1/x", keys))
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith(b"W NO endpoint refused: "), lines)
        self.assertEqual(self.store.list("alice"), [])
        self.assertEqual(self.sender.sent, [])

    @defer.inlineCallbacks
    def test_numeric_host_refused_at_webpush_time(self):
        client = yield self.connect()
        keys = UAKeys()
        for host in [b"2130706433", b"0x7f.1", b"127.1", b"0177.0.0.1"]:
            lines = yield client.command(self.webpush_line("phone-1", "https://%s/x" % host.decode(), keys))
            self.assertEqual(lines, [b"W NO endpoint refused: the endpoint host " + host
                                     + b" is a number but not a dotted-quad IPv4 address"])
        self.assertEqual(self.store.list("alice"), [])
        self.assertEqual(self.sender.sent, [])

    @defer.inlineCallbacks
    def test_limit(self):
        client = yield self.connect()
        self.service.max_subscriptions = 2
        yield self.subscribe(client, "a")
        yield self.subscribe(client, "b")
        lines, _, token = yield self.subscribe(client, "c")
        self.assertEqual(lines, [b"W NO [LIMIT] at most 2 subscriptions per account"])
        self.assertIsNone(token)
        # updating an existing one is still fine; another account is not affected
        lines, _, _ = yield self.subscribe(client, "b", ENDPOINT2)
        self.assertEqual(lines[-1], b"W OK WEBPUSH completed")
        bob = yield self.connect(b"bob")
        lines, _, _ = yield self.subscribe(bob, "c")
        self.assertEqual(lines[-1], b"W OK WEBPUSH completed")

    @defer.inlineCallbacks
    def test_verification_rate_limit(self):
        client = yield self.connect()
        for i in range(decisions.VERIFICATIONS_PER_HOUR):
            lines, _, token = yield self.subscribe(client, "s%d" % i)
            self.assertIsNotNone(token)
        lines, _, token = yield self.subscribe(client, "one-more")
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith(
            b"W NO too many verification pushes for this account; try again in "), lines)
        self.assertIsNone(self.store.get("alice", "one-more"))
        self.clock.advance(3600)
        lines, _, token = yield self.subscribe(client, "one-more")
        self.assertEqual(lines[-1], b"W OK WEBPUSH completed")

    @defer.inlineCallbacks
    def test_selected_state_and_case_insensitive_names(self):
        client = yield self.connect()
        lines = yield client.command(b"S SELECT INBOX")
        self.assertEqual(lines[-1][:4], b"S OK")
        keys = UAKeys()
        lines = yield client.command(("w webpush phone-1 %s %s %s" % (
            ENDPOINT, keys.p256dh_text, keys.auth_text)).encode())
        self.assertEqual(lines[-1], b"w OK WEBPUSH completed")

    @defer.inlineCallbacks
    def test_endpoint_needing_quotes_is_quoted(self):
        client = yield self.connect()
        url = "https://push.example.net/p/a%20b*c"
        lines, _, _ = yield self.subscribe(client, endpoint=url)
        self.assertEqual(lines[1], b'* WEBPUSH phone-1 "' + url.encode() + b'" NIL')

    @defer.inlineCallbacks
    def test_subscriptions_survive_restart(self):
        client = yield self.connect()
        keys = yield self.subscribe_active(client)
        self.store.close()
        self.store = SQLiteSubscriptionStore(self.db_path)
        sub = self.store.get("alice", "phone-1")
        self.assertEqual((sub.state, sub.p256dh, sub.vapid_key),
                         (model.ACTIVE, keys.p256dh, self.keyring.current()))

    @defer.inlineCallbacks
    def test_accounts_are_separate(self):
        alice = yield self.connect()
        bob = yield self.connect(b"bob")
        yield self.subscribe(alice, "phone-1")
        lines = yield bob.command(b"L LWEBPUSH *")
        self.assertEqual(lines, [b"L OK LWEBPUSH completed"])
        lines = yield bob.command(b"D WEBPUSH phone-1 NIL")
        self.assertIsNotNone(self.store.get("alice", "phone-1"))
