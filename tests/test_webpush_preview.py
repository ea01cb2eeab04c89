"""RFC 8970 PREVIEW in new-mail pushes: the text, cut safely, and dropped first when room is short."""

import re

from twisted.trial import unittest

from imapwebpush.webpush.payload import NewMessage, Section, render
from imapwebpush.webpush.preview import MAX_PREVIEW_CHARS, preview_text

PLAIN = b"From: a@b.example\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"


def headers(ctype, cte=None):
    extra = b"Content-Transfer-Encoding: %s\r\n" % cte if cte else b""
    return b"From: a@b.example\r\nContent-Type: " + ctype + b"\r\n" + extra + b"\r\n"


class PreviewTextTests(unittest.TestCase):
    def test_plain_text_white_space_made_one(self):
        self.assertEqual(preview_text(PLAIN, b"Hello\r\n\r\n  there,\tyou\r\n"), "Hello there, you")

    def test_no_content_type_is_plain_ascii(self):
        self.assertEqual(preview_text(b"Subject: x\r\n\r\n", b"Just text\r\n"), "Just text")

    def test_at_most_max_chars_characters(self):
        text = preview_text(PLAIN, ("é" * 400).encode("utf-8"), max_chars=MAX_PREVIEW_CHARS)
        self.assertEqual(text, "é" * 256)

    def test_sequence_cut_by_the_body_limit_is_left_out(self):
        body = "ab€".encode("utf-8")[:-1]  # the store cut the body inside the euro sign
        self.assertEqual(preview_text(PLAIN, body), "ab")

    def test_quoted_printable_latin1(self):
        h = headers(b"text/plain; charset=iso-8859-1", b"quoted-printable")
        self.assertEqual(preview_text(h, b"Gr=FC=DFe aus =\r\nK=F6ln=3"), "Gr\u00fc\u00dfe aus K\u00f6ln")

    def test_base64_cut_mid_quantum(self):
        h = headers(b"text/plain; charset=utf-8", b"base64")
        self.assertEqual(preview_text(h, b"SGVsbG8gV29ybGQh\r\nSGVsbG8"), "Hello World!Hel")

    def test_first_plain_part_of_a_multipart(self):
        h = headers(b'multipart/alternative; boundary="XX"')
        body = (b"preamble\r\n--XX\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
                b"--XX\r\nContent-Type: text/plain\r\n\r\nthe plain one\r\n--XX--\r\n")
        self.assertEqual(preview_text(h, body), "the plain one")

    def test_nested_multipart(self):
        h = headers(b"multipart/mixed; boundary=outer")
        body = (b"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
                b"--inner\r\nContent-Type: text/plain\r\n\r\ndeep text\r\n--inner--\r\n"
                b"--outer--\r\n")
        self.assertEqual(preview_text(h, body), "deep text")

    def test_html_only_gives_its_text(self):
        h = headers(b"text/html; charset=iso-8859-1", b"quoted-printable")
        body = (b"<html><head><title>News</title><style>p {color: red}</style></head>"
                b"<body><p>Caf=E9 &amp; cr=E8me</p><script>alert(1)</script><p>to=\r\nday</p>"
                b"<table><tr><td>a</td><td>b</td></tr></table><p>cut <b")
        self.assertEqual(preview_text(h, body), "Caf\u00e9 & cr\u00e8me today a b cut")

    def test_html_with_an_unclosed_head(self):
        body = b"<html><head><title>x</title><style>p {}</style><body><p>Dear reader</p>"
        self.assertEqual(preview_text(headers(b"text/html"), body), "Dear reader")

    def test_html_only_inside_a_multipart(self):
        h = headers(b"multipart/mixed; boundary=XX")
        body = (b"--XX\r\nContent-Type: text/html\r\n\r\n<div>Hello<br>world</div>\r\n"
                b"--XX\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--XX--\r\n")
        self.assertEqual(preview_text(h, body), "Hello world")

    def test_nothing_plain_to_show(self):
        self.assertIsNone(preview_text(headers(b"text/html"), b"<head><style>p {}"))
        self.assertIsNone(preview_text(headers(b"application/pdf"), b"%PDF-1.4"))
        self.assertIsNone(preview_text(
            b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\n", b"file"))
        self.assertIsNone(preview_text(PLAIN, b""))
        self.assertIsNone(preview_text(PLAIN, b" \r\n\r\n"))
        self.assertIsNone(preview_text(PLAIN, b"text", max_chars=0))

    def test_unknown_charset_is_read_as_utf8(self):
        self.assertEqual(preview_text(headers(b"text/plain; charset=x-unknown"), b"caf\xc3\xa9"),
                         "caf\u00e9")


def new(uid, body=b"Hello there", order=None):
    return NewMessage(uid, (), PLAIN, uid if order is None else order, body)


class PayloadPreviewTests(unittest.TestCase):
    def test_preview_after_the_envelope(self):
        [push] = render([Section("INBOX", (new(7),))])
        self.assertEqual(push.payload,
                         b'* SELECT "INBOX"\r\n* 7 UIDFETCH (FLAGS () ENVELOPE (NIL "hi" '
                         b'((NIL NIL "a" "b.example")) ((NIL NIL "a" "b.example")) '
                         b'((NIL NIL "a" "b.example")) NIL NIL NIL NIL NIL) '
                         b'PREVIEW "Hello there")\r\n')

    def test_quotes_escaped_and_utf8_kept_whole_when_cut(self):
        body = ('say "hi" \\ ' + "€" * 100).encode("utf-8")
        [full] = render([Section("INBOX", (new(7, body),))])
        self.assertIn(b'PREVIEW "say \\"hi\\" \\\\ \xe2\x82\xac', full.payload)
        for budget in range(len(full.payload) - 60, len(full.payload)):
            [push] = render([Section("INBOX", (new(7, body),))], budget)
            self.assertLessEqual(len(push.payload), budget)
            push.payload.decode("utf-8")  # never a cut sequence
            self.assertRegex(push.payload, rb'PREVIEW "say \\"hi\\" \\\\ (\xe2\x82\xac)*"\)\r\n$')

    def test_dropped_before_the_envelope(self):
        [full] = render([Section("INBOX", (new(7, b"x" * 150),))])
        [without] = render([Section("INBOX", (new(7, b""),))])
        [push] = render([Section("INBOX", (new(7, b"x" * 150),))], len(without.payload))
        self.assertEqual(push.payload, without.payload)  # the whole envelope, no PREVIEW
        self.assertGreater(len(full.payload), len(without.payload))

    def test_oldest_previews_go_first_and_never_cost_a_push(self):
        items = tuple(new(uid, b"p" * 200) for uid in range(1, 16))
        pushes = render([Section("INBOX", items)])
        self.assertEqual(len(pushes), 1)
        [payload] = [p.payload for p in pushes]
        self.assertEqual(pushes[0].envelopes_dropped, 0)
        previewed = [int(u) for u in re.findall(rb"^\* (\d+) UIDFETCH .* PREVIEW ", payload, re.M)]
        self.assertTrue(previewed)
        self.assertLess(len(previewed), 15)
        self.assertEqual(previewed, list(range(16 - len(previewed), 16)))  # the newest

    def test_no_preview_while_an_envelope_is_dropped(self):
        items = tuple(new(uid, b"p" * 200) for uid in range(1, 41))
        pushes = render([Section("INBOX", items)])
        self.assertTrue(any(p.envelopes_dropped for p in pushes))
        self.assertFalse(any(b"PREVIEW" in p.payload for p in pushes))
