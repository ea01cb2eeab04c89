"""The login deadline and the login brakes of IMAP, as a client reads them (task.Clock)."""

import base64

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.task import Clock
from twisted.trial import unittest

from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.store.account import MailStore
from imapwebpush.throttle import LoginThrottle
from tests.harness.wire import MemoryWire

USER, PASSWORD = b"alice@example.org", b"alice-pw"


class LimitsTestMixin:
    def setUp(self):
        self.clock = Clock()
        self.store = MailStore(self.mktemp(), clock=self.clock)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER, PASSWORD)
        self.throttle = LoginThrottle(self.clock, free_failures=3, refuse_after=6, refuse_for=900)
        self.factory = IMAPFactory(
            Portal(IMAPRealm(self.store), [checker]),
            self.store,
            allow_plaintext_auth=True,
            clock=self.clock,
            throttle=self.throttle,
            login_deadline=60,
        )

    def connect(self, host="192.0.2.1"):
        session = MemoryWire(self.factory, host)
        self.addCleanup(session.close)
        return session


class LoginDeadlineTests(LimitsTestMixin, unittest.TestCase):
    def test_noop_every_50_seconds_does_not_keep_an_anonymous_client(self):
        s = self.connect()
        self.clock.advance(50)
        self.assertEqual(s.send(b"a1 NOOP"), [b"a1 OK NOOP completed"])
        self.clock.advance(9)
        self.assertEqual(s.send(b"a2 CAPABILITY")[-1], b"a2 OK CAPABILITY completed")
        self.clock.advance(1)
        self.assertEqual(s.read(), [b"* BYE Autologout; no login within 60 seconds"])
        self.assertTrue(s.transport.disconnecting)

    def test_a_login_stops_it(self):
        s = self.connect()
        self.clock.advance(30)
        self.assertRegex(s.send(b'a1 LOGIN "alice@example.org" "alice-pw"')[-1], rb"^a1 OK ")
        self.clock.advance(600)
        self.assertEqual(s.read(), [])
        self.assertFalse(s.transport.disconnecting)


class LoginBrakeTests(LimitsTestMixin, unittest.TestCase):
    def login(self, s, tag, password):
        return s.send(b'%s LOGIN "alice@example.org" "%s"' % (tag, password))

    def test_slower_then_refused(self):
        s = self.connect()
        for i in range(3):
            tag = b"a%d" % i
            self.assertEqual(self.login(s, tag, b"guess"), [tag + b" NO [AUTHENTICATIONFAILED] Authentication failed"])
        self.assertEqual(self.login(s, b"b1", b"guess"), [], "the 4th try waits its turn")
        self.clock.advance(1)
        self.assertEqual(s.read(), [b"b1 NO [AUTHENTICATIONFAILED] Authentication failed"])
        plain = base64.b64encode(b"\0alice@example.org\0guess")
        self.assertEqual(s.send(b"b2 AUTHENTICATE PLAIN " + plain), [])
        self.clock.advance(2)
        self.assertEqual(s.read(), [b"b2 NO [AUTHENTICATIONFAILED] Authentication failed"])
        self.assertEqual(self.login(s, b"b3", b"guess"), [])
        self.clock.advance(4)
        self.assertEqual(s.read(), [b"b3 NO [AUTHENTICATIONFAILED] Authentication failed"])
        self.clock.advance(8)
        self.assertEqual(
            self.login(s, b"c1", PASSWORD), [b"c1 NO [UNAVAILABLE] Too many failed logins, try again later"]
        )
        self.assertEqual(s.send(b"c2 NOOP"), [b"c2 OK NOOP completed"], "the session goes on")

    def test_another_address_logs_in_at_once(self):
        """The address is braked and so is the account, but not where its owner logs in from."""
        owner = self.connect("198.51.100.7")
        self.assertRegex(self.login(owner, b"a1", PASSWORD)[-1], rb"^a1 OK ")
        attacker = self.connect()
        for i in range(6):
            self.login(attacker, b"x%d" % i, b"guess")
            self.clock.advance(5)
        self.assertEqual(
            self.login(attacker, b"x9", PASSWORD), [b"x9 NO [UNAVAILABLE] Too many failed logins, try again later"]
        )
        again = self.connect("198.51.100.7")
        self.assertRegex(self.login(again, b"a2", PASSWORD)[-1], rb"^a2 OK ")
