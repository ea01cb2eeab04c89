"""Tests for imapwebpush.imap.qresync: QRESYNC parameters, UID ranges and what
a resynchronising client is told (no network)."""

from twisted.trial import unittest

from imapwebpush.imap import qresync
from imapwebpush.imap.qresync import QresyncError, QresyncParams


class RangeTests(unittest.TestCase):
    def test_normalize_merges_and_sorts(self):
        self.assertEqual(qresync.normalize([(7, 9), (1, 2), (3, 3), (12, 10), (8, 8)]), [(1, 3), (7, 12)])

    def test_ranges_of_and_render(self):
        ranges = qresync.ranges_of([9, 3, 4, 5, 7, 4])
        self.assertEqual(ranges, [(3, 5), (7, 7), (9, 9)])
        self.assertEqual(qresync.render(ranges), "3:5,7,9")
        self.assertEqual(qresync.render([]), "")
        self.assertEqual(qresync.expand(ranges), [3, 4, 5, 7, 9])
        self.assertEqual(qresync.count(ranges), 5)

    def test_intersect(self):
        a = [(1, 5), (8, 10), (20, 30)]
        b = [(3, 9), (25, 25), (29, 40)]
        self.assertEqual(qresync.intersect(a, b), [(3, 5), (8, 9), (25, 25), (29, 30)])
        self.assertEqual(qresync.intersect(a, []), [])

    def test_subtract(self):
        a = [(1, 10), (20, 30)]
        b = [(3, 4), (10, 21), (25, 25)]
        self.assertEqual(qresync.subtract(a, b), [(1, 2), (5, 9), (22, 24), (26, 30)])
        self.assertEqual(qresync.subtract(a, []), a)
        self.assertEqual(qresync.subtract(a, [(1, 100)]), [])

    def test_at_least(self):
        self.assertEqual(qresync.at_least([(1, 3), (5, 9), (12, 12)], 6), [(6, 9), (12, 12)])

    def test_long_vanished_is_cut_into_lines(self):
        ranges = [(n * 3, n * 3) for n in range(1, 1201)]
        lines = qresync.vanished_lines(ranges)
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[0].startswith(b"VANISHED 3,6,9,"))
        self.assertEqual(sum(line.count(b",") + 1 for line in lines), 1200)
        self.assertEqual(qresync.vanished_lines([(4, 6)], earlier=True), [b"VANISHED (EARLIER) 4:6"])


class SelectParamTests(unittest.TestCase):
    def test_none(self):
        self.assertEqual(qresync.parse_select_params(b""), (False, None))

    def test_condstore(self):
        self.assertEqual(qresync.parse_select_params(b"(condstore)"), (True, None))

    def test_qresync_minimal(self):
        self.assertEqual(
            qresync.parse_select_params(b"(QRESYNC (67890007 20050715194045000))"),
            (False, QresyncParams(67890007, 20050715194045000)),
        )

    def test_qresync_rfc_example(self):
        """The example of RFC 7162 3.2.5.2."""
        condstore, params = qresync.parse_select_params(
            b"(QRESYNC (67890007 90060115194045000 41:211,214:541))"
        )
        self.assertFalse(condstore)
        self.assertEqual(params.known_uids, [(41, 211), (214, 541)])
        self.assertIsNone(params.seq_match)

    def test_qresync_with_match_data(self):
        _, params = qresync.parse_select_params(
            b"(QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 "
            b"15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))"
        )
        seqs, uids = params.seq_match
        self.assertEqual(seqs[:3], [(5000, 5000), (7500, 7500), (9000, 9000)])
        self.assertEqual(qresync.count(seqs), 13)
        self.assertEqual(uids[-1], (29997, 29997))

    def test_match_data_without_known_uids(self):
        _, params = qresync.parse_select_params(b"(QRESYNC (1 2 (1:2 5,9)))")
        self.assertIsNone(params.known_uids)
        self.assertEqual(params.seq_match, ([(1, 2)], [(5, 5), (9, 9)]))

    def test_both(self):
        condstore, params = qresync.parse_select_params(b"(CONDSTORE QRESYNC (9 10 1:5))")
        self.assertTrue(condstore)
        self.assertEqual(params, QresyncParams(9, 10, [(1, 5)]))

    def test_bad(self):
        for text in (
            b"CONDSTORE",
            b"(CONDSTORE",
            b"()",
            b"(FOO)",
            b"(QRESYNC)",
            b"(QRESYNC 1 2)",
            b"(QRESYNC (1))",
            b"(QRESYNC (0 2))",  # uidvalidity is nz-number
            b"(QRESYNC (1 0))",  # mod-sequence-value is positive
            b"(QRESYNC (x 2))",
            b"(QRESYNC (1 2 1:*))",  # no * in known-uids
            b"(QRESYNC (1 2 1:3 (1:2 5)))",  # sets differ in size
            b"(QRESYNC (1 2 1:3 (2,1 5,6)))",  # not ascending
            b"(QRESYNC (1 2 1:3 (1 5) x))",
            b"(QRESYNC (1 2 1:3 \"5\"))",
            b"(QRESYNC (1 2)) extra",
            b"(QRESYNC (1 2) QRESYNC (1 2))",
            b"(QRESYNC (1 99999999999999999999))",
        ):
            self.assertRaises(QresyncError, qresync.parse_select_params, text)


class FetchModifierTests(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(qresync.parse_fetch_modifiers(b""), (None, False))
        self.assertEqual(qresync.parse_fetch_modifiers(b"(CHANGEDSINCE 12)"), (12, False))
        self.assertEqual(qresync.parse_fetch_modifiers(b"(changedsince 0 vanished)"), (0, True))
        self.assertEqual(qresync.parse_fetch_modifiers(b"(VANISHED CHANGEDSINCE 7)"), (7, True))

    def test_bad(self):
        for text in (
            b"(VANISHED)",
            b"(CHANGEDSINCE)",
            b"(CHANGEDSINCE x)",
            b"(CHANGEDSINCE 1 CHANGEDSINCE 2)",
            b"(CHANGEDSINCE 1 FOO)",
            b"CHANGEDSINCE 1",
            b"(CHANGEDSINCE (1))",
        ):
            self.assertRaises(QresyncError, qresync.parse_fetch_modifiers, text)


class FakeMailbox:
    def __init__(self, uids, modseqs, vanished, floor):
        self._uids = uids
        self._modseqs = modseqs
        self._vanished = vanished  # modseq -> uids
        self.vanished_floor = floor

    def vanished_ranges(self, modseq):
        if modseq < self.vanished_floor:
            present = set(self._uids)
            return qresync.ranges_of(u for u in range(1, max(self._uids) + 1) if u not in present)
        return qresync.ranges_of(u for m, us in self._vanished.items() if m > modseq for u in us)

    def changed_since(self, modseq):
        return [u for u in self._uids if self._modseqs[u] > modseq]


class WhatToTellTests(unittest.TestCase):
    def setUp(self):
        # UIDs 1..10; 2, 3 expunged at modseq 20, 7 at modseq 30; 5 flagged at 25, 9 at 35.
        uids = [1, 4, 5, 6, 8, 9, 10]
        modseqs = {u: 10 for u in uids}
        modseqs[5] = 25
        modseqs[9] = 35
        self.box = FakeMailbox(uids, modseqs, {20: [2, 3], 30: [7]}, floor=15)
        self.uids = uids

    def test_exact_history(self):
        params = QresyncParams(1, 20)
        self.assertEqual(qresync.select_vanished(params, self.box, self.uids), [(7, 7)])
        self.assertEqual(qresync.changed_uids(params, self.box), [5, 9])
        params = QresyncParams(1, 15)
        self.assertEqual(qresync.select_vanished(params, self.box, self.uids), [(2, 3), (7, 7)])

    def test_known_uids_limit_both(self):
        params = QresyncParams(1, 15, known_uids=[(1, 2), (6, 10)])
        self.assertEqual(qresync.select_vanished(params, self.box, self.uids), [(2, 2), (7, 7)])
        self.assertEqual(qresync.changed_uids(params, self.box), [9])

    def test_below_the_floor_every_gap(self):
        params = QresyncParams(1, 5)
        self.assertEqual(qresync.select_vanished(params, self.box, self.uids), [(2, 3), (7, 7)])

    def test_below_the_floor_match_data_narrows(self):
        # The client knew 1..10 as sequence 1..10: (1,1) matches, (4,4) does not any more.
        params = QresyncParams(1, 5, seq_match=([(1, 1), (4, 4)], [(1, 1), (4, 4)]))
        self.assertEqual(qresync.select_vanished(params, self.box, self.uids), [(2, 3), (7, 7)])
        # Its sample says message 4 is UID 6 and message 5 is UID 8: both still true,
        # so nothing at or below 8 is gone that it does not already know.
        params = QresyncParams(1, 5, seq_match=([(4, 5)], [(6, 6), (8, 8)]))
        self.assertEqual(qresync.select_vanished(params, self.box, self.uids), [])

    def test_match_data_ignored_with_exact_history(self):
        params = QresyncParams(1, 15, seq_match=([(4, 5)], [(6, 6), (8, 8)]))
        self.assertEqual(qresync.select_vanished(params, self.box, self.uids), [(2, 3), (7, 7)])

    def test_seq_match_floor(self):
        uids = [1, 4, 5, 6, 8]
        self.assertEqual(qresync.seq_match_floor(None, uids), 1)
        self.assertEqual(qresync.seq_match_floor(([(1, 2)], [(1, 2)]), uids), 2)  # 2 != 4
        self.assertEqual(qresync.seq_match_floor(([(2, 3)], [(4, 5)]), uids), 6)
        self.assertEqual(qresync.seq_match_floor(([(5, 9)], [(8, 12)]), uids), 9)  # past the end
        # A huge claimed range stops at the end of the mailbox.
        self.assertEqual(qresync.seq_match_floor(([(1, 2**31)], [(1, 2**31)]), uids), 2)
