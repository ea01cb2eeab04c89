"""imapwebpush.wire: the one reader and writer of IMAP syntax (strings, sets, dates, names)."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from imapwebpush import wire
from imapwebpush.wire import LiteralHeader, ParseError


class ReadAstringTests(unittest.TestCase):
    def test_atom_and_rest(self):
        self.assertEqual(wire.read_astring(b"INBOX (MESSAGES)"), (b"INBOX", b"(MESSAGES)"))
        self.assertEqual(wire.read_astring(b"  alice"), (b"alice", b""))

    def test_list_wildcards_and_bracket_are_atom_chars(self):
        self.assertEqual(wire.read_astring(b"a/%/*] x"), (b"a/%/*]", b"x"))

    def test_quoted_with_the_two_escapes(self):
        self.assertEqual(wire.read_astring(b'"a\\"b\\\\c" rest'), (b'a"b\\c', b"rest"))
        self.assertEqual(wire.read_astring(b'""'), (b"", b""))

    def test_one_escaping_rule(self):
        for bad, why in [
            (b'"a\\b"', "Bad escape in quoted string"),
            (b'"abc', "Unmatched quotes"),
            (b'"a\\"', "Unmatched quotes"),
            (b'"ab"c', "Missing space after quoted string"),
            (b'"a\x00b"', "CR, LF or NUL in quoted string"),
        ]:
            e = self.assertRaises(ParseError, wire.read_astring, bad)
            self.assertEqual(str(e), why)

    def test_literal_header(self):
        self.assertEqual(wire.read_astring(b"{12}"), (LiteralHeader(12, True), b""))
        self.assertEqual(wire.read_astring(b" {3+}"), (LiteralHeader(3, False), b""))
        self.assertRaises(ParseError, wire.read_astring, b"{12} x")
        self.assertRaises(ParseError, wire.read_astring, b"{x}")

    def test_not_a_string(self):
        self.assertEqual(str(self.assertRaises(ParseError, wire.read_astring, b"(a b)")),
                         "Expected a string, found a list")
        self.assertEqual(str(self.assertRaises(ParseError, wire.read_astring, b"")), "Missing argument")
        self.assertRaises(ParseError, wire.read_astring, b"a\\b")
        self.assertRaises(ParseError, wire.read_astring, b"caf\xc3\xa9")

    def test_nstring(self):
        self.assertEqual(wire.read_nstring(b"NIL x"), (None, b"x"))
        self.assertEqual(wire.read_nstring(b"nil"), (None, b""))
        self.assertEqual(wire.read_nstring(b'"NIL"'), (b"NIL", b""))

    @given(st.binary().filter(lambda b: not set(b) & set(b"\r\n\x00")))
    def test_quoted_round_trip(self, data):
        self.assertEqual(wire.read_astring(wire.quoted(data) + b" tail"), (data, b"tail"))


class WriteTests(unittest.TestCase):
    def test_quoted_and_literal(self):
        self.assertEqual(wire.quoted(b'a"b\\'), b'"a\\"b\\\\"')
        self.assertEqual(wire.literal(b"abc"), b"{3}\r\nabc")

    def test_string_chooses(self):
        self.assertEqual(wire.string(b"plain"), b'"plain"')
        self.assertEqual(wire.string(b"caf\xc3\xa9"), b"{5}\r\ncaf\xc3\xa9")
        self.assertEqual(wire.string(b"a\r\nb"), b"{4}\r\na\r\nb")

    def test_atom_or_quoted(self):
        self.assertEqual(wire.atom_or_quoted("https://push.example/x"), b"https://push.example/x")
        self.assertEqual(wire.atom_or_quoted("NIL"), b'"NIL"')
        self.assertEqual(wire.atom_or_quoted("a b"), b'"a b"')
        self.assertEqual(wire.atom_or_quoted("x*"), b'"x*"')

    def test_push_quoted_never_a_literal(self):
        self.assertEqual(wire.push_quoted("Entwürfe"), '"Entwürfe"')
        self.assertEqual(wire.push_quoted("a\r\nb\x00"), '"a  b "')
        self.assertEqual(wire.push_quoted("\udcff"), "\"?\"")  # a lone surrogate is no UTF-8

    def test_push_quoted_cut_at_character_boundary_before_quoting(self):
        self.assertEqual(wire.push_quoted("é" * 3, 5), '"éé"')
        self.assertEqual(wire.push_quoted('ab"', 2), '"ab"')

    def test_flags_and_tags(self):
        self.assertTrue(wire.is_flag("\\Seen"))
        self.assertTrue(wire.is_flag("$Junk"))
        self.assertFalse(wire.is_flag("a b"))
        self.assertFalse(wire.is_flag("Entwurf*"))
        self.assertFalse(wire.is_flag("über"))
        self.assertTrue(wire.is_tag(b"a001"))
        self.assertFalse(wire.is_tag(b"a+1"))


class MailboxNameTests(unittest.TestCase):
    def test_modified_utf7(self):
        self.assertEqual(wire.encode_mailbox("Entwürfe"), b"Entw&APw-rfe")
        self.assertEqual(wire.decode_mailbox(b"Entw&APw-rfe"), "Entwürfe")
        self.assertEqual(wire.quoted_mailbox("a&b"), b'"a&-b"')
        self.assertRaises(ParseError, wire.decode_mailbox, b"a&!!-")

    @given(st.binary(max_size=12) | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=12).map(str.encode))
    def test_plain_names_skip_the_codec_with_the_same_answer(self, raw):
        """Printable ASCII without "&" is decoded without twisted's codec: the same name,
        and whatever else the same refusal."""
        try:
            name = raw.decode("imap4-utf-7")
            expected = name if name.encode("imap4-utf-7") == raw else None
        except Exception:
            expected = None
        if expected is None:
            self.assertRaises(ParseError, wire.decode_mailbox, raw)
        else:
            self.assertEqual(wire.decode_mailbox(raw), expected)


class SequenceSetTests(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(wire.parse_sequence_set(b"7"), [(7, 7)])
        self.assertEqual(wire.parse_sequence_set("1:3,5:*,*"), [(1, 3), (5, None), (None, None)])
        self.assertEqual(wire.parse_sequence_set(b"9:2"), [(9, 2)])  # as written

    def test_nz_numbers_only(self):
        for bad in (b"", b"0", b"01", b"1:", b"1,,2", b"1:2:3", b"a", b"4294967296", b"-1"):
            self.assertRaises(ParseError, wire.parse_sequence_set, bad)
        self.assertEqual(wire.parse_sequence_set(b"4294967295"), [(4294967295, 4294967295)])

    def test_with_star(self):
        parsed = wire.parse_sequence_set(b"*:4,2,7:*,9:3,*")
        self.assertEqual(wire.with_star(parsed, 8), [(4, 8), (2, 2), (7, 8), (3, 9), (8, 8)])
        self.assertEqual(wire.with_star([], 8), [])

    def test_normalize_merges_and_sorts(self):
        self.assertEqual(wire.normalize([(7, 9), (1, 2), (3, 3), (12, 10), (8, 8)]), [(1, 3), (7, 12)])

    def test_ranges_of_and_render(self):
        ranges = wire.ranges_of([9, 3, 4, 5, 7, 4])
        self.assertEqual(ranges, [(3, 5), (7, 7), (9, 9)])
        self.assertEqual(wire.render(ranges), "3:5,7,9")
        self.assertEqual(wire.render([]), "")
        self.assertEqual(wire.expand(ranges), [3, 4, 5, 7, 9])
        self.assertEqual(wire.count(ranges), 5)

    def test_intersect_subtract_at_least_contains(self):
        a = [(1, 5), (8, 10), (20, 30)]
        b = [(3, 9), (25, 25), (29, 40)]
        self.assertEqual(wire.intersect(a, b), [(3, 5), (8, 9), (25, 25), (29, 30)])
        self.assertEqual(wire.intersect(a, []), [])
        self.assertEqual(wire.subtract([(1, 10), (20, 30)], [(3, 4), (10, 21), (25, 25)]),
                         [(1, 2), (5, 9), (22, 24), (26, 30)])
        self.assertEqual(wire.subtract(a, [(1, 100)]), [])
        self.assertEqual(wire.at_least([(1, 3), (5, 9), (12, 12)], 6), [(6, 9), (12, 12)])
        self.assertEqual([n for n in range(12) if wire.contains(a, n)], [1, 2, 3, 4, 5, 8, 9, 10])

    def test_format(self):
        self.assertEqual(wire.format_set([1, 2, 3, 7, 9, 10]), "1:3,7,9:10")
        self.assertEqual(wire.format_set([5, 4]), "5,4")
        self.assertEqual(wire.format_sorted_set([5, 4, 4, 9]), "4:5,9")

    @given(st.lists(st.integers(1, 10**6), min_size=1))
    def test_render_then_parse(self, numbers):
        ranges = wire.ranges_of(numbers)
        self.assertEqual(wire.parse_sequence_set(wire.render(ranges)), ranges)


class DateTests(unittest.TestCase):
    def test_internaldate(self):
        self.assertEqual(wire.format_internaldate(0), b'"01-Jan-1970 00:00:00 +0000"')

    def test_parse(self):
        self.assertEqual(wire.parse_date(b"1-feb-1994"), (1994, 2, 1))
        self.assertEqual(wire.parse_datetime(b"17-Jul-1996 02:44:25 -0700"), 837596665)
        self.assertEqual(str(self.assertRaises(ParseError, wire.parse_date, b"someday")), "Bad date: someday")
        self.assertRaises(ParseError, wire.parse_datetime, b"17-Jul-1996 02:44 -0700")
        # a day the month does not have is no date (it was read as the next month's)
        self.assertEqual(str(self.assertRaises(ParseError, wire.parse_date, b"31-Feb-2020")), "Bad date: 31-Feb-2020")
        self.assertEqual(wire.parse_date(b"29-Feb-2020"), (2020, 2, 29))
        self.assertRaises(ParseError, wire.parse_date, b"29-Feb-2021")
        self.assertRaises(ParseError, wire.parse_date, b"0-Jan-2021")
        self.assertRaises(ParseError, wire.parse_datetime, b"17-Jul-1996 24:00:00 -0700")
        self.assertRaises(ParseError, wire.parse_datetime, b"17-Jul-1996 02:44:25 0700")
        self.assertRaises(ParseError, wire.parse_datetime, b"17-Jul-1996 02:44:25 +9999")  # minutes < 60
        self.assertRaises(ParseError, wire.parse_datetime, b"17-Jul-1996 02:44:25 +-100")

    def test_round_trip(self):
        self.assertEqual(wire.parse_datetime(wire.format_internaldate(1700000000).strip(b'"')), 1700000000)


class MatchingParenTests(unittest.TestCase):
    def test_skips_quotes_and_sections(self):
        line = b'(BODY[HEADER.FIELDS (A)] "x)" (y)) rest'
        self.assertEqual(line[: wire.matching_paren(line)], b'(BODY[HEADER.FIELDS (A)] "x)" (y))')
        self.assertRaises(ParseError, wire.matching_paren, b"(a (b)")


class ParseListTests(unittest.TestCase):
    def test_structure(self):
        self.assertEqual(
            wire.parse_list(b'OR (SUBJECT "a \\"b\\" \\\\c" NIL) nil  ()', 8),
            [b"OR", [b"SUBJECT", b'a "b" \\c', None], b"nil", []],
        )

    def test_errors(self):
        for text, message in [
            (b"(a", "Malformed list: unbalanced parentheses"),
            (b"a)", "Malformed list: unbalanced parentheses"),
            (b'a "b', "Malformed list: unbalanced quotes"),
            (b"(" * 9 + b")" * 9, "Nested too deeply (more than 8 levels)"),
        ]:
            self.assertEqual(str(self.assertRaises(ParseError, wire.parse_list, text, 8)), message)
        self.assertEqual(wire.parse_list(b"(" * 8 + b")" * 8, 8)[0][0][0][0][0][0][0], [[]])
