"""What an independent compliance suite found (issue 11), each pinned by exact wire lines:
keywords in FLAGS, \\Recent on COPY and APPEND, sections under message/rfc822 and
multipart/digest, LSUB parents, SEARCH on addresses and NIL, names not in modified UTF-7."""

from tests.harness.imap import IMAPTestCase, message

SYSTEM = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"


def flags_lines(keywords="", readonly=False):
    names = SYSTEM + (" " + keywords if keywords else "")
    permanent = "" if readonly else names + " \\*"
    return ["* FLAGS (%s)" % names, "* OK [PERMANENTFLAGS (%s)] Flags permitted" % permanent]


class KeywordFlagsTests(IMAPTestCase):
    """RFC 3501 7.2.6: FLAGS lists every keyword in use, and is told again when it grows."""

    def test_select_and_examine_list_keywords(self):
        inbox = self.inbox()
        inbox.add(message("one"), ["\\Seen", "$Forwarded"])
        inbox.add(message("two"), ["Junk", "$forwarded"])

        def client():
            w = self.wire()
            w.login()
            select = w.cmd("s1", "SELECT INBOX")
            examine = w.cmd("e1", "EXAMINE INBOX")
            w.close()
            return select, examine

        def check(result):
            select, examine = result
            self.assertEqual(select[:2], flags_lines("$Forwarded Junk"))
            self.assertEqual(examine[1:3], flags_lines("$Forwarded Junk", readonly=True))

        return self.in_thread(client).addCallback(check)

    def test_new_keyword_told_to_every_session(self):
        self.inbox().add(message("one"), ["\\Seen"])
        self.account().create_mailbox("Other")
        two = message("two")

        def client():
            a, b = self.session(select="INBOX"), self.session(select="INBOX")
            store = a.cmd("t1", "STORE 1 +FLAGS ($Label1)")
            again = a.cmd("t2", "STORE 1 +FLAGS ($label1 \\Flagged)")
            b_noop = b.cmd("n1", "NOOP")
            b.send(b"a1 APPEND INBOX (Work) {%d+}\r\n" % len(two) + two + b"\r\n")
            append = b.until("a1")
            a_noop = a.cmd("n2", "NOOP")
            other = a.cmd("s2", "SELECT Other")
            b.cmd("c1", "COPY 2 Other")
            a_copy = a.cmd("n3", "NOOP")
            a.close()
            b.close()
            return store, again, b_noop, append, a_noop, other, a_copy

        def check(result):
            store, again, b_noop, append, a_noop, other, a_copy = result
            self.assertEqual(
                store,
                flags_lines("$Label1") + ["* 1 FETCH (FLAGS ($Label1 \\Seen))", "t1 OK STORE completed"],
            )
            self.assertEqual(again, ["* 1 FETCH (FLAGS ($Label1 \\Flagged \\Seen))", "t2 OK STORE completed"])
            self.assertEqual(
                b_noop,
                flags_lines("$Label1")
                + ["* 1 FETCH (FLAGS ($Label1 \\Flagged \\Seen) UID 1)", "n1 OK NOOP completed"],
            )
            self.assertEqual(append[:4], flags_lines("$Label1 Work") + ["* 2 EXISTS", "* 1 RECENT"])
            self.assertEqual(a_noop, flags_lines("$Label1 Work") + ["* 2 EXISTS", "* 0 RECENT", "n2 OK NOOP completed"])
            self.assertEqual(other[1:3], flags_lines())
            self.assertEqual(a_copy, flags_lines("Work") + ["* 1 EXISTS", "* 1 RECENT", "n3 OK NOOP completed"])

        return self.in_thread(client).addCallback(check)


class RecentTests(IMAPTestCase):
    """\\Recent on APPEND with flags (RFC 3501 6.3.11) and on COPY (6.4.7), whatever the flags."""

    def test_append_with_flags_and_copy_are_recent(self):
        self.inbox().add(message("one"), ["\\Seen"])
        self.account().create_mailbox("Other")
        two = message("two")

        def client():
            a, b = self.session(), self.session()
            a.send(b"a1 APPEND Other (\\Seen \\Flagged) {%d+}\r\n" % len(two) + two + b"\r\n")
            a.until("a1")
            status = a.cmd("st1", "STATUS Other (MESSAGES RECENT)")
            a.cmd("s1", "SELECT INBOX")
            a.cmd("c1", "COPY 1 Other")
            status2 = a.cmd("st2", "STATUS Other (MESSAGES RECENT)")
            select = b.cmd("s2", "SELECT Other")
            fetch = b.cmd("f1", "FETCH 1:2 FLAGS")
            again = a.cmd("s3", "SELECT Other")
            a.close()
            b.close()
            return status, status2, select, fetch, again

        def check(result):
            status, status2, select, fetch, again = result
            self.assertEqual(status, ['* STATUS "Other" (MESSAGES 1 RECENT 1)', "st1 OK STATUS completed"])
            self.assertEqual(status2, ['* STATUS "Other" (MESSAGES 2 RECENT 2)', "st2 OK STATUS completed"])
            self.assertEqual(select[2:4], ["* 2 EXISTS", "* 2 RECENT"])
            self.assertEqual(
                fetch,
                [
                    "* 1 FETCH (FLAGS (\\Flagged \\Recent \\Seen))",
                    "* 2 FETCH (FLAGS (\\Recent \\Seen))",
                    "f1 OK FETCH completed",
                ],
            )
            self.assertEqual(again[3:5], ["* 2 EXISTS", "* 0 RECENT"])  # claimed by the first

        return self.in_thread(client).addCallback(check)


ENCAPSULATED = (
    b"From: a@example.net\r\n"
    b"Subject: outer\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: b@example.net\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
)

DIGEST = (
    b"From: a@example.net\r\n"
    b"Subject: digest\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/digest; boundary="D"\r\n'
    b"\r\n"
    b"--D\r\n"
    b"\r\n"
    b"From: c@example.net\r\n"
    b"Subject: first\r\n"
    b"\r\n"
    b"one\r\n"
    b"--D\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"not a message\r\n"
    b"--D--\r\n"
)


class SectionTests(IMAPTestCase):
    """RFC 3501 6.4.5 part numbers under message/rfc822; RFC 2046 5.1.5 digest defaults."""

    def fetch(self, raw, *items):
        self.inbox().add(raw, ["\\Seen"])

        def client():
            w = self.session(select="INBOX")
            out = [w.cmd("f%d" % i, "FETCH 1 (%s)" % item) for i, item in enumerate(items)]
            w.close()
            return out

        return self.in_thread(client)

    def test_top_level_message_rfc822(self):
        d = self.fetch(ENCAPSULATED, "BODY.PEEK[1]", "BODY.PEEK[1.HEADER]", "BODY.PEEK[1.TEXT]", "BODY.PEEK[1.1]")

        def check(out):
            whole, header, text, body = out
            self.assertEqual(
                whole,
                [
                    "* 1 FETCH (BODY[1] {51}",
                    "From: b@example.net",
                    "Subject: inner",
                    "",
                    "inner body",
                    ")",
                    "f0 OK FETCH completed",
                ],
            )
            self.assertEqual(
                header,
                ["* 1 FETCH (BODY[1.HEADER] {39}", "From: b@example.net", "Subject: inner", "", ")", "f1 OK FETCH completed"],
            )
            self.assertEqual(text, ["* 1 FETCH (BODY[1.TEXT] {12}", "inner body", ")", "f2 OK FETCH completed"])
            self.assertEqual(body, ["* 1 FETCH (BODY[1.1] {12}", "inner body", ")", "f3 OK FETCH completed"])

        return d.addCallback(check)

    def test_digest_parts_are_messages(self):
        d = self.fetch(DIGEST, "BODY.PEEK[1.HEADER]", "BODY.PEEK[1.1]", "BODY.PEEK[2]", "BODYSTRUCTURE")

        def check(out):
            header, body, second, structure = out
            self.assertEqual(
                header,
                ["* 1 FETCH (BODY[1.HEADER] {39}", "From: c@example.net", "Subject: first", "", ")", "f0 OK FETCH completed"],
            )
            self.assertEqual(body, ["* 1 FETCH (BODY[1.1] {3}", "one)", "f1 OK FETCH completed"])
            self.assertEqual(second, ["* 1 FETCH (BODY[2] {13}", "not a message)", "f2 OK FETCH completed"])
            c = '((NIL NIL "c" "example.net"))'
            envelope = '(NIL "first" %s %s %s NIL NIL NIL NIL NIL)' % (c, c, c)
            self.assertEqual(
                structure,
                [
                    '* 1 FETCH (BODYSTRUCTURE (("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 42 %s'
                    ' ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3 0 NIL NIL NIL NIL) 3'
                    ' NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 13 0'
                    ' NIL NIL NIL NIL) "DIGEST" ("BOUNDARY" "D") NIL NIL NIL))' % envelope,
                    "f3 OK FETCH completed",
                ],
            )

        return d.addCallback(check)


class LsubTests(IMAPTestCase):
    """RFC 3501 6.3.9: LSUB with % returns an unsubscribed parent of a subscribed name as \\Noselect."""

    def test_percent_returns_needed_parents(self):
        account = self.account()
        for name in account.subscriptions():
            account.unsubscribe(name)  # the default folders
        for name in ("foo", "foo/bar", "news/comp/mail", "sub"):
            account.create_mailbox(name)
        for name in ("foo/bar", "news/comp/mail", "sub"):
            account.subscribe(name)

        def client():
            w = self.session()
            top = w.cmd("l1", 'LSUB "" %')
            under = w.cmd("l2", 'LSUB "news/" %')
            star = w.cmd("l3", 'LSUB "" *')
            w.close()
            return top, under, star

        def check(result):
            top, under, star = result
            self.assertEqual(
                sorted(top[:-1]),
                ['* LSUB () "/" "sub"', '* LSUB (\\Noselect) "/" "foo"', '* LSUB (\\Noselect) "/" "news"'],
            )
            self.assertEqual(top[-1], "l1 OK LSUB completed")
            self.assertEqual(under, ['* LSUB (\\Noselect) "/" "news/comp"', "l2 OK LSUB completed"])
            self.assertEqual(
                sorted(star[:-1]),
                ['* LSUB () "/" "foo/bar"', '* LSUB () "/" "news/comp/mail"', '* LSUB () "/" "sub"'],
            )

        return self.in_thread(client).addCallback(check)


class SearchTests(IMAPTestCase):
    """SEARCH FROM/TO/CC/BCC match addresses, not only the header's text; NIL is a string."""

    def test_address_forms_and_nil(self):
        inbox = self.inbox()
        inbox.add(
            b"From: <user-from (comment)@ (comment) domain.org>\r\n"
            b"To: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\n"
            b"Cc: undisclosed:;\r\n"
            b"Subject: NIL and more\r\n\r\nbody NIL\r\n"
        )
        inbox.add(b"From: other@example.net\r\nSubject: hi\r\n\r\nbody\r\n")

        def client():
            w = self.session(select="INBOX")
            criteria = [
                "FROM user-from@domain.org",
                "FROM user-from",
                "FROM comment",
                "TO joerg@example.org",
                'TO "J\u00f6rg"',
                "TO example",
                "CC undisclosed",
                "SUBJECT NIL",
                "BODY NIL",
                "TEXT NIL",
                "HEADER Subject NIL",
                "FROM NIL",
            ]
            out = [w.cmd("q%d" % i, "SEARCH CHARSET UTF-8 " + c)[0] for i, c in enumerate(criteria)]
            w.close()
            return out

        def check(out):
            self.assertEqual(
                out,
                [
                    "* SEARCH 1",
                    "* SEARCH 1",
                    "* SEARCH 1",  # the header's text still matches, as Dovecot
                    "* SEARCH 1",
                    "* SEARCH 1",
                    "* SEARCH 1",
                    "* SEARCH 1",
                    "* SEARCH 1",
                    "* SEARCH 1",
                    "* SEARCH 1",
                    "* SEARCH 1",
                    "* SEARCH",
                ],
            )

        return self.in_thread(client).addCallback(check)


class ModifiedUtf7Tests(IMAPTestCase):
    """A valid string that is not modified UTF-7: NO for a mailbox, an empty OK for LIST."""

    def test_names_not_in_modified_utf7(self):
        def client():
            w = self.session()
            out = [
                w.cmd("s1", 'SELECT "&Jjo"'),
                w.cmd("s2", 'EXAMINE "a&-b&ZZZ-"'),
                w.cmd("c1", 'CREATE "&AGE-"'),
                w.cmd("l1", 'LIST "" "&Jjo*"'),
                w.cmd("l2", 'LSUB "&" "*"'),
                w.cmd("t1", 'STATUS "&Jjo" (MESSAGES)'),
            ]
            w.close()
            return out

        def check(out):
            no = "NO [CANNOT] Mailbox name is not valid modified UTF-7"
            self.assertEqual(
                out,
                [
                    ["s1 " + no],
                    ["s2 " + no],
                    ["c1 " + no],
                    ["l1 OK LIST completed"],
                    ["l2 OK LSUB completed"],
                    ["t1 " + no],
                ],
            )

        return self.in_thread(client).addCallback(check)
