"""LWEBPUSH (SPEC 3.4): patterns with * and %, pending ones listed, keys never returned."""

from twisted.internet import defer

from tests.harness.webpush import ENDPOINT, ENDPOINT2, WebPushTestBase


class LWebPushTests(WebPushTestBase):

    @defer.inlineCallbacks
    def setup_subscriptions(self):
        client = yield self.connect()
        yield self.subscribe_active(client, "phone-1", ENDPOINT)
        yield self.subscribe(client, "laptop", ENDPOINT2)  # stays pending
        yield self.subscribe_active(client, "phone-2", ENDPOINT2)
        return client

    def line(self, sid, endpoint, field=b"NIL"):
        return b"* WEBPUSH " + sid + b" " + endpoint.encode() + b" " + field

    @defer.inlineCallbacks
    def test_star_lists_everything_sorted(self):
        client = yield self.setup_subscriptions()
        lines = yield client.command(b"a4 LWEBPUSH *")
        self.assertEqual(lines, [self.line(b"laptop", ENDPOINT2),
                                 self.line(b"phone-1", ENDPOINT),
                                 self.line(b"phone-2", ENDPOINT2),
                                 b"a4 OK LWEBPUSH completed"])

    @defer.inlineCallbacks
    def test_patterns(self):
        client = yield self.setup_subscriptions()
        for pattern, ids in [
            (b"%", [b"laptop", b"phone-1", b"phone-2"]),
            (b"phone*", [b"phone-1", b"phone-2"]),
            (b"p%1", [b"phone-1"]),
            (b"*-2", [b"phone-2"]),
            (b"laptop", [b"laptop"]),
            (b"LAPTOP", []),  # ids are case-sensitive
            (b"lap", []),
            (b'"phone-1"', [b"phone-1"]),
            (b'""', []),
            (b"phone.1", []),  # '.' is literal, not a regex
        ]:
            lines = yield client.command(b"a LWEBPUSH " + pattern)
            self.assertEqual([l.split(b" ")[2] for l in lines[:-1]], ids, pattern)
            self.assertEqual(lines[-1], b"a OK LWEBPUSH completed")

    @defer.inlineCallbacks
    def test_keys_never_returned(self):
        client = yield self.setup_subscriptions()
        lines = yield client.command(b"a LWEBPUSH *")
        for sub in self.store.list("alice"):
            for line in lines:
                self.assertEqual(len(line.split(b" ")), 5 if line.startswith(b"*") else 4)
                self.assertNotIn(sub.p256dh, line)
        joined = b"\n".join(lines)
        for sub in self.store.list("alice"):
            from imapwebpush.webpush.crypto import b64url_encode
            self.assertNotIn(b64url_encode(sub.p256dh).encode(), joined)
            self.assertNotIn(b64url_encode(sub.auth).encode(), joined)

    @defer.inlineCallbacks
    def test_silenced_field(self):
        client = yield self.setup_subscriptions()
        yield client.command(b"s SILWEBPUSH phone-1 600")
        self.clock.advance(100)
        yield client.command(b"s SILWEBPUSH phone-2 NIL")
        lines = yield client.command(b"a LWEBPUSH phone*")
        self.assertEqual(lines, [self.line(b"phone-1", ENDPOINT, b"500"),
                                 self.line(b"phone-2", ENDPOINT2, b"CONNECTION"),
                                 b"a OK LWEBPUSH completed"])

    @defer.inlineCallbacks
    def test_bad_arguments(self):
        client = yield self.connect()
        lines = yield client.command(b"a LWEBPUSH")
        self.assertEqual(lines, [b"a BAD Illegal syntax: Missing argument"])
        lines = yield client.command(b"b LWEBPUSH * *")
        self.assertEqual(lines, [b"b BAD Illegal syntax: Too many arguments for command: b'*'"])

    @defer.inlineCallbacks
    def test_hostile_pattern_answers(self):
        # '*******x' against a 64-character id backtracked for seconds with a regex.
        client = yield self.connect()
        long_id = "a" * 64
        yield self.subscribe(client, long_id, ENDPOINT)
        lines = yield client.command(b"a LWEBPUSH *******x")
        self.assertEqual(lines, [b"a OK LWEBPUSH completed"])
        lines = yield client.command(b"b LWEBPUSH %*%*%*a")
        self.assertEqual(lines, [self.line(long_id.encode(), ENDPOINT), b"b OK LWEBPUSH completed"])

    @defer.inlineCallbacks
    def test_pattern_length_limit(self):
        self.service.max_pattern_length = 10
        client = yield self.connect()
        yield self.subscribe(client, "phone-1", ENDPOINT)
        lines = yield client.command(b"a LWEBPUSH *********1")
        self.assertEqual(lines, [self.line(b"phone-1", ENDPOINT, b"NIL"), b"a OK LWEBPUSH completed"])
        lines = yield client.command(b"b LWEBPUSH **********1")
        self.assertEqual(lines, [b"b NO [LIMIT] pattern is 11 characters, more than 10"])
