"""The limits as twistd sets them up: options, and what a client over loopback reads."""

import base64
import os
import socket

from twisted.internet import defer, threads
from twisted.python import usage
from twisted.trial import unittest

from imapwebpush import tap

from tests.harness.connections import start_tracked
from tests.harness.dns import dns_server_option
from tests.test_end_to_end import LOOPBACK


def first_line_then_eof(port, held=None):
    """Connect and read the first line; then whether the server closed right after it,
    or (with ``held``, a list) keep the connection open in ``held`` and return None."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    line = f.readline()
    if held is not None:
        held.append((s, f))
        return line, None
    rest = f.read()
    f.close()
    s.close()
    return line, rest == b""


class ServerMixin:
    def start(self, *extra):
        data = os.path.abspath(self.mktemp())
        return start_tracked(self, [
            "--data", data, "--imap", LOOPBACK, "--smtp", LOOPBACK, "--submission", LOOPBACK]
            + dns_server_option(self) + list(extra))


class ConnectionLimitTests(ServerMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_per_ip_cap_on_every_listener(self):
        running = yield self.start("--max-connections-per-ip", "1", "--hostname", "mx.example.org")
        held = []

        def talk():
            answers = {}
            for name in ("imap", "smtp", "submission"):
                first, _ = first_line_then_eof(running.ports[name], held)
                answers[name] = (first, first_line_then_eof(running.ports[name]))
            for s, f in held:
                f.close()
                s.close()
            return answers

        answers = yield threads.deferToThread(talk)
        self.assertTrue(answers["imap"][0].startswith(b"* OK "))
        self.assertEqual(
            answers["imap"][1],
            (b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n", True),
        )
        for name in ("smtp", "submission"):
            self.assertTrue(answers[name][0].startswith(b"220 mx.example.org "))
            self.assertEqual(
                answers[name][1],
                (b"421 4.7.0 mx.example.org Too many connections from your address, try again later\r\n", True),
            )

    def test_defaults_and_bad_values(self):
        options = tap.Options()
        options.parseOptions(["--data", os.path.abspath(self.mktemp()), "--imap", "none", "--smtp", "none"])
        defaults = {
            "max-connections": 256,
            "max-connections-per-ip": 20,
            "smtp-timeout": 300,
            "smtp-deadline": 120,
            "login-deadline": 60,
            "login-free-failures": 3,
            "login-max-delay": 30.0,
            "login-refuse-after": 20,
            "login-refuse-for": 900.0,
            "max-password-checks": 4,
        }
        self.assertEqual({name: options[name] for name in defaults}, defaults)
        for name in ("max-connections", "max-connections-per-ip", "smtp-timeout", "smtp-deadline",
                     "login-deadline", "login-refuse-after"):
            e = self.assertRaises(
                usage.UsageError, tap.Options().parseOptions, ["--data", self.mktemp(), "--" + name, "-1"]
            )
            self.assertEqual(str(e), "--%s must not be negative (0: no limit)" % (name,))
        for name in ("login-free-failures", "login-max-delay", "login-refuse-for"):
            e = self.assertRaises(
                usage.UsageError, tap.Options().parseOptions, ["--data", self.mktemp(), "--" + name, "-1"]
            )
            self.assertEqual(str(e), "--%s must not be negative" % (name,))
        e = self.assertRaises(
            usage.UsageError, tap.Options().parseOptions, ["--data", self.mktemp(), "--max-password-checks", "0"]
        )
        self.assertEqual(str(e), "--max-password-checks must be positive")


class LoginBrakesEndToEndTests(ServerMixin, unittest.TestCase):
    """IMAP and submission share one set of brakes: failures on one refuse tries on the other."""

    @defer.inlineCallbacks
    def test_failures_on_imap_refuse_submission(self):
        running = yield self.start(
            "--allow-plaintext-auth", "--login-free-failures", "10", "--login-refuse-after", "2",
            "--hostname", "mx.example.org", "--domain", "example.org",
        )
        running.components.users.add("alice@example.org", "alice-pw")

        def talk():
            imap = socket.create_connection(("127.0.0.1", running.ports["imap"]), timeout=10)
            f = imap.makefile("rb")
            f.readline()
            answers = []
            for tag in (b"a1", b"a2", b"a3"):
                password = b"alice-pw" if tag == b"a3" else b"guess"
                imap.sendall(tag + b' LOGIN "alice@example.org" "' + password + b'"\r\n')
                answers.append(f.readline())
            f.close()
            imap.close()
            smtp = socket.create_connection(("127.0.0.1", running.ports["submission"]), timeout=10)
            f = smtp.makefile("rb")
            f.readline()
            smtp.sendall(b"EHLO client.example\r\n")
            while f.readline()[3:4] == b"-":
                pass
            plain = base64.b64encode(b"\0alice@example.org\0alice-pw")
            smtp.sendall(b"AUTH PLAIN " + plain + b"\r\nQUIT\r\n")
            answers.append(f.readline())
            f.close()
            smtp.close()
            return answers

        answers = yield threads.deferToThread(talk)
        self.assertEqual(answers, [
            b"a1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n",
            b"a2 NO [AUTHENTICATIONFAILED] Authentication failed\r\n",
            b"a3 NO [UNAVAILABLE] Too many failed logins, try again later\r\n",
            b"454 4.7.0 Too many failed logins, try again later\r\n",
        ])
