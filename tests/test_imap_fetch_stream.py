"""FETCH of a large message: read from its file in chunks, written as the client reads.

Five clients FETCHing a 40 MB message without reading once grew the server by 400 MB:
the message was read whole and handed to the transport whole. These tests run the
server on an in-memory transport whose producer the test pauses, as a socket's
full send buffer does.
"""

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.fetch import STREAM_CHUNK, _FetchStreamer
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.store import message as store_message
from imapwebpush.store.account import MailStore
from tests.harness.wire import PASSWORD, USER

SIZE = 3 * 1024 * 1024 + 17


class SlowClientTransport(StringTransport):
    """Pauses its streaming producer once 64 KiB wait unread, as a TCP transport does
    when the client does not read; ``read()`` is the client catching up."""

    BUFFER = 64 * 1024
    unread = 0

    def write(self, data):
        super().write(data)
        self.unread += len(data)
        if self.producer is not None and self.streaming and self.unread > self.BUFFER:
            self.producer.pauseProducing()

    def read(self):
        self.unread = 0
        if self.producer is not None:
            self.producer.resumeProducing()


def big_message():
    head = b"From: a@example.org\r\nSubject: big\r\n\r\n"
    line = b"0123456789" * 7 + b"abcdefgh\r\n"
    body = line * ((SIZE - len(head)) // len(line))
    return head + body + b"z" * (SIZE - len(head) - len(body))


class FetchStreamTests(unittest.TestCase):
    def setUp(self):
        self.store = MailStore(self.mktemp())
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER.encode(), PASSWORD.encode())
        self.clock = task.Clock()
        factory = IMAPFactory(Portal(IMAPRealm(self.store), [checker]), self.store,
                              allow_plaintext_auth=True, clock=self.clock)
        self.data = big_message()
        self.store.account(USER).mailbox("INBOX").add(self.data, ["\\Seen"])
        self.server = factory.buildProtocol(None)
        self.transport = SlowClientTransport()
        self.server.makeConnection(self.transport)
        self.addCleanup(self.server.connectionLost, None)
        self.server.dataReceived(b'L LOGIN "%s" "%s"\r\nS SELECT INBOX\r\n' % (USER.encode(), PASSWORD.encode()))
        self.clock.advance(0)
        self.assertIn(b"S OK [READ-WRITE]", self.transport.value())
        self.transport.clear()

        def whole(stored):
            raise AssertionError("the message was read whole")

        self.patch(store_message.StoredMessage, "read", whole)

    def fetch(self, command, head, tag=b"F"):
        """Send ``command``; pause the transport's producer after every turn, as a client
        that does not read would; check that little is written meanwhile; then read it all."""
        self.server.dataReceived(tag + b" " + command + b"\r\n")
        producer = self.transport.producer
        self.assertIsNotNone(producer)
        self.assertTrue(self.transport.streaming)
        written = len(self.transport.value())
        self.assertLessEqual(written, _FetchStreamer.SLICE + STREAM_CHUNK + 1024)
        for _ in range(20):
            self.clock.advance(0)
        # the client reads nothing: at most one more chunk (the write that pauses), then nothing
        paused_at = len(self.transport.value())
        self.assertLessEqual(paused_at - written, STREAM_CHUNK)
        for _ in range(20):
            self.clock.advance(0)
        self.assertEqual(len(self.transport.value()), paused_at)
        turns = 0
        while self.transport.producer is not None:
            before = len(self.transport.value())
            self.transport.read()
            self.clock.advance(0)
            self.assertLessEqual(len(self.transport.value()) - before, _FetchStreamer.SLICE + STREAM_CHUNK)
            turns += 1
            self.assertLess(turns, 1000)
        return self.transport.value()

    def test_body_peek(self):
        out = self.fetch(b"FETCH 1 BODY.PEEK[]", b"")
        self.assertEqual(out, b"* 1 FETCH (BODY[] {%d}\r\n" % (SIZE,) + self.data + b")\r\nF OK FETCH completed\r\n")

    def test_uid_rfc822_and_flags(self):
        out = self.fetch(b"UID FETCH 1 (FLAGS RFC822)", b"")
        self.assertEqual(
            out,
            b"* 1 FETCH (UID 1 FLAGS (\\Seen) RFC822 {%d}\r\n" % (SIZE,) + self.data + b")\r\nF OK FETCH completed\r\n",
        )

    def test_partial_and_text(self):
        header_end = self.data.index(b"\r\n\r\n") + 4
        out = self.fetch(b"FETCH 1 (BODY.PEEK[]<1000.2000000> BODY.PEEK[TEXT])", b"")
        text = self.data[header_end:]
        self.assertEqual(
            out,
            b"* 1 FETCH (BODY[]<1000> {2000000}\r\n" + self.data[1000:2001000]
            + b" BODY[TEXT] {%d}\r\n" % (len(text),) + text + b")\r\nF OK FETCH completed\r\n",
        )

    def test_connection_lost_half_way_closes_the_file(self):
        self.server.dataReceived(b"F FETCH 1 BODY.PEEK[]\r\n")
        producer = self.transport.producer
        self.assertIsNotNone(producer)
        producer.stopProducing()
        self.server.connectionLost(None)
        self.clock.advance(0)
        self.assertIsNone(producer.pending_file())
