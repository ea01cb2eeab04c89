"""Sessions seeing each other's changes, IDLE, pipelining, and when EXPUNGE may be told."""

from twisted.internet import reactor, task, threads

from imapwebpush.imap.server import IMAPServer
from tests.harness.imap import IMAPTestCase, message


class TwoSessionTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        inbox = self.inbox()
        for n in range(3):
            inbox.add(message("m%d" % n), ["\\Seen"])

    def two_in_inbox(self):
        """Two logged-in wires, both with INBOX selected (their SELECT answers read)."""
        a, b = self.wire(), self.wire()
        for w in (a, b):
            w.login()
            w.cmd("s1", "SELECT INBOX")
        return a, b

    def test_flags_and_new_mail_from_other_session(self):
        def client():
            a, b = self.two_in_inbox()
            b_store = b.cmd("t1", "STORE 2 +FLAGS (\\Flagged)")
            a_noop = a.cmd("n1", "NOOP")
            b.send(b"a1 APPEND INBOX {%d+}\r\n" % len(message("new")) + message("new") + b"\r\n")
            b.until("a1")
            a_noop2 = a.cmd("n2", "NOOP")
            b_noop = b.cmd("n3", "NOOP")
            a.close()
            b.close()
            return b_store, a_noop, a_noop2, b_noop

        def check(result):
            b_store, a_noop, a_noop2, b_noop = result
            self.assertEqual(b_store, ["* 2 FETCH (FLAGS (\\Flagged \\Seen))", "t1 OK STORE completed"])
            # the other session hears of it at its next command, once
            self.assertEqual(
                a_noop, ["* 2 FETCH (FLAGS (\\Flagged \\Seen) UID 2)", "n1 OK NOOP completed"]
            )
            self.assertEqual(a_noop2, ["* 4 EXISTS", "* 0 RECENT", "n2 OK NOOP completed"])
            self.assertEqual(b_noop, ["n3 OK NOOP completed"])  # not echoed twice

        return self.in_thread(client).addCallback(check)

    def test_expunge_waits_for_allowed_command(self):
        def client():
            a, b = self.two_in_inbox()
            b.cmd("t1", "STORE 2 +FLAGS.SILENT (\\Deleted)")
            b_expunge = b.cmd("x1", "EXPUNGE")
            # session a still numbers 3 messages: FETCH/STORE/SEARCH by number must not
            # shift them, and the message that went away is reported, not renumbered.
            a_fetch = a.cmd("f1", "FETCH 3 (UID)")
            a_search = a.cmd("q1", "SEARCH ALL")
            a_ghost = a.cmd("f2", "FETCH 2 (UID)")
            a_store = a.cmd("t2", "STORE 3 +FLAGS (\\Answered)")
            a_uid = a.cmd("f3", "UID FETCH 3 (FLAGS)")
            a_after = a.cmd("f4", "FETCH 2 (UID)")
            a.close()
            b.close()
            return b_expunge, a_fetch, a_search, a_ghost, a_store, a_uid, a_after

        def check(result):
            b_expunge, a_fetch, a_search, a_ghost, a_store, a_uid, a_after = result
            self.assertEqual(b_expunge, ["* 2 EXPUNGE", "x1 OK EXPUNGE completed"])
            self.assertEqual(a_fetch, ["* 3 FETCH (UID 3)", "f1 OK FETCH completed"])
            self.assertEqual(a_search, ["* SEARCH 1 3", "q1 OK SEARCH completed"])
            # RFC 2180 4.1.2, as Dovecot: the ghost's UID is still known, and that is all asked
            self.assertEqual(a_ghost, ["* 2 FETCH (UID 2)", "f2 OK FETCH completed"])
            self.assertEqual(
                a_store, ["* 3 FETCH (FLAGS (\\Answered \\Seen))", "t2 OK STORE completed"]
            )
            # a UID command may be told of the expunge: it comes before the tagged OK
            self.assertEqual(
                a_uid,
                ["* 3 FETCH (UID 3 FLAGS (\\Answered \\Seen))", "* 2 EXPUNGE", "f3 OK FETCH completed"],
            )
            self.assertEqual(a_after, ["* 2 FETCH (UID 3)", "f4 OK FETCH completed"])

        return self.in_thread(client).addCallback(check)

    def test_fetch_by_number_of_a_ghost_tells_its_uid(self):
        """A message another session expunged, not yet told: FETCH by number gives its UID when
        asked, nothing else of it, and OK [EXPUNGEISSUED] when more was asked (RFC 2180 4.1.2)."""

        def check(result):
            mixed, flags = result
            size1, size3 = self.inbox().message(1).size, self.inbox().message(3).size
            self.assertEqual(
                mixed,
                [
                    "* 1 FETCH (UID 1 RFC822.SIZE %d)" % size1,
                    "* 2 FETCH (UID 2)",
                    "* 3 FETCH (UID 3 RFC822.SIZE %d)" % size3,
                    "f1 OK [EXPUNGEISSUED] Some messages were expunged",
                ],
            )
            self.assertEqual(flags, ["f2 OK [EXPUNGEISSUED] Some messages were expunged"])

        return self.after_other_expunged_2("FETCH 1:3 (UID RFC822.SIZE)", "FETCH 2 (FLAGS)").addCallback(check)

    def test_fetch_announces_a_new_keyword_before_showing_it(self):
        """Another session's STORE brings a keyword into use: this session's next FETCH sends
        the grown FLAGS first, so no FETCH shows a keyword FLAGS has not listed (RFC 3501 7.2.6)."""

        def client():
            a, b = self.two_in_inbox()
            b.cmd("t1", "STORE 2 +FLAGS.SILENT (fresh)")
            fetch = a.cmd("f1", "FETCH 2 (FLAGS)")
            a.close()
            b.close()
            return fetch

        def check(fetch):
            flags = "\\Answered \\Flagged \\Deleted \\Seen \\Draft fresh"
            self.assertEqual(
                fetch,
                [
                    "* FLAGS (%s)" % flags,
                    "* OK [PERMANENTFLAGS (%s \\*)] Flags permitted" % flags,
                    "* 2 FETCH (FLAGS (\\Seen fresh))",
                    "* 2 FETCH (FLAGS (\\Seen fresh) UID 2)",
                    "f1 OK FETCH completed",
                ],
            )

        return self.in_thread(client).addCallback(check)

    def after_other_expunged_2(self, *commands):
        """Deferred [answers of ``commands`` (tags f1, f2, ...)] sent by session a after
        session b expunged message 2, both having INBOX selected."""

        def client():
            a, b = self.two_in_inbox()
            b.cmd("t1", "STORE 2 +FLAGS.SILENT (\\Deleted)")
            b.cmd("x1", "EXPUNGE")
            answers = [a.cmd("f%d" % (i + 1), command) for i, command in enumerate(commands)]
            a.close()
            b.close()
            return answers

        return self.in_thread(client)

    def test_uid_fetch_of_expunged_message(self):
        def check(answers):
            (lines,) = answers
            self.assertEqual(
                lines,
                ["* 3 FETCH (UID 3 FLAGS (\\Seen))", "* 2 EXPUNGE", "f1 OK FETCH completed"],
            )

        return self.after_other_expunged_2("UID FETCH 2:3 (FLAGS)").addCallback(check)

    def test_idle_gets_exists_for_other_sessions_append(self):
        def client():
            a, b = self.two_in_inbox()
            a.send("i1 IDLE\r\n")
            cont = a.readline()
            b.send(b"a1 APPEND INBOX {%d+}\r\n" % len(message("x")) + message("x") + b"\r\n")
            b.until("a1")
            pushed = [a.readline(), a.readline()]
            b.cmd("t1", "UID STORE 1 +FLAGS (\\Flagged)")
            pushed.append(a.readline())
            a.send("NOOP\r\n")
            bad = a.readline()
            b.cmd("t2", "STORE 3 +FLAGS.SILENT (\\Deleted)")
            pushed.append(a.readline())
            b.cmd("x1", "EXPUNGE")
            pushed.append(a.readline())
            a.send("DONE\r\n")
            done = a.until("i1")
            after = a.cmd("n1", "NOOP")
            a.send("DONE\r\n")
            outside = a.readline()
            a.close()
            b.close()
            return cont, pushed, bad, done, after, outside

        def check(result):
            cont, pushed, bad, done, after, outside = result
            self.assertEqual(cont, "+ idling")
            self.assertEqual(
                pushed,
                [
                    "* 4 EXISTS",
                    "* 1 RECENT",  # the idle session told first, so it claimed \\Recent
                    "* 1 FETCH (FLAGS (\\Flagged \\Seen) UID 1)",
                    "* 3 FETCH (FLAGS (\\Deleted \\Seen) UID 3)",
                    "* 3 EXPUNGE",
                ],
            )
            self.assertEqual(bad, "* BAD Expected DONE; still idling")
            self.assertEqual(done, ["i1 OK IDLE terminated"])
            self.assertEqual(after, ["n1 OK NOOP completed"])
            self.assertEqual(outside, "* BAD DONE without IDLE")

        return self.in_thread(client).addCallback(check)

    def test_idle_sees_smtp_delivery(self):
        def client():
            a = self.session(select="INBOX")
            a.send("i1 IDLE\r\n")
            a.readline()
            self.deliver(message("from smtp"))
            pushed = [a.readline(), a.readline()]
            a.send("DONE\r\n")
            a.until("i1")
            fetch = a.cmd("f1", "FETCH 4 (FLAGS)")
            a.close()
            return pushed, fetch

        def check(result):
            pushed, fetch = result
            # delivered to new/: this session claims it as \Recent
            self.assertEqual(pushed, ["* 4 EXISTS", "* 1 RECENT"])
            self.assertEqual(fetch[0], "* 4 FETCH (FLAGS (\\Recent))")

        return self.in_thread(client).addCallback(check)


class DeletedMailboxTests(IMAPTestCase):
    def test_selected_mailbox_deleted_by_other_session(self):
        self.account().create_mailbox("Projects")

        def client():
            a, b = self.wire(), self.wire()
            a.login()
            b.login()
            a.cmd("s1", "SELECT Projects")
            deleted = b.cmd("d1", "DELETE Projects")
            bye = a.readline()
            b.close()
            try:
                rest = a.readline()
            except EOFError:
                rest = None
            a.close()
            return deleted, bye, rest

        def check(result):
            deleted, bye, rest = result
            self.assertEqual(deleted, ["d1 OK DELETE completed"])
            self.assertEqual(bye, "* BYE Selected mailbox was deleted, have to disconnect")
            self.assertIsNone(rest)

        return self.in_thread(client).addCallback(check)


class AutologoutTests(IMAPTestCase):
    def make_factory(self):
        self.clock = task.Clock()
        factory = super().make_factory()
        factory.clock = self.clock
        return factory

    def advance(self, seconds):
        threads.blockingCallFromThread(reactor, self.clock.advance, seconds)

    def test_idle_keeps_session_for_thirty_minutes(self):
        def client():
            w = self.session()
            w.send("i1 IDLE\r\n")
            cont = w.readline()
            self.advance(IMAPServer.POSTAUTH_TIMEOUT - 1)
            w.send("DONE\r\n")
            done = w.until("i1")
            w.send("i2 IDLE\r\n")
            w.readline()
            self.advance(IMAPServer.POSTAUTH_TIMEOUT + 1)
            bye = w.readline()
            w.close()
            return cont, done, bye

        def check(result):
            cont, done, bye = result
            self.assertEqual(cont, "+ idling")
            self.assertEqual(done, ["i1 OK IDLE terminated"])
            self.assertEqual(bye, "* BYE Autologout; connection idle too long")

        return self.in_thread(client).addCallback(check)


class PipelineTests(IMAPTestCase):
    def test_pipelined_commands_answer_in_order(self):
        self.inbox().add(message("p"))

        def client():
            w = self.wire()
            # LOGIN's checker answers later (a Deferred); what follows must wait for it.
            w.send(
                b'p1 LOGIN "alice@example.org" "secret"\r\n'
                b"p2 SELECT INBOX\r\n"
                b"p3 FETCH 1 (FLAGS)\r\n"
                b"p4 STORE 1 +FLAGS (\\Seen)\r\n"
                b"p5 APPEND INBOX {3+}\r\nabc\r\n"
                b"p6 NOOP\r\n"
                b"p7 LOGOUT\r\n"
            )
            lines = w.until("p7")
            w.close()
            return lines

        def check(lines):
            tagged = [line.split(" ")[0] for line in lines if not line.startswith("*")]
            self.assertEqual(tagged, ["p1", "p2", "p3", "p4", "p5", "p6", "p7"])
            self.assertIn("* 1 FETCH (FLAGS (\\Recent))", lines)
            p5 = [l for l in lines if l.startswith("p5 ")][0]
            self.assertIn("[APPENDUID", p5)
            self.assertLess(lines.index("* 2 EXISTS"), lines.index(p5))
            self.assertEqual(lines[-2], "* BYE imapwebpush logging out")

        return self.in_thread(client).addCallback(check)

    def test_pipelining_behind_slow_login(self):
        from twisted.internet import defer

        slow = defer.Deferred()
        real_login = self.portal.login

        def login(*args):
            d = real_login(*args)
            return slow.addCallback(lambda _: d)

        self.portal.login = login

        def client():
            w = self.wire()
            w.send(b'p1 LOGIN "alice@example.org" "secret"\r\np2 CAPABILITY\r\np3 NOOP\r\n')
            reactor.callFromThread(slow.callback, None)
            lines = w.until("p3")
            w.close()
            return lines

        def check(lines):
            tagged = [line.split(" ")[0] for line in lines]
            self.assertEqual(tagged, ["p1", "*", "p2", "p3"])
            self.assertTrue(lines[0].startswith("p1 OK [CAPABILITY"))

        return self.in_thread(client).addCallback(check)

    def test_pipelined_after_streamed_fetch(self):
        inbox = self.inbox()
        for n in range(6):
            inbox.add(b"Subject: %d\r\n\r\n" % n + b"y" * 100000 + b"\r\n", ["\\Seen"])

        def client():
            w = self.session(select="INBOX")
            w.send("f1 FETCH 1:* (BODY.PEEK[])\r\nn1 NOOP\r\nn2 NOOP\r\n")
            lines = w.until("n2")
            w.close()
            return [line for line in lines if line[:2] in ("f1", "n1", "n2")]

        def check(tagged):
            self.assertEqual(
                tagged, ["f1 OK FETCH completed", "n1 OK NOOP completed", "n2 OK NOOP completed"]
            )

        return self.in_thread(client).addCallback(check)
