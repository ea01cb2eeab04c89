"""Shared set-up for the IMAP tests: a real MailStore, our server on a tracked
127.0.0.1:0 port, and blocking clients (imaplib, or ``Wire`` for exact lines) run in threads."""

import imaplib

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import reactor, threads
from twisted.trial import unittest

from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.store.account import MailStore
from tests.harness.connections import ConnectionTracker
from tests.harness.wire import PASSWORD, USER, Wire

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


class IMAPTestCase(unittest.TestCase):
    """Starts a MailStore and an IMAP server for each test; every connection is closed after."""

    allow_plaintext_auth = True
    tls = None

    def setUp(self):
        self.store = self.make_store()
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER.encode(), PASSWORD.encode())
        checker.addUser(OTHER.encode(), PASSWORD.encode())
        self.portal = Portal(IMAPRealm(self.store), [checker])
        self.factory = self.make_factory()
        self.connections = ConnectionTracker(reactor)
        self.addCleanup(self.connections.close)
        self.portno = self.connections.listen(self.serving_factory())

    def make_store(self):
        """The MailStore served (a test may give it a clock of its own)."""
        return MailStore(self.mktemp())

    def make_factory(self):
        return IMAPFactory(
            self.portal,
            self.store,
            tls=self.tls,
            allow_plaintext_auth=self.allow_plaintext_auth,
        )

    def serving_factory(self):
        return self.factory

    def account(self, address=USER):
        return self.store.account(address)

    def inbox(self):
        return self.account().mailbox("INBOX")

    def in_thread(self, fn, *args):
        return threads.deferToThread(fn, *args)

    def wire(self):
        return Wire(self.portno)

    def session(self, select=None):
        """A Wire logged in as alice; with ``select``, that mailbox selected (tag s1)."""
        w = self.wire()
        w.login()
        if select is not None:
            lines = w.cmd("s1", "SELECT " + select)
            assert lines[-1].startswith("s1 OK"), lines
        return w

    def in_inbox(self, *commands, before=()):
        """Deferred [the lines answering each of ``commands``] (tags a0, a1, ...), sent by one
        client thread after LOGIN, SELECT INBOX and ``before`` (tags b0, b1, ..., answers dropped)."""

        def client():
            w = self.session(select="INBOX")
            for i, command in enumerate(before):
                w.cmd("b%d" % i, command)
            answers = [w.cmd("a%d" % i, command) for i, command in enumerate(commands)]
            w.close()
            return answers

        return self.in_thread(client)

    def capabilities(self):
        """Deferred: the words of the untagged CAPABILITY a client sees before logging in."""

        def client():
            w = self.wire()
            caps = w.cmd("c", "CAPABILITY")
            w.close()
            return caps

        def words(caps):
            assert caps[0].startswith("* CAPABILITY ") and caps[1] == "c OK CAPABILITY completed", caps
            return caps[0].split()[2:]

        return self.in_thread(client).addCallback(words)

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
