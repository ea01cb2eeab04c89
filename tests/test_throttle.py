"""Login brakes on task.Clock: spacing, refusal, forgetting, and the owner's own address."""

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.trial import unittest

from imapwebpush.throttle import LoginRefused, LoginThrottle, ThrottledPortal, account_key


class Portal:
    """Accepts one password; counts the checks it was asked for."""

    def __init__(self, password=b"right"):
        self.password = password
        self.checks = 0

    def login(self, credentials, mind, *interfaces):
        self.checks += 1
        if credentials.password == self.password:
            return defer.succeed((interfaces[0], credentials.username, lambda: None))
        return defer.fail(UnauthorizedLogin())


class ThrottleTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.throttle = LoginThrottle(self.clock)
        self.portal = Portal()

    def login(self, peer="192.0.2.1", user=b"alice@example.org", password=b"wrong"):
        """The outcome of one try once it is answered: 'ok', 'bad' or 'refused', and when."""
        outcome = []
        d = ThrottledPortal(self.portal, self.throttle, peer).login(
            UsernamePassword(user, password), None, object
        )
        d.addCallbacks(
            lambda _: outcome.append("ok"),
            lambda f: outcome.append("refused" if f.check(LoginRefused) else "bad" if f.check(UnauthorizedLogin) else f),
        )
        return outcome

    def answered(self, outcome, within=120):
        """Advance the clock until ``outcome`` is known; (outcome, seconds it took)."""
        start = self.clock.seconds()
        while not outcome and self.clock.seconds() - start < within:
            self.clock.advance(0.25)
        return outcome[0], self.clock.seconds() - start

    def test_growing_delay(self):
        waits = []
        for _ in range(8):
            outcome, waited = self.answered(self.login())
            self.assertEqual(outcome, "bad")
            waits.append(waited)
        self.assertEqual(waits, [0, 0, 0, 1, 2, 4, 8, 16])

    def test_attacker_rate_after_ten_failures(self):
        """As fast as the brakes allow, from 20 connections at once: at most 1 try a second."""
        for _ in range(10):
            self.answered(self.login())
        checks, start = self.portal.checks, self.clock.seconds()
        refused = 0
        while self.clock.seconds() - start < 300:
            pending = [self.login() for _ in range(20)]
            self.clock.advance(1)
            refused += sum(1 for p in pending if p == ["refused"])
        rate = (self.portal.checks - checks) / (self.clock.seconds() - start)
        self.assertLessEqual(rate, 1.0)
        self.assertGreater(refused, 0)

    def test_refusal_then_forgotten(self):
        throttle = self.throttle = LoginThrottle(self.clock, free_failures=100, refuse_after=5, refuse_for=900)
        for _ in range(5):
            self.assertEqual(self.answered(self.login()), ("bad", 0))
        checks = self.portal.checks
        self.assertEqual(self.answered(self.login(password=b"right")), ("refused", 0))
        self.assertEqual(self.portal.checks, checks, "a refused try checks no password")
        self.clock.advance(899)
        self.assertEqual(self.answered(self.login(password=b"right"))[0], "refused")
        self.clock.advance(1)
        self.assertEqual(self.answered(self.login(password=b"right")), ("ok", 0))
        self.assertEqual(len(throttle._records), 2)

    def test_other_addresses_and_accounts_are_not_slowed(self):
        for _ in range(6):
            self.answered(self.login())
        self.assertEqual(self.answered(self.login(peer="192.0.2.2", user=b"bob@example.org")), ("bad", 0))

    def test_account_brakes_across_addresses(self):
        """A distributed guesser of one account is slowed too."""
        for i in range(6):
            self.answered(self.login(peer="198.51.100.%d" % i))
        self.assertEqual(self.answered(self.login(peer="198.51.100.99")), ("bad", 8))

    def test_owner_address_is_exempt_from_account_brakes(self):
        self.assertEqual(self.answered(self.login(peer="192.0.2.200", password=b"right")), ("ok", 0))
        throttle = self.throttle
        throttle.refuse_after = 5
        for i in range(10):
            self.answered(self.login(peer="198.51.100.%d" % i))
        self.assertEqual(self.answered(self.login(peer="198.51.100.99")), ("refused", 0))
        self.assertEqual(self.answered(self.login(peer="192.0.2.200", password=b"right")), ("ok", 0))

    def test_success_clears_the_account_not_the_address(self):
        for _ in range(5):
            self.answered(self.login())
        self.answered(self.login(password=b"right"))
        # The address still has its 5 failures: its next try waits 4 s, whatever the account.
        self.assertEqual(self.answered(self.login(user=b"bob@example.org"))[1], 4)
        # The account has none: from elsewhere it is not slowed.
        self.assertEqual(self.answered(self.login(peer="192.0.2.9")), ("bad", 0))

    def test_other_errors_do_not_count(self):
        class Broken(Portal):
            def login(self, credentials, mind, *interfaces):
                return defer.fail(RuntimeError("store down"))

        self.portal = Broken()
        for _ in range(10):
            outcome = self.login()
            self.assertIsInstance(outcome[0].value, RuntimeError)
        self.assertEqual(self.throttle._records[("address", "192.0.2.1")].failures, 0)

    def test_records_are_bounded(self):
        throttle = self.throttle = LoginThrottle(self.clock, max_records=10)
        for i in range(50):
            self.answered(self.login(peer="203.0.113.%d" % i, user=b"u%d@example.org" % i))
        self.assertEqual(len(throttle._records), 10)

    def test_account_key(self):
        self.assertEqual(account_key(b" Alice@Example.ORG "), "alice@example.org")
        self.assertEqual(account_key(b"\xff" * 1000), "\ufffd" * 256)
        self.assertIsNone(account_key(b""))
        self.assertIsNone(account_key(None))
