"""The whole server from makeService, on port 0, with Python's smtplib and imaplib.

These clients were written by others: if they can send and read mail, so can
real ones. The second server on the same data folder proves that UIDs survive
a restart.
"""

import imaplib
import io
import os
import smtplib

from twisted.internet import defer, threads
from twisted.trial import unittest

from imapwebpush import cli, datadir, tap

from tests.harness.connections import start_tracked, stop_tracked
from tests.harness.dns import dns_server_option
from tests.harness.wire import imaplib_session
from tests.harness.tls import client_context, write_self_signed

LOOPBACK = "tcp:0:interface=127.0.0.1"

MESSAGE = (
    b"From: Carol <carol@remote.example>\r\n"
    b"To: Alice <alice@example.org>\r\n"
    b"Subject: end to end\r\n"
    b"Message-ID: <e2e-1@remote.example>\r\n"
    b"\r\n"
    b"Hello Alice,\r\n"
    b".this line starts with a dot\r\n"
)


class EndToEndTests(unittest.TestCase):
    def setUp(self):
        self.data = os.path.abspath(self.mktemp())

    def start(self, *extra):
        return start_tracked(self, [
            "--data", self.data, "--imap", LOOPBACK, "--smtp", LOOPBACK,
            "--submission", LOOPBACK, "--domain", "example.org"] + dns_server_option(self) + list(extra))

    def add_user(self, address, password):
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(
            ["--data", self.data, "user", "add", "--password-stdin", address],
            stdin=io.StringIO(password + "\n"), stdout=out, stderr=err,
        )
        self.assertEqual((status, err.getvalue()), (0, ""))

    @defer.inlineCallbacks
    def test_send_read_restart(self):
        running = yield self.start("--allow-plaintext-auth")
        self.assertEqual(sorted(running.ports), ["imap", "smtp", "submission"])
        self.add_user("alice@example.org", "alice-pw")  # while the server runs
        ports = running.ports

        def send():
            s = smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10)
            try:
                return s.sendmail("carol@remote.example", ["alice@example.org"], MESSAGE)
            finally:
                s.quit()

        def read(port):
            with imaplib_session(port, "alice@example.org", "alice-pw") as imap:
                status, count = imap.select("INBOX")
                uidvalidity = imap.response("UIDVALIDITY")[1][0]
                fetched = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
                imap.close()
                return count, uidvalidity, fetched

        self.assertEqual((yield threads.deferToThread(send)), {})
        count, uidvalidity, (status, data) = yield threads.deferToThread(read, ports["imap"])
        self.assertEqual(count, [b"1"])
        self.assertEqual(status, "OK")
        head, body = data[0]
        self.assertRegex(head, rb"^1 \(UID 1 FLAGS \(\\Recent\) BODY\[\] \{\d+\}$")
        self.assertTrue(body.startswith(
            b"Return-Path: <carol@remote.example>\r\n"
            b"Authentication-Results: localhost;\r\n\tdkim=none\r\n"  # a loopback client: no SPF
            b"Received: from "), body[:160])
        self.assertTrue(body.endswith(MESSAGE))
        # The data folder layout docs/operating.rst describes.
        self.assertTrue(os.path.isfile(datadir.users(self.data)))
        self.assertTrue(os.path.isdir(os.path.join(datadir.mail(self.data), "alice@example.org")))

        yield stop_tracked(running)

        # A new server on the same data folder: same UID, same UIDVALIDITY.
        again = yield self.start("--allow-plaintext-auth")
        count2, uidvalidity2, (status, data) = yield threads.deferToThread(read, again.ports["imap"])
        self.assertEqual((count2, uidvalidity2), (count, uidvalidity))
        head, body2 = data[0]
        self.assertTrue(head.startswith(b"1 (UID 1 FLAGS ("), head)
        self.assertEqual(body2, body)

    @defer.inlineCallbacks
    def test_submission_and_starttls(self):
        """With a certificate: STARTTLS on IMAP and submission; no plaintext login."""
        os.mkdir(self.data)
        cert, key = write_self_signed(self.data)
        running = yield self.start("--tls-cert", cert, "--tls-key", key)
        self.add_user("alice@example.org", "alice-pw")
        self.add_user("bob@example.org", "bob-pw")
        ports = running.ports

        def submit():
            s = smtplib.SMTP("127.0.0.1", ports["submission"], timeout=10)
            try:
                s.starttls(context=client_context())
                s.login("bob@example.org", "bob-pw")
                return s.sendmail("bob@example.org", ["alice@example.org"], MESSAGE)
            finally:
                s.quit()

        def read():
            imap = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=10)
            try:
                before = imap.capabilities
                try:
                    imap.login("alice@example.org", "alice-pw")
                except imaplib.IMAP4.error as e:
                    refused = str(e)
                imap.starttls(ssl_context=client_context())
                imap.login("alice@example.org", "alice-pw")
                imap.select("INBOX", readonly=True)
                return before, refused, imap.uid("FETCH", "1", "(BODY.PEEK[HEADER.FIELDS (RECEIVED)])")
            finally:
                imap.logout()

        self.assertEqual((yield threads.deferToThread(submit)), {})
        before, refused, (status, data) = yield threads.deferToThread(read)
        self.assertIn("LOGINDISABLED", before)
        self.assertIn("STARTTLS", before)
        self.assertIn("LOGIN", refused)
        self.assertEqual(status, "OK")
        self.assertIn(b" with ESMTPSA id ", data[0][1])

    @defer.inlineCallbacks
    def test_ssl_endpoints(self):
        """ssl: endpoint strings give implicit TLS (IMAPS, submissions)."""
        os.mkdir(self.data)
        cert, key = write_self_signed(self.data)
        ssl = "ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s" % (key, cert)
        running = yield self.start("--imap", ssl, "--submission", ssl)
        self.add_user("alice@example.org", "alice-pw")
        ports = running.ports

        def submit_and_read():
            s = smtplib.SMTP_SSL("127.0.0.1", ports["submission"], timeout=10, context=client_context())
            try:
                s.login("alice@example.org", "alice-pw")
                s.sendmail("alice@example.org", ["alice@example.org"], MESSAGE)
            finally:
                s.quit()
            imap = imaplib.IMAP4_SSL("127.0.0.1", ports["imap"], ssl_context=client_context(), timeout=10)
            try:
                imap.login("alice@example.org", "alice-pw")
                imap.select("INBOX")
                return imap.uid("FETCH", "1", "(BODY.PEEK[TEXT])")
            finally:
                imap.logout()

        status, data = yield threads.deferToThread(submit_and_read)
        self.assertEqual(status, "OK")
        self.assertEqual(data[0][1], b"Hello Alice,\r\n.this line starts with a dot\r\n")

    def test_listen_failure_is_reported(self):
        """A port already in use fails the start, synchronously, with the reason."""
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory

        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        busy = "tcp:%d:interface=127.0.0.1" % (port.getHost().port,)
        from twisted.internet.error import CannotListenError

        d = tap.start_server(["--data", self.data, "--imap", LOOPBACK, "--smtp", busy])
        return self.assertFailure(d, CannotListenError)
