"""GETVAPID and the WEBPUSH capability (SPEC 2, 3.1), over a real IMAP connection."""

from twisted.internet import defer
from twisted.mail import imap4

from tests.harness.webpush import EmptyMailbox, WebPushTestBase


class PlainAvatar(imap4.MemoryAccount):
    """An avatar that cannot be adapted to IWebPushAccount."""

    def _emptyMailbox(self, name, id):
        return EmptyMailbox()


class GetVapidTests(WebPushTestBase):

    @defer.inlineCallbacks
    def test_getvapid(self):
        client = yield self.connect()
        lines = yield client.command(b"a1 GETVAPID")
        self.assertEqual(lines, [self.vapid_line(), b"a1 OK GETVAPID completed"])
        self.assertEqual(len(self.keyring.current()), 87)

    @defer.inlineCallbacks
    def test_getvapid_after_rotation_gives_the_new_key(self):
        client = yield self.connect()
        old = self.keyring.current()
        new = self.keyring.rotate()
        self.assertNotEqual(old, new)
        lines = yield client.command(b"a1 getvapid")
        self.assertEqual(lines, [b"* VAPID " + new.encode(), b"a1 OK GETVAPID completed"])

    @defer.inlineCallbacks
    def test_arguments_are_bad(self):
        client = yield self.connect()
        lines = yield client.command(b"a1 GETVAPID now")
        self.assertEqual(lines, [b"a1 BAD Illegal syntax: Too many arguments for command: b'now'"])

    @defer.inlineCallbacks
    def test_capability_only_after_authentication(self):
        client = yield self.connect(user=None)
        lines = yield client.command(b"c1 CAPABILITY")
        self.assertNotIn(b"WEBPUSH", lines[0].split())
        self.assertEqual(lines[-1], b"c1 OK CAPABILITY completed")
        yield client.command(b"L0 LOGIN alice secret")
        lines = yield client.command(b"c2 CAPABILITY")
        self.assertEqual(lines[0].split()[-1], b"WEBPUSH")
        self.assertEqual(lines[0].split()[:2], [b"*", b"CAPABILITY"])

    @defer.inlineCallbacks
    def test_commands_before_authentication_are_bad(self):
        client = yield self.connect(user=None)
        for i, cmd in enumerate([b"GETVAPID", b"WEBPUSH phone-1 NIL", b"ACKWEBPUSH abc",
                                 b"LWEBPUSH *", b"SILWEBPUSH phone-1 0"]):
            tag = b"u%d" % i
            lines = yield client.command(tag + b" " + cmd)
            self.assertEqual(
                lines, [tag + b" BAD WEBPUSH commands are valid only after authentication"])
        self.assertEqual(self.sender.sent, [])


class NotAdaptableTests(WebPushTestBase):
    """An avatar that does not adapt to IWebPushAccount: no capability, commands get NO."""

    avatar_factory = staticmethod(lambda name, svc: PlainAvatar(name))

    @defer.inlineCallbacks
    def test_no_capability_and_no(self):
        client = yield self.connect()
        lines = yield client.command(b"c1 CAPABILITY")
        self.assertNotIn(b"WEBPUSH", lines[0].split())
        lines = yield client.command(b"a1 GETVAPID")
        self.assertEqual(lines, [b"a1 NO WEBPUSH is not available for this account"])
