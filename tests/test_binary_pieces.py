"""imap/binary.py's piece decoders give, over any cutting of a body into pieces, what
its whole-body decoding gives (base64 across quanta, quoted-printable across soft
breaks, escapes and over-long lines, text line ends across pieces)."""

import binascii

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from imapwebpush.imap import binary

QP_ONE_LINE = [b"=", b"==", b"=\r", b"\r", b"A", b"f", b"3", b"=4", b"=4f", b"1", b"g", b" "]
QP_ALPHABET = [b"=", b"==", b"=\r", b"=\n", b"\r", b"\n", b"\r\n", b"A", b"f", b"3", b"=4", b"1", b"g", b" ", b"\x00"]
B64_ALPHABET = [b"QUJD", b"a", b"Zm", b"9v", b"=", b"==", b"\r\n", b" ", b"+/", b"!", b"\n"]


def _cut(data, points):
    points = sorted({p % (len(data) + 1) for p in points})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def _run(decoder, pieces):
    return b"".join(decoder.feed(p) for p in pieces) + decoder.flush()


class _Part:
    """What piece_decoder reads of a part: its encoding and type."""

    def __init__(self, encoding, mime):
        self.encoding, self.mime = encoding, mime

    def header_value(self, name):
        return self.encoding if name == "content-transfer-encoding" else b""

    def mime_type(self):
        return self.mime

    def isMultipart(self):
        return False

    def is_encapsulated(self):
        return False


def _whole(encoding, mime, data):
    decoded = binary._DECODERS[encoding](data)
    if mime.startswith(b"text/"):
        decoded = binary._LINE_END.sub(b"\r\n", decoded)
    return decoded


class PieceDecoderTests(unittest.TestCase):
    @settings(max_examples=1500, deadline=None)
    @given(
        st.sampled_from(
            [(b"base64", B64_ALPHABET), (b"quoted-printable", QP_ALPHABET), (b"quoted-printable", QP_ONE_LINE)]
        ),
        st.sampled_from([b"text/plain", b"application/octet-stream"]),
        st.data(),
        st.lists(st.integers(0, 400), max_size=12),
        st.integers(1, 8),
    )
    def test_pieces_decode_as_whole(self, kind, mime, data, points, line):
        encoding, alphabet = kind
        body = b"".join(data.draw(st.lists(st.sampled_from(alphabet), max_size=60)))
        self.patch(binary._QuotedPrintablePieces, "QP_LINE", line)  # over-long lines, often
        decoder = binary.piece_decoder(_Part(encoding, mime))
        self.assertEqual(_run(decoder, _cut(body, points)), _whole(encoding, mime, body))

    def test_plain_and_unknown(self):
        self.assertIsNone(binary.piece_decoder(_Part(b"8bit", b"text/plain")))
        self.assertRaises(binary.UnknownCTE, binary.piece_decoder, _Part(b"x-uuencode", b"text/plain"))

    def test_long_line_swallowed_after_equals_cr(self):
        """'=' CR drops all up to the next LF, even pieces later (a2b_qp's reading)."""
        body = b"ab=\rxx" + b"y" * 200 + b"\ncd=41"
        decoder = binary._QuotedPrintablePieces()
        decoder.QP_LINE = 16
        self.assertEqual(_run(decoder, _cut(body, range(0, len(body), 7))), binascii.a2b_qp(body))
        self.assertEqual(binascii.a2b_qp(body), b"abcdA")
