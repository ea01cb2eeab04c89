"""Tests for imapwebpush.store.flags: IMAP flags <-> Maildir info letters, STORE modes."""

from twisted.trial import unittest

from imapwebpush.constants import RECENT, SYSTEM_FLAGS
from imapwebpush.store import flags


class LetterTests(unittest.TestCase):
    def test_every_system_flag_has_a_letter(self):
        for flag in SYSTEM_FLAGS:
            base, system, extra = flags.parse_name("1.M1P1Q1.host,S=5" + flags.info({flag}))
            self.assertEqual((base, system, extra), ("1.M1P1Q1.host,S=5", frozenset([flag]), ""))

    def test_letters_are_sorted_and_unknown_ones_kept(self):
        self.assertEqual(flags.info(set(SYSTEM_FLAGS), "a"), ":2,DFRSTa")
        self.assertEqual(flags.parse_name("b:2,Sa")[2], "a")

    def test_split_spells_system_flags_canonically_and_drops_recent(self):
        system, keywords = flags.split(["\\SEEN", RECENT.upper(), "$Work", "$work", b"\\draft"])
        self.assertEqual(system, frozenset(["\\Seen", "\\Draft"]))
        self.assertEqual(keywords, frozenset(["$Work"]))  # the first spelling wins

    def test_without_size(self):
        self.assertEqual(flags.without_size("1.M1P1Q1.host,S=123"), "1.M1P1Q1.host")


class ChangeTests(unittest.TestCase):
    SYSTEM = frozenset(["\\Seen"])
    KEYWORDS = frozenset(["$Work"])

    def test_replace(self):
        self.assertEqual(
            flags.change("replace", self.SYSTEM, self.KEYWORDS, frozenset(), frozenset(["$New"])),
            (frozenset(), frozenset(["$New"])),
        )

    def test_add_keeps_the_spelling_the_message_has(self):
        self.assertEqual(
            flags.change("add", self.SYSTEM, self.KEYWORDS, frozenset(["\\Flagged"]), frozenset(["$WORK", "$x"])),
            (frozenset(["\\Seen", "\\Flagged"]), frozenset(["$Work", "$x"])),
        )

    def test_remove_ignores_keyword_case(self):
        self.assertEqual(
            flags.change("remove", self.SYSTEM, self.KEYWORDS, frozenset(["\\Seen"]), frozenset(["$WORK"])),
            (frozenset(), frozenset()),
        )

    def test_same_keywords_ignores_case(self):
        self.assertTrue(flags.same_keywords({"$Work"}, {"$WORK"}))
        self.assertFalse(flags.same_keywords({"$Work"}, {"$Work", "$x"}))
