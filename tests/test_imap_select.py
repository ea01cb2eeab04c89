"""SELECT, EXAMINE, \\Recent, CLOSE, UNSELECT, STATUS."""

from imapwebpush.imap.view import SessionView
from tests.harness.imap import MESSAGE, IMAPTestCase, message


class SelectTests(IMAPTestCase):
    def test_select_responses(self):
        inbox = self.inbox()
        inbox.add(MESSAGE, ["\\Seen"])
        inbox.add(message("two"))
        validity, uidnext, highest = inbox.uidvalidity, inbox.uidnext, inbox.highestmodseq

        def client():
            w = self.session()
            lines = w.cmd("s1", "SELECT INBOX")
            w.close()
            return lines

        def check(lines):
            self.assertEqual(
                lines,
                [
                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
                    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted",
                    "* 2 EXISTS",
                    "* 1 RECENT",  # the store files a message added with \\Seen as old
                    "* OK [UNSEEN 2] First unseen",
                    "* OK [UIDVALIDITY %d] UIDs valid" % validity,
                    "* OK [UIDNEXT %d] Predicted next UID" % uidnext,
                    "* OK [HIGHESTMODSEQ %d] Highest mod-sequence" % highest,
                    "s1 OK [READ-WRITE] SELECT completed",
                ],
            )

        return self.in_thread(client).addCallback(check)

    def test_recent_claimed_by_one_session_only(self):
        self.inbox().add(MESSAGE)

        def client():
            a = self.session()
            examine = a.cmd("e1", "EXAMINE INBOX")
            b = self.session()
            first = b.cmd("s1", "SELECT INBOX")
            flags = b.cmd("f1", "FETCH 1 FLAGS")
            second = a.cmd("s2", "SELECT INBOX")
            a.close()
            b.close()
            return examine, first, flags, second

        def check(result):
            examine, first, flags, second = result
            self.assertIn("* 1 RECENT", examine)
            self.assertEqual(examine[-1], "e1 OK [READ-ONLY] EXAMINE completed")
            self.assertIn("* OK [PERMANENTFLAGS ()] Flags permitted", examine)
            self.assertIn("* 1 RECENT", first)  # EXAMINE did not claim it
            self.assertEqual(flags[0], "* 1 FETCH (FLAGS (\\Recent))")
            self.assertIn("* 0 RECENT", second)

        return self.in_thread(client).addCallback(check)

    def test_select_missing_and_state(self):
        def client():
            w = self.session()
            w.cmd("s0", "SELECT INBOX")
            missing = w.cmd("s1", "SELECT Nowhere")
            fetch = w.cmd("f1", "FETCH 1 FLAGS")
            w.close()
            return missing, fetch

        def check(result):
            missing, fetch = result
            self.assertEqual(
                missing,
                [
                    "* OK [CLOSED] Previous mailbox closed",  # RFC 7162 3.2.11
                    "s1 NO [NONEXISTENT] Mailbox Nowhere does not exist",
                ],
            )
            # the failed SELECT left the session in the authenticated state
            self.assertEqual(fetch, ["f1 BAD FETCH is not allowed in this state"])

        return self.in_thread(client).addCallback(check)

    def test_select_failing_half_way_leaves_no_listener(self):
        """A SELECT that fails after its view was made takes the view off the change bus."""
        self.inbox().add(MESSAGE)
        bus = self.account().bus
        before = len(bus.listeners())

        def unreadable(view):
            raise OSError("message file unreadable")

        self.patch(SessionView, "unseen_first", unreadable)

        def client():
            w = self.session()
            lines = w.cmd("s1", "SELECT INBOX")
            fetch = w.cmd("f1", "FETCH 1 FLAGS")
            w.close()
            return lines, fetch

        def check(result):
            lines, fetch = result
            self.assertEqual(lines[-1], "s1 BAD Internal server error")
            self.assertEqual(fetch, ["f1 BAD FETCH is not allowed in this state"])
            self.assertEqual(len(bus.listeners()), before)
            self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

        return self.in_thread(client).addCallback(check)

    def test_close_expunges_silently_unselect_does_not(self):
        inbox = self.inbox()
        inbox.add(message("a"), ["\\Deleted"])
        inbox.add(message("b"))

        def client():
            w = self.session(select="INBOX")
            unselect = w.cmd("u1", "UNSELECT")
            w.cmd("s2", "SELECT INBOX")
            close = w.cmd("c1", "CLOSE")
            status = w.cmd("t1", "STATUS INBOX (MESSAGES)")
            w.close()
            return unselect, close, status

        def check(result):
            unselect, close, status = result
            self.assertEqual(unselect, ["u1 OK UNSELECT completed"])
            self.assertEqual(close, ["c1 OK CLOSE completed"])
            self.assertEqual(status[0], '* STATUS "INBOX" (MESSAGES 1)')

        return self.in_thread(client).addCallback(check)

    def test_examine_close_does_not_expunge(self):
        self.inbox().add(message("a"), ["\\Deleted"])

        def client():
            w = self.session()
            w.cmd("e1", "EXAMINE INBOX")
            w.cmd("c1", "CLOSE")
            status = w.cmd("t1", "STATUS INBOX (MESSAGES)")
            expunge = None
            w.cmd("e2", "EXAMINE INBOX")
            expunge = w.cmd("x1", "EXPUNGE")
            w.close()
            return status, expunge

        def check(result):
            status, expunge = result
            self.assertEqual(status[0], '* STATUS "INBOX" (MESSAGES 1)')
            self.assertEqual(expunge, ["x1 NO [READ-ONLY] The mailbox was opened with EXAMINE"])

        return self.in_thread(client).addCallback(check)

    def test_status_items(self):
        inbox = self.inbox()
        inbox.add(MESSAGE, ["\\Seen"])
        inbox.add(message("x"))
        expected = (
            '* STATUS "INBOX" (MESSAGES 2 RECENT 1 UIDNEXT %d UIDVALIDITY %d UNSEEN 1 HIGHESTMODSEQ %d)'
            % (inbox.uidnext, inbox.uidvalidity, inbox.highestmodseq)
        )

        def client():
            w = self.session()
            lines = w.cmd(
                "t1", "STATUS inbox (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"
            )
            bad = w.cmd("t2", "STATUS INBOX (FOO)")
            missing = w.cmd("t3", "STATUS Nowhere (MESSAGES)")
            w.close()
            return lines, bad, missing

        def check(result):
            lines, bad, missing = result
            self.assertEqual(lines, [expected, "t1 OK STATUS completed"])
            self.assertEqual(bad, ["t2 BAD Unknown STATUS item FOO"])
            self.assertTrue(missing[0].startswith("t3 NO [NONEXISTENT]"))

        return self.in_thread(client).addCallback(check)

    def test_restart_keeps_uids(self):
        inbox = self.inbox()
        inbox.add(message("a"))
        inbox.add(message("b"))

        def first():
            c = self.imaplib()
            c.select("INBOX")
            typ, data = c.uid("SEARCH", None, "ALL")
            c.logout()
            return data[0]

        def second():
            c = self.imaplib()
            c.select("INBOX")
            typ, data = c.uid("SEARCH", None, "ALL")
            typ2, validity = c.status("INBOX", "(UIDVALIDITY)")
            c.logout()
            return data[0], validity[0]

        d = self.in_thread(first)

        def restart(uids_before):
            from imapwebpush.store.account import MailStore

            validity = self.inbox().uidvalidity
            self.store = MailStore(self.store.path)
            self.portal.realm.mail_store = self.store
            return self.in_thread(second).addCallback(lambda r: (uids_before, validity, r))

        def check(result):
            before, validity, (after, status) = result
            self.assertEqual(before, after)
            self.assertEqual(before.split(), [b"1", b"2"])
            self.assertIn(b"UIDVALIDITY %d" % validity, status)

        return d.addCallback(restart).addCallback(check)

    def test_select_condstore_parameter(self):
        inbox = self.inbox()
        inbox.add(MESSAGE, ["\\Seen"])

        def client():
            w = self.session()
            w.cmd("s1", "SELECT INBOX (CONDSTORE)")
            fetch = w.cmd("f1", "FETCH 1 (FLAGS)")
            bad = w.cmd("s2", "SELECT INBOX (FROB)")
            w.close()
            return fetch, bad

        def check(result):
            fetch, bad = result
            self.assertRegex(fetch[0], r"^\* 1 FETCH \(FLAGS \(\\Seen\) MODSEQ \(\d+\)\)$")
            self.assertEqual(bad, ["s2 BAD Unknown SELECT parameter"])

        return self.in_thread(client).addCallback(check)
