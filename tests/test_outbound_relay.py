"""How the outbound client talks TLS, on loopback: through a smarthost and to MX hosts.

Smarthost (``--relay-host``): a second imapwebpush instance is the relay; its
submission port has a throw-away certificate, requires STARTTLS before AUTH
and AUTH before MAIL, and records what each connection sent (and whether TLS
was on by then), so a test sees the exact commands our client gave it.
MX path: the remote domain's server with or without a certificate; its
``Received:`` header says whether the hop was encrypted (``ESMTPS``).
"""

import base64
import os

from twisted.internet import defer
from twisted.mail import smtp
from twisted.trial import unittest

from imapwebpush.smtp.server import ReceivingESMTP, SubmissionESMTP

from tests.harness.tls import write_self_signed
from tests.test_outbound_end_to_end import LOOPBACK, MESSAGE, OutboundWorld

RELAY_USER, RELAY_PASSWORD = "relay@remote.test", "relay-secret"


class RecordingSubmission(SubmissionESMTP):
    """The relay's submission protocol, keeping each connection's commands as [(line, tls on)]."""

    sessions = None  # set per test: a list of per-connection lists
    refuse_tls = None  # set per test: [True] while STARTTLS is answered 454

    def connectionMade(self):
        self.commands = []
        self.sessions.append(self.commands)
        SubmissionESMTP.connectionMade(self)

    def lineReceived(self, line):
        if self.mode == smtp.COMMAND:
            self.commands.append((line, self._secure()))
        return SubmissionESMTP.lineReceived(self, line)

    def ext_STARTTLS(self, rest):
        if self.refuse_tls and self.refuse_tls[0]:
            self.sendCode(454, b"4.7.0 TLS not available now")
            return
        return SubmissionESMTP.ext_STARTTLS(self, rest)


class RelayTests(OutboundWorld, unittest.TestCase):
    def setUp(self):
        self.make_zone()
        self.relay_data = os.path.abspath(self.mktemp())
        self.add_user(self.relay_data, "bob@remote.test")
        self.add_user(self.relay_data, RELAY_USER, RELAY_PASSWORD)
        self.add_user(self.local_data, "alice@local.test")
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        self.cert, self.key = write_self_signed(work, "127.0.0.1")  # what --relay-host names
        self.work = work
        self.password_file = os.path.join(work, "relay-password")
        with open(self.password_file, "w") as f:
            f.write(RELAY_PASSWORD + "\n")
        self.sessions = []
        self.refuse_tls = [False]

    @defer.inlineCallbacks
    def start_relay(self, tls=True):
        argv = ["--data", self.relay_data, "--imap", "none", "--smtp", "none",
                "--submission", LOOPBACK, "--domain", "remote.test", "--hostname", "relay.remote.test",
                "--dns-server", self.dns,
                # The provider lets its customer send as the customer's own domain.
                "--submission-allow-sender", RELAY_USER + "=@local.test"]
        if tls:
            argv += ["--tls-cert", self.cert, "--tls-key", self.key]
        else:
            argv += ["--allow-plaintext-auth"]  # AUTH offered in the clear: we must not take it
        relay = yield self.start(argv)
        factory = relay.service.getServiceNamed("submission").factory.wrapped
        factory.protocol = type("Recording", (RecordingSubmission,), {
            "sessions": self.sessions, "refuse_tls": self.refuse_tls})
        return relay

    def start_sender(self, relay):
        return self.start_local(
            1,  # --outbound-port: unused with a relay (nothing listens on port 1 anyway)
            "--relay-host", "127.0.0.1:%d" % (relay.ports["submission"],),
            "--relay-user", RELAY_USER, "--relay-password-file", self.password_file,
            "--relay-ca", self.cert, "--queue-retry", "0.2", "--queue-max-retry", "0.2")

    @staticmethod
    def verbs(session):
        return [line.split(b" ", 1)[0].split(b":", 1)[0].upper() for line, _ in session]

    @defer.inlineCallbacks
    def test_relay_gets_tls_then_auth_then_the_message_once(self):
        relay = yield self.start_relay()
        local = yield self.start_sender(relay)
        refused = yield self.submit(local.ports["submission"], ["bob@remote.test"])
        self.assertEqual(refused, {})
        yield self.wait_for(lambda: self.inbox(relay, "bob@remote.test"))
        yield self.wait_for(lambda: not local.components.outbound.queue.entries())
        [arrived] = self.inbox(relay, "bob@remote.test")
        self.assertTrue(arrived.endswith(MESSAGE))
        self.assertIn(b"\r\nReceived: from mx.local.test (127.0.0.1)\r\n"
                      b"\tby relay.remote.test (imapwebpush) with ESMTPSA id ", arrived)
        [session] = self.sessions
        self.assertEqual(self.verbs(session),
                         [b"EHLO", b"STARTTLS", b"EHLO", b"AUTH", b"MAIL", b"RCPT", b"DATA", b"QUIT"])
        self.assertEqual([tls for _, tls in session], [False, False] + [True] * 6)
        self.assertEqual(session[0][0], b"EHLO mx.local.test")
        mechanism, token = session[3][0].split(b" ")[1:]
        self.assertEqual((mechanism, base64.b64decode(token)),
                         (b"PLAIN", b"\0" + RELAY_USER.encode() + b"\0" + RELAY_PASSWORD.encode()))
        self.assertEqual(session[4][0].split(b" ")[:2], [b"MAIL", b"FROM:<alice@local.test>"])
        self.assertEqual(session[5][0], b"RCPT TO:<bob@remote.test>")
        self.assertEqual(self.inbox(local, "alice@local.test"), [])  # no bounce, no notice

    @defer.inlineCallbacks
    def test_starttls_refused_is_retried_never_plaintext(self):
        relay = yield self.start_relay()
        self.refuse_tls[0] = True
        local = yield self.start_sender(relay)
        yield self.submit(local.ports["submission"], ["bob@remote.test"])
        yield self.wait_for(lambda: len(self.sessions) >= 2)
        self.refuse_tls[0] = False
        refused_sessions = list(self.sessions)
        yield self.wait_for(lambda: self.inbox(relay, "bob@remote.test"))
        yield self.wait_for(lambda: not local.components.outbound.queue.entries())
        for session in refused_sessions[:2]:  # retried, and each time nothing after the 454
            self.assertEqual(self.verbs(session), [b"EHLO", b"STARTTLS"])
        self.assertEqual(self.verbs(self.sessions[-1]),
                         [b"EHLO", b"STARTTLS", b"EHLO", b"AUTH", b"MAIL", b"RCPT", b"DATA", b"QUIT"])
        self.assertEqual(len(self.inbox(relay, "bob@remote.test")), 1)
        self.assertEqual(self.inbox(local, "alice@local.test"), [])

    @defer.inlineCallbacks
    def test_relay_certificate_for_another_name_is_not_trusted(self):
        other = os.path.join(self.work, "other")
        os.makedirs(other)
        # The relay's certificate is the one --relay-ca trusts, but it names "localhost"
        # only, and --relay-host says 127.0.0.1: the hostname check must fail.
        self.cert, self.key = write_self_signed(other, "localhost")
        relay = yield self.start_relay()
        local = yield self.start_sender(relay)
        yield self.submit(local.ports["submission"], ["bob@remote.test"])
        queue = local.components.outbound.queue

        def retried():
            entries = queue.entries()
            return entries and entries[0].recipients[0].attempts >= 2

        yield self.wait_for(retried)
        [entry] = queue.entries()
        self.assertIn("IPAddressMismatch", entry.recipients[0].answer)
        for session in self.sessions:  # the handshake failed: not one line after STARTTLS
            self.assertIn(self.verbs(session), ([], [b"EHLO"], [b"EHLO", b"STARTTLS"]))
        self.assertEqual(self.inbox(relay, "bob@remote.test"), [])

    @defer.inlineCallbacks
    def test_relay_without_starttls_keeps_the_mail_queued(self):
        relay = yield self.start_relay(tls=False)
        local = yield self.start_sender(relay)
        yield self.submit(local.ports["submission"], ["bob@remote.test"])
        queue = local.components.outbound.queue

        def retried():
            entries = queue.entries()
            return len(self.sessions) >= 2 and entries and entries[0].recipients[0].attempts >= 2

        yield self.wait_for(retried)
        [entry] = queue.entries()
        self.assertEqual(entry.recipients[0].answer, "TLS required but 127.0.0.1 offers no STARTTLS")
        for session in self.sessions:  # EHLO, then the connection is closed: no AUTH in the clear
            self.assertIn(self.verbs(session), ([], [b"EHLO"]))
        self.assertEqual(self.inbox(relay, "bob@remote.test"), [])
        self.assertEqual(self.inbox(local, "alice@local.test"), [])


class OpportunisticTLSTests(OutboundWorld, unittest.TestCase):
    """MX delivery: STARTTLS whenever offered (certificate unchecked, RFC 7435), plain otherwise."""

    def setUp(self):
        self.make_zone()
        self.add_user(self.remote_data, "bob@remote.test")
        self.add_user(self.local_data, "alice@local.test")

    def deliver(self, *remote_argv):
        return self.start_remote(*remote_argv).addCallback(self.deliver_to)

    @defer.inlineCallbacks
    def deliver_to(self, remote):
        """Submit to a local instance whose MX is ``remote``; the copy that arrived there once."""
        local = yield self.start_local(remote.ports["smtp"])
        yield self.submit(local.ports["submission"], ["bob@remote.test"])
        yield self.wait_for(lambda: self.inbox(remote, "bob@remote.test"))
        yield self.wait_for(lambda: not local.components.outbound.queue.entries())
        [arrived] = self.inbox(remote, "bob@remote.test")
        self.assertTrue(arrived.endswith(MESSAGE))
        return arrived

    @defer.inlineCallbacks
    def test_starttls_used_when_offered(self):
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        cert, key = write_self_signed(work, "mx.remote.test")  # self-signed: still used
        arrived = yield self.deliver("--tls-cert", cert, "--tls-key", key)
        self.assertIn(b"\r\nReceived: from mx.local.test (127.0.0.1)\r\n"
                      b"\tby mx.remote.test (imapwebpush) with ESMTPS id ", arrived)

    @defer.inlineCallbacks
    def test_broken_tls_falls_back_to_plaintext(self):
        """A peer that offers STARTTLS but cannot do TLS with us still gets the mail (RFC 7435),
        over a second connection that does not try STARTTLS; a smarthost never does (RelayTests)."""
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        cert, key = write_self_signed(work, "mx.remote.test")
        remote = yield self.start_remote("--tls-cert", cert, "--tls-key", key)
        sessions = []

        class BrokenTLS(ReceivingESMTP):
            def connectionMade(self):
                self.commands = []
                sessions.append(self.commands)
                ReceivingESMTP.connectionMade(self)

            def lineReceived(self, line):
                if self.mode == smtp.COMMAND:
                    self.commands.append(line.split(b" ")[0].upper())
                return ReceivingESMTP.lineReceived(self, line)

            broken = False

            def ext_STARTTLS(self, rest):
                self.sendCode(220, b"2.0.0 Ready to start TLS")
                self.broken = True

            def dataReceived(self, data):
                if self.broken:  # the client's TLS hello gets no TLS answer: the handshake fails
                    self.transport.write(b"this is no TLS server hello\r\n")
                    return
                return ReceivingESMTP.dataReceived(self, data)

        remote.service.getServiceNamed("smtp").factory.wrapped.protocol = BrokenTLS
        arrived = yield self.deliver_to(remote)
        self.assertIn(b"\tby mx.remote.test (imapwebpush) with ESMTP id ", arrived)
        self.assertEqual(sessions, [[b"EHLO", b"STARTTLS"], [b"EHLO", b"MAIL", b"RCPT", b"DATA", b"QUIT"]])

    @defer.inlineCallbacks
    def test_plain_delivery_without_starttls(self):
        arrived = yield self.deliver()
        self.assertIn(b"\r\nReceived: from mx.local.test (127.0.0.1)\r\n"
                      b"\tby mx.remote.test (imapwebpush) with ESMTP id ", arrived)
