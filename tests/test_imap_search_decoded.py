"""SEARCH BODY and TEXT read text parts decoded (Content-Transfer-Encoding and charset,
imap/text_parts.py) and TEXT the header with RFC 2047 words decoded, as Dovecot does;
raw octets still match. A large message (read a piece at a time) answers as a small one."""

import base64

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from imapwebpush.imap import body_scan, search
from imapwebpush.imap.message import split_header
from imapwebpush.imap.search import SearchItem
from tests.harness.imap import IMAPTestCase


def _mime(subject, parts):
    """A multipart/mixed message of ``parts``: (header lines, body octets) each."""
    out = [b"From: carol@example.net\r\nSubject: " + subject + b"\r\nMIME-Version: 1.0\r\n"]
    out.append(b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n')
    for headers, body in parts:
        out.append(b"--b1\r\n" + headers + b"\r\n" + body + b"\r\n")
    out.append(b"--b1--\r\n")
    return b"".join(out)


QP = _mime(b"one", [(b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n", b"Un caf=C3=A9 cr=C3=A8me, long mot coup=\r\n=C3=A9 ici\r\n")])
B64 = _mime(b"two", [(b"Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n", base64.encodebytes("<p>Grüße aus Köln</p>".encode()).replace(b"\n", b"\r\n"))])
LATIN1 = _mime(b"three", [(b"Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n", "Bären und Äpfel\r\n".encode("latin-1"))])
ATTACHMENT = _mime(
    b"four",
    [
        (b"Content-Type: text/plain\r\n", b"see attached\r\n"),
        (b'Content-Type: application/octet-stream; name="notes.txt"\r\nContent-Transfer-Encoding: base64\r\n', base64.b64encode(b"secret plan") + b"\r\n"),
    ],
)
ENCODED_SUBJECT = b"From: carol@example.net\r\nSubject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=\r\n\r\nhello\r\n"


class DecodedSearchTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        for data in (QP, B64, LATIN1, ATTACHMENT, ENCODED_SUBJECT):
            self.inbox().add(data)

    def search(self, *criteria):
        """Each (key, UTF-8 string) sent as ``SEARCH CHARSET UTF-8 key {n+}`` with a literal."""

        def client():
            w = self.session(select="INBOX")
            out = []
            for i, (key, text) in enumerate(criteria):
                word = text.encode("utf-8")
                w.send(b"q%d SEARCH CHARSET UTF-8 %s {%d+}\r\n" % (i, key.encode(), len(word)) + word + b"\r\n")
                out.append(w.until("q%d" % i))
            w.close()
            return out

        return self.in_thread(client)

    def test_decoded_text_parts(self):
        def check(results):
            self.assertEqual(
                results,
                [
                    ["* SEARCH 1", "q0 OK SEARCH completed"],  # caf=C3=A9
                    ["* SEARCH 1", "q1 OK SEARCH completed"],  # CRÈME, case-insensitive
                    ["* SEARCH 1", "q2 OK SEARCH completed"],  # split by a soft line break
                    ["* SEARCH 2", "q3 OK SEARCH completed"],  # base64 text/html
                    ["* SEARCH 3", "q4 OK SEARCH completed"],  # ISO-8859-1
                    ["* SEARCH 3", "q5 OK SEARCH completed"],
                    ["* SEARCH", "q6 OK SEARCH completed"],  # an attachment is not decoded
                    ["* SEARCH 4", "q7 OK SEARCH completed"],  # ...its raw octets still match
                    ["* SEARCH 1", "q8 OK SEARCH completed"],  # raw octets of a QP part too
                ],
            )

        return self.search(
            ("BODY", "café"),
            ("BODY", "CRÈME"),
            ("BODY", "coupé"),
            ("BODY", "grüße aus köln"),
            ("BODY", "bären"),
            ("TEXT", "ÄPFEL"),
            ("BODY", "secret plan"),
            ("BODY", base64.b64encode(b"secret plan").decode()[:12]),
            ("BODY", "caf=C3=A9"),
        ).addCallback(check)

    def test_text_decodes_encoded_words(self):
        def check(results):
            self.assertEqual(
                results,
                [
                    ["* SEARCH 5", "q0 OK SEARCH completed"],
                    ["* SEARCH 5", "q1 OK SEARCH completed"],  # the raw header still matches
                    ["* SEARCH", "q2 OK SEARCH completed"],  # BODY does not read the header
                ],
            )

        return self.search(("TEXT", "grüße aus münchen"), ("TEXT", "=FC=DFe_aus"), ("BODY", "münchen")).addCallback(check)


class _Stored:
    """A stored message over a file (the MIME map reads part headers with pread)."""

    flags = frozenset()
    modseq = 1

    def __init__(self, data, filename):
        self.data = data
        self.size = len(data)
        self.filename = filename
        with open(filename, "wb") as f:
            f.write(data)

    def read(self):
        return self.data

    def headers(self):
        return split_header(self.data)[0]

    def open(self):
        return open(self.filename, "rb")


_WORDS = ["café", "Straße", "naïve", "x", " ", "\r\n", "ß", "é"]
_CHARSETS = [None, "utf-8", "us-ascii", "iso-8859-1", "utf-16", "UTF-16", "utf-32", "x-unknown", "base64"]
_CTES = [None, "7bit", "8bit", "quoted-printable", "base64", "x-uuencode"]
_TYPES = ["text/plain", "text/html", "application/octet-stream"]


def _encode(text, charset, cte):
    # "utf-16" and "utf-32" written without a byte order mark (big-endian), "UTF-16" with one
    codec = {"iso-8859-1": "iso-8859-1", "utf-16": "utf-16-be", "UTF-16": "utf-16", "utf-32": "utf-32-be"}.get(charset, "utf-8")
    octets = text.encode(codec, "replace")
    if cte == "quoted-printable":
        import quopri

        return quopri.encodestring(octets).replace(b"\n", b"\r\n")
    if cte == "base64":
        return base64.encodebytes(octets).replace(b"\n", b"\r\n")
    return octets


@st.composite
def _part(draw):
    kind = draw(st.sampled_from(_TYPES))
    charset = draw(st.sampled_from(_CHARSETS))
    cte = draw(st.sampled_from(_CTES))
    text = "".join(draw(st.lists(st.sampled_from(_WORDS), max_size=12)))
    header = b"Content-Type: " + kind.encode() + (b"; charset=" + charset.encode() if charset else b"") + b"\r\n"
    if cte:
        header += b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n"
    return header, _encode(text, charset, cte)


@st.composite
def _message(draw):
    parts = draw(st.lists(_part(), min_size=1, max_size=4))
    if draw(st.booleans()):
        return _mime(b"=?utf-8?q?caf=C3=A9?=", parts)
    headers, body = parts[0]
    return b"Subject: plain\r\n" + headers + b"\r\n" + body


class LargePathEquivalenceTests(unittest.TestCase):
    def setUp(self):
        self.filename = self.mktemp()

    @settings(max_examples=300, deadline=None)
    @given(_message(), st.sampled_from(_WORDS + ["straße", "caf", "é n", "stra\u00dfe"]), st.booleans(), st.integers(1, 9))
    def test_same_answer_as_in_memory(self, data, needle, whole, piece):
        """The piece-wise path (MIME map, piece decoders) finds what the in-memory one finds."""
        needle = needle.casefold()
        large = _Stored(data, self.filename)
        expected = SearchItem(1, 1, large, False).contains(needle, whole)
        large.size = search.LARGE_MESSAGE + 1  # takes the file path
        raw = body_scan.file_contains(large, needle, whole, piece=piece)
        header = whole and needle in SearchItem(1, 1, large, False).header_text()
        decoded = body_scan.run(body_scan.decoded_steps(large, needle, piece=piece))
        self.assertEqual(raw or header or decoded, expected)
        self.assertEqual(SearchItem(1, 1, large, False).contains(needle, whole), expected)


class LargeMessageWireTests(IMAPTestCase):
    def test_large_message_decoded_a_piece_at_a_time(self):
        """A message over 256 KiB takes the file path (MIME map, piece decoders, one piece
        per Cooperator step) and finds what a small one finds."""
        filler = base64.encodebytes(("Grüße " * 50000).encode() + "Köln".encode()).replace(b"\n", b"\r\n")
        big = _mime(b"big", [(b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n", filler)])
        self.assertGreater(len(big), search.LARGE_MESSAGE)
        self.inbox().add(big)
        self.inbox().add(QP)

        def client():
            w = self.session(select="INBOX")
            out = []
            for i, text in enumerate(["grüße köln", "café", "münchen"]):
                word = text.encode("utf-8")
                w.send(b"q%d SEARCH CHARSET UTF-8 TEXT {%d+}\r\n" % (i, len(word)) + word + b"\r\n")
                out.append(w.until("q%d" % i))
            w.close()
            return out

        def check(results):
            self.assertEqual(
                results,
                [
                    ["* SEARCH 1", "q0 OK SEARCH completed"],
                    ["* SEARCH 2", "q1 OK SEARCH completed"],
                    ["* SEARCH", "q2 OK SEARCH completed"],
                ],
            )

        return self.in_thread(client).addCallback(check)



def _many_parts():
    """A large message of five parts: a QP one, three fillers, a QP one."""
    filler = (b"Content-Type: text/plain\r\n", b"x" * 200000 + b"\r\n")
    qp = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    big = _mime(b"parts", [(qp, b"early caf=C3=A9\r\n"), filler, filler, filler, (qp, b"late cr=C3=A8me\r\n")])
    assert len(big) > search.LARGE_MESSAGE
    return big


class LargeMessagePartLimitTests(IMAPTestCase):
    """SEARCH reads a large message's decoded parts through a MIME map cut at the
    session's --max-mime-parts, like FETCH: parts past it are matched raw only."""

    def search_body(self, *texts):
        def client():
            w = self.session(select="INBOX")
            out = []
            for i, text in enumerate(texts):
                word = text.encode("utf-8")
                w.send(b"q%d SEARCH CHARSET UTF-8 BODY {%d+}\r\n" % (i, len(word)) + word + b"\r\n")
                out.append(w.until("q%d" % i))
            w.close()
            return out

        return self.in_thread(client)

    def test_default_limit_decodes_every_part(self):
        self.inbox().add(_many_parts())
        return self.search_body("late crème").addCallback(
            self.assertEqual, [["* SEARCH 1", "q0 OK SEARCH completed"]])

    def test_parts_past_the_limit_are_matched_raw(self):
        self.factory.max_mime_parts = 3
        self.inbox().add(_many_parts())
        return self.search_body("early café", "late crème", "late cr=C3=A8me").addCallback(
            self.assertEqual, [
                ["* SEARCH 1", "q0 OK SEARCH completed"],
                ["* SEARCH", "q1 OK SEARCH completed"],  # the fifth part, past the limit
                ["* SEARCH 1", "q2 OK SEARCH completed"],  # its raw octets
            ])
