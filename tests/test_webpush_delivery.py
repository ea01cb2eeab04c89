"""PushDeliveryService: every row of SPEC 6.1, in memory (StubTreq) and over loopback HTTP.

The in-memory tests drive time with task.Clock and the testing PushService's
resource behind StubTreq. The loopback tests run the real PushService and a
real treq client on the reactor, with timers still on a Clock, so retries and
timeouts are exact and no test waits for wall-clock time.
"""

import os
import sqlite3

from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer
from zope.interface.verify import verifyObject

from imapwebpush.decisions import DEFAULT_RETRY_AFTER, REQUEST_TIMEOUT
from imapwebpush.interfaces import IPushOutcomeObserver, IPushSender
from imapwebpush.testing import Answer, PushService
from imapwebpush.webpush import crypto
from imapwebpush.webpush.delivery import PushDeliveryService, parse_retry_after
from imapwebpush.webpush.http import make_http_client
from imapwebpush.webpush.limits import MAX_PLAINTEXT
from imapwebpush.webpush.model import (
    CANCELLED,
    DELIVERED,
    EXPIRED,
    FAILED,
    GONE,
    REJECTED,
    TOO_LARGE,
    PushTarget,
)
from imapwebpush.webpush.policy import EndpointPolicy
from imapwebpush.webpush.vapid import VapidKeyring
from tests.harness.settle import ObservedClock, when

T0 = 1_700_000_000
PAYLOAD = b'* SELECT "INBOX"\r\n* 4392 UIDFETCH (FLAGS ())\r\n'


@implementer(IPushOutcomeObserver)
class Recorder:
    def __init__(self):
        self.outcomes = []

    def pushOutcome(self, outcome):
        self.outcomes.append(outcome)


def insert_raw(path, *rows):
    """Write (id, record text) rows into an outbox file the way a damaged disk might."""
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO deliveries (id, record) VALUES (?, ?)", rows)
    db.close()


class MaxJitter:
    """Deterministic jitter: always the longest wait."""

    def uniform(self, a, b):
        return b


def target_for(sub, key, account="alice@example.org", sid="phone-1"):
    return PushTarget(account, sid, sub.endpoint, crypto.parse_p256dh(sub.p256dh), crypto.parse_auth(sub.auth), key)


class StubHarness(unittest.TestCase):
    """PushService behind StubTreq, time on a Clock."""

    origin = "https://push.example.net"

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.tmp = self.mktemp()
        os.makedirs(self.tmp)
        self.keyring = VapidKeyring(os.path.join(self.tmp, "vapid"), "mailto:admin@example.org", self.clock)
        self.pushservice = PushService(reactor=self.clock, origin=self.origin)
        self.stub = StubTreq(self.pushservice.resource)
        self.observer = Recorder()
        self.outbox = os.path.join(self.tmp, "outbox.sqlite")
        self.service = self.make_service()
        self.service.startService()
        self.addCleanup(self.stop)
        self.sub = self.pushservice.new_subscription()

    def make_service(self, **kw):
        return PushDeliveryService(
            self.clock, self.keyring, kw.pop("client", self.stub), EndpointPolicy(), self.outbox,
            observer=self.observer, rng=MaxJitter(), **kw
        )

    def stop(self):
        if self.service.running:
            return self.service.stopService()

    def send(self, sub=None, payload=PAYLOAD, urgency="high", ttl=600, topic=None, context=None, key=None):
        sub = sub or self.sub
        return self.service.send(target_for(sub, key or self.keyring.current()), payload, urgency, ttl, topic, context)

    def result(self, d):
        self.stub.flush()
        return self.successResultOf(d)

    def advance(self, seconds):
        self.clock.advance(seconds)
        self.stub.flush()


class AnswerTableTests(StubHarness):
    """SPEC 6.1, row by row."""

    def test_interfaces(self):
        verifyObject(IPushSender, self.service)

    def test_delivered_with_the_right_request(self):
        d = self.send(topic="aGVsbG8", context={"kind": "event", "n": 1})
        outcome = self.result(d)
        self.assertEqual((outcome.kind, outcome.status), (DELIVERED, 201))
        self.assertEqual(outcome.context, {"kind": "event", "n": 1})
        self.assertEqual((outcome.account, outcome.subscription_id), ("alice@example.org", "phone-1"))
        self.assertEqual(self.observer.outcomes, [outcome])
        [push] = self.pushservice.pushes
        self.assertEqual(push.problems, [])
        self.assertEqual(push.plaintext, PAYLOAD)
        self.assertEqual(push.headers["ttl"], "600")
        self.assertEqual(push.headers["urgency"], "high")
        self.assertEqual(push.headers["topic"], "aGVsbG8")
        self.assertEqual(push.headers["content-encoding"], "aes128gcm")
        self.assertEqual(push.headers["content-type"], "application/octet-stream")
        self.assertEqual(push.vapid_key, self.keyring.current())
        self.assertEqual(push.claims["aud"], self.origin)
        self.assertEqual(self.service.stored(), 0)

    def test_200_and_202_are_delivered(self):
        self.sub.respond(Answer(200), Answer(202), Answer(204))
        for status in (200, 202, 204):
            outcome = self.result(self.send())
            self.assertEqual((outcome.kind, outcome.status), (DELIVERED, status))

    def test_no_topic_header_when_none(self):
        self.result(self.send())
        self.assertNotIn("topic", self.pushservice.pushes[0].headers)

    def test_gone(self):
        self.sub.respond(Answer(404, body=b"no such subscription"), Answer.gone(410))
        for status in (404, 410):
            outcome = self.result(self.send())
            self.assertEqual((outcome.kind, outcome.status), (GONE, status))
            self.assertIn("answered %d: the subscription is gone" % status, outcome.reason)
        self.assertIn("subscription expired", outcome.reason)
        self.assertEqual(len(self.pushservice.pushes), 2)

    def test_too_large(self):
        self.sub.respond(Answer(413))
        outcome = self.result(self.send())
        self.assertEqual((outcome.kind, outcome.status), (TOO_LARGE, 413))
        self.advance(3600)
        self.assertEqual(len(self.pushservice.pushes), 1)  # never the same body again

    def test_rejected_not_retried(self):
        for status in (400, 401, 403):
            self.sub.respond(Answer(status, body=b"bad key"))
            outcome = self.result(self.send())
            self.assertEqual((outcome.kind, outcome.status), (REJECTED, status))
            self.assertEqual(outcome.reason, "push service refused the request with %d: bad key" % status)
        self.advance(3600)
        self.assertEqual(len(self.pushservice.pushes), 3)

    def test_redirects_not_followed(self):
        for status in (301, 302, 307, 308):
            self.sub.respond(Answer.redirect(self.sub.endpoint, status))
            outcome = self.result(self.send())
            self.assertEqual((outcome.kind, outcome.status), (FAILED, status))
            self.assertIn("redirects are never followed", outcome.reason)
        self.advance(3600)
        self.assertEqual(len(self.pushservice.pushes), 4)

    def test_retry_after_seconds_holds_the_endpoint(self):
        self.sub.respond(Answer.retry_after("120"))
        first = self.send(context={"n": 1})
        self.stub.flush()
        self.assertNoResult(first)
        second = self.send(context={"n": 2})  # sent during the hold: waits too
        self.advance(119)
        self.assertEqual(len(self.pushservice.pushes), 1)
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.advance(1)
        self.assertEqual(self.result(first).kind, DELIVERED)
        self.assertEqual(self.result(second).kind, DELIVERED)
        self.assertEqual([p.status for p in self.pushservice.pushes], [429, 201, 201])
        # the TTL header counts down while it waits
        self.assertEqual(self.pushservice.pushes[1].headers["ttl"], "480")

    def test_cancel_drops_waiting_pushes_of_that_subscription_only(self):
        """A deleted subscription stops at once: nothing waiting for it is sent later."""
        other = self.pushservice.new_subscription()
        self.sub.respond(Answer.retry_after("120"))
        waiting = self.send()
        queued = self.send()
        self.stub.flush()
        kept = self.service.send(target_for(other, self.keyring.current(), sid="laptop"),
                                 PAYLOAD, "high", 600)
        self.assertEqual(self.service.cancel("alice@example.org", "phone-1"), 2)
        for d in (waiting, queued):
            outcome = self.successResultOf(d)
            self.assertEqual((outcome.kind, outcome.subscription_id), (CANCELLED, "phone-1"))
        self.assertEqual(self.result(kept).kind, DELIVERED)
        self.assertEqual(self.service.pending(), 0)
        self.assertEqual(self.service.stored(), 0)
        self.advance(600)
        self.assertEqual([p.status for p in self.pushservice.received(self.sub)], [429])
        self.assertEqual(self.service.cancel("alice@example.org", "phone-1"), 0)

    def test_retry_after_other_endpoint_not_held(self):
        other = self.pushservice.new_subscription()
        self.sub.respond(Answer.retry_after("120"))
        held = self.send()
        self.stub.flush()
        self.assertEqual(self.result(self.send(other)).kind, DELIVERED)
        self.assertNoResult(held)

    def test_retry_after_http_date_503(self):
        when = "Wed, 15 Nov 2023 00:13:20 GMT"  # T0 + 7200 s
        self.sub.respond(Answer.retry_after(when, status=503))
        d = self.send(ttl=86400)
        self.advance(7199)
        self.assertNoResult(d)
        self.advance(1)
        self.assertEqual(self.result(d).kind, DELIVERED)

    def test_retry_after_default_507(self):
        self.sub.respond(Answer.retry_after(None, status=507))
        d = self.send()
        self.advance(DEFAULT_RETRY_AFTER - 1)
        self.assertNoResult(d)
        self.advance(1)
        self.assertEqual(self.result(d).kind, DELIVERED)

    def test_retry_after_beyond_ttl_expires(self):
        self.sub.respond(Answer.retry_after("3600"))
        outcome = self.result(self.send(ttl=600))
        self.assertEqual((outcome.kind, outcome.status), (EXPIRED, 429))
        self.assertIn("Retry-After 3600 s", outcome.reason)

    def test_parse_retry_after(self):
        self.assertEqual(parse_retry_after([b"17"], T0), 17)
        self.assertEqual(parse_retry_after([b"soon"], T0), DEFAULT_RETRY_AFTER)
        self.assertEqual(parse_retry_after([b"-5"], T0), DEFAULT_RETRY_AFTER)
        self.assertEqual(parse_retry_after(None, T0), DEFAULT_RETRY_AFTER)
        self.assertEqual(parse_retry_after([b"Wed, 15 Nov 2023 00:13:20 GMT"], T0), 7200)
        self.assertEqual(parse_retry_after([b"Tue, 14 Nov 2000 22:15:20 GMT"], T0), 0)

    def test_5xx_backoff_then_delivered(self):
        self.sub.respond(Answer(500), Answer(502), Answer(504))
        d = self.send()
        self.stub.flush()
        self.assertEqual(len(self.pushservice.pushes), 1)
        for wait, count in ((2, 2), (4, 3), (8, 4)):  # base 2 s, doubling, max jitter
            self.advance(wait - 0.5)
            self.assertEqual(len(self.pushservice.pushes), count - 1)
            self.advance(0.5)
            self.assertEqual(len(self.pushservice.pushes), count)
        outcome = self.result(d)
        self.assertEqual(outcome.kind, DELIVERED)
        self.assertEqual([p.headers["ttl"] for p in self.pushservice.pushes], ["600", "598", "594", "586"])

    def test_5xx_until_ttl_expired(self):
        self.sub.default = Answer(500, body=b"down")
        d = self.send(ttl=30)
        for _ in range(40):
            self.advance(1)
        outcome = self.result(d)
        self.assertEqual((outcome.kind, outcome.status), (EXPIRED, 500))
        self.assertEqual(outcome.reason, "its TTL of 30 s passed before delivery; last error: push service answered 500: down")
        self.assertEqual(len(self.pushservice.pushes), 4)  # t=0, 2, 6, 14; the next (30) is past the TTL
        self.assertEqual(self.observer.outcomes, [outcome])
        self.assertEqual(self.service.stored(), 0)

    def test_other_4xx_fail(self):
        self.sub.respond(Answer(405))
        outcome = self.result(self.send())
        self.assertEqual((outcome.kind, outcome.status), (FAILED, 405))

    def test_hang_times_out_and_retries(self):
        self.sub.respond(Answer.hang())
        d = self.send()
        self.advance(REQUEST_TIMEOUT - 1)
        self.assertNoResult(d)
        self.advance(1)  # timeout; retry in 2 s
        self.advance(2)
        outcome = self.result(d)
        self.assertEqual(outcome.kind, DELIVERED)
        self.assertEqual(len(self.pushservice.pushes), 2)

    def test_hang_until_ttl(self):
        self.sub.default = Answer.hang()
        d = self.send(ttl=60)
        for _ in range(10):
            self.advance(REQUEST_TIMEOUT)
        outcome = self.result(d)
        self.assertEqual(outcome.kind, EXPIRED)
        self.assertIn("no complete answer within 30 s", outcome.reason)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_garbage_is_retried(self):
        self.sub.respond(Answer.garbage())
        d = self.send()
        self.advance(2)
        self.assertEqual(self.result(d).kind, DELIVERED)
        self.assertEqual(len(self.pushservice.pushes), 2)

    def test_close_mid_response_is_retried(self):
        self.sub.respond(Answer.close_midway())
        d = self.send()
        self.advance(2)
        self.assertEqual(self.result(d).kind, DELIVERED)
        self.assertEqual(len(self.pushservice.pushes), 2)

    def test_signed_with_the_targets_key(self):
        old = self.keyring.current()
        self.keyring.rotate()
        self.result(self.send(key=old))
        self.assertEqual(self.pushservice.pushes[0].vapid_key, old)
        self.assertEqual(self.pushservice.pushes[0].problems, [])

    def test_unknown_vapid_key(self):
        outcome = self.result(self.send(key="B" * 87))
        self.assertEqual(outcome.kind, FAILED)
        self.assertIn("cannot sign the push: no VAPID key named", outcome.reason)
        self.assertEqual(self.pushservice.pushes, [])


class BadInputTests(StubHarness):
    def check(self, d, kind, reason):
        outcome = self.successResultOf(d)
        self.assertEqual(outcome.kind, kind)
        self.assertIn(reason, outcome.reason)
        self.assertEqual(self.observer.outcomes[-1], outcome)
        self.assertEqual(self.pushservice.pushes, [])
        self.assertEqual(self.service.stored(), 0)

    def test_payload_too_large(self):
        self.check(self.send(payload=b"x" * (MAX_PLAINTEXT + 1)), TOO_LARGE, "exceeds the 3993-octet limit")

    def test_bad_topic(self):
        self.check(self.send(topic="a" * 33), FAILED, "Topic must be 1 to 32 base64url characters")
        self.check(self.send(topic="no spaces"), FAILED, "Topic must be")
        self.check(self.send(topic=""), FAILED, "Topic must be")

    def test_bad_urgency_and_ttl(self):
        self.check(self.send(urgency="urgent"), FAILED, "Urgency must be one of")
        self.check(self.send(ttl=-1), FAILED, "TTL must be a non-negative integer")
        self.check(self.send(ttl="600"), FAILED, "TTL must be a non-negative integer")

    def test_malformed_keys(self):
        bad = PushTarget("a", "s", self.sub.endpoint, b"\x04" * 65, b"a" * 16, self.keyring.current())
        self.check(self.service.send(bad, b"x", "high", 60), FAILED, "not a point on the P-256 curve")
        bad = PushTarget("a", "s", self.sub.endpoint, crypto.parse_p256dh(self.sub.p256dh), b"short", self.keyring.current())
        self.check(self.service.send(bad, b"x", "high", 60), FAILED, "auth must be exactly 16 octets")

    def test_endpoint_refused(self):
        bad = PushTarget("a", "s", "http://push.example.net/x", crypto.parse_p256dh(self.sub.p256dh),
                         crypto.parse_auth(self.sub.auth), self.keyring.current())
        self.check(self.service.send(bad, b"x", "high", 60), FAILED, "must be an https URL")

    def test_context_not_json(self):
        self.check(self.send(context={"x": object()}), FAILED, "not JSON serializable")

    def test_not_running(self):
        self.service.stopService()
        self.check(self.send(), FAILED, "not running")


class HoldingResource(Resource):
    """Keeps every request open until the test finishes it."""

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.requests = []

    def render_POST(self, request):
        self.requests.append(request)
        return NOT_DONE_YET

    def finish(self, status=201):
        request = self.requests.pop(0)
        request.setResponseCode(status)
        request.finish()


class CapTests(StubHarness):
    def setUp(self):
        StubHarness.setUp(self)
        self.holding = HoldingResource()
        self.service.stopService()
        self.holdstub = StubTreq(self.holding)
        self.service = self.make_service(client=self.holdstub, max_in_flight=3, max_per_host=2, max_queue=4)
        self.service.startService()

    def target(self, host, n):
        return PushTarget("a", "s%d" % n, "https://%s/push/%d" % (host, n),
                          crypto.parse_p256dh(self.sub.p256dh), crypto.parse_auth(self.sub.auth),
                          self.keyring.current())

    def test_global_and_per_host_caps(self):
        ds = [self.service.send(self.target("a.example", n), b"x", "low", 600) for n in range(3)]
        ds += [self.service.send(self.target("b.example", n), b"x", "low", 600) for n in range(3, 5)]
        self.holdstub.flush()
        # a.example: 2 (per-host cap), b.example: 1 (global cap of 3)
        hosts = sorted(r.getHeader(b"host").decode() for r in self.holding.requests)
        self.assertEqual(hosts, ["a.example", "a.example", "b.example"])
        self.assertEqual(self.service.pending(), 5)
        self.holding.finish()
        self.holdstub.flush()
        self.assertEqual(len(self.holding.requests), 3)
        while self.holding.requests:
            self.holding.finish()
            self.holdstub.flush()
        self.assertEqual([self.successResultOf(d).kind for d in ds], [DELIVERED] * 5)
        self.assertEqual(self.service.pending(), 0)

    def test_queue_bound(self):
        ds = [self.service.send(self.target("a.example", n), b"x", "low", 600) for n in range(7)]
        self.holdstub.flush()
        # 2 in flight (per-host cap) + 4 queued; the 7th is refused
        outcome = self.successResultOf(ds[6])
        self.assertEqual((outcome.kind, outcome.reason), (FAILED, "the push delivery queue is full"))
        for d in ds[:6]:
            self.assertNoResult(d)


class OutboxTests(StubHarness):
    def restart(self, client=None):
        """Stop the service and start a new one on the same outbox file."""
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.observer = Recorder()
        self.service = self.make_service(client=client or self.stub)
        self.service.startService()

    def test_pending_delivery_survives_restart(self):
        self.sub.respond(Answer(503, headers={"Retry-After": "300"}))
        d = self.send(context={"event": 7})
        self.stub.flush()
        self.assertNoResult(d)
        self.clock.advance(0)  # the outbox writes its batch at the end of the turn
        with sqlite3.connect(self.outbox) as db:
            self.assertEqual(db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0], 1)
        self.restart()
        self.advance(299)
        self.assertEqual(len(self.pushservice.pushes), 1)
        self.advance(1)
        self.assertEqual(len(self.pushservice.pushes), 2)
        [outcome] = self.observer.outcomes
        self.assertEqual((outcome.kind, outcome.context), (DELIVERED, {"event": 7}))
        self.assertEqual(self.pushservice.pushes[1].plaintext, PAYLOAD)
        self.assertEqual(self.service.stored(), 0)

    def test_in_flight_delivery_kept_on_stop(self):
        self.sub.respond(Answer.hang())
        self.send()
        self.stub.flush()
        self.restart()
        self.stub.flush()
        self.assertEqual([p.status for p in self.pushservice.pushes], [None, 201])
        self.assertEqual(self.observer.outcomes[0].kind, DELIVERED)

    def test_expired_while_stopped_dropped(self):
        self.sub.respond(Answer(500))
        self.send(ttl=100)
        self.stub.flush()
        self.service.stopService()
        self.clock.advance(101)
        self.observer = Recorder()
        self.service = self.make_service()
        with capturedLogs() as events:
            self.service.startService()
        self.assertTrue(any("TTL passed while stopped" in e.get("log_format", "") for e in events))
        [outcome] = self.observer.outcomes
        self.assertEqual(outcome.kind, EXPIRED)
        self.assertEqual(len(self.pushservice.pushes), 1)
        self.assertEqual(self.service.stored(), 0)

    def test_stop_cancels_timers(self):
        self.sub.respond(Answer(500))
        self.send()
        self.stub.flush()
        self.assertTrue(self.clock.getDelayedCalls())
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LoopbackHarness(unittest.TestCase):
    """The real PushService over loopback HTTP; the delivery service's timers on a Clock."""

    timeout = 30

    def setUp(self):
        self.clock = ObservedClock()
        self.clock.advance(reactor.seconds())
        self.tmp = self.mktemp()
        os.makedirs(self.tmp)
        with capturedLogs():
            self.policy = EndpointPolicy(insecure=True)
        self.keyring = VapidKeyring(os.path.join(self.tmp, "vapid"), "mailto:admin@example.org", reactor)
        self.pushservice = PushService(reactor)
        self.client = make_http_client(reactor, self.policy)
        self.observer = Recorder()
        self.service = PushDeliveryService(
            self.clock, self.keyring, self.client, self.policy, os.path.join(self.tmp, "outbox.sqlite"),
            observer=self.observer, rng=MaxJitter(),
        )
        self.service.startService()
        self.addCleanup(self.pushservice.stop)
        self.addCleanup(self.stop_service)
        return self.pushservice.start()

    def stop_service(self):
        if self.service.running:
            return self.service.stopService()

    def send(self, sub, **kw):
        return self.service.send(target_for(sub, self.keyring.current()), kw.pop("payload", PAYLOAD),
                                 kw.pop("urgency", "normal"), kw.pop("ttl", 600), **kw)


class LoopbackTests(LoopbackHarness):
    @defer.inlineCallbacks
    def test_delivered(self):
        sub = self.pushservice.new_subscription()
        outcome = yield self.send(sub, topic="mbox1")
        self.assertEqual((outcome.kind, outcome.status), (DELIVERED, 201))
        [push] = self.pushservice.received(sub, delivered=True)
        self.assertEqual((push.plaintext, push.problems), (PAYLOAD, []))
        self.assertEqual(push.headers["topic"], "mbox1")
        self.assertEqual(push.claims["sub"], "mailto:admin@example.org")

    @defer.inlineCallbacks
    def test_final_answers(self):
        rows = [
            (Answer(202), DELIVERED, 202),
            (Answer(404), GONE, 404),
            (Answer.gone(410), GONE, 410),
            (Answer(413), TOO_LARGE, 413),
            (Answer(400), REJECTED, 400),
            (Answer(401), REJECTED, 401),
            (Answer(403), REJECTED, 403),
            (Answer.redirect("http://127.0.0.1:1/"), FAILED, 301),
            (Answer.redirect("http://127.0.0.1:1/", 307), FAILED, 307),
        ]
        sub = self.pushservice.new_subscription()
        for answer, kind, status in rows:
            sub.respond(answer)
            outcome = yield self.send(sub)
            self.assertEqual((outcome.kind, outcome.status), (kind, status), repr(answer))
        self.assertEqual(len(self.pushservice.received(sub)), len(rows))

    @defer.inlineCallbacks
    def test_unknown_subscription_is_gone(self):
        sub = self.pushservice.new_subscription()
        sub.remove()
        outcome = yield self.send(sub)
        self.assertEqual((outcome.kind, outcome.status), (GONE, 410))

    @defer.inlineCallbacks
    def settle_and_run_timer(self, d=None):
        """Wait until the answer was handled, then jump the clock to the next retry; its delay."""
        yield when(lambda: self.service.in_flight() == 0 or (d is not None and d.called),
                   self.clock.next_call, *([d] if d is not None else []))
        if d is not None and d.called:
            return None
        self.clock.advance(0)  # the outbox writes its batch at the end of the turn
        [call] = self.clock.getDelayedCalls()
        delay = call.getTime() - self.clock.seconds()
        self.clock.advance(delay)
        return delay

    @defer.inlineCallbacks
    def test_retried_answers(self):
        """429/503/507 with Retry-After, 5xx, garbage, close mid-response, hang: all end delivered."""
        sub = self.pushservice.new_subscription()
        sub.respond(
            Answer.retry_after("5"),
            Answer.retry_after("7", status=503),
            Answer.retry_after(None, status=507),
            Answer(500),
            Answer.garbage(),
            Answer.close_midway(),
            Answer.hang(),
        )
        d = self.send(sub, ttl=86400)
        delays = []
        for n in range(1, 8):
            yield self.pushservice.wait_for(n, sub)
            if n == 7:  # the hang: the request stays open until the timeout
                self.clock.advance(REQUEST_TIMEOUT)
            delays.append((yield self.settle_and_run_timer()))
        outcome = yield d
        self.assertEqual(outcome.kind, DELIVERED)
        # Retry-After as given (default 60), then backoff doubling with the attempt count
        self.assertEqual(delays, [5, 7, DEFAULT_RETRY_AFTER, 16, 32, 64, 128])
        statuses = [p.status for p in self.pushservice.received(sub)]
        self.assertEqual(statuses, [429, 503, 507, 500, None, 201, None, 201])
        self.assertEqual({p.plaintext for p in self.pushservice.received(sub)}, {PAYLOAD})

    @defer.inlineCallbacks
    def test_endless_body_is_cut_at_64k(self):
        sub = self.pushservice.new_subscription()
        sub.respond(Answer.endless(201))
        outcome = yield self.send(sub)
        self.assertEqual((outcome.kind, outcome.status), (DELIVERED, 201))

    @defer.inlineCallbacks
    def test_5xx_until_ttl(self):
        sub = self.pushservice.new_subscription()
        sub.default = Answer(503, headers={"Retry-After": "20"})
        d = self.send(sub, ttl=50)
        while not d.called:
            yield self.settle_and_run_timer(d)
        outcome = yield d
        self.assertEqual((outcome.kind, outcome.status), (EXPIRED, 503))
        self.assertEqual(len(self.pushservice.received(sub)), 3)  # t = 0, 20, 40

    @defer.inlineCallbacks
    def test_connection_refused_is_retried(self):
        sub = self.pushservice.new_subscription()
        endpoint = sub.endpoint
        yield self.pushservice.stop()
        target = PushTarget("a", "s", endpoint, crypto.parse_p256dh(sub.p256dh), crypto.parse_auth(sub.auth),
                            self.keyring.current())
        d = self.service.send(target, b"x", "low", 10)
        delays = []
        while not d.called:
            delays.append((yield self.settle_and_run_timer(d)))
        outcome = yield d
        self.assertEqual(outcome.kind, EXPIRED)
        self.assertEqual(delays, [2, 4, None])  # t = 0, 2, 6; the next (14) is past the TTL
        self.assertIn("ConnectionRefusedError", outcome.reason)

    @defer.inlineCallbacks
    def test_many_pushes_decrypt(self):
        subs = [self.pushservice.new_subscription() for _ in range(5)]
        ds = [self.send(sub, payload=b"push %d" % n) for n in range(40) for sub in subs[n % 5:n % 5 + 1]]
        outcomes = yield defer.gatherResults(ds)
        self.assertEqual({o.kind for o in outcomes}, {DELIVERED})
        self.assertEqual(sorted(p.plaintext for p in self.pushservice.pushes), sorted(b"push %d" % n for n in range(40)))
        self.assertTrue(all(p.ok for p in self.pushservice.pushes))


class SecurePolicyLoopbackTests(unittest.TestCase):
    """With the default policy, a name resolving to 127.0.0.1 is refused at connect time."""

    @defer.inlineCallbacks
    def test_rebinding_to_loopback_refused(self):
        pushservice = PushService(reactor)
        yield pushservice.start()
        self.addCleanup(pushservice.stop)
        policy = EndpointPolicy()
        client = make_http_client(reactor, policy, resolver=lambda host, port: defer.succeed(["127.0.0.1"]))
        tmp = self.mktemp()
        keyring = VapidKeyring(os.path.join(tmp, "vapid"), "mailto:admin@example.org", reactor)
        service = PushDeliveryService(reactor, keyring, client, policy, os.path.join(tmp, "outbox.sqlite"))
        service.startService()
        self.addCleanup(service.stopService)
        sub = pushservice.new_subscription()
        endpoint = sub.endpoint.replace("http://127.0.0.1", "https://push.example.net")
        target = PushTarget("a", "s", endpoint, crypto.parse_p256dh(sub.p256dh), crypto.parse_auth(sub.auth),
                            keyring.current())
        outcome = yield service.send(target, b"x", "low", 60)
        self.assertEqual(outcome.kind, FAILED)
        self.assertEqual(outcome.reason, "push.example.net: endpoint address refused: 127.0.0.1 is a loopback address")
        self.assertEqual(pushservice.pushes, [])


class OutboxUnitTests(unittest.TestCase):
    """The outbox batches its writes per reactor turn and survives reopening."""

    def setUp(self):
        self.clock = Clock()
        self.path = os.path.join(self.mktemp(), "outbox.sqlite")

    def rows(self):
        with sqlite3.connect(self.path) as db:
            return [r[0] for r in db.execute("SELECT id FROM deliveries ORDER BY seq")]

    def test_batched_until_end_of_turn(self):
        from imapwebpush.webpush.outbox import Outbox

        box = Outbox(self.path, self.clock)
        box.put({"id": "a", "n": 1})
        box.put({"id": "b", "n": 2})
        self.assertEqual(self.rows(), [])
        self.clock.advance(0)
        self.assertEqual(self.rows(), ["a", "b"])
        box.put({"id": "a", "n": 3})
        box.remove("b")
        box.put({"id": "c", "n": 4})
        box.remove("c")  # queued and finished within one turn: never written
        self.clock.advance(0)
        self.assertEqual(self.rows(), ["a"])
        box.close()
        again = Outbox(self.path)
        self.assertEqual(again.records(), [{"id": "a", "n": 3}])
        again.close()

    def test_close_writes_pending(self):
        from imapwebpush.webpush.outbox import Outbox

        box = Outbox(self.path, self.clock)
        box.put({"id": "a"})
        box.close()
        self.assertEqual(self.rows(), ["a"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unreadable_rows_dropped(self):
        from imapwebpush.webpush.outbox import Outbox

        box = Outbox(self.path)
        box.put({"id": "a"})
        box.close()
        insert_raw(self.path, ("bad", "{nope"))
        box = Outbox(self.path)
        self.assertEqual(box.records(), [{"id": "a"}])
        self.assertEqual(self.rows(), ["a"])
        box.close()

    def test_failed_write_is_kept_for_the_next_flush(self):
        """A transaction that cannot start (database locked) loses nothing and raises nowhere."""
        from imapwebpush.webpush.outbox import Outbox

        class Locked:
            def __init__(self, db):
                self.db = db
                self.in_transaction = False

            def execute(self, sql, *args):
                if sql == "BEGIN":
                    raise sqlite3.OperationalError("database is locked")
                return self.db.execute(sql, *args)

        box = Outbox(self.path, self.clock)
        real = box._db
        box._db = Locked(real)
        box.put({"id": "a"})
        with capturedLogs() as events:
            self.clock.advance(0)  # the end-of-turn flush fails: logged, not raised
        self.assertTrue(any("could not write the push outbox" in e.get("log_format", "")
                            for e in events))
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.assertEqual(self.rows(), [])
        box._db = real
        box.flush()
        self.assertEqual(self.rows(), ["a"])
        box.close()

    def test_rows_that_are_not_records_dropped(self):
        """JSON that is not an object, or whose id is not the row's, is dropped too."""
        from imapwebpush.webpush.outbox import Outbox

        box = Outbox(self.path)
        box.put({"id": "a"})
        box.close()
        insert_raw(self.path, ("list", "[1, 2]"), ("noid", '{"n": 1}'), ("other", '{"id": "a"}'))
        box = Outbox(self.path)
        self.assertEqual(box.records(), [{"id": "a"}])
        self.assertEqual(self.rows(), ["a"])
        box.close()


class TLSTests(unittest.TestCase):
    """Certificates are verified: an untrusted one is a retried TLS failure, a trusted one works."""

    timeout = 30

    @defer.inlineCallbacks
    def run_push(self, trust):
        pushservice = PushService(reactor, tls=True)
        yield pushservice.start()
        self.addCleanup(pushservice.stop)
        with capturedLogs():
            policy = EndpointPolicy(insecure=True)  # loopback target
        client = make_http_client(reactor, policy, trust_root=pushservice.certificate if trust else None)
        tmp = self.mktemp()
        clock = ObservedClock()
        clock.advance(reactor.seconds())
        keyring = VapidKeyring(os.path.join(tmp, "vapid"), "mailto:admin@example.org", reactor)
        service = PushDeliveryService(clock, keyring, client, policy, os.path.join(tmp, "outbox.sqlite"))
        service.startService()
        self.addCleanup(service.stopService)
        sub = pushservice.new_subscription()
        self.assertTrue(sub.endpoint.startswith("https://127.0.0.1:"))
        d = service.send(target_for(sub, keyring.current()), b"over TLS", "high", 1)
        # the answer (or the TLS failure) is handled: delivered, or a retry is scheduled
        yield when(lambda: d.called or (service.in_flight() == 0 and clock.getDelayedCalls()),
                   clock.next_call, d)
        clock.advance(2)  # past the TTL: a failed attempt expires now
        outcome = yield d
        return outcome, pushservice

    @defer.inlineCallbacks
    def test_untrusted_certificate(self):
        outcome, pushservice = yield self.run_push(trust=False)
        self.assertEqual(outcome.kind, EXPIRED)
        self.assertIn("SSL", outcome.reason)
        self.assertEqual(pushservice.pushes, [])

    @defer.inlineCallbacks
    def test_trusted_certificate(self):
        outcome, pushservice = yield self.run_push(trust=True)
        self.assertEqual(outcome.kind, DELIVERED)
        self.assertEqual(pushservice.pushes[0].plaintext, b"over TLS")
        self.assertEqual(pushservice.pushes[0].problems, [])


class UnreadableOutboxTests(StubHarness):
    def test_bad_record_dropped_with_a_log_line(self):
        from imapwebpush.webpush.outbox import Outbox

        self.service.stopService()
        box = Outbox(self.outbox)
        box.put({"id": "broken", "endpoint": "https://push.example.net/x"})
        box.close()
        self.service = self.make_service()
        with capturedLogs() as events:
            self.service.startService()
        self.assertTrue(any("unreadable outbox record" in e.get("log_format", "") for e in events))
        self.assertEqual(self.service.stored(), 0)
        self.assertEqual(self.result(self.send()).kind, DELIVERED)

    def test_record_with_a_bad_field_is_dropped(self):
        """A field of the wrong value is caught at start, not when the push is tried."""
        from imapwebpush.webpush.outbox import Outbox

        self.assertEqual(self.result(self.send()).kind, DELIVERED)
        self.service.stopService()
        box = Outbox(self.outbox)
        good = {"id": "a" * 32, "account": "alice", "subscription_id": "s",
                "endpoint": "https://push.example.net/x", "vapid_key": self.keyring.current(),
                "body": "AAAA", "urgency": "low", "ttl": 60, "topic": None, "context": {},
                "deadline": self.clock.seconds() + 60, "attempts": 0,
                "not_before": self.clock.seconds(), "last_error": ""}
        for n, bad in enumerate([{"urgency": "urgent"}, {"topic": 7}, {"ttl": "60"},
                                 {"context": None}, {"attempts": None}]):
            box.put(dict(good, id="%032d" % n, **bad))
        box.close()
        self.service = self.make_service()
        with capturedLogs() as events:
            self.service.startService()
        self.assertEqual(
            len([e for e in events if "unreadable outbox record" in e.get("log_format", "")]), 5)
        self.assertEqual(self.service.stored(), 0)
        self.assertEqual(self.service.pending(), 0)

    def test_non_object_record_does_not_stop_the_start(self):
        from imapwebpush.webpush.outbox import Outbox

        self.service.stopService()
        Outbox(self.outbox).close()
        insert_raw(self.outbox, ("list", "[1, 2]"))
        self.service = self.make_service()
        self.service.startService()
        self.assertEqual(self.service.stored(), 0)
        self.assertEqual(self.result(self.send()).kind, DELIVERED)
