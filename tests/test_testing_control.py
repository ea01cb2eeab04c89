"""The JSON control API of the test server, and ``imapwebpush testserver`` as a process."""

import json
import os
import re
import sys

import treq
from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from imapwebpush.testing.chaos import Chaos
from imapwebpush.testing.control import listen_control
from imapwebpush.testing.trial import start_mail_server
from tests.harness.connections import ConnectionTracker
from tests.harness.wire import connect_line_client

ALICE = "alice@example.org"
MESSAGE = "From: bob@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


class Api:
    """A tiny JSON client: (status, decoded body)."""

    def __init__(self, port):
        self.base = "http://127.0.0.1:%d/api/" % port

    @defer.inlineCallbacks
    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        response = yield treq.request(method, self.base + path, data=data, persistent=False)
        content = yield response.content()
        return response.code, json.loads(content)


class ControlApiTests(unittest.TestCase):

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield start_mail_server(self)
        port = listen_control(self.server)
        self.addCleanup(port.stopListening)
        self.api = Api(port.getHost().port)
        self.tracker = ConnectionTracker()
        self.addCleanup(self.tracker.close)

    @defer.inlineCallbacks
    def subscribe(self, address=ALICE):
        """WEBPUSH over IMAP with a subscription made through the API; returns the token."""
        code, sub = yield self.api.call("POST", "push/subscriptions")
        self.assertEqual(code, 201)
        client = yield connect_line_client(self.tracker, self.server.imap_port,
                                           user=address.encode())
        lines = yield client.command(b"w WEBPUSH phone %s %s %s" % (
            sub["endpoint"].encode(), sub["p256dh"].encode(), sub["auth"].encode()))
        self.assertEqual(lines[-1], b"w OK WEBPUSH completed")
        code, events = yield self.api.call("GET", "events?since=0&timeout=10")
        [event] = [e for e in events if e["type"] == "push"]
        token = event["push"]["plaintext"].split()[2]
        lines = yield client.command(b"k ACKWEBPUSH " + token.encode())
        self.assertEqual(lines[-1], b"k OK ACKWEBPUSH completed")
        return sub["token"], event["seq"]

    @defer.inlineCallbacks
    def test_readiness(self):
        code, body = yield self.api.call("GET", "service/readiness")
        self.assertEqual(code, 200)
        self.assertEqual(body, {"ready": True, "imap": self.server.imap_port,
                                "smtp": self.server.smtp_port,
                                "submission": self.server.submission_port,
                                "push_origin": self.server.push_service.origin,
                                "domains": ["example.org"]})

    @defer.inlineCallbacks
    def test_users_messages_and_a_decrypted_push(self):
        code, body = yield self.api.call("POST", "users", {"address": ALICE, "password": "secret"})
        self.assertEqual((code, body), (201, {"address": ALICE}))
        code, body = yield self.api.call("GET", "users")
        self.assertEqual(body, [{"address": ALICE}])
        token, seq = yield self.subscribe()
        code, subs = yield self.api.call("GET", "users/%s/subscriptions" % ALICE)
        self.assertEqual([(s["id"], s["state"]) for s in subs], [("phone", "active")])

        waiting = self.api.call("GET", "events?since=%d&timeout=10" % seq)
        code, body = yield self.api.call("POST", "users/%s/messages" % ALICE, {"message": MESSAGE})
        self.assertEqual((code, body), (201, {"uid": 1}))
        code, events = yield waiting
        self.assertEqual(events[0], {"type": "message", "address": ALICE, "mailbox": "INBOX",
                                     "uid": 1, "seq": seq + 1})
        if len(events) == 1:
            code, events = yield self.api.call("GET", "events?since=%d&timeout=10" % (seq + 1))
        else:
            events = events[1:]
        push = events[0]["push"]
        self.assertEqual((push["token"], push["status"], push["problems"]), (token, 201, []))
        self.assertTrue(push["plaintext"].startswith('* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS () '
                                                     'ENVELOPE (NIL "hi" '), push["plaintext"])
        code, received = yield self.api.call("GET", "push/received?token=" + token)
        self.assertEqual([p["plaintext"] for p in received][-1], push["plaintext"])
        code, messages = yield self.api.call("GET", "users/%s/messages" % ALICE)
        self.assertEqual([(m["uid"], m["message"]) for m in messages], [(1, MESSAGE)])

    @defer.inlineCallbacks
    def test_events_long_poll_times_out_empty(self):
        code, events = yield self.api.call("GET", "events?since=0&timeout=0.1")
        self.assertEqual((code, events), (200, []))

    @defer.inlineCallbacks
    def test_reset(self):
        yield self.api.call("POST", "users", {"address": ALICE, "password": "secret"})
        yield self.subscribe()
        yield self.api.call("POST", "users/%s/messages" % ALICE, {"message": MESSAGE})
        code, body = yield self.api.call("POST", "service/reset")
        self.assertEqual((code, body), (200, {"reset": [ALICE]}))
        code, users = yield self.api.call("GET", "users")
        self.assertEqual(users, [])
        self.assertEqual(self.server.components.webpush.store.list(ALICE), [])
        self.assertFalse(self.server.components.mail_store.exists(ALICE))
        code, received = yield self.api.call("GET", "push/received")
        self.assertEqual(received, [])
        code, events = yield self.api.call("GET", "events")
        self.assertEqual(events, [])

    @defer.inlineCallbacks
    def test_chaos(self):
        settings = {"probability": 1.0, "statuses": [503], "retry_after": 7, "seed": 1}
        code, body = yield self.api.call("PUT", "push/chaos", settings)
        self.assertEqual((code, body), (200, dict(settings, delay=0.0, drop=0.0)))
        yield self.api.call("POST", "users", {"address": ALICE, "password": "secret"})
        code, sub = yield self.api.call("POST", "push/subscriptions")
        client = yield connect_line_client(self.tracker, self.server.imap_port, user=ALICE.encode())
        yield client.command(b"w WEBPUSH phone %s %s %s" % (
            sub["endpoint"].encode(), sub["p256dh"].encode(), sub["auth"].encode()))
        code, events = yield self.api.call("GET", "events?since=0&timeout=10")
        push = events[0]["push"]
        self.assertEqual(push["status"], 503)
        self.assertTrue(push["plaintext"].startswith("* ACKWEBPUSH "))
        code, body = yield self.api.call("DELETE", "push/chaos")
        self.assertEqual((code, body), (200, None))
        self.assertIsNone(self.server.push_service.chaos)

    @defer.inlineCallbacks
    def test_errors(self):
        code, body = yield self.api.call("PUT", "push/chaos", {"probability": 2})
        self.assertEqual((code, body), (400, {"error": "probability must be between 0 and 1, not 2"}))
        code, body = yield self.api.call("GET", "users/nobody@example.org/messages")
        self.assertEqual((code, body), (404, {"error": "no such user: nobody@example.org"}))
        code, body = yield self.api.call("GET", "nothing/here")
        self.assertEqual(code, 404)
        code, body = yield self.api.call("POST", "users", {"address": ALICE})
        self.assertEqual((code, body), (400, {"error": "KeyError: 'password'"}))
        yield self.api.call("POST", "users", {"address": ALICE, "password": "x"})
        code, body = yield self.api.call("POST", "users", {"address": ALICE, "password": "x"})
        self.assertEqual(code, 409)
        code, body = yield self.api.call("GET", "users/%s/messages?mailbox=Nope" % ALICE)
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_delete_user(self):
        yield self.api.call("POST", "users", {"address": ALICE, "password": "secret"})
        yield self.subscribe()
        code, body = yield self.api.call("DELETE", "users/" + ALICE)
        self.assertEqual((code, body), (200, {"deleted": ALICE}))
        self.assertEqual(self.server.components.webpush.store.list(ALICE), [])
        self.assertFalse(self.server.components.users.exists(ALICE))
        code, body = yield self.api.call("DELETE", "users/" + ALICE)
        self.assertEqual((code, body), (404, {"error": "no such user: %s" % ALICE}))


class ChaosTests(unittest.TestCase):

    def test_mix(self):
        from imapwebpush.testing.pushservice import Answer

        chaos = Chaos(probability=0.5, statuses=[429, 410, 507], retry_after=3, drop=0.5,
                      delay=0.25, seed=42)
        answers = [chaos.answer(Answer()) for _ in range(400)]
        kinds = {(a.kind, a.status) for a in answers}
        self.assertEqual(kinds, {("status", 429), ("status", 410), ("status", 507),
                                 ("garbage", 0), ("status", 201)})
        self.assertTrue(all(a.delay == 0.25 for a in answers))
        self.assertTrue(all(a.headers == {"Retry-After": "3"} for a in answers if a.status == 429))
        bad = sum(1 for a in answers if a.status in (429, 410, 507))
        self.assertTrue(150 < bad < 250, bad)
        again = Chaos(probability=0.5, statuses=[429, 410, 507], drop=0.5, seed=42)
        self.assertEqual([(a.kind, a.status) for a in answers[:20]],
                         [(a.kind, a.status) for a in (again.answer(Answer()) for _ in range(20))])

    def test_bad_settings(self):
        self.assertRaises(ValueError, Chaos, probability=-0.1)
        self.assertRaises(ValueError, Chaos, probability=0.5, statuses=[200])
        self.assertRaises(ValueError, Chaos, delay=-1)


class _Process(protocol.ProcessProtocol):
    def __init__(self):
        self.output = b""
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data
        if b"\n" in self.output and not self.ready.called:
            self.ready.callback(json.loads(self.output.split(b"\n")[0]))

    def processEnded(self, reason):
        if not self.ready.called:
            self.ready.errback(AssertionError(self.output))
        self.ended.callback(reason.value.exitCode)


class TestServerCommand(unittest.TestCase):
    """``imapwebpush testserver`` prints its ports, serves the API, stops on SIGTERM."""

    timeout = 60

    @defer.inlineCallbacks
    def test_run(self):
        proc = _Process()
        transport = reactor.spawnProcess(proc, sys.executable, [
            sys.executable, "-c", "import sys; from imapwebpush.cli import main; sys.exit(main())",
            "testserver", "--control-port", "0", "--imap-port", "0", "--smtp-port", "0",
            "--submission-port", "0", "--user", "alice@example.org:secret"],
            env=dict(os.environ))
        self.addCleanup(lambda: proc.ended.called or transport.signalProcess("KILL"))
        ready = yield proc.ready
        self.assertEqual(sorted(ready), ["control", "imap", "push_origin", "ready", "smtp",
                                         "submission"])
        self.assertTrue(re.match(r"\Ahttp://127\.0\.0\.1:\d+\Z", ready["push_origin"]))
        api = Api(ready["control"])
        code, body = yield api.call("GET", "service/readiness")
        self.assertEqual(body["imap"], ready["imap"])
        code, users = yield api.call("GET", "users")
        self.assertEqual(users, [{"address": ALICE}])
        transport.signalProcess("TERM")
        code = yield proc.ended
        self.assertEqual(code, 0)
