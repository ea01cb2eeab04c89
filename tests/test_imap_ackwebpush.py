"""ACKWEBPUSH (SPEC 3.3): tokens are single use, bound to account and version, expire, lock."""

from twisted.internet import defer

from imapwebpush import decisions
from imapwebpush.webpush import model
from tests.harness.webpush import ENDPOINT, ENDPOINT2, WebPushTestBase


class AckTests(WebPushTestBase):

    @defer.inlineCallbacks
    def test_ack_activates_under_the_key_of_the_token(self):
        client = yield self.connect()
        _, keys, token = yield self.subscribe(client)
        key = self.keyring.current()
        lines = yield client.command(b"a3 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines, [b"* WEBPUSH phone-1 " + ENDPOINT.encode() + b" NIL",
                                 b"a3 OK ACKWEBPUSH completed"])
        sub = self.store.get("alice", "phone-1")
        self.assertEqual((sub.state, sub.vapid_key), (model.ACTIVE, key))
        self.assertEqual(self.store.token_count(), 0)

    @defer.inlineCallbacks
    def test_quoted_and_literal_token(self):
        client = yield self.connect()
        _, _, token = yield self.subscribe(client)
        client.sendLine(b"a3 ACKWEBPUSH {%d}" % len(token))
        yield client.continuation()
        client.transport.write(token.encode() + b"\r\n")
        lines = yield client.expect(lambda l: l.startswith(b"a3 "))
        self.assertEqual(lines[-1], b"a3 OK ACKWEBPUSH completed")
        _, _, token = yield self.subscribe(client, "two")
        lines = yield client.command(b'a4 ACKWEBPUSH "' + token.encode() + b'"')
        self.assertEqual(lines[-1], b"a4 OK ACKWEBPUSH completed")

    @defer.inlineCallbacks
    def test_single_use(self):
        client = yield self.connect()
        _, _, token = yield self.subscribe(client)
        yield client.command(b"a1 ACKWEBPUSH " + token.encode())
        lines = yield client.command(b"a2 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines, [b"a2 NO unknown, expired or already used token"])

    @defer.inlineCallbacks
    def test_expired(self):
        client = yield self.connect()
        _, _, token = yield self.subscribe(client)
        self.clock.advance(decisions.TOKEN_LIFETIME)
        lines = yield client.command(b"a1 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines, [b"a1 NO unknown, expired or already used token"])
        self.assertEqual(self.store.get("alice", "phone-1").state, model.PENDING)

    @defer.inlineCallbacks
    def test_just_before_expiry(self):
        client = yield self.connect()
        _, _, token = yield self.subscribe(client)
        self.clock.advance(decisions.TOKEN_LIFETIME - 1)
        lines = yield client.command(b"a1 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines[-1], b"a1 OK ACKWEBPUSH completed")

    @defer.inlineCallbacks
    def test_foreign_token(self):
        alice = yield self.connect()
        bob = yield self.connect(b"bob")
        _, _, token = yield self.subscribe(bob)
        lines = yield alice.command(b"a1 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines, [b"a1 NO unknown, expired or already used token"])
        self.assertEqual(self.store.list("alice"), [])
        lines = yield bob.command(b"b1 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines[-1], b"b1 OK ACKWEBPUSH completed")

    @defer.inlineCallbacks
    def test_token_of_an_older_version(self):
        client = yield self.connect()
        _, keys, token = yield self.subscribe(client)
        yield self.subscribe(client, endpoint=ENDPOINT2, keys=keys)
        lines = yield client.command(b"a1 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines, [b"a1 NO unknown, expired or already used token"])

    @defer.inlineCallbacks
    def test_token_of_a_deleted_subscription(self):
        client = yield self.connect()
        _, _, token = yield self.subscribe(client)
        yield client.command(b"d WEBPUSH phone-1 NIL")
        lines = yield client.command(b"a1 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines, [b"a1 NO unknown, expired or already used token"])

    @defer.inlineCallbacks
    def test_two_pending_tokens_of_one_version_both_work_once(self):
        client = yield self.connect()
        _, keys, first = yield self.subscribe(client)
        _, _, second = yield self.subscribe(client, keys=keys)
        self.assertNotEqual(first, second)
        lines = yield client.command(b"a1 ACKWEBPUSH " + first.encode())
        self.assertEqual(lines[-1], b"a1 OK ACKWEBPUSH completed")
        lines = yield client.command(b"a2 ACKWEBPUSH " + second.encode())
        self.assertEqual(lines, [b"a2 NO unknown, expired or already used token"])

    @defer.inlineCallbacks
    def test_lock_after_too_many_failures(self):
        """SPEC 3.3: *more than* 10 failures in the hour lock ACKWEBPUSH: the 11th is still checked."""
        client = yield self.connect()
        _, _, token = yield self.subscribe(client)
        for i in range(decisions.ACK_FAILURES_PER_HOUR + 1):
            lines = yield client.command(b"f%d ACKWEBPUSH AAAAAAAAAAAAAAAAAAAAAA" % i)
            self.assertEqual(lines, [b"f%d NO unknown, expired or already used token" % i])
        lines = yield client.command(b"a1 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines, [b"a1 NO [LIMIT] too many wrong tokens: ACKWEBPUSH is locked"
                                 b" for this account for 3600 s"])
        self.assertEqual(self.store.get("alice", "phone-1").state, model.PENDING)
        # other accounts are not locked
        bob = yield self.connect(b"bob")
        _, _, bobs = yield self.subscribe(bob)
        lines = yield bob.command(b"b1 ACKWEBPUSH " + bobs.encode())
        self.assertEqual(lines[-1], b"b1 OK ACKWEBPUSH completed")
        # the lock ends with the hour
        self.clock.advance(3600)
        _, _, token = yield self.subscribe(client)
        lines = yield client.command(b"a2 ACKWEBPUSH " + token.encode())
        self.assertEqual(lines[-1], b"a2 OK ACKWEBPUSH completed")

    @defer.inlineCallbacks
    def test_rotation_needs_a_new_webpush(self):
        """Active subscriptions keep their key; re-sent WEBPUSH makes them pending under the new one."""
        client = yield self.connect()
        keys = yield self.subscribe_active(client)
        old = self.keyring.current()
        new = self.keyring.rotate()
        self.assertEqual(self.store.get("alice", "phone-1").vapid_key, old)
        lines, _, token = yield self.subscribe(client, keys=keys)
        self.assertEqual(lines, [b"* VAPID " + new.encode(),
                                 b"* WEBPUSH phone-1 " + ENDPOINT.encode() + b" NIL",
                                 b"W OK WEBPUSH completed"])
        sub = self.store.get("alice", "phone-1")
        self.assertEqual((sub.state, sub.vapid_key), (model.PENDING, old))
        self.assertEqual(self.sender.sent[-1][0].vapid_key, new)
        yield client.command(b"a1 ACKWEBPUSH " + token.encode())
        sub = self.store.get("alice", "phone-1")
        self.assertEqual((sub.state, sub.vapid_key), (model.ACTIVE, new))

    @defer.inlineCallbacks
    def test_bad_arguments(self):
        client = yield self.connect()
        yield self.subscribe(client)
        before = self.snapshot()
        for tag, args, answer in [
            (b"b1", b"", b"b1 BAD Illegal syntax: Missing argument"),
            (b"b2", b" a b", b"b2 BAD Illegal syntax: Too many arguments for command: b'b'"),
            (b"b3", b" a*b", b"b3 BAD a token is base64url text"),
            (b"b4", b' "a b"', b"b4 BAD a token is base64url text"),
            (b"b5", b' ""', b"b5 BAD a token is base64url text"),
        ]:
            lines = yield client.command(tag + b" ACKWEBPUSH" + args)
            self.assertEqual(lines, [answer])
        self.assertEqual(self.snapshot(), before)
