"""The WEBPUSH test harness: a WEBPUSH IMAP server on a tracked loopback port.

``WebPushTestBase`` starts a stock twisted IMAP4Server with the WEBPUSH mixin
(or the class a subclass names), whose avatar is a plain twisted MemoryAccount
made to provide IWebPushAccount, and a WebPushService on a task.Clock. Pushes go
to a ``RecordingSender`` (the test fires the outcomes), or with ``real_push`` to
the real delivery service and the loopback testing PushService. Clients are
``tests.harness.wire.LineClient``s from ``connect()``.
"""

import base64
import os

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization
from twisted.cred import checkers, portal
from twisted.internet import defer, protocol, reactor, task
from twisted.mail import imap4
from twisted.trial import unittest
from zope.interface import implementer

from imapwebpush import decisions
from imapwebpush.imap.webpush_commands import WebPushCommandsMixin
from imapwebpush.interfaces import IPushDispatcher, IPushSender, IWebPushAccount
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


@implementer(IPushDispatcher)
class RecordingDispatcher:
    def __init__(self):
        self.ended = []

    def silenceEnded(self, account, subscription_id):
        self.ended.append((account, subscription_id))
