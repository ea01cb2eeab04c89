"""The whole server as twistd builds it: a phone subscribes over IMAP and gets its mail pushed.

Everything here goes through the wire: imaplib sends GETVAPID, WEBPUSH and
ACKWEBPUSH to the server that makeService builds from its options; the
verification push and the new-mail push arrive at the testing push service,
which checks VAPID and decrypts them; smtplib delivers the mail. The server is
then stopped and started again on the same data folder: the subscription is
still active and the next mail is pushed too.
"""

import imaplib
import io
import os
import re
import smtplib

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from imapwebpush.store.users import UserDatabase
from imapwebpush.tap import start_server
from imapwebpush import cli, decisions
from imapwebpush.testing import Answer, PushService
from imapwebpush.webpush import crypto
from imapwebpush.webpush.subscriptions import token_hash
from tests.harness.connections import track_server
from tests.harness.dns import dns_server_option
from tests.harness.settle import OutcomeWatch
from tests.harness.wire import imaplib_session

ALICE = "alice@example.org"
PASSWORD = "secret"
COMMANDS = ("GETVAPID", "WEBPUSH", "ACKWEBPUSH", "LWEBPUSH", "SILWEBPUSH")


def mail(subject):
    return (
        "From: Fred <fred@elsewhere.example>\r\nTo: <%s>\r\nSubject: %s\r\n"
        "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <%s@elsewhere.example>\r\n"
        "\r\nbody\r\n" % (ALICE, subject, subject.replace(" ", "-"))
    ).encode("ascii")


class SubscribeOverIMAP(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        for name in COMMANDS:
            imaplib.Commands.setdefault(name, ("AUTH", "SELECTED"))
        self.data = os.path.abspath(self.mktemp())
        os.makedirs(self.data)
        UserDatabase(self.data, scrypt_params={"n": 2, "r": 1, "p": 1}).add(ALICE, PASSWORD)
        self.pushservice = PushService(reactor)
        yield self.pushservice.start()
        self.addCleanup(self.pushservice.stop)

    @defer.inlineCallbacks
    def start(self):
        server = yield start_server([
            "--data", self.data, "--domain", "example.org",
            "--smtp", "tcp:0:interface=127.0.0.1", "--imap", "tcp:0:interface=127.0.0.1",
            "--allow-plaintext-auth", "--insecure-push-endpoints",
        ] + dns_server_option(self), reactor)
        server.connections = track_server(server)
        server.outcomes = OutcomeWatch(server.components.webpush.sender)
        self.addCleanup(self.stop, server)
        return server

    @defer.inlineCallbacks
    def stop(self, server):
        if server.service.running:
            # let answers in flight finish so no connection is left open
            yield server.outcomes.idle()
            yield server.stop()

    @defer.inlineCallbacks
    def client(self, server, work):
        """Run blocking client code in a thread; wait until the server closed its side."""
        result = yield threads.deferToThread(work)
        yield server.connections.idle()
        return result

    def send(self, server, subject):
        def work():
            with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
                smtp.sendmail("fred@elsewhere.example", [ALICE], mail(subject))
        return self.client(server, work)

    @defer.inlineCallbacks
    def test_subscribe_verify_push_restart(self):
        device = self.pushservice.new_subscription()
        server = yield self.start()
        port = server.ports["imap"]

        def subscribe():
            with imaplib_session(port, ALICE, PASSWORD) as imap:
                capabilities = imap.capability()[1][0].split()
                imap.xatom("GETVAPID")
                vapid = imap.response("VAPID")[1][0]
                typ, _ = imap.xatom(
                    "WEBPUSH", "phone", device.endpoint, device.p256dh, device.auth)
                listed = imap.response("WEBPUSH")[1]
                return capabilities, vapid, typ, listed

        capabilities, vapid, typ, listed = yield self.client(server, subscribe)
        self.assertIn(b"WEBPUSH", capabilities)
        self.assertEqual(vapid.decode("ascii"), server.components.webpush.keyring.current())
        self.assertEqual(typ, "OK")
        self.assertEqual(listed, [("phone %s NIL" % (device.endpoint,)).encode("ascii")])

        [verification] = yield self.pushservice.wait_for(1, device)
        self.assertEqual(verification.problems, [])
        self.assertEqual(verification.headers["urgency"], "high")
        self.assertEqual(verification.headers["ttl"], "600")
        self.assertEqual(verification.vapid_key, vapid.decode("ascii"))
        token = re.match(rb"\A\* ACKWEBPUSH (\S+)\r\n\Z", verification.plaintext).group(1)

        # Mail before the ACK is not pushed: the subscription is pending.
        yield self.send(server, "before ack")

        def acknowledge():
            with imaplib_session(port, ALICE, PASSWORD) as imap:
                typ, _ = imap.xatom("ACKWEBPUSH", token.decode("ascii"))
                return typ, imap.response("WEBPUSH")[1]

        typ, listed = yield self.client(server, acknowledge)
        self.assertEqual((typ, listed), ("OK", [("phone %s NIL" % (device.endpoint,)).encode()]))

        yield self.send(server, "after ack")
        pushes = yield self.pushservice.wait_for(2, device)
        self.assertEqual(pushes[1].problems, [])
        self.assertTrue(pushes[1].plaintext.startswith(b'* SELECT "INBOX"\r\n* 2 UIDFETCH (FLAGS () '
                                                       b'ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" '
                                                       b'"after ack" '), pushes[1].plaintext)
        self.assertEqual(pushes[1].headers["urgency"], "high")
        self.assertNotIn("topic", pushes[1].headers)

        # A restart keeps the subscription active, bound to the same key.
        yield self.stop(server)
        server = yield self.start()
        yield self.send(server, "after restart")
        pushes = yield self.pushservice.wait_for(3, device)
        self.assertIn(b'* 3 UIDFETCH (FLAGS () ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" '
                      b'"after restart" ', pushes[2].plaintext)
        self.assertEqual(pushes[2].vapid_key, vapid.decode("ascii"))
        self.assertEqual(len(self.pushservice.received(device)), 3)

    @defer.inlineCallbacks
    def test_restart_in_the_middle_of_a_retry(self):
        """A push waiting to be retried when the server stops is delivered after the restart."""
        device = self.pushservice.new_subscription()
        # The push service is overloaded: 503 with Retry-After, so the push waits.
        device.respond(Answer.retry_after("2", status=503))
        server = yield self.start()
        activate(server, device)
        yield self.send(server, "waiting")
        [refused] = yield self.pushservice.wait_for(1, device)
        self.assertEqual(refused.status, 503)
        self.assertEqual(server.components.webpush.sender.pending(), 1)
        yield server.stop()  # the push waits in the outbox, on disk

        server = yield self.start()
        pushes = yield self.pushservice.wait_for(2, device)
        self.assertEqual(pushes[1].status, 201)
        self.assertEqual(pushes[1].problems, [])
        self.assertEqual(pushes[1].plaintext, refused.plaintext)
        self.assertIn(b'"waiting"', pushes[1].plaintext)

    @defer.inlineCallbacks
    def test_vapid_rotate_while_running(self):
        """`imapwebpush vapid rotate` takes effect at the next GETVAPID, without a restart."""
        server = yield self.start()
        port = server.ports["imap"]

        def getvapid():
            with imaplib_session(port, ALICE, PASSWORD) as imap:
                imap.xatom("GETVAPID")
                return imap.response("VAPID")[1][0].decode("ascii")

        before = yield self.client(server, getvapid)
        out = io.StringIO()
        status = cli.main(["--data", self.data, "vapid", "rotate"], stdout=out, stderr=io.StringIO())
        self.assertEqual(status, 0)
        rotated = out.getvalue().splitlines()[0]
        after = yield self.client(server, getvapid)
        self.assertNotEqual(before, after)
        self.assertEqual(after, rotated)

    @defer.inlineCallbacks
    def test_deleted_subscription_stops_at_once(self):
        """WEBPUSH id NIL while a push waits for a retry: the push is never sent.

        A second device, told to retry one second later than the first, is the clock: once
        its retry arrives, the deleted one's earlier retry would have been sent too.
        """
        device = self.pushservice.new_subscription()
        device.respond(Answer.retry_after("1", status=503))
        witness = self.pushservice.new_subscription()
        witness.respond(Answer.retry_after("2", status=503))
        server = yield self.start()
        activate(server, device)
        activate(server, witness, sid="witness")
        yield self.send(server, "waiting")
        [refused] = yield self.pushservice.wait_for(1, device)
        self.assertEqual(refused.status, 503)
        yield self.pushservice.wait_for(1, witness)
        port = server.ports["imap"]

        def delete():
            with imaplib_session(port, ALICE, PASSWORD) as imap:
                return imap.xatom("WEBPUSH", "phone", "NIL")[0]

        self.assertEqual((yield self.client(server, delete)), "OK")
        self.assertEqual(server.components.webpush.sender.pending(), 1)  # the witness's retry
        retried = yield self.pushservice.wait_for(2, witness)
        self.assertEqual([p.status for p in retried], [503, 201])
        self.assertEqual(len(self.pushservice.received(device)), 1)


def activate(server, device, sid="phone"):
    """Make ``device`` an active subscription of ALICE, as WEBPUSH + ACKWEBPUSH leave it."""
    store, keyring = server.components.webpush.store, server.components.webpush.keyring
    token = (sid.encode() + b"t" * decisions.TOKEN_BYTES)[: decisions.TOKEN_BYTES]
    now = reactor.seconds()
    store.set_pending(ALICE, sid, device.endpoint, crypto.parse_p256dh(device.p256dh),
                      crypto.parse_auth(device.auth), keyring.current(), now,
                      decisions.DEFAULT_MAX_SUBSCRIPTIONS, token_hash(token))
    assert store.acknowledge(ALICE, token_hash(token), now, decisions.TOKEN_LIFETIME).state == "active"
