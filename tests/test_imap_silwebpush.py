"""SILWEBPUSH (SPEC 3.5): seconds, NIL (until the connection ends), 0; capped; told to the dispatcher."""

from twisted.internet import defer

from imapwebpush import decisions
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore
from tests.harness.webpush import ENDPOINT, RecordingDispatcher, WebPushTestBase

LINE = b"* WEBPUSH phone-1 " + ENDPOINT.encode() + b" "


class SilenceTests(WebPushTestBase):

    def setUp(self):
        WebPushTestBase.setUp(self)
        self.dispatcher = RecordingDispatcher()
        self.service.dispatcher = self.dispatcher

    @defer.inlineCallbacks
    def active(self):
        client = yield self.connect()
        yield self.subscribe_active(client)
        return client

    @defer.inlineCallbacks
    def test_seconds(self):
        client = yield self.active()
        lines = yield client.command(b"a5 SILWEBPUSH phone-1 600")
        self.assertEqual(lines, [LINE + b"600", b"a5 OK SILWEBPUSH completed"])
        sub = self.store.get("alice", "phone-1")
        self.assertTrue(sub.is_silenced(self.clock.seconds()))
        self.clock.advance(600)
        self.assertFalse(self.store.get("alice", "phone-1").is_silenced(self.clock.seconds()))
        lines = yield client.command(b"l LWEBPUSH phone-1")
        self.assertEqual(lines[0], LINE + b"NIL")

    @defer.inlineCallbacks
    def test_capped(self):
        client = yield self.active()
        lines = yield client.command(b"a SILWEBPUSH phone-1 99999999999999999999")
        self.assertEqual(lines, [LINE + str(decisions.MAX_SILENCE).encode(),
                                 b"a OK SILWEBPUSH completed"])

    @defer.inlineCallbacks
    def test_zero_ends_the_silence_and_tells_the_dispatcher(self):
        client = yield self.active()
        yield client.command(b"a SILWEBPUSH phone-1 600")
        lines = yield client.command(b"b SILWEBPUSH phone-1 0")
        self.assertEqual(lines, [LINE + b"NIL", b"b OK SILWEBPUSH completed"])
        self.assertEqual(self.dispatcher.ended, [("alice", "phone-1")])
        # 0 on a subscription that is not silenced tells nobody
        yield client.command(b"c SILWEBPUSH phone-1 0")
        self.assertEqual(self.dispatcher.ended, [("alice", "phone-1")])

    @defer.inlineCallbacks
    def test_nil_until_disconnect(self):
        client = yield self.active()
        lines = yield client.command(b"a6 SILWEBPUSH phone-1 NIL")
        self.assertEqual(lines, [LINE + b"CONNECTION", b"a6 OK SILWEBPUSH completed"])
        self.assertEqual(self.dispatcher.ended, [])
        client.transport.loseConnection()
        yield client.closed
        yield self.connections.lost(0)
        self.assertIsNone(self.store.get("alice", "phone-1").silenced_connection)
        self.assertEqual(self.dispatcher.ended, [("alice", "phone-1")])

    @defer.inlineCallbacks
    def test_nil_until_logout(self):
        client = yield self.active()
        yield client.command(b"a SILWEBPUSH phone-1 NIL")
        lines = yield client.command(b"z LOGOUT")
        self.assertEqual(lines[-1], b"z OK LOGOUT successful")
        yield self.connections.lost(0)
        self.assertIsNone(self.store.get("alice", "phone-1").silenced_connection)
        self.assertEqual(self.dispatcher.ended, [("alice", "phone-1")])

    @defer.inlineCallbacks
    def test_other_connections_do_not_end_it(self):
        first = yield self.active()
        second = yield self.connect()
        yield first.command(b"a SILWEBPUSH phone-1 NIL")
        second.transport.loseConnection()
        yield self.connections.lost(1)
        lines = yield first.command(b"l LWEBPUSH *")
        self.assertEqual(lines[0], LINE + b"CONNECTION")
        self.assertEqual(self.dispatcher.ended, [])
        # a later silence from another connection replaces it
        third = yield self.connect()
        yield third.command(b"b SILWEBPUSH phone-1 60")
        first.transport.loseConnection()
        yield self.connections.lost(0)
        lines = yield third.command(b"l LWEBPUSH *")
        self.assertEqual(lines[0], LINE + b"60")

    @defer.inlineCallbacks
    def test_restart_ends_connection_silences(self):
        client = yield self.active()
        yield client.command(b"a SILWEBPUSH phone-1 NIL")
        yield client.command(b"b SILWEBPUSH phone-1 NIL")
        store = SQLiteSubscriptionStore(self.db_path)
        self.addCleanup(store.close)
        self.assertIsNone(store.get("alice", "phone-1").silenced_connection)

    @defer.inlineCallbacks
    def test_unknown_id_is_no(self):
        client = yield self.active()
        lines = yield client.command(b"a SILWEBPUSH tablet 60")
        self.assertEqual(lines, [b"a NO no subscription tablet"])

    @defer.inlineCallbacks
    def test_bad_arguments(self):
        client = yield self.active()
        before = self.snapshot()
        reason = (b"duration must be a number of seconds (at most 86400), 0 or NIL")
        for tag, args, answer in [
            (b"b1", b"", b"b1 BAD Illegal syntax: Missing argument"),
            (b"b2", b" phone-1", b"b2 BAD Illegal syntax: Missing argument"),
            (b"b3", b" phone-1 -5", b"b3 BAD " + reason),
            (b"b4", b" phone-1 1.5", b"b4 BAD " + reason),
            (b"b5", b" phone-1 soon", b"b5 BAD " + reason),
            (b"b6", b" phone-1 60 60", b"b6 BAD Illegal syntax: Too many arguments for command:"
                                      b" b'60'"),
            (b"b7", b" bad/id 60", b"b7 BAD subscription id must be 1 to 64 characters of"
                                   b" A-Z a-z 0-9 . _ -"),
        ]:
            lines = yield client.command(tag + b" SILWEBPUSH" + args)
            self.assertEqual(lines, [answer])
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.dispatcher.ended, [])
