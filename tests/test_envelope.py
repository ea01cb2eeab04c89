"""ENVELOPE as IMAP FETCH and pushes render it (RFC 3501 7.4.2), from raw header bytes."""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from imapwebpush.envelope import (
    Address,
    decode_encoded_words,
    parse_envelope,
    render_envelope,
    render_envelope_wire,
)
from imapwebpush.wire import push_quoted as quote
from imapwebpush.wire import truncate_utf8

RFC3501 = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
)

FRED = '(("Fred Foobar" NIL "foobar" "Blurdybloop.example"))'


def env(headers):
    return render_envelope(parse_envelope(headers))


def parse_imap(text):
    """A small IMAP reader for nil / quoted strings / lists: what a client does."""
    pos = 0

    def value():
        nonlocal pos
        if text.startswith("NIL", pos):
            pos += 3
            return None
        if text[pos] == '"':
            pos += 1
            out = []
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                    assert text[pos] in '\\"', "bad escape"
                assert text[pos] not in "\r\n\x00"
                out.append(text[pos])
                pos += 1
            pos += 1
            return "".join(out)
        assert text[pos] == "(", text[pos:pos + 20]
        pos += 1
        items = []
        while text[pos] != ")":
            items.append(value())
            if text[pos] == " ":
                pos += 1
        pos += 1
        return items

    result = value()
    assert pos == len(text), "trailing text"
    return result


class SpecExampleTests(unittest.TestCase):
    def test_spec_example(self):
        """The ENVELOPE of SPEC 5.1 (from RFC 3501 7.4.2), byte for byte."""
        self.assertEqual(
            env(RFC3501),
            '("Mon, 7 Feb 1994 21:52:25 -0800" "afternoon meeting" ' + FRED + " " + FRED + " "
            + FRED + ' ((NIL NIL "mooch" "owatagu.siam.edu.example")) NIL NIL NIL '
            '"<B27397-0100000@Blurdybloop.example>")',
        )

    def test_all_absent(self):
        self.assertEqual(env(b"X-Other: 1\r\n\r\n"), "(" + " ".join(["NIL"] * 10) + ")")

    def test_sender_and_reply_to_default_to_from_when_empty(self):
        text = env(b"From: a@b.example\r\nSender: \r\nReply-To:\r\n\r\n")
        self.assertEqual(parse_imap(text)[2:5], [[[None, None, "a", "b.example"]]] * 3)

    def test_sender_and_reply_to_kept_when_present(self):
        e = parse_envelope(b"From: a@b.example\r\nSender: s@b.example\r\nReply-To: r@c.example\r\n\r\n")
        self.assertEqual(e.sender, (Address(None, None, "s", "b.example"),))
        self.assertEqual(e.reply_to, (Address(None, None, "r", "c.example"),))

    def test_all_fields_in_order(self):
        headers = (
            b"Message-ID: <m@x>\r\nIn-Reply-To: <p@x>\r\nBcc: b@x.example\r\nCc: c@x.example\r\n"
            b"To: t@x.example\r\nSubject: s\r\nDate: d\r\nFrom: f@x.example\r\n\r\n"
        )
        self.assertEqual(parse_imap(env(headers)), [
            "d", "s", [[None, None, "f", "x.example"]], [[None, None, "f", "x.example"]],
            [[None, None, "f", "x.example"]], [[None, None, "t", "x.example"]],
            [[None, None, "c", "x.example"]], [[None, None, "b", "x.example"]], "<p@x>", "<m@x>",
        ])


class HeaderBlockTests(unittest.TestCase):
    def test_folded_lines_are_unfolded(self):
        e = parse_envelope(b"Subject: a long\r\n  subject\r\n\tline\r\n\r\n")
        self.assertEqual(e.subject, "a long  subject\tline")

    def test_lf_only_line_ends(self):
        e = parse_envelope(b"Subject: x\nFrom: a@b.example\n\n")
        self.assertEqual((e.subject, e.from_), ("x", (Address(None, None, "a", "b.example"),)))

    def test_stops_at_blank_line(self):
        e = parse_envelope(b"From: a@b.example\r\n\r\nSubject: body text\r\n")
        self.assertIsNone(e.subject)

    def test_first_occurrence_wins(self):
        e = parse_envelope(b"Subject: one\r\nsubject: two\r\n\r\n")
        self.assertEqual(e.subject, "one")

    def test_raw_utf8_header(self):
        e = parse_envelope("Subject: Grüße\r\nFrom: Jörg <j@x.example>\r\n\r\n".encode("utf-8"))
        self.assertEqual((e.subject, e.from_[0].name), ("Grüße", "Jörg"))

    def test_raw_latin1_header(self):
        e = parse_envelope(b"Subject: caf\xe9\r\n\r\n")
        self.assertEqual(e.subject, "café")


class EncodedWordTests(unittest.TestCase):
    def test_q_and_b(self):
        self.assertEqual(decode_encoded_words("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_dich?="), "Grüße dich")
        self.assertEqual(decode_encoded_words("=?utf-8?B?R3LDvMOfZQ?="), "Grüße")

    def test_adjacent_words_join_without_space(self):
        self.assertEqual(decode_encoded_words("=?utf-8?q?a?= \r\n =?utf-8?q?b?= c"), "ab c")

    def test_other_charsets(self):
        self.assertEqual(decode_encoded_words("=?iso-8859-1?q?caf=E9?="), "café")
        self.assertEqual(decode_encoded_words("=?koi8-r?b?8NLJ18XU?="), "Привет")

    def test_unknown_charset_left_as_is(self):
        self.assertEqual(decode_encoded_words("=?x-nope?q?abc?= d"), "=?x-nope?q?abc?= d")

    def test_subject_and_display_names_decoded(self):
        e = parse_envelope(
            b"Subject: =?utf-8?q?caf=C3=A9?= ok\r\n"
            b"From: =?utf-8?q?J=C3=B6rg?= =?utf-8?b?IE3DvGxsZXI=?= <j@x.example>\r\n\r\n"
        )
        self.assertEqual(e.subject, "café ok")
        self.assertEqual(e.from_, (Address("Jörg Müller", None, "j", "x.example"),))
        self.assertIn('"Jörg Müller"', render_envelope(e))

    def test_encoded_crlf_is_not_sent(self):
        e = parse_envelope(b"Subject: =?utf-8?q?a=0D=0Ab=00c?=\r\n\r\n")
        self.assertEqual(parse_imap(render_envelope(e))[1], "a  b c")


class AddressTests(unittest.TestCase):
    def addresses(self, value):
        return parse_envelope(b"To: " + value + b"\r\n\r\n").to

    def test_empty_group(self):
        self.assertEqual(env(b"To: undisclosed-recipients:;\r\n\r\n").split(" ")[5:9],
                         ['((NIL', 'NIL', '"undisclosed-recipients"', 'NIL)(NIL'])
        self.assertEqual(self.addresses(b"undisclosed-recipients:;"), (
            Address(None, None, "undisclosed-recipients", None), Address(None, None, None, None)))

    def test_group_with_members_then_mailbox(self):
        self.assertEqual(self.addresses(b"Team: a@x.example, B <b@y.example>;, c@z.example"), (
            Address(None, None, "Team", None),
            Address(None, None, "a", "x.example"),
            Address("B", None, "b", "y.example"),
            Address(None, None, None, None),
            Address(None, None, "c", "z.example"),
        ))

    def test_group_rendering(self):
        text = render_envelope(parse_envelope(b"Cc: G: a@x.example;\r\n\r\n"))
        self.assertIn('((NIL NIL "G" NIL)(NIL NIL "a" "x.example")(NIL NIL NIL NIL))', text)

    def test_quoted_display_name_with_escapes(self):
        addrs = self.addresses(b'"Doe, \\"J\\"" <jd@x.example>')
        self.assertEqual(addrs, (Address('Doe, "J"', None, "jd", "x.example"),))
        text = render_envelope(parse_envelope(b'From: "Doe, \\"J\\" \\\\" <jd@x.example>\r\n\r\n'))
        self.assertIn('(("Doe, \\"J\\" \\\\" NIL "jd" "x.example"))', text)

    def test_source_route(self):
        self.assertEqual(self.addresses(b"<@r1.example,@r2.example:u@h.example>"),
                         (Address(None, "@r1.example,@r2.example", "u", "h.example"),))

    def test_comment_gives_the_name(self):
        self.assertEqual(self.addresses(b"u@h.example (Ursula U)"),
                         (Address("Ursula U", None, "u", "h.example"),))

    def test_several_and_dotted(self):
        self.assertEqual(self.addresses(b"John Q. Public <john.q@ex.example>, x.y@z.example"), (
            Address("John Q. Public", None, "john.q", "ex.example"),
            Address(None, None, "x.y", "z.example"),
        ))

    def test_missing_domain_is_not_a_group_marker(self):
        self.assertEqual(self.addresses(b"postmaster"), (Address(None, None, "postmaster", ""),))

    def test_garbage_does_not_raise(self):
        for value in [b"<<<", b"a@", b"@", b":::;;;,,,", b'"unterminated', b"(unclosed", b"<a@b"]:
            parse_imap(render_envelope(parse_envelope(b"To: " + value + b"\r\n\r\n")))


class QuotingTests(unittest.TestCase):
    def test_escapes(self):
        self.assertEqual(quote('a"b\\c'), '"a\\"b\\\\c"')

    def test_cr_lf_nul_replaced(self):
        self.assertEqual(quote("a\r\nb\x00"), '"a  b "')

    def test_truncate_at_character_boundary(self):
        self.assertEqual(truncate_utf8("éé", 3), "é")
        self.assertEqual(truncate_utf8("é😀", 5), "é")
        self.assertEqual(truncate_utf8("abc", 3), "abc")

    def test_cap_before_quoting_keeps_escapes_whole(self):
        self.assertEqual(quote('ab"', 3), '"ab\\""')
        self.assertEqual(quote('ab"', 2), '"ab"')
        self.assertEqual(quote("a\\\\", 2), '"a\\\\"')

    def test_capped_envelope_strings(self):
        e = parse_envelope(b"Subject: " + "ü".encode() * 50 + b"\r\nFrom: abcdef@host.example\r\n\r\n")
        fields = parse_imap(render_envelope(e, 5))
        self.assertEqual(fields[1], "üü")
        self.assertEqual(fields[2], [[None, None, "abcde", "host."]])


class PropertyTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(
        st.sampled_from([b"From", b"To", b"Cc", b"Subject", b"Sender", b"Date", b"X"]),
        st.binary(max_size=80) | st.text(max_size=60).map(lambda t: t.encode("utf-8")),
    ), max_size=8))
    def test_any_header_renders_a_parseable_envelope(self, fields):
        """Whatever the bytes, the result is UTF-8 an IMAP client parses into 10 fields."""
        headers = b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"
        text = render_envelope(parse_envelope(headers))
        text.encode("utf-8")
        for bad in "\r\n\x00":
            self.assertNotIn(bad, text)
        self.assertEqual(len(parse_imap(text)), 10)


def parse_wire(data):
    """A strict reader of FETCH ENVELOPE octets: NIL, quoted, literals, the exact spacing.

    The ten fields and the four parts of an address are separated by one space;
    the addresses of a list have none between them (``"(" 1*address ")"``).
    Strings come back as bytes.
    """
    pos = 0

    def value():
        nonlocal pos
        if data.startswith(b"NIL", pos):
            pos += 3
            return None
        if data[pos:pos + 1] == b"{":
            end = data.index(b"}\r\n", pos)
            size = int(data[pos + 1:end])
            pos = end + 3 + size
            return data[end + 3:pos]
        if data[pos:pos + 1] == b'"':
            pos += 1
            out = bytearray()
            while data[pos:pos + 1] != b'"':
                if data[pos:pos + 1] == b"\\":
                    pos += 1
                    assert data[pos:pos + 1] in (b"\\", b'"'), "bad escape"
                assert data[pos] not in b"\r\n\x00" and data[pos] < 0x80, data[pos:]
                out.append(data[pos])
                pos += 1
            pos += 1
            return bytes(out)
        assert data[pos:pos + 1] == b"(", data[pos:pos + 20]
        pos += 1
        items, spaces = [], 0
        while data[pos:pos + 1] != b")":
            items.append(value())
            if data[pos:pos + 1] == b" ":
                spaces += 1
                pos += 1
        pos += 1
        if items and all(isinstance(i, list) for i in items):
            assert spaces == 0, "space between addresses"
        else:
            assert spaces == len(items) - 1, "fields not separated by one space"
        return items

    result = value()
    assert pos == len(data), "trailing octets"
    return result


def wire(headers):
    return render_envelope_wire(parse_envelope(headers, decode_words=False))


class WireTests(unittest.TestCase):
    """``decode_words=False`` + ``render_envelope_wire``: what IMAP FETCH sends."""

    def test_spec_example_same_as_push(self):
        self.assertEqual(wire(RFC3501), env(RFC3501).encode("ascii"))

    def test_encoded_words_left_as_they_are(self):
        e = parse_envelope(
            b"Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: =?iso-8859-1?q?Ren=E9?= <r@x.example>\r\n"
            b"To: a@x.example (=?utf-8?q?A?=)\r\n\r\n",
            decode_words=False,
        )
        self.assertEqual(e.subject, "=?utf-8?q?caf=C3=A9?=")
        self.assertEqual(e.from_, (Address("=?iso-8859-1?q?Ren=E9?=", None, "r", "x.example"),))
        self.assertEqual(e.to, (Address("=?utf-8?q?A?=", None, "a", "x.example"),))

    def test_push_still_decodes(self):
        e = parse_envelope(b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n")
        self.assertEqual(e.subject, "caf\u00e9")

    def test_groups_and_lists_without_spaces(self):
        fields = parse_wire(wire(b"To: a@x.example, b@x.example\r\nCc: G: c@x.example;, E: ;\r\n\r\n"))
        self.assertEqual(fields[5], [[None, None, b"a", b"x.example"], [None, None, b"b", b"x.example"]])
        self.assertEqual(fields[6], [
            [None, None, b"G", None], [None, None, b"c", b"x.example"], [None, None, None, None],
            [None, None, b"E", None], [None, None, None, None],
        ])

    def test_8bit_octets_kept_in_literals(self):
        data = wire(b"Subject: caf\xe9\r\nFrom: \"J\xc3\xb6rg\" <j@x.example>\r\n\r\n")
        fields = parse_wire(data)
        self.assertEqual(fields[1], b"caf\xe9")
        self.assertEqual(fields[2], [[b"J\xc3\xb6rg", None, b"j", b"x.example"]])

    def test_cr_lf_nul_become_spaces(self):
        data = wire(b"Subject: a\rb\x00c\xe9\r\nDate: x\ry\r\n\r\n")
        self.assertEqual(parse_wire(data)[:2], [b"x y", b"a b c\xe9"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(
        st.sampled_from([b"From", b"To", b"Cc", b"Subject", b"Reply-To", b"Message-ID", b"X"]),
        st.binary(max_size=80) | st.text(max_size=60).map(lambda t: t.encode("utf-8")),
    ), max_size=8))
    def test_any_header_gives_a_strict_envelope(self, fields):
        headers = b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"
        self.assertEqual(len(parse_wire(wire(headers))), 10)
