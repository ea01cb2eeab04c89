"""The SMTP tests' world: a data folder with two users, a mail store, and a server.

``SMTPWorldMixin`` runs the server object on an in-memory transport (``wire.MemoryWire``)
with a task.Clock: for tests of command ordering, odd bytes and timers, where a
StringTransport gives the exact reply lines at once and the test moves time.
``LoopbackSMTPMixin`` is the same world on the reactor, for tests that drive a real
listening factory with smtplib in a thread.
"""

import os

from twisted.internet import reactor, task, threads

from imapwebpush import datadir
from imapwebpush.smtp.server import ReceivingFactory
from imapwebpush.store.account import MailStore
from imapwebpush.store.users import UserDatabase
from tests.harness.connections import ConnectionTracker
from tests.harness.threads import run_now
from tests.harness.wire import MemoryWire

FAST = {"n": 16, "r": 1, "p": 1}
DOMAINS = ["example.org", "example.net"]

MESSAGE = (
    b"From: Carol <carol@remote.example>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"First line.\r\n"
    b".A line starting with a dot.\r\n"
    b"Last line.\r\n"
)


class SMTPWorldMixin:
    """A data folder with alice@example.org and bob@example.net, a store, and a clock."""

    max_size = 10000

    # How the store copies a large message into tmp/ (a test may hold it: HeldRun).
    store_run = staticmethod(run_now)
    stage_threshold = None  # the store's default (1 MiB)

    def make_clock(self):
        return task.Clock()

    def make_world(self):
        self.clock = self.make_clock()
        self.data = self.mktemp()
        os.mkdir(self.data)
        self.store_path = datadir.mail(self.data)
        self.store = MailStore(
            self.store_path, clock=self.clock, run=self.store_run, stage_threshold=self.stage_threshold
        )
        self.users = UserDatabase(self.data, mail_store=self.store, scrypt_params=FAST)
        self.users.add("alice@example.org", "alice-pw")
        self.users.add("bob@example.net", "bob-pw")

    def receiving_factory(self, **kw):
        kw.setdefault("hostname", "mx.example.org")
        kw.setdefault("max_message_size", self.max_size)
        return ReceivingFactory(self.store, self.users, DOMAINS, self.clock, **kw)

    def in_data(self):
        """A receiving connection in DATA for alice and bob (the 354 read)."""
        wire = self.connect(self.receiving_factory())
        wire.send(b"EHLO client.example")
        wire.send(b"MAIL FROM:<carol@remote.example>")
        wire.send(b"RCPT TO:<alice@example.org>")
        wire.send(b"RCPT TO:<bob@example.net>")
        self.assertEqual(wire.send(b"DATA"), [b"354 Continue"])
        return wire

    def connect(self, factory, host="192.0.2.1"):
        wire = MemoryWire(factory, host)
        self.addCleanup(wire.close)
        return wire

    def inbox(self, address):
        """The INBOX as a fresh store reads it from disk: [(uid, bytes)]."""
        box = MailStore(self.store_path, clock=self.clock).account(address).mailbox("INBOX")
        return [(uid, box.message(uid).read()) for uid in box.uids()]


class LoopbackSMTPMixin(SMTPWorldMixin):
    """The same world on the reactor, and a listening factory on 127.0.0.1."""

    def make_clock(self):
        return reactor

    def listen(self, factory, listen=None):
        """Listen on loopback; after the test, wait until the server closed every connection."""
        connections = ConnectionTracker(reactor)
        self.addCleanup(connections.close, abort=False)
        return connections.listen(factory, listen)

    def in_thread(self, f, *args):
        return threads.deferToThread(f, *args)
