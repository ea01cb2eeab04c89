"""SMTP command rules of RFC 5321 the receiving server must keep, and bad input.

What a client sees, line by line: MAIL/RCPT/DATA before HELO/EHLO are refused
with 503, NOOP and VRFY are answered, a command line that is not ASCII gets a
500 and the connection goes on.
"""

import base64
import smtplib

from twisted.internet import defer, reactor
from twisted.trial import unittest

from imapwebpush.smtp.server import ReceivingFactory, SubmissionFactory
from imapwebpush.store.users import UserChecker
from imapwebpush.tap import load_tls
from imapwebpush.testing import tls as testing_tls
from imapwebpush.throttle import LoginThrottle
from tests.harness.smtp import DOMAINS, LoopbackSMTPMixin, SMTPWorldMixin
from tests.harness.tls import client_context


class OrderTests(SMTPWorldMixin, unittest.TestCase):
    def setUp(self):
        self.make_world()
        self.wire = self.connect(self.receiving_factory())

    def test_mail_before_helo(self):
        self.assertEqual(
            self.wire.send(b"MAIL FROM:<carol@remote.example>"),
            [b"503 5.5.1 Send HELO or EHLO first"],
        )

    def test_rcpt_and_data_before_helo(self):
        self.assertEqual(
            self.wire.send(b"RCPT TO:<alice@example.org>"), [b"503 5.5.1 Send HELO or EHLO first"]
        )
        self.assertEqual(self.wire.send(b"DATA"), [b"503 5.5.1 Send HELO or EHLO first"])

    def test_after_helo_mail_is_accepted(self):
        self.assertEqual(self.wire.send(b"MAIL FROM:<carol@remote.example>")[0][:3], b"503")
        self.assertEqual(self.wire.send(b"HELO client.example")[0][:4], b"250 ")
        self.assertEqual(self.wire.send(b"MAIL FROM:<carol@remote.example>"), [b"250 Sender address accepted"])
        self.assertEqual(self.wire.send(b"RCPT TO:<alice@example.org>"), [b"250 Recipient address accepted"])
        self.assertEqual(self.wire.send(b"DATA"), [b"354 Continue"])
        self.assertEqual(self.wire.send(b"Subject: hi\r\n\r\nbody\r\n."), [b"250 2.0.0 Message accepted for delivery"])
        self.assertEqual(len(self.inbox("alice@example.org")), 1)

    def test_noop(self):
        self.assertEqual(self.wire.send(b"NOOP"), [b"250 2.0.0 OK"])
        self.assertEqual(self.wire.send(b"noop anything"), [b"250 2.0.0 OK"])

    def test_vrfy(self):
        self.assertEqual(
            self.wire.send(b"VRFY alice"),
            [b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"],
        )


class BadInputTests(SMTPWorldMixin, unittest.TestCase):
    def setUp(self):
        self.make_world()
        self.wire = self.connect(self.receiving_factory())

    def test_non_ascii_command(self):
        """``\\xffHELO x``: a 500, no error logged, and the session goes on."""
        self.assertEqual(self.wire.send(b"\xffHELO x"), [b"500 5.5.2 Syntax error: command line is not ASCII"])
        self.assertFalse(self.wire.closed)
        self.assertEqual(self.wire.send(b"EHLO client.example")[0][:4], b"250-")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_non_ascii_arguments(self):
        self.wire.send(b"EHLO client.example")
        for line in (
            b"MAIL FROM:<caf\xe9@remote.example>",
            b"HELO \xff\xfe",
            b"RCPT TO:<\xff@example.org>",
            b"\xc3\xa9",
            b"NOOP \x80",
        ):
            self.assertEqual(
                self.wire.send(line), [b"500 5.5.2 Syntax error: command line is not ASCII"], line
            )
        self.assertEqual(self.wire.send(b"MAIL FROM:<carol@remote.example>"), [b"250 Sender address accepted"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_non_ascii_in_data_is_kept(self):
        """Only command lines must be ASCII: 8BITMIME bodies arrive unchanged."""
        self.wire.send(b"EHLO client.example")
        self.wire.send(b"MAIL FROM:<carol@remote.example>")
        self.wire.send(b"RCPT TO:<alice@example.org>")
        self.wire.send(b"DATA")
        answer = self.wire.send(b"Subject: caf\xc3\xa9\r\n\r\n\xffbody\r\n.")
        self.assertEqual(answer, [b"250 2.0.0 Message accepted for delivery"])
        [(uid, data)] = self.inbox("alice@example.org")
        self.assertTrue(data.endswith(b"Subject: caf\xc3\xa9\r\n\r\n\xffbody\r\n"), data)

    def test_helo_needs_a_domain(self):
        self.assertEqual(self.wire.send(b"HELO"), [b"501 5.5.4 HELO needs the client's domain"])
        self.assertEqual(self.wire.send(b"EHLO  "), [b"501 5.5.4 EHLO needs the client's domain"])
        self.assertEqual(self.wire.send(b"MAIL FROM:<carol@remote.example>"), [b"503 5.5.1 Send HELO or EHLO first"])


class SubmissionOrderTests(SMTPWorldMixin, unittest.TestCase):
    def setUp(self):
        self.make_world()
        factory = SubmissionFactory(
            self.store, self.users, DOMAINS, self.clock, UserChecker(self.users),
            allow_plaintext_auth=True, hostname="smtp.example.org",
        )
        self.wire = self.connect(factory)

    def test_auth_before_ehlo(self):
        plain = base64.b64encode(b"\0alice@example.org\0alice-pw")
        self.assertEqual(self.wire.send(b"AUTH PLAIN " + plain), [b"503 5.5.1 Send HELO or EHLO first"])


class StartTLSForgetsTests(LoopbackSMTPMixin, unittest.TestCase):
    """RFC 3207 4.2: after STARTTLS the client must say EHLO again."""

    def setUp(self):
        self.make_world()
        cert, key = testing_tls.write_self_signed(self.data, "localhost", hosts=("localhost",))
        factory = ReceivingFactory(
            self.store, self.users, DOMAINS, reactor, tls=load_tls(cert, key), hostname="mx.example.org"
        )
        self.port = self.listen(factory)

    @defer.inlineCallbacks
    def test_mail_after_starttls_needs_ehlo(self):
        def talk():
            s = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
            try:
                s.ehlo("client.example")
                s.starttls(context=client_context())
                before = s.docmd("MAIL FROM:<carol@remote.example>")
                s.ehlo("client.example")
                after = s.docmd("MAIL FROM:<carol@remote.example>")
                return before, after
            finally:
                s.quit()

        before, after = yield self.in_thread(talk)
        self.assertEqual(before, (503, b"5.5.1 Send HELO or EHLO first"))
        self.assertEqual(after, (250, b"Sender address accepted"))


class DeadlineTests(SMTPWorldMixin, unittest.TestCase):
    """NOOP/RSET/EHLO do not keep a connection that never starts a message open."""

    def setUp(self):
        self.make_world()
        self.wire = self.connect(self.receiving_factory(deadline=120, timeout=300))

    def test_noop_every_50_seconds_does_not_extend_it(self):
        self.wire.send(b"EHLO client.example")
        for _ in range(2):
            self.clock.advance(50)
            self.assertEqual(self.wire.send(b"NOOP"), [b"250 2.0.0 OK"])
        self.clock.advance(19)
        self.assertFalse(self.wire.closed)
        self.clock.advance(1)
        self.assertEqual(
            self.wire.read(),
            [b"421 4.4.2 mx.example.org Too slow: no message started within 120 seconds, closing connection"],
        )
        self.assertTrue(self.wire.closed)

    def test_data_stops_it_and_the_final_dot_starts_it_again(self):
        self.wire.send(b"EHLO client.example")
        self.wire.send(b"MAIL FROM:<carol@remote.example>")
        self.wire.send(b"RCPT TO:<alice@example.org>")
        self.clock.advance(100)
        self.assertEqual(self.wire.send(b"DATA"), [b"354 Continue"])
        for _ in range(5):  # a slow sender: 500 s in DATA, a line every 100 s
            self.clock.advance(100)
            self.wire.send(b"line")
        self.assertFalse(self.wire.closed)
        self.assertEqual(self.wire.send(b"."), [b"250 2.0.0 Message accepted for delivery"])
        self.clock.advance(119)
        self.assertFalse(self.wire.closed)
        self.clock.advance(1)
        self.assertTrue(self.wire.closed)

    def test_idle_timeout(self):
        self.wire.send(b"EHLO client.example")
        self.wire.send(b"MAIL FROM:<carol@remote.example>")
        self.wire.send(b"RCPT TO:<alice@example.org>")
        self.wire.send(b"DATA")
        self.clock.advance(299)
        self.assertFalse(self.wire.closed)
        self.clock.advance(1)
        self.assertEqual(self.wire.read(), [b"421 4.4.2 mx.example.org Idle for 300 seconds, closing connection"])
        self.assertTrue(self.wire.closed)
        self.assertEqual(self.inbox("alice@example.org"), [])


class AuthThrottleTests(SMTPWorldMixin, unittest.TestCase):
    """What a password guesser on the submission port reads, on task.Clock."""

    def setUp(self):
        self.make_world()
        checker = UserChecker(self.users, defer_to_thread=defer.maybeDeferred)
        self.throttle = LoginThrottle(self.clock, free_failures=3, refuse_after=6, refuse_for=900)
        self.factory = SubmissionFactory(
            self.store, self.users, DOMAINS, self.clock, checker, allow_plaintext_auth=True,
            hostname="smtp.example.org", throttle=self.throttle,
        )
        self.wire = self.connect(self.factory)
        self.wire.send(b"EHLO client.example")

    def auth(self, password):
        return self.wire.send(b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.org\0" + password))

    def test_slower_then_refused(self):
        for _ in range(3):
            self.assertEqual(self.auth(b"guess"), [b"535 5.7.8 Authentication credentials invalid"])
        self.assertEqual(self.auth(b"guess"), [], "the 4th try waits its turn")
        self.clock.advance(0.9)
        self.assertEqual(self.wire.read(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.wire.read(), [b"535 5.7.8 Authentication credentials invalid"])
        for wait in (2, 4):
            self.assertEqual(self.auth(b"guess"), [])
            self.clock.advance(wait)
            self.assertEqual(self.wire.read(), [b"535 5.7.8 Authentication credentials invalid"])
        self.clock.advance(8)
        self.assertEqual(self.auth(b"alice-pw"), [b"454 4.7.0 Too many failed logins, try again later"])
        self.clock.advance(900)  # the connection is gone by then (its deadline): a new one
        self.wire = self.connect(self.factory)
        self.wire.send(b"EHLO client.example")
        self.assertEqual(self.auth(b"alice-pw"), [b"235 Authentication successful."])

    def test_one_login_at_a_time(self):
        for _ in range(3):
            self.auth(b"guess")
        plain = base64.b64encode(b"\0alice@example.org\0guess")
        answer = self.wire.send_raw(b"AUTH PLAIN " + plain + b"\r\nAUTH PLAIN " + plain + b"\r\n")
        self.assertEqual(answer, [b"503 5.5.1 Authentication already in progress"])
        self.clock.advance(1)
        self.assertEqual(self.wire.read(), [b"535 5.7.8 Authentication credentials invalid"])
