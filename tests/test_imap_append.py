"""APPEND: APPENDUID, TRYCREATE, flags and dates, LITERAL+, literal size limits."""

from tests.harness.imap import MESSAGE, IMAPTestCase


class AppendTests(IMAPTestCase):
    def test_append_appenduid_and_exists(self):
        validity = self.inbox().uidvalidity

        def client():
            w = self.session(select="INBOX")
            w.send('a1 APPEND INBOX (\\Seen $Label) "05-Nov-2026 10:11:12 +0100" {%d}\r\n' % len(MESSAGE))
            cont = w.readline()
            w.send(MESSAGE + b"\r\n")
            lines = w.until("a1")
            w.close()
            return cont, lines

        def check(result):
            cont, lines = result
            self.assertTrue(cont.startswith("+ "))
            self.assertEqual(
                lines,
                [
                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label)",
                    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label \\*)] Flags permitted",
                    "* 1 EXISTS",
                    "* 1 RECENT",  # APPEND sets \\Recent whatever the flags (RFC 3501 6.3.11)
                    "a1 OK [APPENDUID %d 1] APPEND completed" % validity,
                ],
            )
            stored = self.inbox().message(1)
            self.assertEqual(stored.read(), MESSAGE)
            self.assertEqual(stored.flags, frozenset(["\\Seen", "$Label"]))
            self.assertEqual(stored.internaldate, 1793869872)

        return self.in_thread(client).addCallback(check)

    def test_append_literal_plus(self):
        def client():
            w = self.session()
            w.send(b"a1 APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
            lines = w.until("a1")
            w.close()
            return lines

        def check(lines):
            self.assertRegex(lines[-1], r"^a1 OK \[APPENDUID \d+ 1\] APPEND completed$")
            self.assertEqual(self.inbox().uids(), [1])

        return self.in_thread(client).addCallback(check)

    def test_append_to_missing_mailbox_trycreate(self):
        def client():
            c = self.imaplib()
            result = c.append("Nowhere", None, None, MESSAGE)
            c.logout()
            w = self.session()
            w.send(b"a1 APPEND Nowhere {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
            lines = w.until("a1")
            after = w.cmd("a2", "NOOP")
            w.close()
            return result, lines, after

        def check(result):
            (typ, data), lines, after = result
            self.assertEqual(typ, "NO")
            self.assertEqual(data, [b"[TRYCREATE] No such mailbox"])
            self.assertEqual(lines, ["a1 NO [TRYCREATE] No such mailbox"])
            self.assertEqual(after, ["a2 OK NOOP completed"])

        return self.in_thread(client).addCallback(check)

    def test_too_large_literal(self):
        self.factory.max_message_size = 100
        big = b"x" * 200

        def client():
            w = self.session()
            sync = w.cmd("a1", "APPEND INBOX {200}")
            w.send(b"a2 APPEND INBOX {200+}\r\n" + big + b"\r\n")
            nonsync = w.until("a2")
            noop = w.cmd("a3", "NOOP")
            w.close()
            return sync, nonsync, noop

        def check(result):
            sync, nonsync, noop = result
            self.assertEqual(sync, ["a1 NO [TOOBIG] Literal of 200 octets is over the limit of 100"])
            self.assertEqual(nonsync, ["a2 NO [TOOBIG] Literal of 200 octets is over the limit of 100"])
            self.assertEqual(noop, ["a3 OK NOOP completed"])
            self.assertEqual(self.inbox().uids(), [])

        return self.in_thread(client).addCallback(check)

    def test_bad_append_arguments(self):
        def client2():
            w = self.session()
            w.send("a1 APPEND INBOX (\\Bogus) {5+}\r\nhello\r\n")
            flag = w.until("a1")
            w.send('a2 APPEND INBOX "yesterday" {5+}\r\nhello\r\n')
            date = w.until("a2")
            w.send('a3 APPEND INBOX "31-Feb-2020 10:00:00 +0000" {5+}\r\nhello\r\n')
            no_day = w.until("a3")
            w.close()
            return flag, date, no_day

        def check2(result):
            flag, date, no_day = result
            self.assertEqual(flag, ["a1 BAD Unknown system flag \\Bogus"])
            self.assertTrue(date[0].startswith("a2 BAD Bad date"), date)
            self.assertEqual(no_day, ["a3 BAD Bad date: 31-Feb-2020"])
            self.assertEqual(self.inbox().uids(), [])

        d = self.in_thread(client2)
        d.addCallback(check2)
        return d
