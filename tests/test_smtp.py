"""SMTP receiving over real loopback, driven by Python's smtplib in a thread.

What a sending server sees: the EHLO extensions, the exact reply codes and
texts for unknown recipients and oversized mail, and what lands in the INBOX.
"""

import smtplib

from twisted.internet import defer, reactor
from twisted.trial import unittest

from imapwebpush.smtp.server import ReceivingESMTP, ReceivingFactory
from imapwebpush.store.users import UserDatabase
from tests.harness.smtp import DOMAINS, FAST, MESSAGE, LoopbackSMTPMixin

class ReceivingTests(LoopbackSMTPMixin, unittest.TestCase):
    def setUp(self):
        self.make_world()
        self.factory = ReceivingFactory(
            self.store, self.users, DOMAINS, reactor, hostname="mx.example.org",
            max_message_size=self.max_size,
        )
        self.port = self.listen(self.factory)

    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
        return s

    @defer.inlineCallbacks
    def test_ehlo_extensions(self):
        def talk():
            s = self.smtp()
            try:
                code, banner = s.ehlo("client.example")
                return code, s.esmtp_features, s.has_extn("auth")
            finally:
                s.quit()

        code, features, auth = yield self.in_thread(talk)
        self.assertEqual(code, 250)
        self.assertEqual(features["size"], "10000")
        self.assertIn("enhancedstatuscodes", features)
        self.assertIn("8bitmime", features)
        self.assertFalse(auth)
        self.assertNotIn("starttls", features)  # no certificate given

    @defer.inlineCallbacks
    def test_delivery(self):
        def send():
            s = self.smtp()
            try:
                return s.sendmail("carol@remote.example", ["Alice@Example.org"], MESSAGE)
            finally:
                s.quit()

        refused = yield self.in_thread(send)
        self.assertEqual(refused, {})
        [(uid, data)] = self.inbox("alice@example.org")
        self.assertEqual(uid, 1)
        self.assertTrue(data.startswith(b"Return-Path: <carol@remote.example>\r\nReceived: from "), data)
        head, _, body = data.partition(b"\r\n\r\n")
        received = head.split(b"\r\n")[1:4]
        self.assertTrue(received[0].startswith(b"Received: from "), received)
        self.assertIn(b"(127.0.0.1)", received[0])
        self.assertRegex(received[1], rb"^\tby mx\.example\.org \(imapwebpush\) with ESMTP id [0-9a-f]{16}$")
        self.assertRegex(received[2], rb"^\tfor <alice@example\.org>; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000$")
        self.assertTrue(data.endswith(MESSAGE), data)
        self.assertEqual(body, b"First line.\r\n.A line starting with a dot.\r\nLast line.\r\n")
        self.assertEqual(self.inbox("bob@example.net"), [])

    @defer.inlineCallbacks
    def test_unknown_recipient(self):
        def talk():
            s = self.smtp()
            try:
                s.ehlo("client.example")
                s.mail("carol@remote.example")
                return s.rcpt("nobody@example.org"), s.rcpt("alice@example.org")
            finally:
                s.quit()

        unknown, known = yield self.in_thread(talk)
        self.assertEqual(unknown, (550, b"5.1.1 <nobody@example.org>: no such user here"))
        self.assertEqual(known[0], 250)

    @defer.inlineCallbacks
    def test_not_a_local_domain(self):
        def talk():
            s = self.smtp()
            try:
                s.ehlo("client.example")
                s.mail("carol@remote.example")
                return s.rcpt("alice@elsewhere.example")
            finally:
                s.quit()

        answer = yield self.in_thread(talk)
        self.assertEqual(
            answer, (550, b"5.1.1 <alice@elsewhere.example>: not a local domain, relaying not supported")
        )

    @defer.inlineCallbacks
    def test_all_recipients_refused(self):
        def send():
            s = self.smtp()
            try:
                s.sendmail("carol@remote.example", ["nobody@example.org"], MESSAGE)
            finally:
                s.quit()

        yield self.assertFailure(self.in_thread(send), smtplib.SMTPRecipientsRefused)

    @defer.inlineCallbacks
    def test_several_recipients(self):
        """One copy per user, even when a user is named twice; each Received names its user."""

        def send():
            s = self.smtp()
            try:
                return s.sendmail(
                    "carol@remote.example",
                    ["alice@example.org", "nobody@example.org", "bob@example.net", "ALICE@example.org"],
                    MESSAGE,
                )
            finally:
                s.quit()

        refused = yield self.in_thread(send)
        self.assertEqual(list(refused), ["nobody@example.org"])
        [(uid_a, alice)] = self.inbox("alice@example.org")
        [(uid_b, bob)] = self.inbox("bob@example.net")
        self.assertEqual((uid_a, uid_b), (1, 1))
        self.assertIn(b"\tfor <alice@example.org>; ", alice)
        self.assertIn(b"\tfor <bob@example.net>; ", bob)
        self.assertTrue(alice.endswith(MESSAGE))
        self.assertTrue(bob.endswith(MESSAGE))

    @defer.inlineCallbacks
    def test_two_messages_one_connection(self):
        def send():
            s = self.smtp()
            try:
                s.sendmail("carol@remote.example", ["alice@example.org"], MESSAGE)
                s.sendmail("<>", ["alice@example.org"], MESSAGE.replace(b"hello", b"again"))
            finally:
                s.quit()

        yield self.in_thread(send)
        messages = self.inbox("alice@example.org")
        self.assertEqual([uid for uid, _ in messages], [1, 2])
        self.assertIn(b"Subject: again", messages[1][1])
        self.assertTrue(messages[1][1].startswith(b"Return-Path: <>\r\n"))

    @defer.inlineCallbacks
    def test_size_parameter_too_large(self):
        def talk():
            s = self.smtp()
            try:
                s.ehlo("client.example")
                too_big = s.mail("carol@remote.example", ["SIZE=10001"])
                s.rset()
                fits = s.mail("carol@remote.example", ["SIZE=10000"])
                return too_big, fits
            finally:
                s.quit()

        too_big, fits = yield self.in_thread(talk)
        self.assertEqual(
            too_big, (552, b"5.3.4 Message size exceeds fixed maximum message size (10000 octets)")
        )
        self.assertEqual(fits[0], 250)

    @defer.inlineCallbacks
    def test_data_too_large(self):
        """A client that does not announce SIZE still gets 552, and nothing is stored."""
        big = MESSAGE + (b"x" * 70 + b"\r\n") * 200

        def talk():
            s = self.smtp()
            try:
                s.ehlo("client.example")
                s.mail("carol@remote.example")
                s.rcpt("alice@example.org")
                answer = s.data(big)
                after = s.sendmail("carol@remote.example", ["alice@example.org"], MESSAGE)
                return answer, after
            finally:
                s.quit()

        answer, after = yield self.in_thread(talk)
        self.assertEqual(
            answer, (552, b"5.3.4 Message size exceeds fixed maximum message size (10000 octets)")
        )
        self.assertEqual(after, {})
        self.assertEqual([uid for uid, _ in self.inbox("alice@example.org")], [1])

    @defer.inlineCallbacks
    def test_line_too_long(self):
        """An over-long line ends the connection; no part of the message is read as commands."""
        self.patch(ReceivingESMTP, "MAX_LENGTH", 2000)
        smuggled = b"RCPT TO:<bob@example.net>\r\n"

        def talk():
            s = self.smtp()
            s.ehlo("client.example")
            s.mail("carol@remote.example")
            s.rcpt("alice@example.org")
            s.docmd("DATA")
            s.send(b"Subject: long\r\n\r\n" + b"x" * 3000 + b"\r\n" + smuggled + b".\r\n")
            answer = s.getreply()
            try:
                closed = s.getreply()
            except smtplib.SMTPServerDisconnected:
                closed = "disconnected"
            s.close()
            return answer, closed

        answer, closed = yield self.in_thread(talk)
        self.assertEqual(answer, (500, b"5.5.2 Line too long"))
        self.assertEqual(closed, "disconnected")
        self.assertEqual(self.inbox("alice@example.org"), [])
        self.assertEqual(self.inbox("bob@example.net"), [])

    @defer.inlineCallbacks
    def test_store_failure_is_transient(self):
        """If the store fails, the client hears 451 and will try again: nothing is lost."""
        real_account = self.store.account

        class BrokenBox:
            def add_staged(self, *a, **kw):
                raise OSError(5, "Input/output error")

        class BrokenAccount:
            def mailbox(self, name):
                return BrokenBox()

        def account(address):
            if address == "bob@example.net":
                return BrokenAccount()
            return real_account(address)

        self.patch(self.store, "account", account)

        def talk():
            s = self.smtp()
            try:
                s.ehlo("client.example")
                s.mail("carol@remote.example")
                s.rcpt("alice@example.org")
                s.rcpt("bob@example.net")
                return s.data(MESSAGE)
            finally:
                s.quit()

        answer = yield self.in_thread(talk)
        self.assertEqual(
            answer,
            (451, b"4.3.0 Local error: message not stored for 1 of 2 recipients, try again later"),
        )
        self.flushLoggedErrors(OSError)

    @defer.inlineCallbacks
    def test_user_added_while_running(self):
        UserDatabase(self.data, scrypt_params=FAST).add("dave@example.org", "pw")

        def send():
            s = self.smtp()
            try:
                return s.sendmail("carol@remote.example", ["dave@example.org"], MESSAGE)
            finally:
                s.quit()

        self.assertEqual((yield self.in_thread(send)), {})
        self.assertEqual(len(self.inbox("dave@example.org")), 1)
