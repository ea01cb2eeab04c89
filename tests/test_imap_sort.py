"""SORT and UID SORT (RFC 5256) on the wire, after the RFC's examples; base subjects."""

from twisted.trial import unittest

from imapwebpush.imap import search_scan, sort_command
from imapwebpush.imap.sort import base_subject
from tests.harness.imap import IMAPTestCase

# (subject, sent date, from, to, cc, internaldate offset, body length)
MESSAGES = [
    ("Re: bar", "Sat, 2 Jan 2021 10:00:00 +0000", "Zed <zed@example.org>", "b@x.org", "", 5, 40),
    ("bar", "Fri, 1 Jan 2021 10:00:00 +0000", "amy@example.org", "c@x.org", "Yan <y@x.org>", 4, 10),
    ("[list] Apple (fwd)", "Sun, 3 Jan 2021 10:00:00 +0000", "Bob <BOB@example.org>", "a@x.org", "", 3, 30),
    ("Fwd: apple", "Fri, 1 Jan 2021 09:00:00 -0300", "carl@example.org", "", "x@x.org", 2, 20),
    ("[fwd: apple]", "Tue, 5 Jan 2021 10:00:00 +0000", "dan@example.org", "=?utf-8?q?Ann?= <a@x.org>", "", 1, 50),
]


def raw(subject, date, sender, to, cc, body_length):
    lines = ["From: " + sender, "Subject: " + subject, "Date: " + date]
    if to:
        lines.append("To: " + to)
    if cc:
        lines.append("Cc: " + cc)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b"x" * (100 * body_length) + b"\r\n"


def add_messages(inbox):
    for subject, date, sender, to, cc, arrival, length in MESSAGES:
        inbox.add(raw(subject, date, sender, to, cc, length), ["\\Seen"], internaldate=1700000000 + arrival)


class SortTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        add_messages(self.inbox())

    def test_rfc5256_examples_and_keys(self):
        d = self.in_inbox(
            "SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994",
            "SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
            'SORT (SUBJECT) US-ASCII TEXT "not in mailbox"',
            "SORT (DATE) UTF-8 ALL",
            "SORT (ARRIVAL) UTF-8 ALL",
            "SORT (REVERSE SIZE) UTF-8 ALL",
            "SORT (FROM) UTF-8 ALL",
            "SORT (TO) UTF-8 ALL",
            "SORT (CC REVERSE ARRIVAL) UTF-8 ALL",
            "UID SORT (SIZE) UTF-8 2:4",
            "SORT (SUBJECT) UTF-8 1:3 SEEN",
        )

        def check(answers):
            self.assertEqual(
                [a[0] for a in answers],
                [
                    "* SORT 3 4 5 1 2",
                    "* SORT 5 3 4 1 2",
                    "* SORT",
                    "* SORT 2 4 1 3 5",  # message 4's 09:00 -0300 is 12:00 UTC
                    "* SORT 5 4 3 2 1",
                    "* SORT 5 1 3 4 2",
                    "* SORT 2 3 4 5 1",  # amy bob carl dan zed (the mailbox part)
                    "* SORT 4 3 5 1 2",  # no To first; then a a b c
                    "* SORT 1 3 5 4 2",  # no Cc, latest arrival first; then x@, y@
                    "* SORT 2 4 3",
                    "* SORT 3 1 2",
                ],
            )
            self.assertEqual(answers[0][1], "a0 OK SORT completed")

        return d.addCallback(check)

    def test_bad_sorts(self):
        d = self.in_inbox(
            "SORT (NAME) UTF-8 ALL",
            "SORT (REVERSE) UTF-8 ALL",
            "SORT SUBJECT UTF-8 ALL",
            "SORT (SUBJECT) UTF-8",
            "SORT (SUBJECT) X-NOSUCH ALL",
            "SORT () UTF-8 ALL",
        )

        def check(answers):
            self.assertEqual(
                answers,
                [
                    ["a0 BAD Unknown sort criterion NAME"],
                    ["a1 BAD REVERSE must precede a sort criterion"],
                    ["a2 BAD Expected a list of sort criteria"],
                    ["a3 BAD Expected a charset and search criteria"],
                    ["a4 NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"],
                    ["a5 BAD Expected a list of sort criteria"],
                ],
            )

        return d.addCallback(check)

    def test_sliced(self):
        self.patch(search_scan, "INLINE_MESSAGES", 1)
        self.patch(search_scan, "_SLICE", 1)
        self.patch(search_scan, "INLINE_SECONDS", -1)  # the ordering and the answer line too
        self.patch(sort_command, "_NUMBERS_PER_STEP", 1)
        return self.test_rfc5256_examples_and_keys()

    def test_capability(self):
        def check(caps):
            self.assertIn("SORT", caps)
            self.assertIn("ESORT", caps)

        return self.capabilities().addCallback(check)

    def test_esort_return_options(self):
        """ESORT (RFC 5267 3.1): SORT RETURN (...) answers ESEARCH, MIN/MAX/ALL in sort order."""
        d = self.in_inbox(
            "SORT RETURN (MIN MAX COUNT) (SUBJECT) UTF-8 ALL",
            "SORT RETURN (ALL) (SUBJECT) UTF-8 ALL",
            "SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL",
            "UID SORT RETURN (MAX) (SUBJECT) UTF-8 1:4",
            'SORT RETURN (MIN COUNT) (SUBJECT) UTF-8 TEXT "not in mailbox"',
            "SORT RETURN (SAVE MIN) (SUBJECT) UTF-8 ALL",
            "FETCH $ (UID)",
            "SORT RETURN (SAVE) (REVERSE SIZE) UTF-8 2:4",
            "SEARCH $",
            "SORT RETURN (PARTIAL 1:2) (SUBJECT) UTF-8 ALL",
            "SORT RETURN (ALL) (ARRIVAL) UTF-8 ALL",
        )

        def check(answers):
            self.assertEqual(
                answers,
                [
                    ['* ESEARCH (TAG "a0") MIN 3 MAX 2 COUNT 5', "a0 OK SORT completed"],
                    ['* ESEARCH (TAG "a1") ALL 3:5,1:2', "a1 OK SORT completed"],
                    ['* ESEARCH (TAG "a2") ALL 1:5', "a2 OK SORT completed"],
                    ['* ESEARCH (TAG "a3") UID MAX 2', "a3 OK SORT completed"],  # 3 4 1 2
                    ['* ESEARCH (TAG "a4") COUNT 0', "a4 OK SORT completed"],
                    ['* ESEARCH (TAG "a5") MIN 3', "a5 OK SORT completed"],
                    ["* 3 FETCH (UID 3)", "a6 OK FETCH completed"],
                    ["a7 OK SORT completed"],
                    ["* SEARCH 2 3 4", "a8 OK SEARCH completed"],
                    ["a9 BAD Unknown RETURN option PARTIAL"],
                    ['* ESEARCH (TAG "a10") ALL 5,4,3,2,1', "a10 OK SORT completed"],  # only rising runs join
                ],
            )

        return d.addCallback(check)


class CasemapOrderTests(IMAPTestCase):
    """SORT compares with i;ascii-casemap: letters as upper case, so "_" and "[" come after them."""

    def setUp(self):
        super().setUp()
        inbox = self.inbox()
        for i, (subject, sender) in enumerate(
            [("a", "b@x.org"), ("_", "_z@x.org"), ("[xyz]", "A@x.org"), ("C", "[q]@x.org"), ("b", "c@x.org")]
        ):
            inbox.add(("From: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (sender, subject)).encode(), internaldate=1700000000 + i)

    def test_subject_and_from_order(self):
        d = self.in_inbox("SORT (SUBJECT) US-ASCII ALL", "SORT (REVERSE SUBJECT) US-ASCII ALL", "SORT (FROM) US-ASCII ALL")
        return d.addCallback(
            lambda answers: self.assertEqual(
                [a[0] for a in answers], ["* SORT 1 5 4 3 2", "* SORT 2 3 4 5 1", "* SORT 3 1 5 4 2"]
            )
        )


class BaseSubjectTests(unittest.TestCase):
    """RFC 5256 2.1."""

    def test_base_subjects(self):
        cases = [
            ("Hello", ("HELLO", False)),
            ("Re: Hello", ("HELLO", True)),
            ("RE:re: FWD: hello (fwd) (FWD)", ("HELLO", True)),
            ("Re [x]: [list] Fw: a  b\t c", ("A B C", True)),
            ("[list] hello", ("HELLO", False)),
            ("[list]", ("[LIST]", False)),
            ("[fwd: Re: x]", ("X", True)),
            ("re:", ("", True)),
            ("Reply: x", ("REPLY: X", False)),
            ("", ("", False)),
        ]
        for subject, expected in cases:
            self.assertEqual(base_subject(subject), expected, subject)
