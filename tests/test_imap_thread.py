"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256) on the wire."""

from twisted.trial import unittest

from imapwebpush.imap import search_scan, thread
from imapwebpush.imap.thread import info_tuple, format_threads, ordered_subject, references
from tests.harness.imap import IMAPTestCase

# (Message-ID, References, In-Reply-To, Subject, day of December 2020 / January 2021)
MESSAGES = [
    ("<a@x>", "", "", "Meeting", 1),
    ("<b@x>", "<a@x>", "", "Re: Meeting", 2),
    ("<c@x>", "", "", "Other", 3),
    ("<d@x>", "", "<a@x> (sent to Bob)", "Re: Meeting", 4),
    ("<e@x>", "<a@x> <b@x>", "", "RE: meeting", 5),
    ("<f@x>", "<missing@x>", "", "Re: Other", 6),
    ("", "", "", "Lunch", 0),
    ("<h@x>", "<missing2@x>", "", "Re: Lunch", 7),
    ("<i@x>", "<gone@x>", "", "Alpha", 8),
    ("<j@x>", "<gone@x>", "", "Beta", 9),
]


def raw(message_id, refs, reply_to, subject, day):
    date = "Thu, 31 Dec 2020 10:00:00 +0000" if day == 0 else "%d Jan 2021 10:00:00 +0000" % day
    lines = ["From: a@example.org", "Subject: " + subject, "Date: " + date]
    if message_id:
        lines.append("Message-ID: " + message_id)
    if refs:
        lines.append("References: " + refs)
    if reply_to:
        lines.append("In-Reply-To: " + reply_to)
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


class ThreadTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        inbox = self.inbox()
        for fields in MESSAGES:
            inbox.add(raw(*fields), ["\\Seen"])

    def test_threads(self):
        d = self.in_inbox(
            "CAPABILITY",
            "THREAD REFERENCES UTF-8 ALL",
            "THREAD ORDEREDSUBJECT UTF-8 ALL",
            "UID THREAD REFERENCES UTF-8 1:5",
            "THREAD ORDEREDSUBJECT US-ASCII SUBJECT nothing-like-this",
            "THREAD FOO UTF-8 ALL",
            "THREAD REFERENCES UTF-8",
            "THREAD REFERENCES X-NOSUCH ALL",
        )

        def check(answers):
            caps = answers.pop(0)
            self.assertIn(" THREAD=ORDEREDSUBJECT THREAD=REFERENCES", caps[0])
            self.assertEqual(
                answers,
                [
                    ["* THREAD (7 8)(1 (2 5)(4))(3 6)((9)(10))", "a1 OK THREAD completed"],
                    ["* THREAD (7 8)(1 (2)(4)(5))(3 6)(9)(10)", "a2 OK THREAD completed"],
                    ["* THREAD (1 (2 5)(4))(3)", "a3 OK THREAD completed"],
                    ["* THREAD", "a4 OK THREAD completed"],
                    ["a5 BAD Unknown threading algorithm"],
                    ["a6 BAD Expected a charset and search criteria"],
                    ["a7 NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"],
                ],
            )

        return d.addCallback(check)

    def test_sliced(self):
        self.patch(search_scan, "INLINE_MESSAGES", 1)
        self.patch(search_scan, "_SLICE", 1)
        self.patch(search_scan, "INLINE_SECONDS", -1)  # the threading and the answer line too
        self.patch(thread, "_STEP", 1)
        return self.test_threads()


class ReferencesLoopTests(unittest.TestCase):
    """References that point back at the message itself or form a cycle make no loop."""

    def test_cycles(self):
        entries = [
            (1, info_tuple("a@x", ["b@x"], "s", False, 1)),
            (2, info_tuple("b@x", ["a@x"], "s", True, 2)),
            (3, info_tuple("c@x", ["c@x"], "t", False, 3)),
            (4, info_tuple("a@x", [], "u", False, 4)),  # a duplicate Message-ID: a thread of its own
        ]
        self.assertEqual(format_threads(references(entries)), b"(2 1)(3)(4)")  # 1 named 2 first: 2 stays its parent


DEPTH = 10000


def numbers(first, last):
    return b" ".join(b"%d" % n for n in range(first, last + 1))


class DeepThreadTests(unittest.TestCase):
    """Threads far deeper than the Python stack: walked with loops, answered in full."""

    def test_parent_chain(self):
        """Each message a reply to the one before: one thread, one flat run of numbers."""
        entries = [
            (n, info_tuple("m%d@x" % n, ["m%d@x" % (n - 1)] if n > 1 else [], "s", n > 1, n))
            for n in range(1, DEPTH + 1)
        ]
        self.assertEqual(format_threads(references(entries)), b"(" + numbers(1, DEPTH) + b")")
        backwards = list(reversed(entries))  # the replies found before what they answer
        self.assertEqual(format_threads(references(backwards)), b"(" + numbers(1, DEPTH) + b")")

    def test_references_naming_every_ancestor(self):
        """The last message's References names all 10,000 before it, oldest first."""
        entries = [(n, info_tuple("m%d@x" % n, [], "s%d" % n, False, n)) for n in range(1, DEPTH + 1)]
        entries.append((DEPTH + 1, info_tuple("last@x", ["m%d@x" % n for n in range(1, DEPTH + 1)], "z", True, 0)))
        self.assertEqual(format_threads(references(entries)), b"(" + numbers(1, DEPTH + 1) + b")")

    def test_deep_branches_nest_in_the_answer(self):
        """Message 2k+1 answers 2k-1 and so does 2k (a leaf, sent later): every level branches."""
        levels = DEPTH // 2
        entries = []
        for k in range(1, levels + 1):
            parent = ["c%d@x" % (k - 1)] if k > 1 else []
            entries.append((2 * k - 1, info_tuple("c%d@x" % k, parent, "s", k > 1, 2 * k - 1)))
            if k > 1:
                entries.append((2 * k, info_tuple("l%d@x" % k, parent, "s", True, 2 * k)))
        # written inside out: the deepest chain message alone, then each level around it
        text = b"%d" % (2 * levels - 1,)
        for k in range(levels - 1, 0, -1):
            text = b"%d (%s)(%d)" % (2 * k - 1, text, 2 * k + 2)
        self.assertEqual(format_threads(references(entries)), b"(" + text + b")")

    def test_ordered_subject_of_many(self):
        entries = [(n, info_tuple(None, [], "s%d" % (n % 2), False, n)) for n in range(1, DEPTH + 1)]
        expected = b"(1 " + b"".join(b"(%d)" % n for n in range(3, DEPTH, 2)) + b")"
        expected += b"(2 " + b"".join(b"(%d)" % n for n in range(4, DEPTH + 1, 2)) + b")"
        self.assertEqual(format_threads(ordered_subject(entries)), expected)


class DeepReferencesOnTheWireTests(IMAPTestCase):
    """A References header naming 10,000 messages that are not in the mailbox."""

    def setUp(self):
        super().setUp()
        chain = " ".join("<%d@x>" % n for n in range(DEPTH))
        self.inbox().add(raw("<a@x>", chain, "", "Deep", 1), ["\\Seen"])
        self.inbox().add(raw("<b@x>", chain + " <a@x>", "<a@x>", "Re: Deep", 2), ["\\Seen"])
        self.inbox().add(raw("<c@x>", "", "", "Other", 3), ["\\Seen"])

    def test_threads(self):
        d = self.in_inbox("THREAD REFERENCES UTF-8 ALL", "UID THREAD REFERENCES UTF-8 2:3")
        return d.addCallback(
            self.assertEqual,
            [
                ["* THREAD (1 2)(3)", "a0 OK THREAD completed"],
                ["* THREAD (2)(3)", "a1 OK THREAD completed"],
            ],
        )
