"""WEBPUSH create / update / delete over a real IMAP connection on loopback (SPEC 3.2).

The server, the avatar and the recording push sender are tests.harness.webpush's.
"""

import base64
import sqlite3
from contextlib import closing

from twisted.internet import defer

from imapwebpush import decisions
from imapwebpush.webpush import model
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore
from tests.harness.webpush import ENDPOINT, ENDPOINT2, UAKeys, WebPushTestBase


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
