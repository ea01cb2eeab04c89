"""SEARCH and UID SEARCH: flags, headers, dates, sizes, sets, OR/NOT, MODSEQ, bad keys."""

from twisted.trial import unittest

from imapwebpush import wire
from imapwebpush.imap.search import SearchItem, compile_search
from tests.harness.imap import IMAPTestCase, message


class SearchTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        inbox = self.inbox()
        inbox.add(message("Invoice 42", b"Pay me.\r\n"), ["\\Seen"], internaldate=1700000000)
        inbox.add(message("Lunch?", b"Pizza at noon\r\n"), ["\\Flagged"], internaldate=1710000000)
        inbox.add(message("Meeting", b"Agenda\r\n"))
        inbox.set_flags([3], ["$Important"], "add")

    def search(self, *criteria, uid=False):
        def client():
            w = self.session(select="INBOX")
            out = [w.cmd("q%d" % i, ("UID SEARCH " if uid else "SEARCH ") + c) for i, c in enumerate(criteria)]
            w.close()
            return out

        return self.in_thread(client)

    def test_keys(self):
        criteria = [
            "ALL",
            "SEEN",
            "UNSEEN",
            "FLAGGED UNSEEN",
            "SUBJECT invoice",
            'SUBJECT "lunch?"',
            "BODY pizza",
            "TEXT carol",
            "FROM carol@example.net",
            "HEADER To alice",
            "KEYWORD $Important",
            "UNKEYWORD $Important",
            "OR SEEN FLAGGED",
            "NOT SEEN",
            "(SEEN) (ALL)",
            "2:*",
            "UID 1,3",
            "BEFORE 1-Jan-2024",
            "SINCE 1-Mar-2024",
            "ON 14-Nov-2023",
            "LARGER 1",
            "SMALLER 5",
            "RECENT",
            "NEW",
            "CHARSET UTF-8 SUBJECT meeting",
        ]

        def check(results):
            answers = [r[0] for r in results]
            self.assertEqual(
                answers,
                [
                    "* SEARCH 1 2 3",
                    "* SEARCH 1",
                    "* SEARCH 2 3",
                    "* SEARCH 2",
                    "* SEARCH 1",
                    "* SEARCH 2",
                    "* SEARCH 2",
                    "* SEARCH 1 2 3",
                    "* SEARCH 1 2 3",
                    "* SEARCH 1 2 3",
                    "* SEARCH 3",
                    "* SEARCH 1 2",
                    "* SEARCH 1 2",
                    "* SEARCH 2 3",
                    "* SEARCH 1",
                    "* SEARCH 2 3",
                    "* SEARCH 1 3",
                    "* SEARCH 1",
                    "* SEARCH 2 3",
                    "* SEARCH 1",
                    "* SEARCH 1 2 3",
                    "* SEARCH",
                    "* SEARCH 3",
                    "* SEARCH 3",
                    "* SEARCH 3",
                ],
            )
            for r in results:
                self.assertTrue(r[-1].endswith("OK SEARCH completed"), r)

        return self.search(*criteria).addCallback(check)

    def test_empty_string_needs_the_field(self):
        """SUBJECT/FROM/TO/CC/BCC "" find the messages that have the field, as Dovecot."""
        self.inbox().add(b"From: dave@example.net\r\nCc: Eve <eve@example.net>\r\n\r\nno subject\r\n")

        def check(results):
            self.assertEqual(
                [r[0] for r in results],
                ["* SEARCH 1 2 3", "* SEARCH 4", "* SEARCH 4", "* SEARCH", "* SEARCH 1 2 3 4", "* SEARCH 4"],
            )

        return self.search('SUBJECT ""', 'CC ""', 'NOT TO ""', 'BCC ""', 'FROM ""', "CC eve").addCallback(check)

    def test_uid_search_after_expunge(self):
        self.inbox().set_flags([1], ["\\Deleted"], "add")
        self.inbox().expunge()

        def check(results):
            self.assertEqual([r[0] for r in results], ["* SEARCH 2 3", "* SEARCH 3"])

        return self.search("ALL", "2", uid=True).addCallback(check)

    def test_modseq_search(self):
        inbox = self.inbox()
        inbox.set_flags([2], ["\\Answered"], "add")
        modseq = inbox.message(2).modseq

        def check(results):
            self.assertEqual(results[0][0], "* OK [HIGHESTMODSEQ %d] Highest mod-sequence" % inbox.highestmodseq)
            self.assertEqual(results[0][1], "* SEARCH 2 (MODSEQ %d)" % modseq)

        return self.search("MODSEQ %d" % modseq).addCallback(check)

    def test_bad_searches(self):
        def check(results):
            self.assertEqual(results[0], ["q0 BAD Unknown search key FROBNICATE"])
            self.assertEqual(results[1], ["q1 BAD Missing argument for SUBJECT"])
            self.assertEqual(results[2], ["q2 BAD Bad date: someday"])
            self.assertEqual(
                results[3], ["q3 NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"]
            )
            self.assertEqual(results[4], ["q4 BAD Bad date: 31-Feb-2020"])  # not 2-Mar-2020
            # a codec that is no text encoding is no charset either
            self.assertEqual(results[5], ["q5 NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"])

        return self.search(
            "FROBNICATE", "SUBJECT", "SINCE someday", "CHARSET X-NOSUCH ALL", "BEFORE 31-Feb-2020", "CHARSET BASE64 ALL"
        ).addCallback(check)

    def test_codecs_that_are_no_mail_charset(self):
        """Python text codecs that are no charset of mail (IDNA, punycode, "undefined")
        raise on decoding whatever the error handler: BADCHARSET, not an internal error."""
        def check(results):
            for i, _ in enumerate(results):
                self.assertEqual(results[i], ["q%d NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset" % i])

        return self.search(
            "CHARSET IDNA BODY x", "CHARSET PUNYCODE TEXT x", "CHARSET UNDEFINED SUBJECT x"
        ).addCallback(check)

    def test_literal_criteria(self):
        self.inbox().add(b"Subject: " + "Caf\u00e9 cr\u00e8me".encode("utf-8") + b"\r\n\r\nx\r\n")
        word = "cr\u00e8me".encode("utf-8")

        def client():
            w = self.session(select="INBOX")
            w.send(b"q1 SEARCH CHARSET UTF-8 SUBJECT {%d}\r\n" % len(word))
            cont = w.readline()
            w.send(word + b" UNSEEN\r\n")
            sync = w.until("q1")
            w.send(b"q2 SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n" % len(word) + word + b"\r\n")
            nonsync = w.until("q2")
            latin1 = "cr\u00e8me".encode("latin-1")  # the same word in another charset (as Dovecot)
            w.send(b"q3 SEARCH CHARSET ISO-8859-1 SUBJECT {%d+}\r\n" % len(latin1) + latin1 + b"\r\n")
            other = w.until("q3")
            w.close()
            return cont, sync, nonsync, other

        def check(result):
            cont, sync, nonsync, other = result
            self.assertTrue(cont.startswith("+ "))
            self.assertEqual(sync, ["* SEARCH 4", "q1 OK SEARCH completed"])
            self.assertEqual(nonsync, ["* SEARCH 4", "q2 OK SEARCH completed"])
            self.assertEqual(other, ["* SEARCH 4", "q3 OK SEARCH completed"])

        return self.in_thread(client).addCallback(check)


class _Stored:
    """What the search compiler reads of a stored message."""

    def __init__(self, raw, flags=(), size=None, modseq=1, internaldate=1700000000):
        self.raw = raw
        self.flags = frozenset(flags)
        self.size = len(raw) if size is None else size
        self.modseq = modseq
        self.internaldate = internaldate

    def headers(self):
        return self.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"

    def read(self):
        return self.raw


class CompileSearchTests(unittest.TestCase):
    """imap/search.py on its own: criteria tokens in, a predicate over SearchItems out."""

    def setUp(self):
        self.messages = [  # (uid, stored, recent)
            (3, _Stored(message("Invoice 42", b"Pay me.\r\n"), ["\\Seen"], modseq=5), False),
            (7, _Stored(message("Lunch?", b"Pizza at noon\r\n"), ["\\Flagged", "$Food"], modseq=9), True),
            (9, _Stored(b"Subject: =?utf-8?q?K=C3=A4se?=\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nx",
                        internaldate=0), True),
        ]

    def matching(self, *tokens):
        query = compile_search(list(tokens), [uid for uid, _, _ in self.messages])
        return [
            uid
            for seq, (uid, stored, recent) in enumerate(self.messages, 1)
            if query.predicate(SearchItem(seq, uid, stored, recent))
        ]

    def test_flags_and_recent(self):
        self.assertEqual(self.matching(b"SEEN"), [3])
        self.assertEqual(self.matching(b"unseen"), [7, 9])
        self.assertEqual(self.matching(b"NEW"), [7, 9])
        self.assertEqual(self.matching(b"OLD"), [3])
        self.assertEqual(self.matching(b"KEYWORD", b"$food"), [7])
        self.assertEqual(self.matching(b"UNKEYWORD", b"$Food"), [3, 9])

    def test_headers_text_and_decoded_words(self):
        self.assertEqual(self.matching(b"SUBJECT", b"lunch"), [7])
        self.assertEqual(self.matching(b"SUBJECT", "käse".encode()), [9])
        self.assertEqual(self.matching(b"HEADER", b"Subject", b""), [3, 7, 9])
        self.assertEqual(self.matching(b"BODY", b"pizza"), [7])
        self.assertEqual(self.matching(b"TEXT", b"invoice"), [3])

    def test_sets_dates_sizes_and_logic(self):
        self.assertEqual(self.matching(b"2:*"), [7, 9])
        self.assertEqual(self.matching(b"UID", b"*"), [9])
        self.assertEqual(self.matching(b"UID", b"1:7"), [3, 7])
        self.assertEqual(self.matching(b"SENTON", b"7-Feb-1994"), [9])
        self.assertEqual(self.matching(b"BEFORE", b"1-Jan-1971"), [9])
        self.assertEqual(self.matching(b"LARGER", b"73", b"SMALLER", b"90"), [3])
        self.assertEqual(self.matching(b"OR", b"SEEN", [b"FLAGGED", b"RECENT"]), [3, 7])
        self.assertEqual(self.matching(b"NOT", b"1"), [7, 9])

    def test_modseq_is_reported(self):
        query = compile_search([b"MODSEQ", b"6"], [3, 7, 9])
        self.assertTrue(query.uses_modseq)
        self.assertFalse(compile_search([b"ALL"], []).uses_modseq)
        self.assertEqual(self.matching(b"MODSEQ", b'"/flags/\\\\seen"', b"all", b"6"), [7])

    def test_bad_criteria(self):
        for tokens, text in [
            ([b"FROB"], "Unknown search key FROB"),
            ([b"SUBJECT"], "Missing argument for SUBJECT"),
            ([b"LARGER", b"x"], "Expected a number after LARGER"),
            ([b"ON", b"someday"], "Bad date: someday"),
            ([b"UID", b"0"], "bad sequence set '0'"),
            ([b"MODSEQ", b"x", b"y", b"z"], "Expected a mod-sequence"),
        ]:
            e = self.assertRaises(wire.ParseError, compile_search, tokens, [1])
            self.assertEqual(str(e), text)
