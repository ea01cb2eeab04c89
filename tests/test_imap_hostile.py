"""Hostile IMAP input: a clear BAD (or the right answer), no traceback, at most one log line.

Each case here once answered ``BAD Internal server error`` and logged a ~100 KB
traceback (or a RecursionError on every FETCH), which let one client flood the log.
"""

import os

from imapwebpush.constants import DEFAULT_MAX_NESTING
from tests.harness.imap import IMAPTestCase, message
from tests.harness.logs import LogWatch


class HostileCase(IMAPTestCase):
    """INBOX with two messages (subjects "Nil desperandum" and "Other"), every log event kept."""

    def setUp(self):
        super().setUp()
        self.log = LogWatch(self)
        self.inbox().add(message("Nil desperandum"), [])
        self.inbox().add(message("Other"), [])

    def answers(self, *commands):
        def client():
            w = self.session(select="INBOX")
            out = [w.cmd("q%d" % i, c) for i, c in enumerate(commands)]
            w.close()
            return out

        return self.in_thread(client)


class HostileSearchTests(HostileCase):
    def test_nil_and_missing_keys(self):
        d = self.answers(
            "SEARCH NIL",
            "SEARCH (NIL)",
            "SEARCH SUBJECT NIL",
            "SEARCH HEADER NIL NIL",
            "SEARCH HEADER Subject NIL",
            "SEARCH UID NIL",
            "SEARCH NOT",
            "SEARCH OR ALL",
            "SEARCH ()",
            "SEARCH LARGER 4294967296",
            "SEARCH UID 4294967296",
            "SEARCH 4294967296",
        )

        def check(results):
            self.assertEqual(
                results,
                [
                    ["q0 BAD Unknown search key NIL"],
                    ["q1 BAD Unknown search key NIL"],
                    ["* SEARCH 1", "q2 OK SEARCH completed"],
                    ["* SEARCH", "q3 OK SEARCH completed"],
                    ["* SEARCH 1", "q4 OK SEARCH completed"],
                    ["q5 BAD bad sequence set 'NIL'"],
                    ["q6 BAD Missing search key after NOT"],
                    ["q7 BAD Missing search key after OR"],
                    ["q8 BAD Missing search criteria"],
                    ["q9 BAD Expected a number after LARGER"],
                    ["q10 BAD bad sequence set '4294967296'"],
                    ["q11 BAD bad sequence set '4294967296'"],
                ],
            )
            self.assertEqual(self.log.failures(), [])
            self.assertEqual(self.log.errors(), [])

        return d.addCallback(check)

    def test_deep_nesting(self):
        deep = "(" * 400 + "ALL" + ")" * 400
        nots = "NOT " * 5000 + "ALL"
        ors = "OR ALL " * 3000 + "ALL"
        limit = "(" * DEFAULT_MAX_NESTING + "ALL" + ")" * DEFAULT_MAX_NESTING
        d = self.answers(
            "SEARCH " + deep,
            "SEARCH " + nots,
            "SEARCH " + ors,
            "SEARCH " + limit,
            "SEARCH " + "NOT " * (DEFAULT_MAX_NESTING - 1) + "NOT ALL",
            "STATUS INBOX " + "(" * 2000 + "MESSAGES" + ")" * 2000,
            "NOOP",
        )

        def check(results):
            too_deep = "BAD Nested too deeply (more than %d levels)" % (DEFAULT_MAX_NESTING,)
            self.assertEqual(
                results,
                [
                    ["q0 " + too_deep],
                    ["q1 " + too_deep],
                    ["q2 " + too_deep],
                    ["* SEARCH 1 2", "q3 OK SEARCH completed"],
                    ["* SEARCH 1 2", "q4 OK SEARCH completed"],  # 64 NOTs: ALL
                    ["q5 " + too_deep],
                    ["q6 OK NOOP completed"],
                ],
            )
            self.assertEqual(self.log.failures(), [])
            self.assertEqual(self.log.errors(), [])

        return d.addCallback(check)


class SearchCostTests(HostileCase):
    """A SEARCH runs every key on every message: the number of keys is capped, and a long
    sequence set is looked up by bisection, not tried range by range."""

    def test_many_keys(self):
        odd = ",".join(str(n) for n in range(1, 20000, 2))
        d = self.answers(
            "SEARCH " + "ALL " * 1000,
            "SEARCH " + "ALL " * 1001,
            "SEARCH " + odd,
            "SEARCH UID " + odd,
            "SEARCH NOT UID " + odd,
        )

        def check(results):
            self.assertEqual(
                results,
                [
                    ["* SEARCH 1 2", "q0 OK SEARCH completed"],
                    ["q1 BAD Too many search keys (more than 1000)"],
                    ["* SEARCH 1", "q2 OK SEARCH completed"],
                    ["* SEARCH 1", "q3 OK SEARCH completed"],
                    ["* SEARCH 2", "q4 OK SEARCH completed"],
                ],
            )

        return d.addCallback(check)


class ListSizeTests(HostileCase):
    """Lists whose every element costs server time are capped (each cap a BAD)."""

    def test_caps(self):
        d = self.answers(
            "STORE 1 FLAGS (" + "k " * 257 + ")",
            "STORE 1 FLAGS (" + " ".join("k%d" % n for n in range(256)) + ")",
            "APPEND INBOX (" + "\\Seen " * 257 + ") {1+}\r\nx",
            "FETCH 1 (" + "FLAGS " * 300 + ")",
            "FETCH 1 BODY.PEEK[HEADER.FIELDS (" + "A " * 300 + ")]",
            "FETCH 1 (" + "FLAGS " * 299 + "UID)",
            "STATUS INBOX (" + "MESSAGES " * 33 + ")",
        )

        def check(results):
            self.assertEqual(results[0], ["q0 BAD Too many flags (more than 256)"])
            self.assertEqual(results[1][-1], "q1 OK STORE completed")
            self.assertEqual(results[2], ["q2 BAD Too many flags (more than 256)"])
            self.assertEqual(results[3], ["q3 BAD Too many FETCH attributes (more than 300 words)"])
            self.assertEqual(results[4], ["q4 BAD Too many FETCH attributes (more than 300 words)"])
            self.assertEqual(results[5][-1], "q5 OK FETCH completed")
            self.assertEqual(results[6], ["q6 BAD Too many STATUS items (more than 32)"])

        return d.addCallback(check)


class NumbersAbove32BitTests(HostileCase):
    """RFC 3501 9: sequence numbers, UIDs and other numbers are 32-bit; larger ones are BAD."""

    def test_numbers(self):
        d = self.answers(
            "FETCH 4294967296 FLAGS",
            "UID FETCH 1:4294967296 FLAGS",
            "COPY 4294967296 INBOX",
            "UID EXPUNGE 4294967296",
            "STORE 4294967296 +FLAGS (\\Seen)",
            "FETCH 1 BODY.PEEK[]<4294967296.1>",
            "FETCH 1 BODY.PEEK[]<0.4294967296>",
            "FETCH 4294967295 FLAGS",
        )

        def check(results):
            self.assertEqual(
                results,
                [
                    ["q0 BAD bad sequence set '4294967296'"],
                    ["q1 BAD bad sequence set '1:4294967296'"],
                    ["q2 BAD bad sequence set '4294967296'"],
                    ["q3 BAD bad sequence set '4294967296'"],
                    ["q4 BAD bad sequence set '4294967296'"],
                    ["q5 BAD partial offsets are 32-bit numbers"],
                    ["q6 BAD partial offsets are 32-bit numbers"],
                    ["q7 BAD no message has sequence number 4294967295"],
                ],
            )

        return d.addCallback(check)


class DeepMimeTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        self.log = LogWatch(self)
        depth = 3000
        head = b"From: a@example.org\r\nSubject: deep\r\n"
        parts = []
        for n in range(depth):
            parts.append(b'Content-Type: multipart/mixed; boundary="b%dz"\r\n\r\n--b%dz\r\n' % (n, n))
        body = b"".join(parts) + b"Content-Type: text/plain\r\n\r\nleaf\r\n"
        for n in reversed(range(depth)):
            body += b"--b%dz--\r\n" % (n,)
        self.inbox().add(head + body, [])

    def test_bodystructure_of_deep_mime(self):
        def client():
            w = self.session(select="INBOX")
            out = [w.cmd("f%d" % i, "FETCH 1 (BODYSTRUCTURE BODY)") for i in range(3)]
            w.close()
            return out

        def check(results):
            for i, lines in enumerate(results):
                self.assertEqual(lines[-1], "f%d OK FETCH completed" % (i,))
                self.assertTrue(lines[0].startswith("* 1 FETCH (BODYSTRUCTURE (" + "(" * 40), lines[0][:200])
                # a part deeper than the limit is an opaque leaf, not a RecursionError
                self.assertIn('"APPLICATION" "OCTET-STREAM"', lines[0])
            self.assertEqual(self.log.failures(), [])
            self.assertLessEqual(len(self.log.errors()), 0)

        return self.in_thread(client).addCallback(check)


class UnexpectedErrorTests(IMAPTestCase):
    """A bug in a handler: BAD with a short reason; one traceback per type and session, then a line."""

    def setUp(self):
        super().setUp()
        self.log = LogWatch(self)

        def broken(server, tag):
            raise ZeroDivisionError("x" * 1000)

        self.factory.protocol = type("Broken", (self.factory.protocol,), {"auth_XBROKEN": (broken,)})

    def test_bad_and_one_line(self):
        def client():
            w = self.session()
            out = [w.cmd("b%d" % i, "XBROKEN") for i in range(5)]
            out.append(w.cmd("n", "NOOP"))
            w.close()
            return out

        def check(results):
            self.assertEqual(
                results,
                [["b%d BAD Internal server error" % i] for i in range(5)]
                + [["n OK NOOP completed"]],
            )
            failures = self.log.failures()
            self.assertEqual(len(failures), 1)
            self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
            lines = [e for e in self.log.errors() if "log_failure" not in e]
            self.assertEqual(len(lines), 4)
            for event in lines:
                from twisted.logger import formatEvent

                text = formatEvent(event)
                self.assertLess(len(text), 300, text)
                self.assertNotIn("\n", text)

        return self.in_thread(client).addCallback(check)


def _spool_files(spool):
    """Open files of this process under ``spool`` (unnamed ones show as '#N (deleted)')."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if target.startswith(spool + os.sep):
            found.append(target)
    return found


class LiteralSpoolTests(IMAPTestCase):
    """An APPEND literal is written to the spool folder as it arrives, not held in memory."""

    def make_factory(self):
        self.spool = os.path.abspath(self.mktemp())
        os.mkdir(self.spool)
        factory = super().make_factory()
        factory.spool_dir = self.spool
        return factory

    def test_unfinished_literal_is_on_disk(self):
        size = 3 * 1024 * 1024
        body = b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * (size // 80)
        body += b"y" * (size - len(body))

        def client():
            w = self.session()
            w.send("a1 APPEND INBOX {%d}\r\n" % (size,))
            cont = w.readline()
            w.send(body[: size // 2])
            # the server has read half the literal: it must be in a spool file
            import time

            deadline = time.time() + 5
            files = []
            while time.time() < deadline and not files:
                files = _spool_files(self.spool)
                time.sleep(0.02)
            w.send(body[size // 2 :] + b"\r\n")
            done = w.until("a1")
            fetched = w.cmd("f1", "SELECT INBOX")
            w.send("f2 FETCH 1 RFC822.SIZE\r\n")
            sizes = w.until("f2")
            w.close()
            return cont, files, done, sizes

        def check(result):
            cont, files, done, sizes = result
            self.assertEqual(cont, "+ Ready for literal data")
            self.assertEqual(len(files), 1, files)
            self.assertTrue(done[-1].startswith("a1 OK [APPENDUID "), done)
            self.assertEqual(sizes, ["* 1 FETCH (RFC822.SIZE %d)" % (size,), "f2 OK FETCH completed"])
            self.assertEqual(_spool_files(self.spool), [])  # closed once stored
            self.assertEqual(self.inbox().message(1).read(), body)

        return self.in_thread(client).addCallback(check)
