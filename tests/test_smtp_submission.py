"""SMTP submission: AUTH only over TLS, MAIL only after AUTH, local recipients only."""

import smtplib

from twisted.internet import defer, reactor
from twisted.trial import unittest

from imapwebpush.smtp.server import SubmissionFactory
from imapwebpush.store.users import UserChecker
from imapwebpush.tap import load_tls

from tests.harness.tls import client_context, write_self_signed
from tests.harness.smtp import DOMAINS, MESSAGE, LoopbackSMTPMixin


class SubmissionTestMixin(LoopbackSMTPMixin):
    allow_plaintext_auth = False

    def setUp(self):
        self.make_world()
        cert, key = write_self_signed(self.data)
        self.tls = load_tls(cert, key)
        self.factory = SubmissionFactory(
            self.store,
            self.users,
            DOMAINS,
            reactor,
            UserChecker(self.users),
            allow_plaintext_auth=self.allow_plaintext_auth,
            tls=self.tls,
            hostname="smtp.example.org",
            max_message_size=self.max_size,
        )
        self.port = self.listen(self.factory)

    def talk(self, script, implicit=False):
        def run():
            if implicit:
                s = smtplib.SMTP_SSL("127.0.0.1", self.port, timeout=10, context=client_context())
            else:
                s = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
            try:
                return script(s)
            finally:
                try:
                    s.quit()
                except smtplib.SMTPServerDisconnected:
                    pass

        return self.in_thread(run)


class PlainConnectionTests(SubmissionTestMixin, unittest.TestCase):
    """Without TLS nothing but STARTTLS is possible."""

    @defer.inlineCallbacks
    def test_no_auth_before_starttls(self):
        def script(s):
            s.ehlo("client.example")
            return (
                s.has_extn("starttls"),
                s.has_extn("auth"),
                s.docmd("AUTH", "PLAIN " + "AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3"),
                s.docmd("MAIL", "FROM:<alice@example.org>"),
            )

        starttls, auth, auth_answer, mail_answer = yield self.talk(script)
        self.assertTrue(starttls)
        self.assertFalse(auth)
        self.assertEqual(auth_answer, (538, b"5.7.11 Encryption required: use STARTTLS first"))
        self.assertEqual(mail_answer, (530, b"5.7.0 Must issue a STARTTLS command first"))

    @defer.inlineCallbacks
    def test_starttls_then_auth_plain(self):
        def script(s):
            s.starttls(context=client_context())
            s.ehlo("client.example")
            auth_offered = s.esmtp_features.get("auth", "")
            unauthenticated = s.docmd("MAIL", "FROM:<alice@example.org>")
            s.rset()
            login = s.login("alice@example.org", "alice-pw")
            refused = s.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
            return auth_offered, unauthenticated, login, refused

        offered, unauthenticated, login, refused = yield self.talk(script)
        self.assertEqual(offered.split(), ["PLAIN", "LOGIN"])
        self.assertEqual(unauthenticated, (530, b"5.7.0 Authentication required"))
        self.assertEqual(login, (235, b"Authentication successful."))
        self.assertEqual(refused, {})
        [(uid, data)] = self.inbox("bob@example.net")
        self.assertEqual(uid, 1)
        self.assertRegex(data, rb"\r\n\tby smtp\.example\.org \(imapwebpush\) with ESMTPSA id ")
        self.assertTrue(data.endswith(MESSAGE))

    @defer.inlineCallbacks
    def test_relaying_refused(self):
        def script(s):
            s.starttls(context=client_context())
            s.ehlo("client.example")
            s.login("alice@example.org", "alice-pw")
            s.mail("alice@example.org")
            return s.rcpt("someone@elsewhere.example"), s.rcpt("nobody@example.org")

        remote, unknown = yield self.talk(script)
        self.assertEqual(remote, (550, b"5.7.1 <someone@elsewhere.example>: relaying not supported"))
        self.assertEqual(unknown, (550, b"5.1.1 <nobody@example.org>: no such user here"))

    @defer.inlineCallbacks
    def test_wrong_password(self):
        def script(s):
            s.starttls(context=client_context())
            s.ehlo("client.example")
            try:
                s.login("alice@example.org", "wrong")
            except smtplib.SMTPAuthenticationError as e:
                failed = (e.smtp_code, e.smtp_error)
            unknown = s.docmd("AUTH", "PLAIN AG5vYm9keUBleGFtcGxlLm9yZwBhbGljZS1wdw==")
            mail = s.docmd("MAIL", "FROM:<alice@example.org>")
            return failed, unknown, mail

        failed, unknown, mail = yield self.talk(script)
        self.assertEqual(failed, (535, b"5.7.8 Authentication credentials invalid"))
        self.assertEqual(unknown, (535, b"5.7.8 Authentication credentials invalid"))
        self.assertEqual(mail, (530, b"5.7.0 Authentication required"))

    @defer.inlineCallbacks
    def test_malformed_auth(self):
        def script(s):
            s.starttls(context=client_context())
            s.ehlo("client.example")
            return (
                s.docmd("AUTH", "PLAIN bm90IHRocmVlIHBhcnRz"),  # "not three parts"
                s.docmd("AUTH", "PLAIN !!!notbase64"),
                s.docmd("AUTH", ""),
                s.docmd("AUTH", "CRAM-MD5"),
                s.login("alice@example.org", "alice-pw"),
            )

        malformed, not_base64, empty, unknown, login = yield self.talk(script)
        self.assertEqual(malformed, (501, b"5.5.2 Malformed authentication response"))
        self.assertEqual(not_base64[0], 501)
        self.assertEqual(empty, (501, b"5.5.4 AUTH needs a mechanism"))
        self.assertEqual(unknown[0], 504)
        self.assertEqual(login[0], 235)


class ImplicitTLSTests(SubmissionTestMixin, unittest.TestCase):
    def setUp(self):
        SubmissionTestMixin.setUp(self)
        self.port = self.listen(
            self.factory,
            lambda f: reactor.listenSSL(0, f, self.tls, interface="127.0.0.1"),
        )

    @defer.inlineCallbacks
    def test_auth_login_at_once(self):
        def script(s):
            s.ehlo("client.example")
            offered = s.esmtp_features.get("auth", "").split(), s.has_extn("starttls")
            s.user, s.password = "Alice@Example.org", "alice-pw"
            login = s.auth("LOGIN", s.auth_login)
            refused = s.sendmail("alice@example.org", ["alice@example.org"], MESSAGE)
            return offered, login, refused

        offered, login, refused = yield self.talk(script, implicit=True)
        self.assertEqual(offered, (["PLAIN", "LOGIN"], False))
        self.assertEqual(login[0], 235)
        self.assertEqual(refused, {})
        self.assertEqual(len(self.inbox("alice@example.org")), 1)


class PlaintextAllowedTests(SubmissionTestMixin, unittest.TestCase):
    allow_plaintext_auth = True

    @defer.inlineCallbacks
    def test_auth_without_tls(self):
        def script(s):
            s.ehlo("client.example")
            offered = s.esmtp_features.get("auth", "").split()
            unauthenticated = s.docmd("MAIL", "FROM:<alice@example.org>")
            s.rset()
            s.login("alice@example.org", "alice-pw")
            return offered, unauthenticated, s.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)

        offered, unauthenticated, refused = yield self.talk(script)
        self.assertEqual(offered, ["PLAIN", "LOGIN"])
        self.assertEqual(unauthenticated, (530, b"5.7.0 Authentication required"))
        self.assertEqual(refused, {})
        [(uid, data)] = self.inbox("bob@example.net")
        self.assertIn(b" with ESMTPA id ", data)
