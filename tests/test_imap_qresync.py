"""QRESYNC (RFC 7162): the pure parts of imapwebpush.imap.qresync (parameters, UID ranges,
what a resynchronising client is told), then the server over loopback with exact wire lines."""

from twisted.trial import unittest

from imapwebpush import wire
from imapwebpush.imap import qresync
from imapwebpush.imap.qresync import QresyncError, QresyncParams
from tests.harness.imap import IMAPTestCase, message


class VanishedLineTests(unittest.TestCase):
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
        self.assertEqual(wire.count(seqs), 13)
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
        self.uids = uids
        self.modseqs = modseqs
        self.vanished = vanished  # modseq -> uids
        self.vanished_floor = floor

    def vanished_ranges(self, modseq):
        if modseq < self.vanished_floor:
            present = set(self.uids)
            return wire.ranges_of(u for u in range(1, max(self.uids) + 1) if u not in present)
        return wire.ranges_of(u for m, us in self.vanished.items() if m > modseq for u in us)

    def changed_since(self, modseq):
        return [u for u in self.uids if self.modseqs[u] > modseq]


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


# -- over the wire -----------------------------------------------------------------

PERMANENT = "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted"


class QresyncWireTests(IMAPTestCase):
    """QRESYNC as a client sees it: exact lines."""

    def setUp(self):
        super().setUp()
        inbox = self.inbox()
        for n in range(5):
            inbox.add(message("m%d" % n), ["\\Seen"])

    def select_lines(self, exists, command="SELECT", tag="s1", rest=(), mailbox=None):
        box = mailbox or self.inbox()
        mode = "[READ-WRITE]" if command == "SELECT" else "[READ-ONLY]"
        return [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
            PERMANENT if command == "SELECT" else "* OK [PERMANENTFLAGS ()] Flags permitted",
            "* %d EXISTS" % exists,
            "* 0 RECENT",
            "* OK [UIDVALIDITY %d] UIDs valid" % box.uidvalidity,
            "* OK [UIDNEXT %d] Predicted next UID" % box.uidnext,
            "* OK [HIGHESTMODSEQ %d] Highest mod-sequence" % box.highestmodseq,
        ] + list(rest) + ["%s OK %s %s completed" % (tag, mode, command)]

    def test_capability_and_enable(self):
        def client():
            w = self.session()
            caps = w.cmd("c1", "CAPABILITY")
            enable = w.cmd("e1", "ENABLE QRESYNC")
            again = w.cmd("e2", "ENABLE QRESYNC CONDSTORE")
            w.cmd("s1", "SELECT INBOX")
            fetch = w.cmd("f1", "FETCH 1 (FLAGS)")
            w.close()
            return caps, enable, again, fetch

        def check(result):
            caps, enable, again, fetch = result
            self.assertIn("QRESYNC", caps[0].split())
            self.assertEqual(enable, ["* ENABLED QRESYNC", "e1 OK ENABLE completed"])
            # Both already on: QRESYNC implies CONDSTORE (RFC 7162 3.2.3).
            self.assertEqual(again, ["* ENABLED", "e2 OK ENABLE completed"])
            self.assertEqual(
                fetch,
                ["* 1 FETCH (FLAGS (\\Seen) MODSEQ (%d))" % self.inbox().message(1).modseq, "f1 OK FETCH completed"],
            )

        return self.in_thread(client).addCallback(check)

    def test_first_condstore_enabling_command_tells_highestmodseq(self):
        """RFC 7162 3.1: FETCH MODSEQ in a selected mailbox enables CONDSTORE; the first one
        tells HIGHESTMODSEQ before its FETCH lines, later ones do not; SELECT (CONDSTORE)
        has told it already."""

        def client():
            w = self.session(select="INBOX")
            first = w.cmd("f1", "FETCH 1 (MODSEQ)")
            second = w.cmd("f2", "FETCH 2 (MODSEQ)")
            w.close()
            w = self.session()
            w.cmd("s1", "SELECT INBOX (CONDSTORE)")
            after_select = w.cmd("f3", "FETCH 1 (MODSEQ)")
            w.close()
            return first, second, after_select

        def check(result):
            first, second, after_select = result
            box = self.inbox()
            m1, m2 = box.message(1).modseq, box.message(2).modseq
            self.assertEqual(
                first,
                [
                    "* OK [HIGHESTMODSEQ %d] Highest mod-sequence" % box.highestmodseq,
                    "* 1 FETCH (MODSEQ (%d))" % m1,
                    "f1 OK FETCH completed",
                ],
            )
            self.assertEqual(second, ["* 2 FETCH (MODSEQ (%d))" % m2, "f2 OK FETCH completed"])
            self.assertEqual(after_select, ["* 1 FETCH (MODSEQ (%d))" % m1, "f3 OK FETCH completed"])

        return self.in_thread(client).addCallback(check)

    def test_qresync_parameter_needs_enable(self):
        def client():
            w = self.session()
            bad = w.cmd("s1", "SELECT INBOX (QRESYNC (1 1))")
            w.cmd("e1", "ENABLE QRESYNC")
            malformed = w.cmd("s2", "SELECT INBOX (QRESYNC (1 1 1:*))")
            w.close()
            return bad, malformed

        def check(result):
            bad, malformed = result
            self.assertEqual(bad, ["s1 BAD QRESYNC is not enabled"])
            self.assertEqual(malformed, ["s2 BAD * is not allowed in a known-uids"])

        return self.in_thread(client).addCallback(check)

    def test_reconnect_after_other_session_expunged(self):
        """The client of RFC 7162 3.2.5: it comes back with its UIDVALIDITY and
        HIGHESTMODSEQ and hears what it missed, gone messages first."""
        inbox = self.inbox()
        validity, before = inbox.uidvalidity, inbox.highestmodseq

        def client():
            other = self.session(select="INBOX")
            other.cmd("t1", "STORE 2,4 +FLAGS.SILENT (\\Deleted)")
            other.cmd("x1", "EXPUNGE")
            other.cmd("t2", "UID STORE 5 +FLAGS.SILENT (\\Flagged)")
            other.close()
            w = self.session()
            w.cmd("e1", "ENABLE QRESYNC")
            lines = w.cmd("s1", "SELECT INBOX (QRESYNC (%d %d 1:5))" % (validity, before))
            # And once more with nothing new: only the usual lines.
            quiet = w.cmd("s2", "EXAMINE INBOX (QRESYNC (%d %d))" % (validity, inbox.highestmodseq))
            w.close()
            return lines, quiet

        def check(result):
            lines, quiet = result
            flagged = inbox.message(5).modseq
            self.assertEqual(
                lines,
                self.select_lines(
                    3,
                    rest=[
                        "* VANISHED (EARLIER) 2,4",
                        "* 3 FETCH (UID 5 FLAGS (\\Flagged \\Seen) MODSEQ (%d))" % flagged,
                    ],
                ),
            )
            self.assertEqual(
                quiet,
                ["* OK [CLOSED] Previous mailbox closed"] + self.select_lines(3, "EXAMINE", "s2"),
            )

        return self.in_thread(client).addCallback(check)

    def test_known_uids_and_other_uidvalidity(self):
        inbox = self.inbox()
        validity, before = inbox.uidvalidity, inbox.highestmodseq
        inbox.set_flags([1, 2, 3], ["\\Deleted"], "add")
        inbox.expunge([1, 3])
        inbox.set_flags([2, 5], ["\\Answered"], "add")

        def client():
            w = self.session()
            w.cmd("e1", "ENABLE QRESYNC")
            known = w.cmd("s1", "SELECT INBOX (QRESYNC (%d %d 3:5))" % (validity, before))
            stale = w.cmd("s2", "SELECT INBOX (QRESYNC (%d %d 1:5))" % (validity + 1, before))
            w.close()
            return known, stale

        def check(result):
            known, stale = result
            self.assertEqual(
                known,
                self.select_lines(
                    3,
                    rest=[
                        "* VANISHED (EARLIER) 3",
                        "* 3 FETCH (UID 5 FLAGS (\\Answered \\Seen) MODSEQ (%d))" % inbox.message(5).modseq,
                    ],
                ),
            )
            # Another UIDVALIDITY: the client's cache is worthless, nothing is told.
            self.assertEqual(stale, ["* OK [CLOSED] Previous mailbox closed"] + self.select_lines(3, tag="s2"))

        return self.in_thread(client).addCallback(check)

    def test_expunge_uid_expunge_and_move_tell_vanished(self):
        self.account().create_mailbox("Archive")
        start = self.inbox().highestmodseq

        def client():
            w = self.session()
            w.cmd("e1", "ENABLE QRESYNC")
            w.cmd("s1", "SELECT INBOX")
            w.cmd("t1", "STORE 2:3 +FLAGS.SILENT (\\Deleted)")
            expunge = w.cmd("x1", "EXPUNGE")
            w.cmd("t2", "UID STORE 5 +FLAGS.SILENT (\\Deleted)")
            uid_expunge = w.cmd("x2", "UID EXPUNGE 4:5")
            move = w.cmd("m1", "UID MOVE 1 Archive")
            w.close()
            return expunge, uid_expunge, move

        def check(result):
            expunge, uid_expunge, move = result
            archive = self.account().mailbox("Archive")
            # The tagged OK carries HIGHESTMODSEQ: STORE, then the expunge, each one more.
            self.assertEqual(
                expunge, ["* VANISHED 2:3", "x1 OK [HIGHESTMODSEQ %d] EXPUNGE completed" % (start + 2)]
            )
            self.assertEqual(
                uid_expunge, ["* VANISHED 5", "x2 OK [HIGHESTMODSEQ %d] EXPUNGE completed" % (start + 4)]
            )
            self.assertEqual(
                move,
                [
                    "* OK [COPYUID %d 1 1] Moved" % archive.uidvalidity,
                    "* VANISHED 1",
                    "m1 OK MOVE completed",
                ],
            )

        return self.in_thread(client).addCallback(check)

    def test_other_sessions_expunge_while_idle_and_at_command_end(self):
        def client():
            a, b = self.wire(), self.wire()
            a.login()
            b.login()
            a.cmd("e1", "ENABLE QRESYNC")
            a.cmd("s1", "SELECT INBOX")
            b.cmd("s1", "SELECT INBOX")
            b.cmd("t1", "STORE 1 +FLAGS.SILENT (\\Deleted)")
            b.cmd("x1", "EXPUNGE")
            # By number FETCH may not renumber: the VANISHED waits for the NOOP.
            fetch = a.cmd("f1", "FETCH 5 (UID)")
            noop = a.cmd("n1", "NOOP")
            a.send("i1 IDLE\r\n")
            cont = a.readline()
            b.cmd("t2", "STORE 2:3 +FLAGS.SILENT (\\Deleted)")
            flags = [a.readline(), a.readline()]
            b.cmd("x2", "EXPUNGE")
            pushed = a.readline()
            a.send("DONE\r\n")
            done = a.until("i1")
            a.close()
            b.close()
            return fetch, noop, cont, flags, pushed, done

        def check(result):
            fetch, noop, cont, flags, pushed, done = result
            self.assertEqual(fetch, ["* 5 FETCH (UID 5)", "f1 OK FETCH completed"])
            self.assertEqual(noop, ["* VANISHED 1", "n1 OK NOOP completed"])
            self.assertEqual(cont, "+ idling")
            self.assertTrue(all(" FETCH (FLAGS (\\Deleted \\Seen) UID " in line for line in flags), flags)
            self.assertEqual(pushed, "* VANISHED 3:4")  # b's 2:3 after UID 1 went
            self.assertEqual(done, ["i1 OK IDLE terminated"])

        return self.in_thread(client).addCallback(check)

    def test_uid_fetch_vanished(self):
        inbox = self.inbox()
        before = inbox.highestmodseq
        inbox.set_flags([2, 4], ["\\Deleted"], "add")
        inbox.expunge()
        inbox.set_flags([5], ["\\Flagged"], "add")

        def client():
            a, b = self.wire(), self.wire()
            a.login()
            b.login()
            a.cmd("e1", "ENABLE QRESYNC")
            a.cmd("s1", "SELECT INBOX")
            fetch = a.cmd("f1", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % before)
            narrow = a.cmd("f2", "UID FETCH 3:4 (FLAGS) (CHANGEDSINCE %d VANISHED)" % before)
            by_number = a.cmd("f3", "FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % before)
            alone = a.cmd("f4", "UID FETCH 1:* (FLAGS) (VANISHED)")
            # Expunged by another session but not yet told: it still has a number,
            # so it is told as VANISHED at the end of the command, not EARLIER.
            b.cmd("s1", "SELECT INBOX")
            b.cmd("t1", "UID STORE 3 +FLAGS.SILENT (\\Deleted)")
            b.cmd("x1", "EXPUNGE")
            ghost = a.cmd("f5", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % before)
            a.close()
            b.close()
            return fetch, narrow, by_number, alone, ghost

        def check(result):
            fetch, narrow, by_number, alone, ghost = result
            flagged = "* 3 FETCH (UID 5 FLAGS (\\Flagged \\Seen) MODSEQ (%d))" % inbox.message(5).modseq
            self.assertEqual(fetch, ["* VANISHED (EARLIER) 2,4", flagged, "f1 OK FETCH completed"])
            self.assertEqual(narrow, ["* VANISHED (EARLIER) 4", "f2 OK FETCH completed"])
            self.assertEqual(by_number, ["f3 BAD VANISHED is only allowed in UID FETCH"])
            self.assertEqual(alone, ["f4 BAD VANISHED needs CHANGEDSINCE"])
            self.assertEqual(
                ghost,
                ["* VANISHED (EARLIER) 2,4", flagged, "* VANISHED 3", "f5 OK FETCH completed"],
            )

        return self.in_thread(client).addCallback(check)

    def test_vanished_modifier_needs_qresync(self):
        def client():
            w = self.session(select="INBOX")
            bad = w.cmd("f1", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
            w.close()
            return bad

        def check(bad):
            self.assertEqual(bad, ["f1 BAD QRESYNC is not enabled"])

        return self.in_thread(client).addCallback(check)

    def test_closed_when_select_replaces_a_mailbox(self):
        def client():
            w = self.session()
            first = w.cmd("s1", "SELECT INBOX")
            second = w.cmd("s2", "EXAMINE Sent")
            missing = w.cmd("s3", "SELECT Nowhere")
            w.close()
            return first, second, missing

        def check(result):
            first, second, missing = result
            self.assertNotIn("* OK [CLOSED] Previous mailbox closed", first)
            self.assertEqual(second[0], "* OK [CLOSED] Previous mailbox closed")
            self.assertEqual(
                second[1:], self.select_lines(0, "EXAMINE", "s2", mailbox=self.account().mailbox("Sent"))
            )
            self.assertEqual(
                missing,
                ["* OK [CLOSED] Previous mailbox closed", "s3 NO [NONEXISTENT] Mailbox Nowhere does not exist"],
            )

        return self.in_thread(client).addCallback(check)

    def test_reconnect_after_server_restart(self):
        """The expunge history is on disk: a restarted server still knows it."""
        inbox = self.inbox()
        validity, before = inbox.uidvalidity, inbox.highestmodseq

        def expunge():
            w = self.session(select="INBOX")
            w.cmd("t1", "UID STORE 1,3 +FLAGS.SILENT (\\Deleted)")
            w.cmd("x1", "EXPUNGE")
            w.close()

        def reconnect():
            w = self.session()
            w.cmd("e1", "ENABLE QRESYNC")
            lines = w.cmd("s1", "EXAMINE INBOX (QRESYNC (%d %d 1:5))" % (validity, before))
            w.close()
            return lines

        def restart(_):
            from imapwebpush.store.account import MailStore

            self.store = MailStore(self.store.path)
            self.portal.realm.mail_store = self.store
            return self.in_thread(reconnect)

        def check(lines):
            self.assertEqual(lines, self.select_lines(3, "EXAMINE", rest=["* VANISHED (EARLIER) 1,3"]))

        return self.in_thread(expunge).addCallback(restart).addCallback(check)
