"""Addresses that cannot name an account folder ('a/b@example.org'): never half-created.

An older version saved such a user into users.json and then failed to make its
folder; LOGIN then answered an internal error, SMTP took RCPT and failed at
DATA, and ``user delete`` could not remove the entry. Now ``user add`` refuses
the address before writing anything, ``user delete`` removes any entry, and a
leftover entry gets clean refusals on the wire.
"""

import io
import json
import os

from twisted.internet import defer
from twisted.trial import unittest

from imapwebpush import cli, datadir, tap
from imapwebpush.durable import atomic_write
from imapwebpush.store.users import hash_password

from tests.harness.dns import dns_server_option
from tests.test_end_to_end import LOOPBACK
from tests.harness.connections import track_server
from tests.harness.wire import LineClient

FAST = {"n": 16, "r": 1, "p": 1}
UNHOSTABLE = ["a/b@example.org", "/etc@example.org", "a/./b@example.org"]


def run_cli(data, *argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["--data", data] + list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def add_leftover(data, address, password):
    """Put ``address`` into users.json the way an older version did: no check, no folder."""
    path = datadir.users(data)
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        doc = {"version": 1, "users": {}}
    doc["users"][address] = hash_password(password, FAST)
    atomic_write(path, json.dumps(doc).encode("utf-8"))


class AdminTests(unittest.TestCase):
    def setUp(self):
        self.data = os.path.abspath(self.mktemp())

    def test_add_refuses_and_writes_nothing(self):
        for address in UNHOSTABLE:
            status, out, err = run_cli(self.data, "user", "add", "--password-stdin", address, stdin="pw\n")
            self.assertEqual((status, out), (2, ""))
            self.assertEqual(
                err,
                "imapwebpush: error: not a valid address ('/' cannot be in an account folder name): %r\n"
                % (address,),
            )
        self.assertEqual(run_cli(self.data, "user", "list")[:2], (0, ""))
        self.assertEqual(os.listdir(datadir.mail(self.data)), [])

    def test_delete_removes_a_leftover_entry(self):
        run_cli(self.data, "user", "add", "--password-stdin", "alice@example.org", stdin="pw\n")
        for address in UNHOSTABLE:
            add_leftover(self.data, address, "pw")
        self.assertEqual(
            run_cli(self.data, "user", "list")[1],
            "/etc@example.org\na/./b@example.org\na/b@example.org\nalice@example.org\n",
        )
        for address in UNHOSTABLE:
            status, out, err = run_cli(self.data, "user", "delete", address.upper())
            self.assertEqual((status, out, err), (0, "deleted %s and its mailboxes\n" % (address,), ""))
        self.assertEqual(run_cli(self.data, "user", "list")[1], "alice@example.org\n")
        self.assertEqual(os.listdir(datadir.mail(self.data)), ["alice@example.org"])

    def test_delete_of_an_invalid_address_without_entry(self):
        status, out, err = run_cli(self.data, "user", "delete", "a/b@example.org")
        self.assertEqual(status, 2)
        self.assertEqual(
            err, "imapwebpush: error: not a valid address ('/' cannot be in an account folder name): "
            "'a/b@example.org'\n",
        )


class WireTests(unittest.TestCase):
    """A leftover entry on a running server: IMAP NO and SMTP 550, no internal error."""

    @defer.inlineCallbacks
    def setUp(self):
        self.data = os.path.abspath(self.mktemp())
        os.mkdir(self.data)
        add_leftover(self.data, "a/b@example.org", "pw")
        self.running = yield tap.start_server(
            ["--data", self.data, "--imap", LOOPBACK, "--smtp", LOOPBACK, "--domain", "example.org",
             "--allow-plaintext-auth"] + dns_server_option(self)
        )
        self.connections = track_server(self.running)

    @defer.inlineCallbacks
    def tearDown(self):
        yield self.running.stop()
        yield self.connections.close(abort=False)

    @defer.inlineCallbacks
    def connect(self, name):
        client = LineClient()
        yield self.connections.connect(client, self.running.ports[name])
        yield client.expect(lambda line: True)  # the greeting
        return client

    @defer.inlineCallbacks
    def test_imap_login_is_no(self):
        client = yield self.connect("imap")
        lines = yield client.command(b"a LOGIN a/b@example.org pw")
        self.assertEqual(lines, [b"a NO [AUTHENTICATIONFAILED] Authentication failed"])
        lines = yield client.command(b"b LOGIN {15+}\r\na/b@example.org pw")
        self.assertEqual(lines, [b"b NO [AUTHENTICATIONFAILED] Authentication failed"])

    @defer.inlineCallbacks
    def test_smtp_rcpt_is_550(self):
        client = yield self.connect("smtp")

        def reply(line):
            client.sendLine(line)
            return client.expect(lambda l: l[3:4] == b" ")

        yield reply(b"EHLO client.example")
        lines = yield reply(b"MAIL FROM:<carol@remote.example>")
        self.assertTrue(lines[-1].startswith(b"250 "), lines)
        self.assertEqual(
            (yield reply(b"RCPT TO:<a/b@example.org>")),
            [b"550 5.1.3 <a/b@example.org>: bad recipient address syntax"],
        )
