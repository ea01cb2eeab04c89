"""FETCH: \\Seen on BODY[] but not BODY.PEEK[], sections, partials, BODYSTRUCTURE, MODSEQ."""

from twisted.trial import unittest

from imapwebpush.imap import fetch_attributes
from tests.harness.imap import MESSAGE, IMAPTestCase

MULTIPART = (
    b"From: a@example.net\r\n"
    b"Subject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"part one\r\n"
    b"--XX\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>two</p>\r\n"
    b"--XX--\r\n"
)


class FetchTests(IMAPTestCase):
    def test_body_sets_seen_peek_does_not(self):
        inbox = self.inbox()
        uid = inbox.add(MESSAGE)

        def client():
            w = self.session(select="INBOX")
            peek = w.cmd("f1", "FETCH 1 (BODY.PEEK[])")
            after_peek = w.cmd("f2", "FETCH 1 (FLAGS)")
            body = w.cmd("f3", "FETCH 1 (BODY[])")
            after = w.cmd("f4", "FETCH 1 (FLAGS)")
            w.close()
            return peek, after_peek, body, after

        def check(result):
            peek, after_peek, body, after = result
            self.assertEqual(peek[0], "* 1 FETCH (BODY[] {%d}" % len(MESSAGE))
            self.assertEqual(after_peek[0], "* 1 FETCH (FLAGS (\\Recent))")
            self.assertEqual(body[0], "* 1 FETCH (BODY[] {%d}" % len(MESSAGE))
            self.assertIn(")", body[-2])
            self.assertIn("FLAGS (\\Recent \\Seen)", body[-2])
            self.assertEqual(after[0], "* 1 FETCH (FLAGS (\\Recent \\Seen))")
            self.assertIn("\\Seen", self.inbox().message(uid).flags)

        return self.in_thread(client).addCallback(check)

    def test_examine_never_sets_seen(self):
        inbox = self.inbox()
        uid = inbox.add(MESSAGE)

        def client():
            c = self.imaplib()
            c.select("INBOX", readonly=True)
            typ, data = c.fetch("1", "(RFC822)")
            c.logout()
            return data

        def check(data):
            self.assertEqual(data[0][1], MESSAGE)
            self.assertNotIn("\\Seen", self.inbox().message(uid).flags)

        return self.in_thread(client).addCallback(check)

    def test_imaplib_fetch_items(self):
        self.inbox().add(MESSAGE, ["\\Flagged"], internaldate=1700000000)

        def client():
            c = self.imaplib()
            c.select("INBOX")
            r = {}
            r["size"] = c.fetch("1", "(RFC822.SIZE UID INTERNALDATE)")[1]
            r["header"] = c.fetch("1", "(BODY.PEEK[HEADER])")[1]
            r["fields"] = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")[1]
            r["text"] = c.fetch("1", "(BODY.PEEK[TEXT])")[1]
            r["partial"] = c.fetch("1", "(BODY.PEEK[]<0.10>)")[1]
            r["envelope"] = c.fetch("1", "(ENVELOPE)")[1]
            r["uidfetch"] = c.uid("FETCH", "1", "(FLAGS)")[1]
            c.logout()
            return r

        def check(r):
            self.assertEqual(
                r["size"][0],
                b'1 (RFC822.SIZE %d UID 1 INTERNALDATE "14-Nov-2023 22:13:20 +0000")' % len(MESSAGE),
            )
            header, body = MESSAGE.split(b"\r\n\r\n", 1)
            self.assertEqual(r["header"][0][1], header + b"\r\n\r\n")
            self.assertEqual(
                r["fields"][0][1],
                b"From: Carol <carol@example.net>\r\nSubject: Hello there\r\n\r\n",
            )
            self.assertEqual(r["text"][0][1], body)
            self.assertEqual(r["partial"][0][0], b"1 (BODY[]<0> {10}")
            self.assertEqual(r["partial"][0][1], MESSAGE[:10])
            self.assertIn(b'"Hello there"', r["envelope"][0])
            self.assertIn(b'"carol" "example.net"', r["envelope"][0])
            self.assertEqual(r["uidfetch"][0], b"1 (UID 1 FLAGS (\\Flagged))")

        return self.in_thread(client).addCallback(check)

    def test_multipart_sections_and_bodystructure(self):
        self.inbox().add(MULTIPART, ["\\Seen"])

        def client():
            c = self.imaplib()
            c.select("INBOX")
            r = {}
            r["one"] = c.fetch("1", "(BODY.PEEK[1])")[1]
            r["two_mime"] = c.fetch("1", "(BODY.PEEK[2.MIME])")[1]
            r["structure"] = c.fetch("1", "(BODYSTRUCTURE)")[1]
            r["missing"] = c.fetch("1", "(BODY.PEEK[9])")[1]
            c.logout()
            return r

        def check(r):
            self.assertEqual(r["one"][0][1], b"part one")
            self.assertEqual(r["two_mime"][0][1], b"Content-Type: text/html\r\n\r\n")
            structure = r["structure"][0]
            self.assertEqual(
                structure,
                b'1 (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 8 0'
                b' NIL NIL NIL NIL) ("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 0 NIL NIL NIL NIL)'
                b' "MIXED" ("BOUNDARY" "XX") NIL NIL NIL))',
            )
            self.assertEqual(r["missing"][0][1], b"")

        return self.in_thread(client).addCallback(check)

    def test_modseq_and_changedsince(self):
        inbox = self.inbox()
        inbox.add(MESSAGE, ["\\Seen"])
        inbox.add(MESSAGE, ["\\Seen"])
        base = inbox.highestmodseq
        inbox.set_flags([2], ["\\Flagged"], "add")
        second = inbox.message(2).modseq

        def client():
            w = self.session(select="INBOX")
            modseq = w.cmd("f1", "FETCH 1:* (MODSEQ)")
            changed = w.cmd("f2", "FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % base)
            w.close()
            return modseq, changed

        def check(result):
            modseq, changed = result
            # The first CONDSTORE-enabling command tells HIGHESTMODSEQ (RFC 7162 3.1).
            self.assertEqual(len(modseq), 4, modseq)
            self.assertEqual(modseq[0], "* OK [HIGHESTMODSEQ %d] Highest mod-sequence" % second)
            self.assertRegex(modseq[1], r"^\* 1 FETCH \(MODSEQ \(\d+\)\)$")
            self.assertEqual(
                changed,
                [
                    "* 2 FETCH (FLAGS (\\Flagged \\Seen) MODSEQ (%d))" % second,
                    "f2 OK FETCH completed",
                ],
            )

        return self.in_thread(client).addCallback(check)

    def test_one_section_attribute_then_modifiers(self):
        """An unparenthesised BODY[...] with spaces, then (CHANGEDSINCE n): both are read."""
        inbox = self.inbox()
        inbox.add(MESSAGE, ["\\Seen"])
        base = inbox.highestmodseq
        inbox.add(MESSAGE, ["\\Seen"])
        second = inbox.message(2).modseq

        def client():
            w = self.session(select="INBOX")
            lines = w.cmd(
                "f1", "FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.9> (CHANGEDSINCE %d)" % base
            )
            w.close()
            return lines

        def check(lines):
            self.assertEqual(
                lines,
                [
                    "* OK [HIGHESTMODSEQ %d] Highest mod-sequence" % second,
                    "* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT)]<0> {9}",
                    "Subject:  MODSEQ (%d))" % second,  # 9 octets: "Subject: "
                    "f1 OK FETCH completed",
                ],
            )

        return self.in_thread(client).addCallback(check)

    def test_bad_fetch_requests(self):
        self.inbox().add(MESSAGE)

        def client():
            w = self.session(select="INBOX")
            beyond = w.cmd("f1", "FETCH 5 FLAGS")
            junk = w.cmd("f2", "FETCH 1 (NONSENSE)")
            uid_far = w.cmd("f3", "UID FETCH 4000000000:4000000005 FLAGS")
            badset = w.cmd("f4", "FETCH 0:x FLAGS")
            w.close()
            return beyond, junk, uid_far, badset

        def check(result):
            beyond, junk, uid_far, badset = result
            self.assertEqual(beyond, ["f1 BAD no message has sequence number 5"])
            self.assertTrue(junk[0].startswith("f2 BAD Bad FETCH attribute"), junk)
            self.assertEqual(uid_far, ["f3 OK FETCH completed"])
            self.assertTrue(badset[0].startswith("f4 BAD"), badset)

        return self.in_thread(client).addCallback(check)

    def test_zero_section_part_is_bad(self):
        # RFC 3501 9: section-part = nz-number *("." nz-number); part 0 names nothing
        self.inbox().add(MULTIPART)

        def client():
            w = self.session(select="INBOX")
            answers = [
                w.cmd("z%d" % n, "FETCH 1 " + attr)
                for n, attr in enumerate(
                    ["BODY[0]", "BODY[1.0]", "BODY.PEEK[0]", "(FLAGS BODY[0.MIME])", "BODY[0.HEADER]"]
                )
            ]
            flags = w.cmd("f1", "FETCH 1 (FLAGS)")
            w.close()
            return answers, flags

        def check(result):
            answers, flags = result
            self.assertEqual(
                answers,
                [["z%d BAD section part numbers start at 1" % n] for n in range(5)],
            )
            self.assertEqual(flags[0], "* 1 FETCH (FLAGS (\\Recent))")

        return self.in_thread(client).addCallback(check)

    def test_empty_header_list_is_bad_and_repeats_answered_once(self):
        # RFC 3501 9: header-list = "(" header-fld-name *(SP header-fld-name) ")"
        uid = self.inbox().add(MESSAGE, ["\\Seen"])

        def client():
            w = self.session(select="INBOX")
            empty = w.cmd("h1", "FETCH 1 BODY.PEEK[HEADER.FIELDS ()]")
            empty_not = w.cmd("h2", "FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT ()])")
            twice = w.cmd("h3", "FETCH 1 (UID FLAGS UID FLAGS)")
            w.close()
            return empty, empty_not, twice

        def check(result):
            empty, empty_not, twice = result
            self.assertEqual(empty, ["h1 BAD HEADER.FIELDS needs at least one field name"])
            self.assertEqual(empty_not, ["h2 BAD HEADER.FIELDS needs at least one field name"])
            self.assertEqual(twice, ["* 1 FETCH (UID %d FLAGS (\\Seen))" % uid, "h3 OK FETCH completed"])

        return self.in_thread(client).addCallback(check)

    def test_multipart_without_boundary_and_top_level_mime(self):
        """A multipart with no boundary is one empty text/plain part, charset and extension
        data included (as Dovecot); BODY[MIME] needs a part number (RFC 3501 9)."""
        self.inbox().add(b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n", ["\\Seen"])

        def client():
            w = self.session(select="INBOX")
            out = [
                w.cmd("b1", "FETCH 1 (BODYSTRUCTURE)"),
                w.cmd("b2", "FETCH 1 (BODY)"),
                w.cmd("b3", "FETCH 1 (BODY.PEEK[MIME])"),
            ]
            w.close()
            return out

        def check(out):
            self.assertEqual(
                out,
                [
                    [
                        '* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0'
                        ' NIL NIL NIL NIL) "MIXED" NIL NIL NIL NIL))',
                        "b1 OK FETCH completed",
                    ],
                    ['* 1 FETCH (BODY (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) "MIXED"))', "b2 OK FETCH completed"],
                    ["b3 BAD MIME needs a part number"],
                ],
            )

        return self.in_thread(client).addCallback(check)

    def test_rfc2231_parameter_in_a_codec_that_raises(self):
        """An RFC 2231 parameter whose charset is a Python codec that raises whatever the
        error handler (undefined, idna) is read as UTF-8: the true BODYSTRUCTURE, no
        logged traceback and no stand-in text/plain answer."""
        self.inbox().add(
            b"Content-Type: text/plain; name*=idna''a%41\r\n"
            b"Content-Disposition: attachment; filename*=undefined''b%C3%A9\r\n\r\nx\r\n", ["\\Seen"])

        def client():
            w = self.session(select="INBOX")
            out = w.cmd("b1", "FETCH 1 (BODYSTRUCTURE)")
            w.close()
            return out

        def check(out):
            self.assertEqual(
                out,
                [
                    '* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" ("NAME" "aA" "CHARSET" "US-ASCII") NIL NIL'
                    ' "7BIT" 3 1 NIL ("ATTACHMENT" ("FILENAME" {3}',
                    'b\u00e9)) NIL NIL))',
                    "b1 OK FETCH completed",
                ],
            )

        return self.in_thread(client).addCallback(check)

    def test_large_fetch_is_streamed_in_order(self):
        body = b"x" * 60000 + b"\r\n"
        inbox = self.inbox()
        for n in range(12):
            inbox.add(b"Subject: big %d\r\n\r\n" % n + body, ["\\Seen"])

        def client():
            c = self.imaplib()
            c.select("INBOX")
            typ, data = c.fetch("1:*", "(BODY.PEEK[])")
            typ2, noop = c.noop()
            c.logout()
            return typ, data, typ2

        def check(result):
            typ, data, typ2 = result
            self.assertEqual(typ, "OK")
            bodies = [d[1] for d in data if isinstance(d, tuple)]
            self.assertEqual(len(bodies), 12)
            for n, b in enumerate(bodies):
                self.assertEqual(b, b"Subject: big %d\r\n\r\n" % n + body)
            self.assertEqual(typ2, "OK")

        return self.in_thread(client).addCallback(check)

    def test_envelope_with_raw_utf8_header(self):
        subject = "Caf\u00e9".encode("utf-8")
        self.inbox().add(b"From: J\xc3\xa9r\xc3\xb4me <j@example.net>\r\nSubject: " + subject + b"\r\n\r\nx\r\n")

        def client():
            w = self.session(select="INBOX")
            w.send("f1 FETCH 1 (ENVELOPE)\r\n")
            raw = w.read_raw_until(b"f1 OK FETCH completed\r\n")
            w.close()
            return raw

        def check(raw):
            self.assertIn(b"{5}\r\n" + subject, raw)
            self.assertIn(b"(({8}\r\nJ\xc3\xa9r\xc3\xb4me NIL \"j\" \"example.net\"))", raw)

        return self.in_thread(client).addCallback(check)

    def test_envelope_groups_lists_and_raw_words(self):
        """One ENVELOPE grammar for FETCH and pushes: groups, no space between addresses."""
        self.inbox().add(
            b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
            b"From: =?utf-8?q?J=C3=B6rg?= <j@x.example>\r\n"
            b"To: a@x.example, \"B, Jr.\" <b@y.example>, c@z.example\r\n"
            b"Cc: Team: d@x.example, e@x.example;, Nobody: ;\r\n"
            b"Subject: =?utf-8?q?caf=C3=A9?= \"ok\"\r\n"
            b"Message-Id: <m1@x.example>\r\n"
            b"\r\n"
            b"body\r\n"
        )
        self.inbox().add(b"X-Other: nothing useful\r\n\r\nbody\r\n")

        def client():
            w = self.session(select="INBOX")
            full = w.cmd("f1", "FETCH 1 (ENVELOPE)")
            bare = w.cmd("f2", "FETCH 2 (ENVELOPE)")
            w.close()
            return full, bare

        def check(result):
            full, bare = result
            jorg = '(("=?utf-8?q?J=C3=B6rg?=" NIL "j" "x.example"))'
            self.assertEqual(
                full,
                [
                    '* 1 FETCH (ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "=?utf-8?q?caf=C3=A9?= \\"ok\\"" '
                    + jorg + " " + jorg + " " + jorg + " "
                    '((NIL NIL "a" "x.example")("B, Jr." NIL "b" "y.example")(NIL NIL "c" "z.example")) '
                    '((NIL NIL "Team" NIL)(NIL NIL "d" "x.example")(NIL NIL "e" "x.example")(NIL NIL NIL NIL)'
                    '(NIL NIL "Nobody" NIL)(NIL NIL NIL NIL)) '
                    'NIL NIL "<m1@x.example>"))',
                    "f1 OK FETCH completed",
                ],
            )
            self.assertEqual(
                bare,
                [
                    "* 2 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))",
                    "f2 OK FETCH completed",
                ],
            )

        return self.in_thread(client).addCallback(check)

    def test_envelope_and_structure_answered_again_from_the_cache_follow_each_message(self):
        """Kept per message: asked again (another session too) the same answer, and a
        message stored after one was expunged gets its own, never the old one's."""
        inbox = self.inbox()
        first = inbox.add(b"Subject: first\r\n\r\nbody\r\n")
        inbox.add(MULTIPART)
        second = b"Subject: second\r\n\r\nmore text\r\n"

        def client():
            a = self.session(select="INBOX")
            b = self.session(select="INBOX")
            before = a.cmd("f1", "FETCH 1:2 (ENVELOPE BODYSTRUCTURE BODY)")
            again = b.cmd("f2", "FETCH 1:2 (ENVELOPE BODYSTRUCTURE BODY)")
            a.cmd("s1", "STORE 1 +FLAGS.SILENT (\\Deleted)")
            a.cmd("e1", "EXPUNGE")
            a.send("a1 APPEND INBOX {%d+}\r\n" % len(second))
            a.send(second + b"\r\n")
            a.until("a1")
            after = a.cmd("f3", "FETCH 1:2 (ENVELOPE BODYSTRUCTURE)")
            a.close()
            b.close()
            return before, again, after

        def check(result):
            before, again, after = result
            self.assertEqual(before[-1], "f1 OK FETCH completed")
            self.assertEqual(before[:-1], again[:-1])
            self.assertIn('"first"', before[0])
            self.assertIn(' BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 1))', before[0])
            self.assertIn('"parts"', before[1])
            self.assertIn('"parts"', after[0])
            self.assertIn('"second"', after[1])
            self.assertIn('BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 11 1 ', after[1])
            self.assertEqual(after[2], "f3 OK FETCH completed")

        return self.in_thread(client).addCallback(check)

    def test_envelope_latin1_header_octets_sent_unchanged(self):
        self.inbox().add(b"Subject: caf\xe9\r\nTo: \"Ren\xe9\" <r@x.example>\r\n\r\nx\r\n")

        def client():
            w = self.session(select="INBOX")
            w.send("f1 FETCH 1 (ENVELOPE)\r\n")
            raw = w.read_raw_until(b"f1 OK FETCH completed\r\n")
            w.close()
            return raw

        def check(raw):
            self.assertIn(
                b"* 1 FETCH (ENVELOPE (NIL {4}\r\ncaf\xe9 NIL NIL NIL "
                b"(({4}\r\nRen\xe9 NIL \"r\" \"x.example\")) NIL NIL NIL NIL))\r\n",
                raw,
            )

        return self.in_thread(client).addCallback(check)

    def test_bodystructure_of_attached_message_has_the_same_envelope(self):
        inner = b"From: a@x.example, b@x.example\r\nCc: G: ;\r\nSubject: =?utf-8?q?x?=\r\n\r\ninner\r\n"
        self.inbox().add(
            b"From: o@x.example\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: message/rfc822\r\n\r\n" + inner
        )

        def client():
            w = self.session(select="INBOX")
            lines = w.cmd("f1", "FETCH 1 (BODY)")
            w.close()
            return lines

        def check(lines):
            self.assertEqual(lines[-1], "f1 OK FETCH completed")
            self.assertIn(
                ' ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" %d ' % len(inner)
                + '(NIL "=?utf-8?q?x?=" ((NIL NIL "a" "x.example")(NIL NIL "b" "x.example")) '
                '((NIL NIL "a" "x.example")(NIL NIL "b" "x.example")) '
                '((NIL NIL "a" "x.example")(NIL NIL "b" "x.example")) '
                'NIL ((NIL NIL "G" NIL)(NIL NIL NIL NIL)) NIL NIL NIL) ',
                lines[0],
            )

        return self.in_thread(client).addCallback(check)


class FetchWireTests(IMAPTestCase):
    """Exact octets of the common FETCH forms, HEADER.FIELDS echoes, pipelined input."""

    def test_header_fields_names_echoed_as_sent(self):
        self.inbox().add(b"Subject: s\r\nX-TUID: abc\r\nFrom: f@example.net\r\n\r\nbody\r\n")

        def client():
            w = self.session(select="INBOX")
            out = [
                w.cmd("f1", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT X-TUID)])"),
                w.cmd("f2", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject x-tuid)])"),
                w.cmd("f3", "FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (subject X-TUID)])"),
                w.cmd("f4", 'FETCH 1 (BODY.PEEK[HEADER.FIELDS ("Subject")])'),
                w.cmd("f5", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT X-TUID)])"),  # cached parse
            ]
            w.close()
            return out

        def check(out):
            f1, f2, f3, f4, f5 = out
            picked = b"Subject: s\r\nX-TUID: abc\r\n\r\n"
            self.assertEqual(
                f1,
                [
                    "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT X-TUID)] {%d}" % len(picked),
                    "Subject: s",
                    "X-TUID: abc",
                    "",
                    ")",
                    "f1 OK FETCH completed",
                ],
            )
            self.assertEqual(f2[0], "* 1 FETCH (BODY[HEADER.FIELDS (Subject x-tuid)] {%d}" % len(picked))
            self.assertEqual(f2[1:3], ["Subject: s", "X-TUID: abc"])
            rest = b"From: f@example.net\r\n\r\n"
            self.assertEqual(f3[0], "* 1 FETCH (BODY[HEADER.FIELDS.NOT (subject X-TUID)] {%d}" % len(rest))
            self.assertEqual(f3[1], "From: f@example.net")
            self.assertEqual(f4[0], '* 1 FETCH (BODY[HEADER.FIELDS ("Subject")] {%d}' % len(b"Subject: s\r\n\r\n"))
            self.assertEqual(f4[1], "Subject: s")
            self.assertEqual(f5[:-1], f1[:-1])

        return self.in_thread(client).addCallback(check)

    def test_uid_fetch_body_peek_and_noop_exact_octets(self):
        inbox = self.inbox()
        inbox.add(MESSAGE)
        uid = inbox.add(MESSAGE + b"Third line.\r\n", ["\\Seen"])
        second = MESSAGE + b"Third line.\r\n"

        def client():
            w = self.session(select="INBOX")
            got = []
            for tag in ("f1", "f2"):  # the second time the attribute list comes from the cache
                w.send("%s UID FETCH %d BODY.PEEK[]\r\n" % (tag, uid))
                head = w.file.readline()
                body = w.read_exactly(len(second))
                tail = w.file.readline() + w.file.readline()
                got.append(head + body + tail)
            w.send("n1 NOOP\r\n")
            got.append(w.file.readline())
            flags = w.cmd("f3", "FETCH 2 (FLAGS RFC822.SIZE UID)")
            w.close()
            return got, flags

        def check(result):
            got, flags = result
            for tag in (b"f1", b"f2"):
                self.assertEqual(
                    got.pop(0),
                    b"* 2 FETCH (UID %d BODY[] {%d}\r\n" % (uid, len(second))
                    + second
                    + b")\r\n"
                    + tag
                    + b" OK FETCH completed\r\n",
                )
            self.assertEqual(got, [b"n1 OK NOOP completed\r\n"])
            self.assertEqual(
                flags,
                ["* 2 FETCH (FLAGS (\\Seen) RFC822.SIZE %d UID %d)" % (len(second), uid), "f3 OK FETCH completed"],
            )

        return self.in_thread(client).addCallback(check)

    def test_pipelined_commands_answered_in_order(self):
        self.inbox().add(MESSAGE)

        def client():
            w = self.session(select="INBOX")
            # One send: a FETCH, a bad FETCH (twice: errors are not cached), an APPEND with a
            # non-synchronizing literal, then NOOP; answers must come in this order.
            w.send(
                b"p1 FETCH 1 (BODY.PEEK[])\r\np2 FETCH 1 (NONSENSE)\r\np3 FETCH 1 (NONSENSE)\r\n"
                b"p4 APPEND INBOX {9+}\r\nSubject: \r\np5 NOOP\r\n"
            )
            lines = w.until("p5")
            w.close()
            return lines

        def check(lines):
            tagged = [line for line in lines if line[:1] == "p"]
            self.assertEqual([t.split(" ")[0] for t in tagged], ["p1", "p2", "p3", "p4", "p5"])
            self.assertEqual(lines[0], "* 1 FETCH (BODY[] {%d}" % len(MESSAGE))
            self.assertEqual(tagged[0], "p1 OK FETCH completed")
            self.assertTrue(tagged[1].startswith("p2 BAD Bad FETCH attribute"), tagged)
            self.assertEqual(tagged[1], tagged[2].replace("p3", "p2", 1))
            self.assertTrue(tagged[3].startswith("p4 OK [APPENDUID "), tagged)
            self.assertIn("* 2 EXISTS", lines)
            self.assertEqual(tagged[4], "p5 OK NOOP completed")

        return self.in_thread(client).addCallback(check)

    def test_modseq_beside_other_attributes(self):
        uid = self.inbox().add(MESSAGE, ["\\Seen"])
        modseq = self.inbox().message(uid).modseq

        def client():
            w = self.session(select="INBOX")
            out = [
                w.cmd("f1", "FETCH 1 (FLAGS MODSEQ)"),
                w.cmd("f2", "FETCH 1 (MODSEQ UID)"),
                w.cmd("f3", "UID FETCH %d (FLAGS MODSEQ)" % uid),
            ]
            w.close()
            return out

        def check(out):
            self.assertEqual(
                out[0],
                [
                    "* OK [HIGHESTMODSEQ %d] Highest mod-sequence" % modseq,
                    "* 1 FETCH (FLAGS (\\Seen) MODSEQ (%d))" % modseq,
                    "f1 OK FETCH completed",
                ],
            )
            self.assertEqual(out[1], ["* 1 FETCH (UID %d MODSEQ (%d))" % (uid, modseq), "f2 OK FETCH completed"])
            self.assertEqual(
                out[2], ["* 1 FETCH (UID %d FLAGS (\\Seen) MODSEQ (%d))" % (uid, modseq), "f3 OK FETCH completed"]
            )

        return self.in_thread(client).addCallback(check)

    def test_logout_answer_arrives_before_close(self):
        def client():
            w = self.session()
            w.send("a1 NOOP\r\na2 LOGOUT\r\n")
            lines = w.until("a2")
            rest = w.file.read()
            w.close()
            return lines, rest

        def check(result):
            lines, rest = result
            self.assertEqual(
                lines, ["a1 OK NOOP completed", "* BYE imapwebpush logging out", "a2 OK LOGOUT completed"]
            )
            self.assertEqual(rest, b"")

        return self.in_thread(client).addCallback(check)

    def test_pipelined_large_answers_intact_and_in_order(self):
        # Eight 60 KB answers to one read: more than the server holds before writing.
        body = b"y" * 60000 + b"\r\n"
        inbox = self.inbox()
        for n in range(8):
            inbox.add(b"Subject: big %d\r\n\r\n" % n + body, ["\\Seen"])

        def client():
            w = self.session(select="INBOX")
            w.send(b"".join(b"p%d FETCH %d BODY.PEEK[]\r\n" % (n, n + 1) for n in range(8)) + b"p9 NOOP\r\n")
            got = []
            for n in range(8):
                head = w.file.readline()
                size = int(head.rsplit(b"{", 1)[1].split(b"}")[0])
                got.append((head, w.read_exactly(size), w.file.readline(), w.file.readline()))
            last = w.file.readline()
            w.close()
            return got, last

        def check(result):
            got, last = result
            for n, (head, data, close, tagged) in enumerate(got):
                message = b"Subject: big %d\r\n\r\n" % n + body
                self.assertEqual(head, b"* %d FETCH (BODY[] {%d}\r\n" % (n + 1, len(message)))
                self.assertEqual(data, message)
                self.assertEqual(close, b")\r\n")
                self.assertEqual(tagged, b"p%d OK FETCH completed\r\n" % (n,))
            self.assertEqual(last, b"p9 OK NOOP completed\r\n")

        return self.in_thread(client).addCallback(check)


class FetchAttributeCacheTests(unittest.TestCase):
    """The parsed FETCH attribute lists kept between commands (fetch_attributes.fetch_attributes)."""

    def setUp(self):
        saved = dict(fetch_attributes._FETCH_CACHE)
        fetch_attributes._FETCH_CACHE.clear()

        def restore():
            fetch_attributes._FETCH_CACHE.clear()
            fetch_attributes._FETCH_CACHE.update(saved)

        self.addCleanup(restore)

    def test_same_text_same_result_and_bounded(self):
        first = fetch_attributes.fetch_attributes(b"(FLAGS BODY.PEEK[])")
        for n in range(fetch_attributes._FETCH_CACHE_SIZE * 2):
            fetch_attributes.fetch_attributes(b"(FLAGS BODY.PEEK[]<0.%d>)" % (n + 1,))
            # kept in use: it stays while older, unused texts are dropped
            self.assertIs(fetch_attributes.fetch_attributes(b"(FLAGS BODY.PEEK[])"), first)
        self.assertEqual(len(fetch_attributes._FETCH_CACHE), fetch_attributes._FETCH_CACHE_SIZE)
        self.assertNotIn(b"(FLAGS BODY.PEEK[]<0.1>)", fetch_attributes._FETCH_CACHE)
        attrs, modseq, sets_seen = first
        self.assertEqual([a.type for a in attrs], ["flags", "body"])
        self.assertEqual((modseq, sets_seen), (False, False))
        self.assertEqual(fetch_attributes.fetch_attributes(b"(BODY[] MODSEQ)")[1:], (True, True))

    def test_errors_are_not_kept(self):
        for _ in range(2):
            self.assertRaises(fetch_attributes.Bad, fetch_attributes.fetch_attributes, b"(NONSENSE)")
            self.assertRaises(fetch_attributes.Bad, fetch_attributes.fetch_attributes, b"()")
        self.assertEqual(len(fetch_attributes._FETCH_CACHE), 0)


class FetchAttributeParserTests(unittest.TestCase):
    """imap/fetch_attributes.py: fetch-att lists into Attributes, no server."""

    parse = staticmethod(fetch_attributes.parse_fetch_attributes)

    def test_macros_and_simple_items(self):
        self.assertEqual([a.type for a in self.parse(b"all")], ["flags", "internaldate", "rfc822size", "envelope"])
        self.assertEqual([a.type for a in self.parse(b"FULL")][-1], "body")
        self.assertEqual(
            [a.type for a in self.parse(b"(UID  RFC822.SIZE RFC822 RFC822.HEADER RFC822.TEXT BODYSTRUCTURE)")],
            ["uid", "rfc822size", "rfc822", "rfc822header", "rfc822text", "bodystructure"],
        )

    def test_sections(self):
        empty, mime, text, header = self.parse(b"(BODY[]<0.10> BODY.PEEK[1.2.MIME] body[2.text] BODY[HEADER])")
        self.assertEqual((empty.empty, empty.peek, empty.partial_begin, empty.partial_length), (True, False, 0, 10))
        self.assertEqual((mime.peek, mime.mime, mime.part), (True, True, (0, 1)))
        self.assertEqual((text.text, text.part), (True, (1,)))
        self.assertEqual(header.header.fields, [])
        self.assertTrue(fetch_attributes.is_section(header))
        self.assertFalse(fetch_attributes.is_section(self.parse(b"BODY")[0]))

    def test_header_fields_as_sent(self):
        [attr] = self.parse(b'BODY.PEEK[HEADER.FIELDS.NOT (Subject "X-Tuid")]')
        self.assertTrue(attr.header.negate)
        self.assertEqual(attr.header.raw_fields, [b"Subject", b'"X-Tuid"'])
        self.assertEqual(attr.header.fields, [b"SUBJECT", b"X-TUID"])

    def test_sets_seen(self):
        self.assertEqual(
            [fetch_attributes.sets_seen(a) for a in self.parse(b"(BODY[] BODY.PEEK[] RFC822 RFC822.HEADER BODY)")],
            [True, False, True, False, False],
        )

    def test_bad(self):
        for text in (b"NONSENSE", b"(FLAGS", b"FLAGSX", b"( FLAGS)", b"(FLAGS )", b"BODY[FOO]",
                     b"BODY[HEADER.FIELDS(A)]", b"BODY[]<1>", b"UID FLAGS", b"(ALL)"):
            self.assertRaises(fetch_attributes.Bad, self.parse, text)
        e = self.assertRaises(fetch_attributes.Bad, self.parse, b"BODY[1.0]")
        self.assertEqual(str(e), "section part numbers start at 1")
