"""The limits as twistd sets them up: options, and what a client over loopback reads."""

import os
import socket

from twisted.internet import defer, threads
from twisted.python import usage
from twisted.trial import unittest

from imapwebpush import tap

from tests.harness.connections import track_server
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


class ConnectionLimitTests(unittest.TestCase):
    @defer.inlineCallbacks
    def start(self, *extra):
        data = os.path.abspath(self.mktemp())
        running = yield tap.start_server(
            ["--data", data, "--imap", LOOPBACK, "--smtp", LOOPBACK, "--submission", LOOPBACK] + list(extra)
        )
        running.connections = track_server(running)
        self.addCleanup(self.stop, running)
        return running

    @defer.inlineCallbacks
    def stop(self, running):
        if running.service.running:
            yield running.stop()
        yield running.connections.close(abort=False)

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
        self.assertEqual(
            (options["max-connections"], options["max-connections-per-ip"],
             options["smtp-timeout"], options["smtp-deadline"]),
            (256, 20, 300, 120),
        )
        for name in ("max-connections", "max-connections-per-ip", "smtp-timeout", "smtp-deadline"):
            e = self.assertRaises(
                usage.UsageError, tap.Options().parseOptions, ["--data", self.mktemp(), "--" + name, "-1"]
            )
            self.assertEqual(str(e), "--%s must not be negative (0: no limit)" % (name,))
