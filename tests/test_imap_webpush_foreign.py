"""WEBPUSH on a Twisted IMAP stack that is not ours.

A stock twisted.mail.imap4.IMAP4Server plus the mixin, and an avatar that wraps a
twisted MemoryAccount and knows nothing of Web Push: it becomes usable through
``registerAdapter(..., ForeignAvatar, IWebPushAccount)``. The client is Python's
imaplib (in a thread), the pushes go through the real delivery service to the
loopback PushService, which checks VAPID and decrypts them.
"""

import imaplib

from twisted.internet import defer, threads
from twisted.mail import imap4
from twisted.python.components import registerAdapter
from zope.interface import implementer

from imapwebpush.imap.webpush_commands import WebPushAccount
from imapwebpush.interfaces import IWebPushAccount
from tests.harness.webpush import EmptyMailbox, WebPushTestBase

COMMANDS = ("GETVAPID", "WEBPUSH", "ACKWEBPUSH", "LWEBPUSH", "SILWEBPUSH")


class Deployment:
    """What a foreign application has anyway: its own configuration object."""

    def __init__(self, webpush):
        self.webpush = webpush


class Mailboxes(imap4.MemoryAccount):
    def _emptyMailbox(self, name, id):
        return EmptyMailbox()


@implementer(imap4.IAccount)
class ForeignAvatar:
    """Somebody else's avatar: delegates to a MemoryAccount, provides only imap4.IAccount."""

    def __init__(self, name, deployment):
        self.name = name
        self.deployment = deployment
        self.mailboxes = Mailboxes(name)
        self.mailboxes.addMailbox("INBOX")

    def __getattr__(self, attr):
        return getattr(self.mailboxes, attr)


registerAdapter(lambda avatar: WebPushAccount("foreign:" + avatar.name,
                                              avatar.deployment.webpush),
                ForeignAvatar, IWebPushAccount)


def client_session(port):
    for name in COMMANDS:
        imaplib.Commands.setdefault(name, ("AUTH", "SELECTED"))
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", "secret")
    return m


def command(m, name, *args):
    """(tagged type, tagged text, {untagged name: [data, ...]})."""
    m.untagged_responses.clear()
    typ, data = m.xatom(name, *args)
    untagged = {k: list(v) for k, v in m.untagged_responses.items()}
    return typ, data, untagged


class ForeignStackTests(WebPushTestBase):

    real_push = True
    avatar_factory = staticmethod(lambda name, svc: ForeignAvatar(name, Deployment(svc)))

    def setUp(self):
        WebPushTestBase.setUp(self)
        self.imap = None
        self.addCleanup(self.close_imap)  # cleanups run last-in first-out: before the server stops

    def close_imap(self):
        if self.imap is not None:
            return threads.deferToThread(self.imap.shutdown)

    def inthread(self, f, *args):
        return threads.deferToThread(f, *args)

    @defer.inlineCallbacks
    def test_end_to_end_with_imaplib(self):
        port = self.portno
        self.imap = m = yield self.inthread(client_session, port)
        typ, caps = yield self.inthread(m.capability)
        self.assertIn(b"WEBPUSH", caps[0].split())

        typ, data, untagged = yield self.inthread(command, m, "GETVAPID")
        self.assertEqual(typ, "OK")
        self.assertEqual(untagged["VAPID"], [self.keyring.current().encode()])

        ua = self.pushservice.new_subscription()
        typ, data, untagged = yield self.inthread(command, m, "WEBPUSH", "phone-1", ua.endpoint,
                                             ua.p256dh, ua.auth)
        self.assertEqual((typ, data), ("OK", [b"WEBPUSH completed"]))
        self.assertEqual(untagged["VAPID"], [self.keyring.current().encode()])
        self.assertEqual(untagged["WEBPUSH"], [b"phone-1 " + ua.endpoint.encode() + b" NIL"])

        pushes = yield self.pushservice.wait_for(1, ua)
        self.assertEqual(pushes[0].problems, [])
        self.assertEqual(pushes[0].vapid_key, self.keyring.current())
        token = pushes[0].plaintext[len(b"* ACKWEBPUSH "):-2].decode()

        typ, data, untagged = yield self.inthread(command, m, "ACKWEBPUSH", token)
        self.assertEqual((typ, data), ("OK", [b"ACKWEBPUSH completed"]))
        self.assertEqual(self.store.get("foreign:alice", "phone-1").state, "active")

        typ, data, untagged = yield self.inthread(command, m, "SILWEBPUSH", "phone-1", "NIL")
        self.assertEqual(untagged["WEBPUSH"], [b"phone-1 " + ua.endpoint.encode()
                                               + b" CONNECTION"])
        typ, data, untagged = yield self.inthread(command, m, "LWEBPUSH", "*")
        self.assertEqual(untagged["WEBPUSH"], [b"phone-1 " + ua.endpoint.encode()
                                               + b" CONNECTION"])

        typ, data, untagged = yield self.inthread(command, m, "ACKWEBPUSH", token)
        self.assertEqual(typ, "NO")

        yield self.inthread(m.logout)
        self.imap = None
        yield self.connections.lost(0)
        self.assertIsNone(self.store.get("foreign:alice", "phone-1").silenced_connection)

        m = self.imap = yield self.inthread(client_session, port)
        typ, data, untagged = yield self.inthread(command, m, "WEBPUSH", "phone-1", "NIL")
        self.assertEqual(typ, "OK")
        self.assertEqual(self.store.list("foreign:alice"), [])
