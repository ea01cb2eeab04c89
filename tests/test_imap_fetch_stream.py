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


class StreamCase(unittest.TestCase):
    """INBOX holds ``message_data()`` (and ``more_messages()``), selected on a slow client."""

    def message_data(self):
        return big_message()

    def more_messages(self):
        return []

    def setUp(self):
        self.store = MailStore(self.mktemp())
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER.encode(), PASSWORD.encode())
        self.clock = task.Clock()
        factory = IMAPFactory(Portal(IMAPRealm(self.store), [checker]), self.store,
                              allow_plaintext_auth=True, clock=self.clock)
        self.data = self.message_data()
        self.store.account(USER).mailbox("INBOX").add(self.data, ["\\Seen"])
        for data in self.more_messages():
            self.store.account(USER).mailbox("INBOX").add(data, ["\\Seen"])
        self.server = factory.buildProtocol(None)
        self.transport = SlowClientTransport()
        self.server.makeConnection(self.transport)
        self.addCleanup(self.server.connectionLost, None)
        self.server.dataReceived(b'L LOGIN "%s" "%s"\r\nS SELECT INBOX\r\n' % (USER.encode(), PASSWORD.encode()))
        self.clock.advance(0)
        self.assertIn(b"S OK [READ-WRITE]", self.transport.value())
        self.transport.clear()

        read = store_message.StoredMessage.read

        def whole(stored):
            if stored.size > 256 * 1024:
                raise AssertionError("the message was read whole")
            return read(stored)

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


class FetchStreamTests(StreamCase):
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

    def test_binary_as_body(self):
        header_end = self.data.index(b"\r\n\r\n") + 4
        text = self.data[header_end:]
        out = self.fetch(b"FETCH 1 (BINARY.SIZE[] BINARY.SIZE[1] BINARY.PEEK[] BINARY.PEEK[1]<10.2000000>)", b"")
        self.assertEqual(
            out,
            b"* 1 FETCH (BINARY.SIZE[] %d BINARY.SIZE[1] %d BINARY[] {%d}\r\n" % (SIZE, len(text), SIZE)
            + self.data + b" BINARY[1]<10> {2000000}\r\n" + text[10:2000010]
            + b")\r\nF OK FETCH completed\r\n",
        )


class BinaryStreamTests(StreamCase):
    """A large message holding NUL near its end, then one whose encoding is unknown."""

    UNKNOWN = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"

    def message_data(self):
        data = big_message()
        return data[:-5] + b"\x00\x00zzz"

    def more_messages(self):
        return [self.UNKNOWN]

    def test_literal8_from_the_file(self):
        text = self.data[self.data.index(b"\r\n\r\n") + 4 :]
        out = self.fetch(b"FETCH 1 (BINARY.PEEK[] BINARY.PEEK[]<0.1000> BINARY.PEEK[1])", b"")
        self.assertEqual(
            out,
            b"* 1 FETCH (BINARY[] ~{%d}\r\n" % (SIZE,) + self.data
            + b" BINARY[]<0> {1000}\r\n" + self.data[:1000]
            + b" BINARY[1] ~{%d}\r\n" % (len(text),) + text
            + b")\r\nF OK FETCH completed\r\n",
        )

    def test_unknown_encoding_after_a_slice_ends_the_command(self):
        text = self.data[self.data.index(b"\r\n\r\n") + 4 :]
        out = self.fetch(b"FETCH 1:2 (BINARY.PEEK[1])", b"")
        self.assertEqual(
            out,
            b"* 1 FETCH (BINARY[1] ~{%d}\r\n" % (len(text),) + text
            + b")\r\nF NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding x-uuencode\r\n",
        )
        self.server.dataReceived(b"N NOOP\r\n")
        self.assertTrue(self.transport.value().endswith(b"N OK NOOP completed\r\n"))
