"""Shared set-up for the IMAP tests: a real MailStore, a real server on 127.0.0.1:0, and
blocking clients (imaplib, or a raw socket that reads exact wire lines) run in threads."""

import imaplib
import socket

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.imap.server import IMAPServer
from imapwebpush.store.account import MailStore

USER = "alice@example.org"
PASSWORD = "secret"
OTHER = "bob@example.org"

MESSAGE = (
    b"From: Carol <carol@example.net>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: Hello there\r\n"
    b"Date: Tue, 3 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.net>\r\n"
    b"\r\n"
    b"First line of the body.\r\n"
    b"Second line.\r\n"
)


def message(subject="Hello there", body=b"Body text.\r\n"):
    return (
        b"From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: "
        + subject.encode()
        + b"\r\n\r\n"
        + body
    )


class TrackingServer(IMAPServer):
    """Records its connections so each test can wait for them to close."""

    def connectionMade(self):
        self.factory.sessions.append(self)
        self.lost = defer.Deferred()
        super().connectionMade()

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.lost.callback(None)


class Wire:
    """A blocking raw-socket IMAP client for exact wire assertions."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.greeting = self.readline()

    def readline(self):
        line = self.file.readline()
        if not line:
            raise EOFError("server closed the connection")
        return line.decode("utf-8", "replace").rstrip("\r\n")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def until(self, tag):
        """Lines up to and including the one tagged ``tag``."""
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if line.startswith(tag + " "):
                return lines

    def cmd(self, tag, text):
        self.send("%s %s\r\n" % (tag, text))
        return self.until(tag)

    def login(self, user=USER, password=PASSWORD):
        lines = self.cmd("L1", 'LOGIN "%s" "%s"' % (user, password))
        assert lines[-1].startswith("L1 OK"), lines
        return lines

    def close(self):
        try:
            self.sock.close()
        finally:
            self.file.close()


class IMAPTestCase(unittest.TestCase):
    """Starts a MailStore and an IMAP server for each test."""

    allow_plaintext_auth = True
    tls = None

    def setUp(self):
        self.store = MailStore(self.mktemp())
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER.encode(), PASSWORD.encode())
        checker.addUser(OTHER.encode(), PASSWORD.encode())
        self.portal = Portal(IMAPRealm(self.store), [checker])
        self.factory = self.make_factory()
        self.factory.sessions = []
        self.port = reactor.listenTCP(0, self.serving_factory(), interface="127.0.0.1")
        self.portno = self.port.getHost().port
        self.addCleanup(self._stop)

    def make_factory(self):
        return IMAPFactory(
            self.portal,
            self.store,
            tls=self.tls,
            allow_plaintext_auth=self.allow_plaintext_auth,
            protocol=TrackingServer,
        )

    def serving_factory(self):
        return self.factory

    @defer.inlineCallbacks
    def _stop(self):
        yield self.port.stopListening()
        for session in self.factory.sessions:
            if session.transport is not None and not session.lost.called:
                session.transport.abortConnection()
        yield defer.DeferredList([s.lost for s in self.factory.sessions])

    def account(self, address=USER):
        return self.store.account(address)

    def inbox(self):
        return self.account().mailbox("INBOX")

    def in_thread(self, fn, *args):
        return threads.deferToThread(fn, *args)

    def wire(self):
        return Wire(self.portno)

    def imaplib(self, login=True):
        client = imaplib.IMAP4("127.0.0.1", self.portno, timeout=10)
        if login:
            client.login(USER, PASSWORD)
        return client

    def deliver(self, data=MESSAGE, mailbox="INBOX", flags=()):
        """Add a message from a client thread, through the reactor (like SMTP does)."""
        return threads.blockingCallFromThread(
            reactor, lambda: self.account().mailbox(mailbox).add(data, flags)
        )


class ExpungedElsewhereCase(IMAPTestCase):
    """Three \\Seen messages in INBOX, and a second session that can expunge message 2.

    For RFC 2180 tests: a command naming a message another session expunged.
    """

    def setUp(self):
        super().setUp()
        for n in range(3):
            self.inbox().add(message("m%d" % n), ["\\Seen"])

    def expunge_2_elsewhere(self):
        b = self.wire()
        b.login()
        b.cmd("s1", "SELECT INBOX")
        b.cmd("t1", "STORE 2 +FLAGS.SILENT (\\Deleted)")
        b.cmd("x1", "EXPUNGE")
        b.close()
