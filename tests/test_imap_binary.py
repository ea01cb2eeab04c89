"""FETCH BINARY[...], BINARY.PEEK[...] and BINARY.SIZE[...] (RFC 3516): base64 and
quoted-printable decoded, literal8 for NUL, UNKNOWN-CTE, composite sections, \\Seen."""

from twisted.trial import unittest

from imapwebpush.imap import fetch_attributes
from tests.harness.imap import IMAPTestCase

INNER = b"From: b@example.net\r\nSubject: inner\r\nContent-Transfer-Encoding: base64\r\n\r\naW5uZXI="
MIXED = (
    b"From: a@example.net\r\n"
    b"Subject: binary\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n'
    b"\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"caf=C3=A9 soft=\r\n"
    b"break\r\n"
    b"--XX\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: BASE64\r\n"
    b"\r\n"
    b"AAECYmluYXJ5/wB0YWls\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"bGluZSBvbmUKbGluZSB0d28K\r\n"
    b"--XX\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: x-uuencode\r\n"
    b"\r\n"
    b"begin 644 x\r\n"
    b"--XX\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n" + INNER + b"\r\n"
    b"--XX--\r\n"
)
OCTETS = b"\x00\x01\x02binary\xff\x00tail"  # part 2, decoded
SINGLE = b"Subject: one part\r\nContent-Transfer-Encoding: base64\r\n\r\nc2luZ2xlIHBhcnQgYm9keQA=\r\n"
BAD_MULTIPART = (
    b"Subject: odd\r\n"
    b'Content-Type: multipart/mixed; boundary="YY"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"--YY\r\n\r\nx\r\n--YY--\r\n"
)


class BinaryFetchTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        for data in (MIXED, SINGLE, BAD_MULTIPART):
            self.inbox().add(data)

    def raw(self, commands, last_tag):
        """The octets answering ``commands`` (one CRLF-ended string), up to ``last_tag``'s answer."""

        def client():
            w = self.session(select="INBOX")
            w.send(commands)
            data = w.read_raw_until(b"\r\n")
            while not data.split(b"\r\n")[-2].startswith(last_tag.encode() + b" "):
                data += w.read_raw_until(b"\r\n")
            w.close()
            return data

        return self.in_thread(client)

    def test_base64_with_nul_is_a_literal8(self):
        d = self.raw("f1 FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])\r\n", "f1")

        def check(data):
            self.assertEqual(
                data,
                b"* 1 FETCH (BINARY[2] ~{15}\r\n" + OCTETS + b" BINARY.SIZE[2] 15)\r\n"
                b"f1 OK FETCH completed\r\n",
            )

        return d.addCallback(check)

    def test_quoted_printable_and_text_line_ends(self):
        d = self.raw("f1 FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[3] BINARY.SIZE[3])\r\n", "f1")

        def check(data):
            self.assertEqual(
                data,
                b"* 1 FETCH (BINARY[1] {15}\r\ncaf\xc3\xa9 softbreak"
                # base64 text with bare LF comes with CRLF (RFC 3516 6)
                b" BINARY[3] {20}\r\nline one\r\nline two\r\n BINARY.SIZE[3] 20)\r\n"
                b"f1 OK FETCH completed\r\n",
            )

        return d.addCallback(check)

    def test_partial_counts_decoded_octets(self):
        d = self.raw("f1 FETCH 1 (BINARY.PEEK[2]<3.6> BINARY.PEEK[2]<9.100>)\r\n", "f1")

        def check(data):
            self.assertEqual(
                data,
                b"* 1 FETCH (BINARY[2]<3> {6}\r\nbinary BINARY[2]<9> ~{6}\r\n\xff\x00tail)\r\n"
                b"f1 OK FETCH completed\r\n",
            )

        return d.addCallback(check)

    def test_binary_sets_seen_peek_does_not(self):
        d = self.raw(
            "f1 FETCH 2 (BINARY.PEEK[1])\r\nf2 FETCH 2 (FLAGS)\r\nf3 FETCH 2 (BINARY[1])\r\n", "f3"
        )

        def check(data):
            self.assertEqual(
                data,
                b"* 2 FETCH (BINARY[1] ~{17}\r\nsingle part body\x00)\r\n"
                b"f1 OK FETCH completed\r\n"
                b"* 2 FETCH (FLAGS (\\Recent))\r\n"
                b"f2 OK FETCH completed\r\n"
                b"* 2 FETCH (BINARY[1] ~{17}\r\nsingle part body\x00 FLAGS (\\Recent \\Seen))\r\n"
                b"f3 OK FETCH completed\r\n",
            )
            self.assertIn("\\Seen", self.inbox().message(2).flags)

        return d.addCallback(check)

    def test_whole_message_and_composite_parts_as_stored(self):
        d = self.raw(
            "f1 UID FETCH 1 (BINARY.SIZE[] BINARY.PEEK[5] BINARY.PEEK[5.1] BINARY.SIZE[9])\r\n"
            "f2 FETCH 1 BINARY.PEEK[]\r\n",
            "f2",
        )

        def check(data):
            self.assertEqual(
                data,
                b"* 1 FETCH (UID 1 BINARY.SIZE[] %d BINARY[5] {%d}\r\n%s BINARY[5.1] {5}\r\ninner"
                b" BINARY.SIZE[9] 0)\r\n"
                b"f1 OK FETCH completed\r\n"
                b"* 1 FETCH (BINARY[] {%d}\r\n%s)\r\n"
                b"f2 OK FETCH completed\r\n" % (len(MIXED), len(INNER), INNER, len(MIXED), MIXED),
            )

        return d.addCallback(check)

    def test_unknown_cte(self):
        def client():
            w = self.session(select="INBOX")
            part = w.cmd("f1", "FETCH 1 (BINARY.PEEK[4])")
            size = w.cmd("f2", "FETCH 1 BINARY.SIZE[4]")
            multipart = w.cmd("f3", "FETCH 3 BINARY.PEEK[]")
            inside = w.cmd("f4", "FETCH 3 BINARY.PEEK[1]")
            flags = w.cmd("f5", "FETCH 1 FLAGS")
            w.close()
            return part, size, multipart, inside, flags

        def check(result):
            part, size, multipart, inside, flags = result
            self.assertEqual(part, ["f1 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding x-uuencode"])
            self.assertEqual(size, ["f2 NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding x-uuencode"])
            # the whole message is sent as stored, whatever its top-level header claims
            self.assertEqual(multipart[0], "* 3 FETCH (BINARY[] {%d}" % len(BAD_MULTIPART))
            self.assertEqual(multipart[-1], "f3 OK FETCH completed")
            self.assertEqual(inside, ["* 3 FETCH (BINARY[1] {1}", "x)", "f4 OK FETCH completed"])
            self.assertEqual(flags, ["* 1 FETCH (FLAGS (\\Recent))", "f5 OK FETCH completed"])

        return self.in_thread(client).addCallback(check)

    def test_composite_part_claiming_an_encoding(self):
        nested = (
            b'Content-Type: multipart/mixed; boundary="O"\r\n\r\n'
            b"--O\r\n" + BAD_MULTIPART + b"\r\n--O--\r\n"
        )
        self.inbox().add(nested)

        def client():
            w = self.session(select="INBOX")
            lines = w.cmd("f1", "FETCH 4 BINARY.PEEK[1]")
            w.close()
            return lines

        def check(lines):
            self.assertEqual(lines, ["f1 NO [UNKNOWN-CTE] A multipart/mixed part cannot be base64-encoded"])

        return self.in_thread(client).addCallback(check)

    def test_refused_items(self):
        def client():
            w = self.session(select="INBOX")
            answers = [
                w.cmd("b%d" % n, "FETCH 1 " + item)
                for n, item in enumerate(
                    ["BINARY[1.HEADER]", "BINARY[TEXT]", "BINARY[1]<0.0>", "BINARY.SIZE[1]<0.5>", "BINARY", "BINARY[0]"]
                )
            ]
            w.close()
            return answers

        def check(answers):
            self.assertEqual(
                answers,
                [
                    ["b0 BAD Bad FETCH attribute: BINARY[1.HEADER]"],
                    ["b1 BAD Bad FETCH attribute: BINARY[TEXT]"],
                    ["b2 BAD a BINARY partial's length is at least 1"],
                    ["b3 BAD Bad FETCH attribute: BINARY.SIZE[1]<0.5>"],
                    ["b4 BAD Bad FETCH attribute: BINARY"],
                    ["b5 BAD section part numbers start at 1"],
                ],
            )

        return self.in_thread(client).addCallback(check)

    def test_literal8_append_then_binary_fetch(self):
        stored = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\xff\r\n"

        def client():
            w = self.session(select="INBOX")
            w.send(b"a1 APPEND INBOX ~{%d+}\r\n" % len(stored) + stored + b"\r\n")
            w.until("a1")
            w.send(b"f1 FETCH 4 (BINARY.PEEK[1] BINARY.SIZE[1])\r\n")
            data = w.read_raw_until(b"f1 OK FETCH completed\r\n")
            w.close()
            return data

        def check(data):
            self.assertEqual(data, b"* 4 FETCH (BINARY[1] ~{4}\r\n\x00\xff\r\n BINARY.SIZE[1] 4)\r\nf1 OK FETCH completed\r\n")

        return self.in_thread(client).addCallback(check)


    def test_nul_in_a_plain_literal_is_sent_as_0x80(self):
        """A literal8 APPEND stored NUL octets; BODY[] and its sections (plain literals, which
        may not carry NUL) send each as 0x80, the size unchanged; BINARY sends them as they are.
        The same for a message FETCH streams from its file (over 256 KiB)."""
        small = b"Content-Type: application/octet-stream\r\n\r\nab\x00cd\r\n"
        large = b"Content-Type: application/octet-stream\r\n\r\n" + (b"x" * 1000 + b"\x00\r\n") * 300

        def client():
            w = self.session(select="INBOX")
            out = []
            for n, stored in ((4, small), (5, large)):
                w.send(b"a%d APPEND INBOX ~{%d+}\r\n" % (n, len(stored)) + stored + b"\r\n")
                w.until("a%d" % n)
                w.send(b"f%d FETCH %d (RFC822.SIZE BODY.PEEK[] BODY.PEEK[1] BINARY.PEEK[1])\r\n" % (n, n))
                out.append(w.read_raw_until(b"f%d OK FETCH completed\r\n" % n))
            w.close()
            return out

        def check(answers):
            for (n, stored), data in zip(((4, small), (5, large)), answers):
                body = stored[stored.index(b"\r\n\r\n") + 4:]
                self.assertEqual(data, b"* %d FETCH (RFC822.SIZE %d BODY[] {%d}\r\n%s BODY[1] {%d}\r\n%s"
                                 b" BINARY[1] ~{%d}\r\n%s)\r\nf%d OK FETCH completed\r\n" % (
                                     n, len(stored), len(stored), stored.replace(b"\x00", b"\x80"),
                                     len(body), body.replace(b"\x00", b"\x80"), len(body), body, n))

        return self.in_thread(client).addCallback(check)


class BinaryAttributeTests(unittest.TestCase):
    def test_parsed_items(self):
        attrs, _, seen = fetch_attributes.fetch_attributes(b"(BINARY.PEEK[1.2]<0.10> BINARY.SIZE[] UID)")
        self.assertEqual(
            [(a.type, a.peek, a.part, a.partial_begin, a.partial_length) for a in attrs],
            [("binary", True, (0, 1), 0, 10), ("binarysize", False, (), None, None), ("uid", False, (), None, None)],
        )
        self.assertFalse(seen)
        self.assertTrue(fetch_attributes.fetch_attributes(b"BINARY[]")[2])
