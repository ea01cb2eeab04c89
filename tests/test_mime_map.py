"""imap/mime_map.py finds, reading a file in small pieces, the same MIME tree as
imap/message.py's RawPart finds in memory: same parts, same octets, same BODYSTRUCTURE.

Generated messages: nested multiparts (boundaries that are prefixes of each other),
message/rfc822, multipart/digest defaults, missing or unused boundaries, missing close delimiters and CRLFs,
preambles and epilogues that look like delimiters, truncated files; the file is
read 1 to 40 octets at a time so every search crosses piece borders.
"""

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.mail import imap4
from twisted.trial import unittest

from imapwebpush.imap import mime_map
from imapwebpush.imap.message import MAX_MIME_DEPTH, RawPart, body_structure, wire_safe

BOUNDARIES = [b"a", b"ab", b"b", b"=_x", b"ab c"]
NOISE = [b"", b"x", b"--", b"\r\n", b"\r\n\r\n", b"--a", b"\r\n--a", b"\r\n--ab--", b"\r\n--b\r\n", b"=", b"\r", b"\n", b"text line"]


def _text():
    return st.lists(st.sampled_from(NOISE), max_size=6).map(b"".join)


def _header(content_type):
    fields = st.lists(
        st.sampled_from(
            [
                b"Subject: s\r\n",
                b"Content-Transfer-Encoding: base64\r\n",
                b"Content-Disposition: attachment; filename=x\r\n",
                b"Content-Language: en\r\n",
                b"Content-ID: <i@x>\r\n",
                b"X-Folded: a\r\n b\r\n",
                b"From: a@example.net\r\n",
            ]
        ),
        max_size=3,
    )
    return fields.map(lambda fs: (b"Content-Type: " + content_type + b"\r\n" if content_type else b"") + b"".join(fs))


def _entity(children):
    """An entity: header + blank line + body; ``children`` draws nested entities."""
    leaf_types = st.sampled_from([None, b"text/plain", b"text/html; charset=utf-8", b"application/pdf", b"bogus"])
    leaf = st.tuples(leaf_types.flatmap(_header), st.sampled_from([b"\r\n", b""]), _text()).map(b"".join)

    @st.composite
    def multipart(draw):
        boundary = draw(st.sampled_from(BOUNDARIES))
        sub = draw(st.sampled_from([b"mixed", b"digest", b"alternative"]))
        quoted = draw(st.booleans())
        declared = draw(st.sampled_from([boundary, boundary, boundary, None, b"zz"]))  # missing, or never used
        ctype = b"multipart/" + sub
        if declared is not None:
            ctype += b"; boundary=" + (b'"%s"' % declared if quoted or b" " in declared else declared)
        head = draw(_header(ctype))
        parts = draw(st.lists(children, max_size=4))
        out = head + b"\r\n" + draw(_text())
        for part in parts:
            padding = draw(st.sampled_from([b"", b"  ", b"x"]))
            end = draw(st.sampled_from([b"\r\n", b"\r\n", b""]))
            out += b"\r\n--" + boundary + padding + end + part
        if draw(st.booleans()):
            out += b"\r\n--" + boundary + b"--" + draw(st.sampled_from([b"", b"\r\n"])) + draw(_text())
        return out

    @st.composite
    def rfc822(draw):
        head = draw(_header(b"message/rfc822"))
        return head + b"\r\n" + draw(children)

    return st.one_of(leaf, multipart(), rfc822())


MESSAGES = st.recursive(
    st.tuples(_header(b"text/plain"), st.sampled_from([b"\r\n", b""]), _text()).map(b"".join),
    _entity,
    max_leaves=12,
)


@st.composite
def stored_messages(draw):
    data = draw(MESSAGES)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # a truncated message
    if draw(st.booleans()):
        data = b"\r\n" + data  # no header at all
    return data


class _file:
    """A temporary file holding ``data``: ``with _file(data) as f`` gives it open,
    ``opener`` opens it again (what a MappedPart reads headers with)."""

    def __init__(self, data):
        self.f = tempfile.NamedTemporaryFile()
        self.f.write(data)
        self.f.flush()

    def opener(self):
        return open(self.f.name, "rb")

    def __enter__(self):
        return self.f

    def __exit__(self, *exc):
        self.f.close()


def _mapped(data, **kw):
    """(the temporary file, the MappedPart of ``data``), built with ``kw``."""
    tmp = _file(data)
    with tmp.opener() as f:
        node = mime_map.build(f, **kw)
    return tmp, mime_map.MappedPart(node, tmp.opener)


def _wire(part, extended):
    return imap4.collapseNestedLists([wire_safe(body_structure(part, extended))])


class EquivalenceTests(unittest.TestCase):
    def assertSameTree(self, raw, mapped, data, depth=0):
        node = mapped.node
        self.assertEqual(data[node.start : node.end], raw.raw)
        if node.opaque:
            return
        self.assertEqual(data[node.start : node.body], raw.header)
        self.assertEqual(data[node.body : node.end], raw.body)
        self.assertEqual(node.lines, raw.body.count(b"\n"))
        self.assertEqual(mapped.header, raw.header)
        raw_children, mapped_children = raw.subparts(), mapped.subparts()
        self.assertEqual(len(mapped_children), len(raw_children))
        for r, m in zip(raw_children, mapped_children):
            self.assertSameTree(r, m, data, depth + 1)

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(stored_messages(), st.integers(1, 40))
    def test_same_as_in_memory(self, data, piece):
        tmp, mapped = _mapped(data, piece=piece)
        with tmp:
            raw = RawPart(data)
            self.assertSameTree(raw, mapped, data)
            for extended in (True, False):
                self.assertEqual(_wire(mapped, extended), _wire(raw, extended))

    @settings(max_examples=200, deadline=None)
    @given(stored_messages(), st.lists(st.integers(0, 3), min_size=1, max_size=4))
    def test_same_sections(self, data, path):
        tmp, mapped = _mapped(data, piece=7)
        with tmp:
            try:
                want = RawPart(data).section(tuple(path))
            except (KeyError, IndexError):
                self.assertRaises((KeyError, IndexError), mapped.section, tuple(path))
                return
            got = mapped.section(tuple(path))
            start, end = got.body_range()
            self.assertEqual(data[start:end], want.body)
            self.assertEqual(got.header, want.header)

    def test_big_pieces_hold_little(self):
        """A 3 MB message read 64 KiB at a time: the window never holds much more."""
        body = b"line of text\r\n" * 80000
        data = (
            b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\n'
            + body
            + b"\r\n--q\r\n\r\n"
            + body
            + b"\r\n--q--\r\n"
        )
        seen = []
        original = mime_map._Window.more

        def more(window, keep_from):
            original(window, keep_from)
            seen.append(len(window.buf))

        self.patch(mime_map._Window, "more", more)
        with _file(data) as f:
            root = mime_map.build(f)
        self.assertEqual([(c.body, c.end - c.body) for c in root.children][1][1], len(body))
        self.assertLess(max(seen), 2 * mime_map.PIECE)

    def test_delimiters_without_parts(self):
        """Delimiter lines that make no part (no CRLF before the next) count too: the
        multipart stops being split after 2 * max_parts + 16 of them."""
        data = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"\r\n--bX" * 200000
        acted = []
        original = mime_map._Builder._delimiter

        def delimiter(builder, index, pos):
            acted.append(pos)
            return original(builder, index, pos)

        self.patch(mime_map._Builder, "_delimiter", delimiter)
        with _file(data) as f:
            root = mime_map.build(f, max_parts=10)
        self.assertEqual(len(acted), 2 * 10 + 16 + 1)
        self.assertEqual((root.children, root.end), ([], len(data)))

    def test_depth_cut(self):
        """Past MAX_MIME_DEPTH a part is opaque, as BODYSTRUCTURE describes it."""
        data = b"Content-Type: message/rfc822\r\n\r\n" * (MAX_MIME_DEPTH + 5) + b"Subject: deep\r\n\r\nx\r\n"
        tmp, mapped = _mapped(data, piece=5)
        with tmp:
            self.assertEqual(_wire(mapped, True), _wire(RawPart(data), True))

    def test_part_limit(self):
        """After max_parts parts the multipart takes no more children; a held message past
        the limit is one opaque part."""
        data = b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n' + b"--z\r\n\r\np\r\n" * 10 + b"--z--\r\n"
        with _file(data) as f:
            root = mime_map.build(f, max_parts=4)
        self.assertEqual(len(root.children), 3)
        self.assertEqual(root.end, len(data))
        data = b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n--z\r\nContent-Type: message/rfc822\r\n\r\nS: x\r\n\r\nb\r\n--z--\r\n'
        tmp, mapped = _mapped(data, max_parts=2)
        with tmp:
            self.assertEqual(
                _wire(mapped, False),
                b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 9 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) '
                b'("APPLICATION" "OCTET-STREAM" NIL NIL NIL "7BIT" 9) 2) "MIXED")',
            )
