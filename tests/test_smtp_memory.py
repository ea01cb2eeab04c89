"""SMTP DATA is spooled to a temporary file as it arrives, not kept as one object per line.

Why a memory figure in a unit test: before the spool, 1 MiB of DATA in two-octet
lines held ~11 MiB of Python objects until the final dot (40 MiB: +575 MB RSS).
tracemalloc counts the allocations of this process deterministically; the bound
is far from both sides (before: ~11 MiB, after: well under 1 MiB of steady state).
"""

import gc
import tracemalloc

from twisted.trial import unittest

from tests.harness.smtp import SMTPWorldMixin

CHUNK = 65536  # what one socket read hands the protocol


class SpoolTests(SMTPWorldMixin, unittest.TestCase):
    max_size = 4 * 1024 * 1024

    def setUp(self):
        self.make_world()
        self.wire = self.in_data()

    def feed(self, data):
        for start in range(0, len(data), CHUNK):
            self.assertEqual(self.wire.send_raw(data[start : start + CHUNK]), [])

    def test_short_lines_are_not_kept_in_memory(self):
        body = b"Subject: many lines\r\n\r\n" + b"ab\r\n" * (1024 * 1024 // 4)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            self.feed(body)
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # Before the spool: ~11 MiB of line objects. Now: a spool buffer and a socket chunk.
        self.assertLess(held, 1024 * 1024, "DATA held %d octets in memory" % held)
        self.assertEqual(self.wire.send(b"."), [b"250 2.0.0 Message accepted for delivery"])
        for address in ("alice@example.org", "bob@example.net"):
            [(uid, data)] = self.inbox(address)
            self.assertTrue(data.endswith(b"\r\n\r\n" + body.split(b"\r\n\r\n", 1)[1]))
            self.assertIn(b"\tfor <%s>; " % address.encode(), data)

    def test_size_limit_while_streaming(self):
        """The 552 still comes after the dot, and nothing is stored."""
        self.feed(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (self.max_size // 1000 + 1))
        self.assertEqual(
            self.wire.send(b"."),
            [b"552 5.3.4 Message size exceeds fixed maximum message size (%d octets)" % self.max_size],
        )
        self.assertEqual(self.inbox("alice@example.org"), [])
        self.assertEqual(self.wire.send(b"MAIL FROM:<carol@remote.example>"), [b"250 Sender address accepted"])

    def test_bare_newlines_and_dots(self):
        """Dot-unstuffing and line ends come out as before the spool."""
        self.assertEqual(self.wire.send_raw(b"Subject: x\r\n\r\n..dot\r\nbare\nLF\r\n.\r\n"), [b"250 2.0.0 Message accepted for delivery"])
        [(uid, data)] = self.inbox("alice@example.org")
        self.assertTrue(data.endswith(b"Subject: x\r\n\r\n.dot\r\nbare\r\nLF\r\n"), data)

    def test_empty_message(self):
        self.assertEqual(self.wire.send(b"."), [b"250 2.0.0 Message accepted for delivery"])
        [(uid, data)] = self.inbox("alice@example.org")
        self.assertTrue(data.endswith(b"+0000\r\n\r\n"), data)

    def test_connection_lost_in_data(self):
        """A client gone in the middle of DATA leaves nothing behind and no error."""
        self.feed(b"Subject: gone\r\n\r\n" + b"z\r\n" * 1000)
        self.wire.close()
        self.assertEqual(self.inbox("alice@example.org"), [])
        self.assertEqual(self.flushLoggedErrors(), [])
