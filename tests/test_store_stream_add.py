"""Adding a message from a readable (SMTP's spool) instead of bytes: same file, same events."""

import io
import os

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from imapwebpush.spool import Spool
from imapwebpush.store.account import MailStore
from imapwebpush.store.errors import MessageTooLarge
from imapwebpush.events import MessageAdded
from imapwebpush.store.message import MAX_HEADER_BLOCK, crlf_pieces, to_crlf

from tests.test_store_maildir import MESSAGE, StoreTestMixin


class CRLFPiecesTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200).map(lambda b: b.replace(b"x", b"\r").replace(b"y", b"\n")), st.integers(2, 9))
    def test_same_as_to_crlf(self, data, size):
        self.assertEqual(b"".join(crlf_pieces(io.BytesIO(data), size)), to_crlf(data))

    def test_cr_at_a_piece_boundary(self):
        self.assertEqual(b"".join(crlf_pieces(io.BytesIO(b"abc\r\ndef\n"), 4)), b"abc\r\ndef\r\n")


class SpoolSkipTests(unittest.TestCase):
    """A spool reader that leaves ranges out (forged Authentication-Results) reads as if they were never there."""

    lines = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"") + b"\r\n"), min_size=1, max_size=30)

    @staticmethod
    def spooled(lines, in_memory):
        spool = Spool(in_memory=in_memory)
        for line in lines:
            spool.write(line)
        return spool

    @staticmethod
    def line_ranges(lines, chosen):
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line))
        return [(offsets[i], offsets[i + 1]) for i in sorted(set(i % len(lines) for i in chosen))]

    @settings(max_examples=200, deadline=None)
    @given(lines, st.lists(st.integers(0, 40), max_size=8), st.integers(1, 7), st.sampled_from([8, 1 << 20]))
    def test_read_and_readline_skip_the_ranges(self, lines, chosen, size, in_memory):
        skip = self.line_ranges(lines, chosen)
        kept = b"".join(line for i, line in enumerate(lines)
                        if not any(s == sum(map(len, lines[:i])) for s, _ in skip))
        spool = self.spooled(lines, in_memory)
        self.addCleanup(spool.close)
        self.assertEqual(spool.reader(b"P\r\n", skip).read(), b"P\r\n" + kept)
        reader, pieces = spool.reader(b"", skip), []
        while True:
            piece = reader.read(size)
            if not piece:
                break
            self.assertLessEqual(len(piece), size)
            pieces.append(piece)
        self.assertEqual(b"".join(pieces), kept)
        reader = spool.reader(b"", skip)
        self.assertEqual(b"".join(iter(lambda: reader.readline(size), b"")), kept)


class StreamAddTests(StoreTestMixin, unittest.TestCase):
    def test_from_a_spool(self):
        spool = Spool(in_memory=16)
        spool.write(b"Subject: spooled\r\n\r\n")
        spool.write(b"line\n" * 1000)
        uid = self.inbox.add(spool.reader(b"Received: by test\r\n"), flags=["\\Seen"])
        spool.close()
        expected = b"Received: by test\r\nSubject: spooled\r\n\r\n" + b"line\r\n" * 1000
        msg = self.reopen().message(uid)
        self.assertEqual(msg.read(), expected)
        self.assertEqual(msg.size, len(expected))
        self.assertIn(",S=%d" % len(expected), msg.filename)
        self.assertEqual(msg.flags, {"\\Seen"})
        self.assertEqual(self.files(self.inbox, "tmp"), [])
        [event] = self.recorder.of(MessageAdded)
        self.assertEqual(event.headers, b"Received: by test\r\nSubject: spooled\r\n\r\n")
        self.assertEqual(event.size, len(expected))

    def test_too_large_leaves_nothing(self):
        store = MailStore(self.mktemp(), self.clock, max_message_size=100)
        box = store.account("x@example.org").mailbox("INBOX")
        self.assertRaises(MessageTooLarge, box.add, io.BytesIO(MESSAGE * 10))
        self.assertEqual(box.uids(), [])
        self.assertEqual(os.listdir(os.path.join(box.path, "tmp")), [])
        self.assertEqual(box.add(io.BytesIO(MESSAGE)), 1)

    def test_header_block_is_capped(self):
        """A message of headers only is not cached or announced whole."""
        line = b"X-Filler: " + b"f" * 88 + b"\r\n"  # 100 octets
        data = line * 5000  # 500 KB, no blank line
        uid = self.inbox.add(io.BytesIO(data))
        [event] = self.recorder.of(MessageAdded)
        self.assertEqual(event.headers, line * (MAX_HEADER_BLOCK // 100))
        self.assertEqual(self.reopen().message(uid).headers(), event.headers)
        self.assertEqual(self.inbox.message(uid).read(), data)
        self.inbox.add(data)
        self.assertEqual(self.recorder.of(MessageAdded)[1].headers, event.headers)
