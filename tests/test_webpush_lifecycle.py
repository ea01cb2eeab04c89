"""The whole life of a subscription through our IMAPServer + the WEBPUSH mixin, with real pushes.

create -> verification push (decrypted by the loopback PushService) -> ACKWEBPUSH ->
list -> silence -> key rotation -> update -> 410 deletes it; plus the outcome rules of
SPEC 6.1 (3 rejections -> pending, 7 days failing -> deleted) and the 24 h prune.
"""

import os

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.trial import unittest

from imapwebpush import datadir, decisions
from imapwebpush.imap.avatar import Avatar
from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.imap.server import IMAPServer
from imapwebpush.imap.webpush_commands import WebPushAvatarFactory, webpush_server_class
from imapwebpush.store.account import MailStore
from imapwebpush.testing.pushservice import Answer
from imapwebpush.webpush import model
from imapwebpush.webpush.service import PRUNE_INTERVAL, Refused, WebPushService
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore, token_hash
from tests.harness.webpush import ENDPOINT, SUBJECT, UAKeys, WebPushTestBase

ALICE = "alice@example.org"


class OurServerBase(WebPushTestBase):
    """Our IMAPServer (Maildir store, IMAPRealm, Avatar) with the WEBPUSH mixin."""

    real_push = True

    def make_factory(self):
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(ALICE.encode(), b"secret")
        realm = IMAPRealm(MailStore(self.mktemp()),
                          avatar_factory=WebPushAvatarFactory(self.service, Avatar))
        return IMAPFactory(Portal(realm, [checker]), allow_plaintext_auth=True,
                           protocol=webpush_server_class(IMAPServer))

    def connect(self, user=ALICE.encode()):
        return WebPushTestBase.connect(self, user)

    @defer.inlineCallbacks
    def webpush(self, client, tag, sid, ua):
        line = ("%s WEBPUSH %s %s %s %s" % (tag, sid, ua.endpoint, ua.p256dh, ua.auth)).encode()
        lines = yield client.command(line)
        return lines

    def next_outcome(self):
        """A Deferred fired with the next outcome, once the service has applied it."""
        d = defer.Deferred()
        apply = type(self.service).pushOutcome.__get__(self.service)

        def observe(outcome):
            apply(outcome)
            del self.service.pushOutcome
            d.callback(outcome)
        self.service.pushOutcome = observe
        return d

    @defer.inlineCallbacks
    def verification(self, ua, count=1):
        """The token of the ``count``-th push received for ``ua`` (checked and decrypted)."""
        pushes = yield self.pushservice.wait_for(count, ua)
        push = pushes[count - 1]
        self.assertEqual(push.problems, [])
        self.assertEqual(push.headers["urgency"], "high")
        self.assertEqual(push.headers["ttl"], str(decisions.TTL_VERIFICATION))
        self.assertTrue(push.plaintext.startswith(b"* ACKWEBPUSH "), push.plaintext)
        self.assertTrue(push.plaintext.endswith(b"\r\n"))
        return push, push.plaintext[len(b"* ACKWEBPUSH "):-2]


class LifecycleTests(OurServerBase):

    @defer.inlineCallbacks
    def test_full_lifecycle(self):
        client = yield self.connect()
        lines = yield client.command(b"c CAPABILITY")
        self.assertIn(b"WEBPUSH", lines[0].split())

        # GETVAPID, then create
        lines = yield client.command(b"a1 GETVAPID")
        key1 = self.keyring.current()
        self.assertEqual(lines, [b"* VAPID " + key1.encode(), b"a1 OK GETVAPID completed"])
        ua = self.pushservice.new_subscription()
        lines = yield self.webpush(client, "a2", "phone-1", ua)
        self.assertEqual(lines, [b"* VAPID " + key1.encode(),
                                 b"* WEBPUSH phone-1 " + ua.endpoint.encode() + b" NIL",
                                 b"a2 OK WEBPUSH completed"])

        # the verification push arrives, signed with the current key; ACK it
        push, token = yield self.verification(ua)
        self.assertEqual(push.vapid_key, key1)
        lines = yield client.command(b"a3 ACKWEBPUSH " + token)
        self.assertEqual(lines, [b"* WEBPUSH phone-1 " + ua.endpoint.encode() + b" NIL",
                                 b"a3 OK ACKWEBPUSH completed"])
        self.assertEqual([s.id for s in self.store.active(ALICE)], ["phone-1"])

        # list and silence
        lines = yield client.command(b"a4 LWEBPUSH *")
        self.assertEqual(lines, [b"* WEBPUSH phone-1 " + ua.endpoint.encode() + b" NIL",
                                 b"a4 OK LWEBPUSH completed"])
        lines = yield client.command(b"a5 SILWEBPUSH phone-1 600")
        self.assertEqual(lines, [b"* WEBPUSH phone-1 " + ua.endpoint.encode() + b" 600",
                                 b"a5 OK SILWEBPUSH completed"])
        lines = yield client.command(b"a6 SILWEBPUSH phone-1 0")
        self.assertEqual(lines[-1], b"a6 OK SILWEBPUSH completed")

        # rotation: still active under the old key until WEBPUSH is sent again
        key2 = self.keyring.rotate()
        self.assertEqual(self.store.get(ALICE, "phone-1").vapid_key, key1)
        lines = yield self.webpush(client, "a7", "phone-1", ua)
        self.assertEqual(lines, [b"* VAPID " + key2.encode(),
                                 b"* WEBPUSH phone-1 " + ua.endpoint.encode() + b" NIL",
                                 b"a7 OK WEBPUSH completed"])
        self.assertEqual(self.store.get(ALICE, "phone-1").state, model.PENDING)
        push, token = yield self.verification(ua, 2)
        self.assertEqual(push.vapid_key, key2)
        lines = yield client.command(b"a8 ACKWEBPUSH " + token)
        self.assertEqual(lines[-1], b"a8 OK ACKWEBPUSH completed")
        self.assertEqual(self.store.get(ALICE, "phone-1").vapid_key, key2)

        # update to a new endpoint (the device re-registered)
        ua2 = self.pushservice.new_subscription()
        lines = yield self.webpush(client, "a9", "phone-1", ua2)
        self.assertEqual(lines[1], b"* WEBPUSH phone-1 " + ua2.endpoint.encode() + b" NIL")
        _, token = yield self.verification(ua2)
        lines = yield client.command(b"b1 ACKWEBPUSH " + token)
        self.assertEqual(lines[-1], b"b1 OK ACKWEBPUSH completed")

        # the push service says 410: the subscription is deleted
        ua2.remove()
        outcome = yield self.service.test_push(ALICE, "phone-1")
        self.assertEqual((outcome.kind, outcome.status), (model.GONE, 410))
        lines = yield client.command(b"b2 LWEBPUSH *")
        self.assertEqual(lines, [b"b2 OK LWEBPUSH completed"])

        # create and delete another one
        ua3 = self.pushservice.new_subscription()
        yield self.webpush(client, "b3", "laptop", ua3)
        lines = yield client.command(b"b4 WEBPUSH laptop NIL")
        self.assertEqual(lines, [b"b4 OK WEBPUSH completed"])
        self.assertEqual(self.store.list(ALICE), [])
        self.assertEqual(self.store.token_count(), 0)

    @defer.inlineCallbacks
    def test_login_capability_code_and_logout_ends_silence(self):
        from tests.harness.webpush import RecordingDispatcher

        self.service.dispatcher = RecordingDispatcher()
        client = yield self.connect(user=None)
        lines = yield client.command(b"c1 CAPABILITY")
        self.assertNotIn(b"WEBPUSH", lines[0].split())
        lines = yield client.command(b"L1 LOGIN " + ALICE.encode() + b" secret")
        self.assertTrue(lines[-1].startswith(b"L1 OK [CAPABILITY IMAP4rev1 "), lines)
        self.assertIn(b"WEBPUSH", lines[-1].split(b"]")[0].split())
        ua = self.pushservice.new_subscription()
        yield self.webpush(client, "a1", "phone-1", ua)
        lines = yield client.command(b"a2 SILWEBPUSH phone-1 NIL")
        self.assertEqual(lines[-2], b"* WEBPUSH phone-1 " + ua.endpoint.encode() + b" CONNECTION")
        lines = yield client.command(b"a3 LOGOUT")
        self.assertEqual(lines[-1][:5], b"a3 OK")
        yield self.connections.lost(0)
        self.assertIsNone(self.store.get(ALICE, "phone-1").silenced_connection)
        self.assertEqual(self.service.dispatcher.ended, [(ALICE, "phone-1")])

    @defer.inlineCallbacks
    def test_gone_during_verification_deletes_the_pending_subscription(self):
        client = yield self.connect()
        ua = self.pushservice.new_subscription()
        ua.respond(Answer.gone(404))
        outcome = self.next_outcome()
        yield self.webpush(client, "a1", "phone-1", ua)
        outcome = yield outcome
        self.assertEqual((outcome.kind, outcome.status), (model.GONE, 404))
        self.assertIsNone(self.store.get(ALICE, "phone-1"))

    @defer.inlineCallbacks
    def test_three_rejections_make_it_pending(self):
        client = yield self.connect()
        ua = self.pushservice.new_subscription()
        yield self.webpush(client, "a1", "phone-1", ua)
        _, token = yield self.verification(ua)
        yield client.command(b"a2 ACKWEBPUSH " + token)
        ua.respond(Answer(403), Answer(403))
        for _ in range(2):
            outcome = yield self.service.test_push(ALICE, "phone-1")
            self.assertEqual((outcome.kind, outcome.status), (model.REJECTED, 403))
        self.assertEqual(self.store.get(ALICE, "phone-1").state, model.ACTIVE)
        outcome = yield self.service.test_push(ALICE, "phone-1")  # delivered: counter reset
        self.assertEqual(outcome.kind, model.DELIVERED)
        ua.respond(Answer(401), Answer(400), Answer(403))
        for _ in range(3):
            yield self.service.test_push(ALICE, "phone-1")
        self.assertEqual(self.store.get(ALICE, "phone-1").state, model.PENDING)
        self.assertEqual(self.store.active(ALICE), [])
        # re-registering heals it
        lines = yield self.webpush(client, "a3", "phone-1", ua)
        _, token = yield self.verification(ua, 8)
        lines = yield client.command(b"a4 ACKWEBPUSH " + token)
        self.assertEqual(lines[-1], b"a4 OK ACKWEBPUSH completed")

    @defer.inlineCallbacks
    def test_never_acknowledged_is_pruned_after_a_day(self):
        client = yield self.connect()
        ua = self.pushservice.new_subscription()
        yield self.webpush(client, "a1", "phone-1", ua)
        yield self.pushservice.wait_for(1, ua)
        self.service.startService()
        self.clock.advance(decisions.PENDING_LIFETIME - PRUNE_INTERVAL)
        self.assertIsNotNone(self.store.get(ALICE, "phone-1"))
        self.clock.advance(PRUNE_INTERVAL)
        self.assertIsNone(self.store.get(ALICE, "phone-1"))
        lines = yield client.command(b"a2 LWEBPUSH *")
        self.assertEqual(lines, [b"a2 OK LWEBPUSH completed"])


    @defer.inlineCallbacks
    def test_pruning_goes_on_after_a_failed_sweep(self):
        import sqlite3

        client = yield self.connect()
        ua = self.pushservice.new_subscription()
        yield self.webpush(client, "a1", "phone-1", ua)
        yield self.pushservice.wait_for(1, ua)
        prune = self.store.prune
        failures = []

        def busy_once(*args):
            if not failures:
                failures.append(1)
                raise sqlite3.OperationalError("database is locked")
            return prune(*args)

        self.store.prune = busy_once
        self.service.startService()
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.clock.advance(decisions.PENDING_LIFETIME)
        self.assertIsNone(self.store.get(ALICE, "phone-1"))


class OutcomeRuleTests(unittest.TestCase):
    """WebPushService.pushOutcome against the store, with a task.Clock."""

    def setUp(self):
        from twisted.internet import task
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.store = SQLiteSubscriptionStore(os.path.join(self.mktemp() + ".sqlite"))
        self.addCleanup(self.store.close)
        self.service = WebPushService(self.store, None, None, self.clock)
        keys = UAKeys()
        self.store.set_pending(ALICE, "s", ENDPOINT, keys.p256dh, keys.auth, "K" * 87,
                               self.clock.seconds(), 20, token_hash("t"))
        self.store.acknowledge(ALICE, token_hash("t"), self.clock.seconds(), 600)

    def outcome(self, kind, status=None, endpoint=ENDPOINT):
        self.service.pushOutcome(model.PushOutcome(kind, ALICE, "s", status, "because",
                                                   {"endpoint": endpoint}))

    def test_failing_for_seven_days_deletes(self):
        self.outcome(model.EXPIRED)
        self.clock.advance(decisions.FAILING_SUBSCRIPTION_LIFETIME - 1)
        self.outcome(model.FAILED, 500)
        self.assertIsNotNone(self.store.get(ALICE, "s"))
        self.clock.advance(1)
        self.outcome(model.FAILED, 500)
        self.assertIsNone(self.store.get(ALICE, "s"))

    def test_success_restarts_the_seven_days(self):
        self.outcome(model.EXPIRED)
        self.clock.advance(decisions.FAILING_SUBSCRIPTION_LIFETIME - 1)
        self.outcome(model.DELIVERED, 201)
        self.clock.advance(1)
        self.outcome(model.FAILED, 500)
        self.assertIsNotNone(self.store.get(ALICE, "s"))

    def test_prune_deletes_long_failing_ones_too(self):
        self.outcome(model.EXPIRED)
        self.clock.advance(decisions.FAILING_SUBSCRIPTION_LIFETIME)
        self.service.prune()
        self.assertIsNone(self.store.get(ALICE, "s"))

    def test_outcome_about_a_replaced_endpoint_is_ignored(self):
        self.outcome(model.GONE, 410, endpoint="https://old.example.net/x")
        self.assertIsNotNone(self.store.get(ALICE, "s"))
        self.outcome(model.GONE, 410)
        self.assertIsNone(self.store.get(ALICE, "s"))

    def test_too_large_is_not_a_failure(self):
        self.outcome(model.TOO_LARGE, 413)
        self.assertIsNone(self.store.health(ALICE, "s")["first_failure"])

    def test_gone_is_logged_with_the_reason(self):
        from twisted.logger import globalLogPublisher
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.outcome(model.GONE, 410)
        events = [e for e in seen if e.get("subscription") == "s" and e.get("status") == 410]
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["reason"], "because")


class AdminTests(OurServerBase):
    """The `vapid` and `subscriptions` admin groups (imapwebpush.cli) over a data folder."""

    def cli(self, *argv):
        import io

        from imapwebpush.cli import main

        out, err = io.StringIO(), io.StringIO()
        status = main(["--data", self.data] + list(argv), stdout=out, stderr=err)
        return status, out.getvalue(), err.getvalue()

    def setUp(self):
        OurServerBase.setUp(self)
        self.data = os.path.abspath(self.mktemp())
        os.makedirs(self.data)

    def test_vapid_show_and_rotate(self):
        status, out, _ = self.cli("vapid", "show")
        self.assertEqual(status, 0)
        first = out.split()[0]
        self.assertEqual(out, first + " current\n")
        status, out, _ = self.cli("vapid", "rotate")
        second = out.splitlines()[0]
        self.assertNotEqual(first, second)
        status, out, _ = self.cli("vapid", "show")
        self.assertEqual(out, "%s current\n%s old\n" % (second, first))

    def test_subscriptions_list_and_delete(self):
        store = SQLiteSubscriptionStore(datadir.subscriptions(self.data))
        keys = UAKeys()
        for account, sid in [(ALICE, "phone-1"), (ALICE, "laptop"), ("bob@example.org", "x")]:
            store.set_pending(account, sid, ENDPOINT, keys.p256dh, keys.auth, "K" * 87,
                              1_700_000_000, 20, token_hash(account + sid))
        store.close()
        status, out, _ = self.cli("subscriptions", "list")
        self.assertEqual(out.splitlines(), [
            "%s laptop pending NIL %s -" % (ALICE, ENDPOINT),
            "%s phone-1 pending NIL %s -" % (ALICE, ENDPOINT),
            "bob@example.org x pending NIL %s -" % (ENDPOINT,)])
        status, out, _ = self.cli("subscriptions", "list", "Alice@Example.org")
        self.assertEqual(len(out.splitlines()), 2)
        status, out, _ = self.cli("subscriptions", "delete", ALICE, "laptop")
        self.assertEqual((status, out), (0, "deleted laptop of %s\n" % ALICE))
        status, out, err = self.cli("subscriptions", "delete", ALICE, "laptop")
        self.assertEqual((status, err),
                         (1, "imapwebpush: error: no subscription laptop for %s\n" % ALICE))
        status, out, _ = self.cli("subscriptions", "list", ALICE)
        self.assertEqual(out, "%s phone-1 pending NIL %s -\n" % (ALICE, ENDPOINT))

    def test_subscriptions_of_a_bad_address_is_a_usage_error(self):
        """The admin group's own error becomes one line and exit status 2, like `user`'s."""
        for action in (("list", "no-at-sign"), ("delete", "no-at-sign", "phone-1")):
            status, out, err = self.cli("subscriptions", *action)
            self.assertEqual((status, out, err), (
                2, "", "imapwebpush: error: not a valid address (expected local@domain):"
                       " 'no-at-sign'\n"))

    def test_deleting_the_user_deletes_its_subscriptions(self):
        import io

        from imapwebpush.cli import main
        out = io.StringIO()
        self.assertEqual(main(["--data", self.data, "user", "add", ALICE, "--password-stdin"],
                              stdin=io.StringIO("pw\n"), stdout=out, stderr=out), 0, out)
        path = datadir.subscriptions(self.data)
        store = SQLiteSubscriptionStore(path)
        keys = UAKeys()
        for account in (ALICE, "bob@example.org"):
            store.set_pending(account, "s", ENDPOINT, keys.p256dh, keys.auth, "K" * 87,
                              1_700_000_000, 20, token_hash(account))
        store.close()
        status, out, err = self.cli("user", "delete", ALICE)
        self.assertEqual(status, 0, err)
        store = SQLiteSubscriptionStore(path)
        self.addCleanup(store.close)
        self.assertEqual(store.accounts(), ["bob@example.org"])
        self.assertEqual(store.token_count(), 1)

    @defer.inlineCallbacks
    def test_cli_test_push_leaves_the_servers_outbox_alone(self):
        """`subscriptions test` sends its one push; the server's pending pushes are not resent."""
        from twisted.internet import reactor

        from imapwebpush.webpush.admin import run_test_push
        from imapwebpush.webpush.outbox import Outbox
        from imapwebpush.webpush.vapid import VapidKeyring

        ua = self.pushservice.new_subscription()
        key = VapidKeyring(datadir.vapid(self.data), SUBJECT, reactor).current()
        store = SQLiteSubscriptionStore(datadir.subscriptions(self.data))
        store.set_pending(ALICE, "phone-1", ua.endpoint, ua.public_key, ua.auth_secret, key,
                          reactor.seconds(), 20, token_hash("t"))
        self.assertIsNotNone(store.acknowledge(ALICE, token_hash("t"), reactor.seconds(), 600))
        store.close()
        record = {"id": "0" * 32, "account": ALICE, "subscription_id": "phone-1",
                  "endpoint": ua.endpoint, "vapid_key": key, "body": "", "urgency": "low",
                  "ttl": 600, "topic": None, "context": {}, "deadline": reactor.seconds() + 600,
                  "attempts": 0, "not_before": reactor.seconds(), "last_error": ""}
        outbox_path = datadir.outbox(self.data)
        outbox = Outbox(outbox_path)
        outbox.put(record)
        outbox.close()
        line = yield run_test_push(reactor, self.data, ALICE, "phone-1", SUBJECT, insecure=True)
        self.assertEqual(line, "201 delivered")
        self.assertEqual([p.plaintext for p in self.pushservice.received(ua)],
                         [b'* SELECT "INBOX"\r\n'])
        outbox = Outbox(outbox_path)
        self.addCleanup(outbox.close)
        self.assertEqual(outbox.records(), [record])

    @defer.inlineCallbacks
    def test_test_push_prints_the_answer(self):
        from imapwebpush.webpush.admin import send_test_push

        client = yield self.connect()
        ua = self.pushservice.new_subscription()
        yield self.webpush(client, "a1", "phone-1", ua)
        _, token = yield self.verification(ua)
        yield client.command(b"a2 ACKWEBPUSH " + token)
        line = yield send_test_push(self.service, ALICE, "phone-1")
        self.assertEqual(line, "201 delivered")
        pushes = yield self.pushservice.wait_for(2, ua)
        self.assertEqual(pushes[1].plaintext, b'* SELECT "INBOX"\r\n')
        ua.respond(Answer(403))
        line = yield send_test_push(self.service, ALICE, "phone-1")
        self.assertTrue(line.startswith("403 rejected"), line)
        ua.remove()
        line = yield send_test_push(self.service, ALICE, "phone-1")
        self.assertTrue(line.startswith("410 gone"), line)
        self.assertIsNone(self.store.get(ALICE, "phone-1"))
        with self.assertRaises(Exception) as e:
            yield send_test_push(self.service, ALICE, "phone-1")
        self.assertEqual(str(e.exception), "no subscription phone-1 for %s" % ALICE)


class AbuseCountersSurviveRestartTests(unittest.TestCase):
    """The ACKWEBPUSH lock (SPEC 3.3) and the verification allowance (SPEC 4)
    are kept with the subscriptions: a restart is no fresh start for an attacker."""

    def setUp(self):
        from twisted.internet import task
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.path = self.mktemp() + ".sqlite"

    def service(self):
        store = SQLiteSubscriptionStore(self.path)
        self.addCleanup(store.close)
        return store, WebPushService(store, None, None, self.clock)

    def wrong_token(self, service):
        with self.assertRaises(Refused) as caught:
            service.acknowledge(ALICE, "not-a-token")
        return caught.exception

    def test_ackwebpush_lock_survives_a_restart(self):
        store, first = self.service()
        for _ in range(decisions.ACK_FAILURES_PER_HOUR + 1):
            self.assertIsNone(self.wrong_token(first).code)
        self.assertEqual(self.wrong_token(first).code, b"LIMIT")
        store.close()

        _, second = self.service()  # the server restarts
        refused = self.wrong_token(second)
        self.assertEqual(refused.code, b"LIMIT")
        self.assertIn("locked for this account for 3600 s", refused.message)
        self.clock.advance(3600)
        self.assertIsNone(self.wrong_token(second).code)

    def test_windows_are_per_account_pruned_and_erased_with_the_account(self):
        store, _ = self.service()
        store.set_hourly_window("verification", ALICE, self.clock.seconds(), 10)
        self.assertEqual(store.hourly_window("verification", ALICE), (self.clock.seconds(), 10))
        self.assertIsNone(store.hourly_window("ack-failure", ALICE))
        self.assertIsNone(store.hourly_window("verification", "bob@example.org"))
        store.prune(self.clock.seconds() + 3599, 86400, 86400, 600)
        self.assertIsNotNone(store.hourly_window("verification", ALICE))
        store.prune(self.clock.seconds() + 3600, 86400, 86400, 600)
        self.assertIsNone(store.hourly_window("verification", ALICE))
        store.set_hourly_window("ack-failure", ALICE, self.clock.seconds(), 1)
        store.delete_account(ALICE)
        self.assertIsNone(store.hourly_window("ack-failure", ALICE))
