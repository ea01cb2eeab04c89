"""The conformance runner passes against our own server, and fails where a server falls short."""

import os
import sys

from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from imapwebpush.conformance import FAIL, PASS, SKIP, run_checks
from imapwebpush.conformance.checks import CHECKS
from imapwebpush.testing.trial import start_mail_server

USER, PASSWORD = "conformance@example.org", "secret"


def table(results):
    return "\n".join(r.line() for r in results)


class AgainstOurServer(unittest.TestCase):

    timeout = 90

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield start_mail_server(self)
        self.server.add_user(USER, PASSWORD)

    @defer.inlineCallbacks
    def test_every_check_passes(self):
        results = yield run_checks(reactor, "127.0.0.1", self.server.imap_port, USER, PASSWORD)
        self.assertEqual([r.name for r in results], [c.name for c in CHECKS])
        self.assertEqual([r.name for r in results if r.outcome != PASS], [], table(results))
        # the runner cleans up after itself
        self.assertEqual(self.server.subscriptions(USER), [])
        self.assertEqual(self.server.messages(USER), [])

    @defer.inlineCallbacks
    def test_command_line(self):
        env = dict(os.environ)
        out = yield utils.getProcessOutputAndValue(sys.executable, [
            "-m", "imapwebpush.conformance", "--imap", "127.0.0.1:%d" % self.server.imap_port,
            "--user", USER, "--password", PASSWORD], env=env)
        stdout, stderr, code = out
        lines = stdout.decode().splitlines()
        self.assertEqual(code, 0, stdout + stderr)
        self.assertEqual(lines[-1], "%d of %d checks passed" % (len(CHECKS), len(CHECKS)))
        self.assertTrue(all(line.startswith("PASS  ") for line in lines[:-1]), stdout)

    @defer.inlineCallbacks
    def test_a_server_without_delivery_fails(self):
        """No push delivery: WEBPUSH is refused, so the checks after it cannot pass."""
        yield self.server.components.webpush.sender.stopService()
        results = yield run_checks(reactor, "127.0.0.1", self.server.imap_port, USER, PASSWORD,
                                   timeout=2)
        outcomes = {r.name: r.outcome for r in results}
        self.assertEqual(outcomes["getvapid"], PASS)
        self.assertEqual(outcomes["webpush-create"], FAIL)
        self.assertIn("UNAVAILABLE", {r.name: r.detail for r in results}["webpush-create"])
        self.assertEqual(outcomes["verification-push"], SKIP)
        self.assertEqual(outcomes["answer-413"], SKIP)
