"""imapwebpush.testing.PushService: what it checks, records and answers, over loopback HTTP."""

import treq
from cryptography.hazmat.primitives.asymmetric import ec
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from imapwebpush.testing import Answer, PushService, ReceivedPush
from imapwebpush.webpush import crypto
from imapwebpush.webpush.vapid import key_name, sign_jwt


class Sender:
    """Builds pushes by hand, so each field can be got wrong on purpose."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = key_name(self.key)

    def authorization(self, origin, now, **override):
        claims = {"aud": origin, "exp": int(now) + 3600, "sub": "mailto:ops@example.org"}
        claims.update(override)
        claims = {k: v for k, v in claims.items() if v is not None}
        return "vapid t=%s, k=%s" % (sign_jwt(self.key, claims), self.name)

    def headers(self, sub, now, **override):
        headers = {
            "TTL": "60",
            "Urgency": "normal",
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": self.authorization(sub.service.origin, now),
        }
        for name, value in override.items():
            name = name.replace("_", "-")
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        return {k: [v] for k, v in headers.items()}

    def body(self, sub, plaintext=b"hello"):
        return crypto.encrypt(plaintext, crypto.parse_p256dh(sub.p256dh), crypto.parse_auth(sub.auth))


class LoopbackTests(unittest.TestCase):
    timeout = 30

    def setUp(self):
        self.service = PushService()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.client = HTTPClient(Agent(reactor, pool=self.pool))
        self.sender = Sender()
        self.addCleanup(self.pool.closeCachedConnections)
        self.addCleanup(self.service.stop)
        return self.service.start()

    @defer.inlineCallbacks
    def post(self, sub, body=None, url=None, **headers):
        response = yield self.client.post(
            url or sub.endpoint,
            data=self.sender.body(sub) if body is None else body,
            headers=self.sender.headers(sub, reactor.seconds(), **headers),
        )
        text = yield treq.content(response)
        return response.code, text

    def test_subscription(self):
        sub = self.service.new_subscription()
        self.assertTrue(sub.endpoint.startswith("http://127.0.0.1:%d/push/" % self.service.port))
        self.assertEqual(len(crypto.parse_p256dh(sub.p256dh)), 65)
        self.assertEqual(len(crypto.parse_auth(sub.auth)), 16)
        self.assertEqual(sub.subscription_info()["keys"], {"p256dh": sub.p256dh, "auth": sub.auth})
        self.assertNotEqual(self.service.new_subscription().endpoint, sub.endpoint)

    @defer.inlineCallbacks
    def test_good_push_recorded_and_decrypted(self):
        sub = self.service.new_subscription()
        status, _ = yield self.post(sub, body=self.sender.body(sub, b"* SELECT INBOX\r\n"), Topic="abc")
        self.assertEqual(status, 201)
        [push] = self.service.pushes
        self.assertIsInstance(push, ReceivedPush)
        self.assertIs(push.subscription, sub)
        self.assertEqual(push.plaintext, b"* SELECT INBOX\r\n")
        self.assertEqual(push.problems, [])
        self.assertTrue(push.ok)
        self.assertEqual(push.status, 201)
        self.assertEqual(push.vapid_key, self.sender.name)
        self.assertEqual(push.claims["aud"], self.service.origin)
        self.assertEqual(push.headers["topic"], "abc")

    @defer.inlineCallbacks
    def assertProblem(self, status, problem, **kw):
        sub = kw.pop("sub", None) or self.service.new_subscription()
        got, text = yield self.post(sub, **kw)
        push = self.service.received(sub)[-1]
        self.assertEqual(got, status)
        self.assertTrue(any(problem in p for p in push.problems), push.problems)
        self.assertIn(problem.encode(), text)

    @defer.inlineCallbacks
    def test_header_problems(self):
        yield self.assertProblem(400, "no TTL header", TTL=None)
        yield self.assertProblem(400, "TTL is not a number", TTL="soon")
        yield self.assertProblem(400, "Urgency 'urgent' is not one of", Urgency="urgent")
        yield self.assertProblem(400, "Topic 'a b' is not 1-32 base64url", Topic="a b")
        yield self.assertProblem(400, "Topic", Topic="a" * 33)
        yield self.assertProblem(400, "Content-Encoding is 'aesgcm'", Content_Encoding="aesgcm")

    @defer.inlineCallbacks
    def test_vapid_problems(self):
        now = reactor.seconds()
        origin = self.service.origin
        auth = self.sender.authorization
        yield self.assertProblem(401, "no Authorization header", Authorization=None)
        yield self.assertProblem(401, "not vapid", Authorization="WebPush abc")
        yield self.assertProblem(401, "JWT aud is 'https://other.example'", Authorization=auth("https://other.example", now))
        yield self.assertProblem(401, "JWT has expired", Authorization=auth(origin, now, exp=int(now) - 1))
        yield self.assertProblem(401, "more than 24 hours ahead", Authorization=auth(origin, now, exp=int(now) + 90000))
        yield self.assertProblem(401, "JWT sub must be a mailto: or https: URI", Authorization=auth(origin, now, sub=None))
        yield self.assertProblem(401, "JWT sub must be", Authorization=auth(origin, now, sub="admin@example.org"))
        other = Sender()
        forged = auth(origin, now).split(", k=")[0] + ", k=" + other.name
        yield self.assertProblem(401, "JWT signature does not verify with k=", Authorization=forged)
        yield self.assertProblem(401, "k= is not a P-256 public key", Authorization="vapid t=a.b.c, k=AAAA")

    @defer.inlineCallbacks
    def test_bound_vapid_key(self):
        sub = self.service.new_subscription(vapid_key=Sender().name)
        yield self.assertProblem(403, "subscription is bound to", sub=sub)
        good = self.service.new_subscription(vapid_key=self.sender.name)
        status, _ = yield self.post(good)
        self.assertEqual(status, 201)

    @defer.inlineCallbacks
    def test_body_problems(self):
        yield self.assertProblem(413, "body of 4097 octets exceeds 4096", body=b"x" * 4097)
        yield self.assertProblem(400, "cannot decrypt", body=self.sender.body(self.service.new_subscription()))
        yield self.assertProblem(400, "shorter than the aes128gcm header", body=b"tiny")

    @defer.inlineCallbacks
    def test_unknown_and_removed_subscriptions(self):
        sub = self.service.new_subscription()
        status, _ = yield self.post(sub, url=self.service.origin + "/push/nosuch")
        self.assertEqual(status, 404)
        sub.remove()
        status, _ = yield self.post(sub)
        self.assertEqual(status, 410)
        response = yield self.client.get(sub.endpoint)
        yield treq.content(response)
        self.assertEqual(response.code, 405)

    @defer.inlineCallbacks
    def test_not_strict(self):
        self.service.strict = False
        sub = self.service.new_subscription()
        status, _ = yield self.post(sub, TTL=None)
        self.assertEqual(status, 201)
        self.assertEqual(self.service.pushes[0].problems, ["no TTL header"])
        self.assertEqual(self.service.pushes[0].plaintext, b"hello")

    @defer.inlineCallbacks
    def test_scripted_answers(self):
        sub = self.service.new_subscription()
        sub.respond(Answer.retry_after("42"), Answer(503, body=b"busy"), Answer.gone())
        response = yield self.client.post(sub.endpoint, data=self.sender.body(sub),
                                          headers=self.sender.headers(sub, reactor.seconds()))
        yield treq.content(response)
        self.assertEqual((response.code, response.headers.getRawHeaders("retry-after")), (429, ["42"]))
        self.assertEqual((yield self.post(sub)), (503, b"busy"))
        self.assertEqual((yield self.post(sub)), (410, b"subscription expired"))
        self.assertEqual((yield self.post(sub))[0], 201)
        self.assertEqual([p.status for p in self.service.received(sub)], [429, 503, 410, 201])

    @defer.inlineCallbacks
    def test_redirect(self):
        sub = self.service.new_subscription()
        sub.respond(Answer.redirect("https://elsewhere.example/x", 307))
        response = yield self.client.post(sub.endpoint, data=self.sender.body(sub), allow_redirects=False,
                                          headers=self.sender.headers(sub, reactor.seconds()))
        yield treq.content(response)
        self.assertEqual(response.code, 307)
        self.assertEqual(response.headers.getRawHeaders("location"), ["https://elsewhere.example/x"])

    @defer.inlineCallbacks
    def test_wait_for(self):
        a = self.service.new_subscription()
        b = self.service.new_subscription()
        a.respond(Answer(500))
        waiting_a = self.service.wait_for(1, a, delivered=True)
        waiting_all = self.service.wait_for(3)
        yield self.post(a)
        yield self.post(b)
        self.assertNoResult(waiting_a)
        yield self.post(a)
        pushes = yield waiting_a
        self.assertEqual([p.status for p in pushes], [201])  # the 500 does not count as delivered
        all_pushes = yield waiting_all
        self.assertEqual(len(all_pushes), 3)

    @defer.inlineCallbacks
    def test_stop_closes_hanging_connections(self):
        sub = self.service.new_subscription()
        sub.respond(Answer.hang())
        d = self.client.post(sub.endpoint, data=self.sender.body(sub),
                             headers=self.sender.headers(sub, reactor.seconds()))
        yield self.service.wait_for(1)
        yield self.service.stop()
        yield self.assertFailure(d, Exception)
        self.assertIsNone(self.service.pushes[0].status)


class InMemoryTests(unittest.TestCase):
    """The same resource works behind StubTreq, with delays on a Clock."""

    def test_delay(self):
        clock = Clock()
        clock.advance(1_700_000_000)
        service = PushService(reactor=clock, origin="https://push.example.net")
        stub = StubTreq(service.resource)
        sender = Sender()
        sub = service.new_subscription()
        sub.respond(Answer(202, delay=5))
        d = stub.post(sub.endpoint, data=sender.body(sub), headers=sender.headers(sub, clock.seconds()))
        stub.flush()
        self.assertNoResult(d)
        clock.advance(5)
        stub.flush()
        self.assertEqual(self.successResultOf(d).code, 202)
        self.assertEqual(service.pushes[0].problems, [])
        self.assertEqual(service.pushes[0].plaintext, b"hello")
