"""SEARCH BODY/TEXT of a large message read a piece at a time (imap/body_scan.py) finds
what the in-memory SearchItem.text finds: UTF-8 sequences, case folds that change the
length (ß is ss), the needle and the header end across piece borders."""

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from imapwebpush.imap import body_scan, search, search_scan
from imapwebpush.imap.search import SearchItem

CHUNKS = [b"a", b"B", b"ss", "\u00df".encode(), "\u00c9".encode(), b"\xc3", b"\xa9", b"\xff", b"\r\n", b"\n", b"\r", b" ", b"SS", "\u1e9e".encode()]
NEEDLES = ["a", "ss", "\u00df", "\ufffd", "b\r\nss", "\u00e9", "ssa", "\r\n\r\n", "ba"]


class _Stored:
    flags = frozenset()
    modseq = 1
    size = 0

    def __init__(self, data):
        self.data = data

    def read(self):
        return self.data

    def open(self):
        return io.BytesIO(self.data)


class BodyScanTests(unittest.TestCase):
    @settings(max_examples=600, deadline=None)
    @given(
        st.lists(st.sampled_from(CHUNKS + [b"\r\n\r\n", b"X: y"]), max_size=30).map(b"".join),
        st.sampled_from(NEEDLES),
        st.booleans(),
        st.integers(1, 9),
    )
    def test_same_answer_as_in_memory(self, data, needle, whole, piece):
        needle = needle.casefold()
        stored = _Stored(data)
        expected = needle in SearchItem(1, 1, stored, False).text(whole)
        self.assertEqual(body_scan.file_contains(stored, needle, whole, piece=piece), expected)

    def test_needle_across_pieces(self):
        stored = _Stored(b"Subject: x\r\n\r\n" + b"z" * 100 + "STRA\u00dfE".encode())
        self.assertTrue(body_scan.file_contains(stored, "strasse", False, piece=4))
        self.assertFalse(body_scan.file_contains(stored, "subject", False, piece=4))
        self.assertTrue(body_scan.file_contains(stored, "subject", True, piece=4))


class _View:
    """What search_scan's matching reads of a session's view: one mailbox of ``messages``."""

    def __init__(self, messages):
        self.uids = list(range(1, len(messages) + 1))
        self.recent = set()
        self.messages = dict(zip(self.uids, messages))
        self.mailbox = self

    def message(self, uid):
        return self.messages[uid]

    def is_ghost(self, uid):
        return False


class SlicedScanTests(unittest.TestCase):
    def test_large_message_read_between_slices(self):
        """SEARCH BODY on a large message yields to the cooperator after every piece of its
        file (a 50 MB message is not one slice); small ones are matched in memory as before."""
        big = _Stored(b"Subject: big\r\n\r\n" + b"x" * (20 * body_scan.PIECE) + b"needle")
        big.size = len(big.data)
        small = _Stored(b"Subject: small\r\n\r\nneedle")
        query = search.compile_search([b"BODY", b"NEEDLE"], [1, 2])
        found = []
        steps = list(search_scan._matching(_View([small, big]), query.predicate, found, None))
        self.assertEqual([m[1] for m in found], [1, 2])
        self.assertGreaterEqual(len(steps), 20)
        self.assertEqual(set(steps), {0, 1})
