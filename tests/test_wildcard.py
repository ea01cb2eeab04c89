"""Tests for imapwebpush.wildcard: IMAP list wildcards without backtracking."""

import re

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from imapwebpush.wildcard import (
    DEFAULT_MAX_PATTERN_LENGTH,
    PatternTooLong,
    compile_pattern,
    list_pattern,
)


def reference(pattern, delimiter):
    """The obvious (backtracking) regular expression: right, but slow on hostile input."""
    pieces = []
    for ch in pattern:
        if ch == "*" or (ch == "%" and delimiter is None):
            pieces.append(".*")
        elif ch == "%":
            pieces.append("[^" + re.escape(delimiter) + "]*")
        else:
            pieces.append(re.escape(ch))
    return re.compile("".join(pieces) + r"\Z", re.DOTALL).match


class ListSemanticsTests(unittest.TestCase):
    """RFC 3501 6.3.8 with '/' as the hierarchy delimiter."""

    def matches(self, pattern, names):
        p = compile_pattern(pattern)
        return [n for n in names if p.match(n)]

    names = ["INBOX", "Sent", "a", "a/b", "a/b/c", "ab", "b/a", "", "x%y", "x*y"]

    def test_star_matches_everything(self):
        self.assertEqual(self.matches("*", self.names), self.names)

    def test_percent_stops_at_the_delimiter(self):
        self.assertEqual(self.matches("%", self.names), ["INBOX", "Sent", "a", "ab", "", "x%y", "x*y"])
        self.assertEqual(self.matches("a/%", self.names), ["a/b"])
        self.assertEqual(self.matches("%/%", self.names), ["a/b", "b/a"])

    def test_star_crosses_the_delimiter(self):
        self.assertEqual(self.matches("a/*", self.names), ["a/b", "a/b/c"])
        self.assertEqual(self.matches("*a", self.names), ["a", "b/a"])

    def test_literal_and_whole_name(self):
        self.assertEqual(self.matches("a", self.names), ["a"])
        self.assertEqual(self.matches("A", self.names), [])  # case-sensitive
        self.assertEqual(self.matches("a/b", self.names), ["a/b"])
        self.assertEqual(self.matches("", self.names), [""])

    def test_runs_of_wildcards(self):
        self.assertEqual(self.matches("%%", self.names), self.matches("%", self.names))
        self.assertEqual(self.matches("%*", self.names), self.names)
        self.assertEqual(self.matches("*%", self.names), self.names)
        self.assertEqual(self.matches("a%*%c", self.names), ["a/b/c"])

    def test_other_regex_characters_are_literal(self):
        p = compile_pattern("a.b(c)[d]+?\\$^")
        self.assertTrue(p.match("a.b(c)[d]+?\\$^"))
        self.assertFalse(p.match("axb(c)[d]+?\\$^"))

    def test_hostile_patterns_give_the_right_answer(self):
        name = "a" * 40
        self.assertFalse(compile_pattern("*%*%*%*%*%x").match(name))
        self.assertTrue(compile_pattern("*%*%*%*%*%a").match(name))
        self.assertFalse(compile_pattern("*%" * 500 + "x").match("a" * 1000))
        self.assertTrue(compile_pattern("%a" * 20 + "%").match(name))
        self.assertFalse(compile_pattern("%/%").match(name))


class ListPatternTests(unittest.TestCase):
    """LIST/LSUB: INBOX is case-insensitive as the first level, nothing else is."""

    def test_inbox_any_case(self):
        for text in ["inbox", "Inbox", "INBOX", "iNbOx"]:
            self.assertTrue(list_pattern(text).match("INBOX"), text)
        self.assertTrue(list_pattern("inbox/%").match("INBOX/a"))
        self.assertTrue(list_pattern("inbox*").match("INBOX/a"))
        self.assertTrue(list_pattern("inbox%").match("INBOX"))

    def test_other_names_keep_their_case(self):
        self.assertFalse(list_pattern("inboxes").match("INBOXes"))
        self.assertTrue(list_pattern("inboxes").match("inboxes"))
        self.assertFalse(list_pattern("sent").match("Sent"))

    def test_limit(self):
        self.assertRaises(PatternTooLong, list_pattern, "a" * 11, max_length=10)


class AnythingSemanticsTests(unittest.TestCase):
    """LWEBPUSH (SPEC 3.4): '*' and '%' both match any run of characters."""

    def test_percent_matches_anything(self):
        p = compile_pattern("phone%", delimiter=None)
        self.assertTrue(p.match("phone-1"))
        self.assertTrue(p.match("phone/1"))
        self.assertTrue(p.match("phone"))
        self.assertFalse(p.match("laptop"))
        self.assertTrue(compile_pattern("%", delimiter=None).match("a/b"))

    def test_hostile_star_run(self):
        self.assertFalse(compile_pattern("*******x", delimiter=None).match("a" * 64))
        self.assertTrue(compile_pattern("*******a", delimiter=None).match("a" * 64))


class LimitTests(unittest.TestCase):
    def test_default_limit(self):
        compile_pattern("*" * DEFAULT_MAX_PATTERN_LENGTH)
        e = self.assertRaises(PatternTooLong, compile_pattern, "a" * (DEFAULT_MAX_PATTERN_LENGTH + 1))
        self.assertEqual(
            str(e),
            "pattern is %d characters, more than %d"
            % (DEFAULT_MAX_PATTERN_LENGTH + 1, DEFAULT_MAX_PATTERN_LENGTH),
        )

    def test_own_limit_and_none(self):
        self.assertRaises(PatternTooLong, compile_pattern, "abcd", max_length=3)
        compile_pattern("abc", max_length=3)
        compile_pattern("a" * 5000, max_length=None)


_alphabet = st.sampled_from("ab/*%")


class AgreesWithReferenceTests(unittest.TestCase):
    @settings(max_examples=400, deadline=None)
    @given(
        st.text(_alphabet, max_size=8),
        st.text(st.sampled_from("ab/"), max_size=8),
        st.sampled_from(["/", None]),
    )
    def test_same_answer_as_the_regex(self, pattern, name, delimiter):
        expected = reference(pattern, delimiter)(name) is not None
        self.assertEqual(compile_pattern(pattern, delimiter).match(name), expected)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(st.text(_alphabet, max_size=6), min_size=1, max_size=4),
        st.text(st.sampled_from("ab/"), max_size=8),
        st.sampled_from(["/", None]),
    )
    def test_several_patterns_match_when_one_does(self, patterns, name, delimiter):
        expected = any(reference(p, delimiter)(name) is not None for p in patterns)
        self.assertEqual(compile_pattern(patterns, delimiter).match(name), expected)


class SeveralPatternsTests(unittest.TestCase):
    """LIST-EXTENDED's ``("INBOX" "Sent/%")``: one matcher for all, one limit for all."""

    def test_union(self):
        p = list_pattern(["inbox", "Sent/%", "a*b"])
        names = ["INBOX", "Sent", "Sent/2024", "Sent/2024/x", "ab", "a/x/b", "b"]
        self.assertEqual([n for n in names if p.match(n)], ["INBOX", "Sent/2024", "ab", "a/x/b"])

    def test_a_wildcard_pattern_does_not_run_into_the_next(self):
        p = compile_pattern(["a%", "b"])
        self.assertFalse(p.match("ab/b"))
        self.assertFalse(p.match("a/b"))
        self.assertTrue(p.match("a"))
        self.assertTrue(p.match("b"))

    def test_none_and_empty(self):
        self.assertFalse(compile_pattern([]).match("a"))
        self.assertFalse(compile_pattern([""]).match("a"))

    def test_limit_counts_every_pattern(self):
        compile_pattern(["abc", "de"], max_length=5)
        e = self.assertRaises(PatternTooLong, compile_pattern, ["abc", "def"], max_length=5)
        self.assertEqual(str(e), "pattern is 6 characters, more than 5")
