"""ENABLE, ID, UNSELECT, bad input: unknown commands, tags, long lines, internal errors."""

from tests.harness.imap import IMAPTestCase, message


class MiscTests(IMAPTestCase):
    def test_enable(self):
        self.inbox().add(message("x"), ["\\Seen"])

        def client():
            w = self.session()
            enable = w.cmd("e1", "ENABLE CONDSTORE X-UNKNOWN")
            unknown = w.cmd("e2", "ENABLE X-UNKNOWN")
            w.cmd("s1", "SELECT INBOX")
            fetch = w.cmd("f1", "FETCH 1 (FLAGS)")
            selected = w.cmd("e3", "ENABLE CONDSTORE")
            w.close()
            return enable, unknown, fetch, selected

        def check(result):
            enable, unknown, fetch, selected = result
            self.assertEqual(enable, ["* ENABLED CONDSTORE", "e1 OK ENABLE completed"])
            self.assertEqual(unknown, ["* ENABLED", "e2 OK ENABLE completed"])
            self.assertRegex(fetch[0], r"^\* 1 FETCH \(FLAGS \(\\Seen\) MODSEQ \(\d+\)\)$")
            self.assertEqual(selected, ["e3 BAD ENABLE is not allowed in this state"])

        return self.in_thread(client).addCallback(check)

    def test_id_and_capability_states(self):
        def client():
            w = self.wire()
            ident = w.cmd("i1", 'ID ("name" "test")')
            nil = w.cmd("i2", "ID NIL")
            w.close()
            return ident, nil

        def check(result):
            ident, nil = result
            self.assertEqual(
                ident, ['* ID ("name" "imapwebpush" "vendor" "imapwebpush")', "i1 OK ID completed"]
            )
            self.assertEqual(nil[-1], "i2 OK ID completed")

        return self.in_thread(client).addCallback(check)

    def test_bad_input(self):
        def client():
            w = self.wire()
            r = {}
            r["unknown"] = w.cmd("b1", "FROBNICATE")
            w.send("\r\n")
            r["empty"] = w.readline()
            r["missing"] = w.cmd("b2", "")
            r["select_unauth"] = w.cmd("b3", "SELECT INBOX")
            r["args"] = w.cmd("b4", "NOOP extra")
            r["quotes"] = w.cmd("b5", 'LOGIN "alice')
            w.login()
            r["no_mailbox"] = w.cmd("b6", "FETCH 1 FLAGS")
            w.send("DONE\r\n")
            r["done"] = w.readline()
            w.send(b"b7 NOOP " + b"x" * 70000 + b"\r\n")
            r["long"] = [w.readline(), w.readline()]
            w.close()
            return r

        def check(r):
            self.assertEqual(r["unknown"], ["b1 BAD Unknown command"])
            self.assertEqual(r["empty"], "* BAD Missing or invalid tag")
            self.assertEqual(r["missing"], ["b2 BAD Missing command"])
            self.assertEqual(r["select_unauth"], ["b3 BAD SELECT is not allowed in this state"])
            self.assertEqual(r["args"], ["b4 BAD Too many arguments"])
            self.assertEqual(r["quotes"], ["b5 BAD Unmatched quotes"])
            self.assertEqual(r["no_mailbox"], ["b6 BAD FETCH is not allowed in this state"])
            self.assertEqual(r["done"], "* BAD DONE without IDLE")
            self.assertEqual(r["long"], ["* BAD [TOOBIG] Line too long", "* BYE Line too long"])

        return self.in_thread(client).addCallback(check)

    def test_internal_error_is_not_a_traceback(self):
        inbox = self.inbox()
        inbox.add(message("x"))

        def broken(*args, **kwargs):
            raise RuntimeError("disk on fire /secret/path")

        self.patch(type(inbox), "set_flags", broken)

        def client():
            w = self.session(select="INBOX")
            store = w.cmd("t1", "STORE 1 +FLAGS (\\Seen)")
            after = w.cmd("n1", "NOOP")
            w.close()
            return store, after

        def check(result):
            store, after = result
            self.assertEqual(store, ["t1 BAD Internal server error"])
            self.assertEqual(after, ["n1 OK NOOP completed"])
            self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

        return self.in_thread(client).addCallback(check)

    def test_logout(self):
        def client():
            c = self.imaplib()
            typ, data = c.logout()
            return typ, data

        def check(result):
            self.assertEqual(result, ("BYE", [b"imapwebpush logging out"]))

        return self.in_thread(client).addCallback(check)
