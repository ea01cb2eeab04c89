"""FETCH of the sections, structure and decoded parts of a large message: served from
its MIME map (imap/mime_map.py) and file, never read whole, and the same octets on
the wire as the in-memory answers small messages get."""

import base64
import binascii
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imapwebpush.imap import fetch, mime_map, search
from imapwebpush.store import message as store_message
from tests import test_mime_map
from tests.harness.wire import USER
from tests.test_imap_fetch_stream import StreamCase

LINE = b"0123456789" * 7 + b"abcdefgh\r\n"
BLOB = bytes(range(256)) * 1200  # NULs among them: a literal8
TEXT = ("caf\u00e9 \u2014 " * 9000).encode("utf-8")
INNER = (
    b"From: inner@example.net\r\n"
    b"Subject: held\r\n"
    b'Content-Type: multipart/alternative; boundary="in"\r\n'
    b"\r\n"
    b"--in\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n" + LINE * 2000 + b"--in\r\n"
    b"Content-Type: text/html\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + base64.encodebytes(b"<p>held</p>\n" * 5000).replace(b"\n", b"\r\n") + b"--in--\r\n"
)
BIG = (
    b"From: a@example.net\r\n"
    b"Subject: sections\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n" + binascii.b2a_qp(TEXT).replace(b"\n", b"\r\n") + b"\r\n"
    b"--outer\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="blob.bin"\r\n'
    b"\r\n" + base64.encodebytes(BLOB).replace(b"\n", b"\r\n") + b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n" + INNER + b"\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)

COMMANDS = [
    b"FETCH 1 (BODYSTRUCTURE)",
    b"FETCH 1 (BODY ENVELOPE)",
    b"FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME])",
    b"FETCH 1 (BODY.PEEK[2]<1000.50000> BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT])",
    b"FETCH 1 (BODY.PEEK[3.1] BODY.PEEK[3.2] BODY.PEEK[3.2.MIME] BODY.PEEK[3.1.HEADER.FIELDS (CONTENT-TYPE)])",
    b"FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[HEADER.FIELDS.NOT (FROM)] RFC822.HEADER BODY.PEEK[9] BODY.PEEK[3.9.TEXT])",
    b"FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2] BINARY.SIZE[3] BINARY.SIZE[3.2] BINARY.SIZE[7])",
    b"FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2])",
    b"FETCH 1 (BINARY.PEEK[2]<256.1000> BINARY.PEEK[2]<1.255> BINARY.PEEK[3.2]<7.20000> BINARY.PEEK[3] BINARY.PEEK[5])",
]


class CompareCase(StreamCase):
    """A StreamCase whose answers can be had from the in-memory path too."""

    def answer(self, command):
        """The whole answer to ``command``, the client reading as it comes."""
        self.transport.clear()
        self.server.dataReceived(b"F " + command + b"\r\n")
        for _ in range(10000):
            self.clock.advance(0)
            self.transport.read()
            if b"\r\nF " in b"\r\n" + self.transport.value():
                break
        return self.transport.value()

    def in_memory(self, command):
        """The answer of the in-memory path (what any message under 256 KiB gets)."""
        self.patch(fetch, "STREAM_MIN", 1 << 62)
        self.patch(search, "LARGE_MESSAGE", 1 << 62)
        self.patch(store_message.StoredMessage, "read", self.unpatched_read)
        mailbox = self.server.view.mailbox
        cache = mailbox.answer_cache
        mailbox.answer_cache = None  # made again, not taken from what the mapped path cached
        try:
            return self.answer(command)
        finally:
            mailbox.answer_cache = cache
            self.patch(fetch, "STREAM_MIN", 256 * 1024)
            self.patch(search, "LARGE_MESSAGE", 256 * 1024)
            self.patch(store_message.StoredMessage, "read", self.never_whole)

    def setUp(self):
        self.unpatched_read = store_message.StoredMessage.read
        super().setUp()
        self.never_whole = store_message.StoredMessage.read


class MappedFetchTests(CompareCase):
    def message_data(self):
        return BIG

    def more_messages(self):
        return [BIG.replace(b"Transfer-Encoding: base64\r\nContent-Disposition", b"Transfer-Encoding: x-uue\r\nContent-Disposition")]

    def test_large(self):
        self.assertGreater(len(BIG), 2 * fetch.STREAM_MIN)

    def test_same_octets_as_in_memory(self):
        for command in COMMANDS:
            streamed = self.answer(command)
            self.assertTrue(streamed.endswith(b"F OK FETCH completed\r\n"), streamed[-200:])
            self.assertEqual(streamed, self.in_memory(command), command)

    def test_exact_sections(self):
        qp = binascii.b2a_qp(TEXT).replace(b"\n", b"\r\n")
        out = self.answer(b"FETCH 1 (BODY.PEEK[1]<0.20> BINARY.PEEK[1]<0.12> BINARY.SIZE[2] BODY.PEEK[3.1.MIME])")
        self.assertEqual(
            out,
            b"* 1 FETCH (BODY[1]<0> {20}\r\n" + qp[:20] + b" BINARY[1]<0> {12}\r\n" + TEXT[:12]
            + b" BINARY.SIZE[2] %d BODY[3.1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n)\r\n" % (len(BLOB),)
            + b"F OK FETCH completed\r\n",
        )
        out = self.answer(b"FETCH 1 BINARY.PEEK[2]")
        self.assertEqual(out, b"* 1 FETCH (BINARY[2] ~{%d}\r\n" % (len(BLOB),) + BLOB + b")\r\nF OK FETCH completed\r\n")

    def test_structure_is_mapped_once(self):
        built = []
        original = mime_map._Builder.run

        def run(builder):
            built.append(builder.root.start)
            return original(builder)

        self.patch(mime_map._Builder, "run", run)
        self.patch(mime_map, "_cache", type(mime_map._cache)())
        first = self.answer(b"FETCH 1 BODYSTRUCTURE")
        self.assertEqual(self.answer(b"FETCH 1 BODYSTRUCTURE"), first)
        self.answer(b"FETCH 1 (BODY.PEEK[3.2] BINARY.SIZE[2])")
        self.assertEqual(built, [0])
        mime_map._cache.clear()  # as when 64 other large messages were used since
        self.assertEqual(self.answer(b"FETCH 1 BODYSTRUCTURE"), first)
        self.assertEqual(built, [0], "a cached answer needs no map")

    def test_decoding_pass_between_turns(self):
        """BINARY.SIZE (and the literal length of BINARY) of an encoded part comes from a
        decoding pass made a file chunk per step of the streamer: other sessions are
        served between its slices. Once made, it is kept with the message's map."""
        self.patch(mime_map, "_cache", type(mime_map._cache)())
        self.assertGreater(len(base64.encodebytes(BLOB)), fetch._FetchStreamer.SLICE)
        self.answer(b"FETCH 1 BODY.PEEK[2.MIME]")  # the map (read between turns too)
        self.transport.clear()
        self.server.dataReceived(b"F FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2]<0.4>)\r\n")
        self.assertEqual(self.transport.value(), b"* 1 FETCH (")  # the pass is not done in this turn
        out = self.answer(b"NOOP")  # (the rest of the FETCH answer, then the NOOP's)
        self.assertEqual(
            out,
            b"BINARY.SIZE[2] %d BINARY[2]<0> ~{4}\r\n\x00\x01\x02\x03)\r\n" % (len(BLOB),)
            + b"F OK FETCH completed\r\nF OK NOOP completed\r\n",
        )
        self.transport.clear()
        self.server.dataReceived(b"F FETCH 1 BINARY.SIZE[2]\r\n")  # kept: answered at once
        self.assertEqual(self.transport.value(), b"* 1 FETCH (BINARY.SIZE[2] %d)\r\nF OK FETCH completed\r\n" % (len(BLOB),))

    def test_map_read_between_turns(self):
        """A large message's MIME map is read a piece (64 KiB) per step of the streamer:
        its answer starts a few turns later; an ENVELOPE needs no map."""
        self.patch(mime_map, "_cache", type(mime_map._cache)())
        self.assertGreater(len(BIG), 2 * fetch._FetchStreamer.SLICE)
        self.transport.clear()
        self.server.dataReceived(b"F FETCH 1 (BODY.PEEK[2.MIME]<0.12>)\r\n")
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(mime_map._cache)
        self.assertEqual(
            self.answer(b"NOOP"),
            b"* 1 FETCH (BODY[2.MIME]<0> {12}\r\nContent-Type)\r\nF OK FETCH completed\r\nF OK NOOP completed\r\n",
        )
        self.assertEqual(len(mime_map._cache), 1)
        self.patch(mime_map, "_cache", type(mime_map._cache)())
        self.transport.clear()
        self.server.dataReceived(b"F FETCH 1 (ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
        self.assertEqual(
            self.transport.value(),
            b'* 1 FETCH (ENVELOPE (NIL "sections" ((NIL NIL "a" "example.net")) ((NIL NIL "a" "example.net")) '
            b'((NIL NIL "a" "example.net")) NIL NIL NIL NIL NIL) BODY[HEADER.FIELDS (SUBJECT)] {21}\r\n'
            b"Subject: sections\r\n\r\n)\r\nF OK FETCH completed\r\n",
        )
        self.assertFalse(mime_map._cache)

    def test_removed_while_its_map_is_read(self):
        """A message whose file goes (another tool) while its map is read is answered as
        one expunged meanwhile; the connection stays."""
        self.patch(mime_map, "_cache", type(mime_map._cache)())
        self.transport.clear()
        self.server.dataReceived(b"F FETCH 1 (BODY.PEEK[2.MIME])\r\n")
        os.remove(self.store.account(USER).mailbox("INBOX").message(1).path())
        self.assertEqual(
            self.answer(b"NOOP"),
            b"F OK [EXPUNGEISSUED] Some messages were expunged\r\n* 1 EXPUNGE\r\nF OK NOOP completed\r\n",
        )
        self.assertFalse(self.transport.disconnecting)

    def test_unknown_encoding_of_a_part(self):
        out = self.answer(b"FETCH 2 (BINARY.SIZE[1] BINARY.SIZE[2])")
        self.assertEqual(out, b"F NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding x-uue\r\n")
        self.assertEqual(self.in_memory(b"FETCH 2 (BINARY.SIZE[1] BINARY.SIZE[2])"), out)

    def test_search_body_and_text_from_the_file(self):
        """SEARCH BODY/TEXT of large messages: read in pieces (never whole), same answers."""
        for command, answer in [
            (b'SEARCH BODY "SUBJECT: HELD"', b"* SEARCH 1 2\r\n"),
            (b'SEARCH BODY "subject: sections"', b"* SEARCH\r\n"),
            (b'SEARCH TEXT "subject: sections"', b"* SEARCH 1 2\r\n"),
            (b'SEARCH BODY "x-uue"', b"* SEARCH 2\r\n"),
            (b'SEARCH NOT TEXT "epilogue"', b"* SEARCH\r\n"),
        ]:
            out = self.answer(command)
            self.assertEqual(out, answer + b"F OK SEARCH completed\r\n", command)
            self.assertEqual(self.in_memory(command), out)

    def test_part_limit(self):
        """--max-mime-parts: past it, a large message's multipart takes no more parts."""
        self.server.max_mime_parts = 3  # the message, its part 1 and part 2
        self.patch(mime_map, "_cache", type(mime_map._cache)())
        out = self.answer(b"FETCH 1 (BODY.PEEK[2.MIME] BODY.PEEK[3])")
        self.assertEqual(
            out,
            b"* 1 FETCH (BODY[2.MIME] {131}\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="blob.bin"\r\n\r\n BODY[3] {0}\r\n)\r\n'
            b"F OK FETCH completed\r\n",
        )


SECTIONS = st.lists(st.integers(1, 3), min_size=1, max_size=3).map(lambda p: b".".join(b"%d" % n for n in p))


class FetchEquivalenceTests(CompareCase):
    """Generated MIME messages (tests/test_mime_map.py's), made large: every FETCH item of
    a section gets the octets the in-memory path gives."""

    def message_data(self):
        return b"Subject: small\r\n\r\nx\r\n"

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(test_mime_map.stored_messages(), st.lists(SECTIONS, min_size=1, max_size=3), st.integers(0, 3))
    def test_same_octets_as_in_memory(self, data, sections, filler_at):
        # in a body, a delimiter line, a header: blank lines around it end any header it
        # is in or starts (the fields of a header block are read from its first 128 KiB,
        # documented, as SEARCH and pushes do)
        filler = b"\r\n\r\n" + b"f" * (300 * 1024) + b"\r\n\r\n"
        cut = len(data) * filler_at // 3
        data = data[:cut] + filler + data[cut:]
        uid = self.store.account(USER).mailbox("INBOX").add(data, ["\\Seen"])
        self.answer(b"NOOP")
        items = [b"BODYSTRUCTURE BODY ENVELOPE BODY.PEEK[TEXT]<5.10>"]
        for s in sections:
            items.append(b"BODY.PEEK[%s] BODY.PEEK[%s.MIME] BODY.PEEK[%s.HEADER] BODY.PEEK[%s.TEXT]<2.300>" % (s, s, s, s))
            items.append(b"BODY.PEEK[%s.HEADER.FIELDS (CONTENT-TYPE)] BINARY.SIZE[%s]" % (s, s))
        commands = [b"UID FETCH %d (%s)" % (uid, b" ".join(items))]
        commands += [b"UID FETCH %d (BINARY.PEEK[%s] BINARY.PEEK[%s]<3.100>)" % (uid, s, s) for s in sections]
        for command in commands:
            streamed = self.answer(command)
            self.assertEqual(streamed, self.in_memory(command), command)
