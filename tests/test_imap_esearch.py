"""ESEARCH (RFC 4731) and SEARCHRES (RFC 5182) on the wire, after the RFCs' examples."""

from twisted.internet import task
from twisted.trial import unittest

from imapwebpush.imap import search_scan
from tests.harness.imap import IMAPTestCase, message


class _TwelveMessages(IMAPTestCase):
    """Twelve messages, the first expunged: numbers 1..11 are UIDs 2..12; 2, 10, 11 are flagged."""

    def setUp(self):
        super().setUp()
        inbox = self.inbox()
        for n in range(12):
            flags = ["\\Flagged"] if n in (2, 10, 11) else []
            if n < 6:
                flags.append("\\Seen")
            inbox.add(message("m%d" % n, b"x" * (100 * n) + b"\r\n"), flags)

    def answers(self, *commands):
        return self.in_inbox(*commands, before=["STORE 1 +FLAGS.SILENT (\\Deleted)", "EXPUNGE"])


class ESearchTests(_TwelveMessages):
    """RFC 4731: RETURN (MIN MAX ALL COUNT), by number and by UID."""

    def test_rfc4731_examples(self):
        d = self.answers(
            'SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
            'SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
            "SEARCH RETURN (MIN MAX) KEYWORD Junk",
            "UID SEARCH RETURN (MIN MAX) 1:5000",
            "UID SEARCH RETURN (ALL COUNT MAX) FLAGGED",
            "SEARCH RETURN (COUNT) DELETED",
            "SEARCH RETURN (ALL) UNSEEN",
            "SEARCH FLAGGED",
        )

        def check(answers):
            self.assertEqual(
                answers,
                [
                    ['* ESEARCH (TAG "a0") MIN 2 COUNT 3', "a0 OK SEARCH completed"],
                    ['* ESEARCH (TAG "a1") ALL 2,10:11', "a1 OK SEARCH completed"],
                    ['* ESEARCH (TAG "a2")', "a2 OK SEARCH completed"],
                    ['* ESEARCH (TAG "a3") UID MIN 2 MAX 12', "a3 OK SEARCH completed"],
                    ['* ESEARCH (TAG "a4") UID MAX 12 ALL 3,11:12 COUNT 3', "a4 OK SEARCH completed"],
                    ['* ESEARCH (TAG "a5") COUNT 0', "a5 OK SEARCH completed"],
                    ['* ESEARCH (TAG "a6") ALL 6:11', "a6 OK SEARCH completed"],
                    ["* SEARCH 2 10 11", "a7 OK SEARCH completed"],
                ],
            )

        return d.addCallback(check)

    def test_modseq_and_charset(self):
        d = self.answers(
            "SEARCH RETURN (COUNT) CHARSET UTF-8 FLAGGED",
            "SEARCH RETURN (MAX) MODSEQ 1",
            "SEARCH RETURN (FOO) ALL",
            "SEARCH RETURN MIN ALL",
        )

        def check(answers):
            self.assertEqual(answers[0], ['* ESEARCH (TAG "a0") COUNT 3', "a0 OK SEARCH completed"])
            highest, line, ok = answers[1]
            self.assertRegex(highest, r"^\* OK \[HIGHESTMODSEQ \d+\] Highest mod-sequence$")
            self.assertRegex(line, r'^\* ESEARCH \(TAG "a1"\) MAX 11 MODSEQ \d+$')
            self.assertEqual(ok, "a1 OK SEARCH completed")
            self.assertEqual(answers[2], ["a2 BAD Unknown RETURN option FOO"])
            self.assertEqual(answers[3], ["a3 BAD RETURN needs a list of options"])

        return d.addCallback(check)

    def test_capability(self):
        def check(caps):
            self.assertIn("ESEARCH", caps)
            self.assertIn("SEARCHRES", caps)

        return self.capabilities().addCallback(check)


class SearchResTests(_TwelveMessages):
    """RFC 5182: RETURN (SAVE) and "$" in FETCH, STORE, COPY, MOVE, SEARCH and UID commands."""

    def test_save_then_use(self):
        self.account().create_mailbox("Other Messages")
        d = self.answers(
            'SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
            "FETCH $ (UID)",
            "STORE $ +FLAGS (\\Answered)",
            "SEARCH ANSWERED",
            'COPY $ "Other Messages"',
            "UID FETCH $ (FLAGS)",
            "SEARCH RETURN (SAVE MIN) FLAGGED",
            "FETCH $ (UID)",
            "SEARCH RETURN (SAVE COUNT) OR $ 1:2",
            "SEARCH RETURN () $",
            "UID SEARCH UID $",
            'MOVE $ "Other Messages"',
            "FETCH $ (UID)",
            "SEARCH RETURN (ALL) $",
        )

        def check(answers):
            self.assertEqual(answers[0], ["a0 OK SEARCH completed"])
            self.assertEqual(
                answers[1],
                ["* 2 FETCH (UID 3)", "* 10 FETCH (UID 11)", "* 11 FETCH (UID 12)", "a1 OK FETCH completed"],
            )
            self.assertEqual(
                answers[2],
                [
                    "* 2 FETCH (FLAGS (\\Answered \\Flagged \\Seen))",
                    "* 10 FETCH (FLAGS (\\Answered \\Flagged))",
                    "* 11 FETCH (FLAGS (\\Answered \\Flagged))",
                    "a2 OK STORE completed",
                ],
            )
            self.assertEqual(answers[3], ["* SEARCH 2 10 11", "a3 OK SEARCH completed"])
            self.assertRegex(answers[4][0], r"^a4 OK \[COPYUID \d+ 3,11:12 1:3\] COPY completed$")
            self.assertEqual(
                answers[5],
                [
                    "* 2 FETCH (UID 3 FLAGS (\\Answered \\Flagged \\Seen))",
                    "* 10 FETCH (UID 11 FLAGS (\\Answered \\Flagged))",
                    "* 11 FETCH (UID 12 FLAGS (\\Answered \\Flagged))",
                    "a5 OK FETCH completed",
                ],
            )
            self.assertEqual(answers[6], ['* ESEARCH (TAG "a6") MIN 2', "a6 OK SEARCH completed"])
            self.assertEqual(answers[7], ["* 2 FETCH (UID 3)", "a7 OK FETCH completed"])
            self.assertEqual(answers[8], ['* ESEARCH (TAG "a8") COUNT 2', "a8 OK SEARCH completed"])
            self.assertEqual(answers[9], ['* ESEARCH (TAG "a9") ALL 1:2', "a9 OK SEARCH completed"])
            self.assertEqual(answers[10], ["* SEARCH 2 3", "a10 OK SEARCH completed"])
            self.assertEqual(answers[11][-2:], ["* 1 EXPUNGE", "a11 OK MOVE completed"])
            self.assertEqual(answers[12], ["a12 OK FETCH completed"])  # moved away: "$" names nothing
            self.assertEqual(answers[13], ['* ESEARCH (TAG "a13")', "a13 OK SEARCH completed"])

        return d.addCallback(check)

    def test_failed_save_and_new_selection_empty_the_result(self):
        def client():
            w = self.wire()
            w.login()
            w.cmd("s", "SELECT INBOX")
            out = [w.cmd("a1", "SEARCH RETURN (SAVE) FLAGGED")]
            out.append(w.cmd("a2", "FETCH $ (UID)"))
            out.append(w.cmd("a3", "SEARCH RETURN (SAVE) NOSUCHKEY"))
            out.append(w.cmd("a4", "FETCH $ (UID)"))
            w.cmd("a5", "SEARCH RETURN (SAVE) FLAGGED")
            w.cmd("s2", "SELECT INBOX")
            out.append(w.cmd("a6", "FETCH $ (UID)"))
            w.close()
            return out

        def check(out):
            self.assertEqual(out[0], ["a1 OK SEARCH completed"])
            self.assertEqual(len(out[1]), 4)
            self.assertEqual(out[2], ["a3 BAD Unknown search key NOSUCHKEY"])
            self.assertEqual(out[3], ["a4 OK FETCH completed"])
            self.assertEqual(out[4], ["a6 OK FETCH completed"])

        return self.in_thread(client).addCallback(check)


class SlicedSearchTests(ESearchTests, SearchResTests):
    """The same answers when all but the first 3 messages are matched in Cooperator slices."""

    def setUp(self):
        super().setUp()
        self.patch(search_scan, "INLINE_MESSAGES", 3)
        self.patch(search_scan, "_SLICE", 1)



class _Stored:
    def __init__(self, uid):
        self.modseq = uid
        self.flags = set()


class _View:
    """What scan reads of a SessionView: uids, recent, is_ghost, mailbox.message."""

    def __init__(self, count):
        self.uids = list(range(1, count + 1))
        self.recent = set()
        self.mailbox = self
        self.gone = set()

    def is_ghost(self, uid):
        return False

    def message(self, uid):
        if uid in self.gone:
            raise KeyError(uid)
        return _Stored(uid)


class ScanSliceTests(unittest.TestCase):
    """search_scan.scan: the first INLINE_MESSAGES at once, the rest one clock turn per slice."""

    def test_slices_wait_for_the_clock(self):
        self.patch(search_scan, "INLINE_MESSAGES", 3)
        self.patch(search_scan, "_SLICE", 1)
        clock = task.Clock()
        coop = task.Cooperator(
            scheduler=lambda work: clock.callLater(1, work),  # 1: advance() runs one turn
            terminationPredicateFactory=lambda: iter([False, True]).__next__,  # 2 per turn
        )
        view = _View(10)
        seen = []
        d = search_scan.scan(view, lambda item: seen.append(item.uid) or item.uid % 2 == 0, coop)
        self.assertEqual(seen, [1, 2, 3])  # the rest waits for the reactor's next turns
        self.assertNoResult(d)
        view.gone.add(8)  # expunged by another session while the search runs
        clock.advance(1)
        self.assertNoResult(d)
        self.assertEqual(seen, [1, 2, 3, 4, 5])
        for _ in range(10):
            clock.advance(1)
        found = self.successResultOf(d)
        self.assertEqual(found, [(2, 2, 2, None), (4, 4, 4, None), (6, 6, 6, None), (10, 10, 10, None)])

    def test_inline_part_is_bounded_in_time(self):
        """Slow matches go to the cooperator before INLINE_MESSAGES when INLINE_SECONDS is spent."""
        self.patch(search_scan, "INLINE_SECONDS", -1)
        clock = task.Clock()
        coop = task.Cooperator(scheduler=lambda work: clock.callLater(1, work))
        d = search_scan.scan(_View(5), lambda item: item.uid > 3, coop)
        self.assertNoResult(d)
        clock.advance(1)
        self.assertEqual([uid for _, uid, _, _ in self.successResultOf(d)], [4, 5])

    def test_small_mailbox_answers_at_once(self):
        coop = task.Cooperator(scheduler=lambda work: self.fail("no slice expected"))
        d = search_scan.scan(_View(5), lambda item: item.uid > 3, coop)
        self.assertEqual([uid for _, uid, _, _ in self.successResultOf(d)], [4, 5])

    def test_finish_runs_in_slices_past_the_inline_time(self):
        """What follows the match (SORT's ordering, THREAD's threading) yields to the clock too."""
        self.patch(search_scan, "INLINE_SECONDS", -1)
        clock = task.Clock()
        coop = task.Cooperator(
            scheduler=lambda work: clock.callLater(1, work),
            terminationPredicateFactory=lambda: iter([False, True]).__next__,  # 2 steps per turn
        )
        done = []

        def steps():
            for n in range(5):
                done.append(n)
                yield
            return "answer"

        d = search_scan.finish(steps(), coop)
        self.assertEqual(done, [0])
        self.assertNoResult(d)
        clock.advance(1)
        self.assertEqual(done, [0, 1, 2])
        for _ in range(3):
            clock.advance(1)
        self.assertEqual(self.successResultOf(d), "answer")

    def test_finish_small_work_at_once(self):
        coop = task.Cooperator(scheduler=lambda work: self.fail("no slice expected"))

        def steps():
            yield
            return "answer"

        self.assertEqual(self.successResultOf(search_scan.finish(steps(), coop)), "answer")
