"""STORE (with .SILENT, UNCHANGEDSINCE), EXPUNGE and UID EXPUNGE."""

from tests.harness.imap import ExpungedElsewhereCase, IMAPTestCase, message


class StoreTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        inbox = self.inbox()
        for n in range(3):
            inbox.add(message("m%d" % n), ["\\Seen"])

    def test_store_modes(self):
        def client():
            w = self.session(select="INBOX")
            add = w.cmd("t1", "STORE 1:2 +FLAGS (\\Flagged)")
            remove = w.cmd("t2", "STORE 2 -FLAGS \\Seen")
            replace = w.cmd("t3", "UID STORE 3 FLAGS (\\Answered $Work)")
            silent = w.cmd("t4", "STORE 1 +FLAGS.SILENT (\\Draft)")
            recent = w.cmd("t5", "STORE 1 +FLAGS (\\Recent)")
            bad = w.cmd("t6", "STORE 1 XFLAGS (\\Seen)")
            w.close()
            return add, remove, replace, silent, recent, bad

        def check(result):
            add, remove, replace, silent, recent, bad = result
            self.assertEqual(
                add,
                [
                    "* 1 FETCH (FLAGS (\\Flagged \\Seen))",
                    "* 2 FETCH (FLAGS (\\Flagged \\Seen))",
                    "t1 OK STORE completed",
                ],
            )
            self.assertEqual(remove, ["* 2 FETCH (FLAGS (\\Flagged))", "t2 OK STORE completed"])
            self.assertEqual(
                replace,
                [
                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
                    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] Flags permitted",
                    "* 3 FETCH (FLAGS ($Work \\Answered) UID 3)",
                    "t3 OK STORE completed",
                ],
            )
            self.assertEqual(silent, ["t4 OK STORE completed"])
            self.assertEqual(recent, ["* 1 FETCH (FLAGS (\\Draft \\Flagged \\Seen))", "t5 OK STORE completed"])
            self.assertEqual(bad, ["t6 BAD Expected FLAGS, +FLAGS or -FLAGS"])
            self.assertEqual(
                self.inbox().message(1).flags, frozenset(["\\Seen", "\\Flagged", "\\Draft"])
            )

        return self.in_thread(client).addCallback(check)

    def test_unchangedsince(self):
        inbox = self.inbox()
        modseq1 = inbox.message(1).modseq
        inbox.set_flags([2], ["\\Flagged"], "add")
        modseq2 = inbox.highestmodseq

        def client():
            w = self.session(select="INBOX")
            lines = w.cmd("t1", "STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)" % modseq1)
            w.close()
            return lines

        def check(lines):
            self.assertEqual(len(lines), 3, lines)
            self.assertEqual(lines[0], "* OK [HIGHESTMODSEQ %d] Highest mod-sequence" % modseq2)
            self.assertRegex(lines[1], r"^\* 1 FETCH \(MODSEQ \(\d+\)\)$")
            self.assertEqual(lines[2], "t1 OK [MODIFIED 2] Conditional STORE failed")
            self.assertIn("\\Deleted", self.inbox().message(1).flags)
            self.assertNotIn("\\Deleted", self.inbox().message(2).flags)

        return self.in_thread(client).addCallback(check)

    def test_expunge_and_uid_expunge(self):
        def client():
            w = self.session(select="INBOX")
            w.cmd("t1", "STORE 1:3 +FLAGS.SILENT (\\Deleted)")
            uid_expunge = w.cmd("x1", "UID EXPUNGE 2")
            expunge = w.cmd("x2", "EXPUNGE")
            w.close()
            return uid_expunge, expunge

        def check(result):
            uid_expunge, expunge = result
            self.assertEqual(uid_expunge, ["* 2 EXPUNGE", "x1 OK EXPUNGE completed"])
            self.assertEqual(expunge, ["* 2 EXPUNGE", "* 1 EXPUNGE", "x2 OK EXPUNGE completed"])
            self.assertEqual(self.inbox().uids(), [])

        return self.in_thread(client).addCallback(check)

    def test_imaplib_store_and_expunge(self):
        def client():
            c = self.imaplib()
            c.select("INBOX")
            c.store("2", "+FLAGS", "\\Deleted")
            typ, data = c.expunge()
            c.logout()
            return typ, data

        def check(result):
            typ, data = result
            self.assertEqual(typ, "OK")
            self.assertEqual(data, [b"2"])
            self.assertEqual(self.inbox().uids(), [1, 3])

        return self.in_thread(client).addCallback(check)


class ExpungedByOtherSessionTests(ExpungedElsewhereCase):
    """RFC 2180 4.2.1: STORE naming a message another session expunged."""

    def test_store_by_number_changes_the_live_messages(self):
        """RFC 2180 4.2.1, as Dovecot: the live messages change, the expunged one is
        skipped, the answer is OK; no flag change is lost."""

        def client():
            a = self.session(select="INBOX")
            a.cmd("t0", "STORE 1:3 -FLAGS.SILENT (\\Seen)")
            self.expunge_2_elsewhere()
            store = a.cmd("t1", "STORE 1,2 +FLAGS (\\Seen)")
            silent = a.cmd("t2", "STORE 2 FLAGS.SILENT ()")
            ok = a.cmd("t3", "STORE 2:3 +FLAGS (\\Answered)")
            noop = a.cmd("n1", "NOOP")
            after = a.cmd("t4", "STORE 2 +FLAGS (\\Flagged)")
            a.close()
            return store, silent, ok, noop, after

        def check(result):
            store, silent, ok, noop, after = result
            self.assertEqual(store, ["* 1 FETCH (FLAGS (\\Seen))", "t1 OK STORE completed"])
            self.assertEqual(silent, ["t2 OK STORE completed"])
            self.assertEqual(ok, ["* 3 FETCH (FLAGS (\\Answered))", "t3 OK STORE completed"])
            self.assertEqual(noop, ["* 2 EXPUNGE", "n1 OK NOOP completed"])
            self.assertEqual(after, ["* 2 FETCH (FLAGS (\\Answered \\Flagged))", "t4 OK STORE completed"])
            inbox = self.inbox()
            self.assertEqual(inbox.uids(), [1, 3])
            self.assertEqual(inbox.message(1).flags, frozenset(["\\Seen"]))
            self.assertEqual(inbox.message(3).flags, frozenset(["\\Answered", "\\Flagged"]))

        return self.in_thread(client).addCallback(check)

    def test_uid_store_skips_it_and_tells_the_expunge(self):
        def client():
            a = self.session(select="INBOX")
            self.expunge_2_elsewhere()
            lines = a.cmd("t1", "UID STORE 1:3 +FLAGS (\\Flagged)")
            a.close()
            return lines

        def check(lines):
            self.assertEqual(
                lines,
                [
                    "* 1 FETCH (FLAGS (\\Flagged \\Seen) UID 1)",
                    "* 3 FETCH (FLAGS (\\Flagged \\Seen) UID 3)",
                    "* 2 EXPUNGE",
                    "t1 OK STORE completed",
                ],
            )
            self.assertEqual(self.inbox().message(3).flags, frozenset(["\\Seen", "\\Flagged"]))

        return self.in_thread(client).addCallback(check)
