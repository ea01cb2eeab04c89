"""MULTIAPPEND (RFC 3502): many messages in one APPEND, all or nothing, one APPENDUID;
and APPEND of a literal8 (RFC 3516 4.4)."""

import gc

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface import implementer

from imapwebpush.events import MessageAdded
from imapwebpush.imap import append
from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.store.account import MailStore
from imapwebpush.interfaces import IChangeListener
from imapwebpush.store import errors
from tests.harness.imap import IMAPTestCase, message
from tests.harness.wire import PASSWORD, USER, MemoryWire

# The two messages of RFC 3502's example (section 6), with CRLF line ends.
RFC_FIRST = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example.COM>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.example.net\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example.COM>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)
RFC_SECOND = (
    b"Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\n"
    b"From: Joe Mooch <mooch@OWATAGU.example.net>\r\n"
    b"Subject: Re: afternoon meeting\r\n"
    b"To: foobar@Blurdybloop.example.COM\r\n"
    b"Message-Id: <a0434793874930@OWATAGU.example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"3:30 is fine with me.\r\n"
)

ONE, TWO, THREE = message("one"), message("two"), message("three")


def nonsync(*messages):
    """`` {n+}`` CRLF message, for each message: the tail of a LITERAL+ MULTIAPPEND."""
    return b"".join(b" {%d+}\r\n" % len(m) + m for m in messages)


@implementer(IChangeListener)
class _Added:
    def __init__(self):
        self.uids = []

    def changed(self, event):
        if isinstance(event, MessageAdded):
            self.uids.append(event.uid)


class MultiAppendTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        self.account().create_mailbox("saved-messages")

    def saved(self):
        return self.account().mailbox("saved-messages")

    def test_rfc3502_example(self):
        validity = self.saved().uidvalidity

        def client():
            w = self.session()
            caps = w.cmd("c1", "CAPABILITY")
            w.send("A003 APPEND saved-messages (\\Seen) {%d}\r\n" % len(RFC_FIRST))
            first = w.readline()
            w.send(RFC_FIRST + b' (\\Seen) " 7-Feb-1994 22:43:04 -0800" {%d}\r\n' % len(RFC_SECOND))
            second = w.readline()
            w.send(RFC_SECOND + b"\r\n")
            done = w.until("A003")
            bogus = w.cmd("A004", "APPEND bogusname (\\Flagged) {1023}")
            after = w.cmd("A005", "NOOP")
            w.close()
            return caps, first, second, done, bogus, after

        def check(result):
            caps, first, second, done, bogus, after = result
            self.assertIn(" MULTIAPPEND", caps[0])
            self.assertEqual(first, "+ Ready for literal data")
            self.assertEqual(second, "+ Ready for literal data")
            self.assertEqual(done, ["A003 OK [APPENDUID %d 1:2] APPEND completed" % validity])
            # no "+": the client learns at once that its 1023 octets are not wanted
            self.assertEqual(bogus, ["A004 NO [TRYCREATE] No such mailbox"])
            self.assertEqual(after, ["A005 OK NOOP completed"])
            box = self.saved()
            self.assertEqual(box.uids(), [1, 2])
            self.assertEqual(box.message(1).read(), RFC_FIRST)
            self.assertEqual(box.message(2).read(), RFC_SECOND)
            self.assertEqual(box.message(2).flags, frozenset(["\\Seen"]))
            self.assertEqual(box.message(2).internaldate, 760689784)  # 8-Feb-1994 06:43:04 UTC

        return self.in_thread(client).addCallback(check)

    def test_literal_plus_then_pipelined_command(self):
        validity = self.inbox().uidvalidity

        def client():
            w = self.session(select="INBOX")
            w.send(
                b'a1 APPEND INBOX (\\Flagged) {%d+}\r\n' % len(ONE) + ONE
                + b' () "05-Nov-2026 10:11:12 +0100"' + nonsync(TWO, THREE)
                + b"\r\na2 FETCH 1:3 (UID FLAGS)\r\n"
            )
            lines = w.until("a1")
            fetched = w.until("a2")
            w.close()
            return lines, fetched

        def check(result):
            lines, fetched = result
            self.assertEqual(
                lines,
                [
                    "* 3 EXISTS",
                    "* 3 RECENT",
                    "a1 OK [APPENDUID %d 1:3] APPEND completed" % validity,
                ],
            )
            self.assertEqual(
                fetched,
                [
                    "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))",
                    "* 2 FETCH (UID 2 FLAGS (\\Recent))",
                    "* 3 FETCH (UID 3 FLAGS (\\Recent))",
                    "a2 OK FETCH completed",
                ],
            )
            inbox = self.inbox()
            self.assertEqual([inbox.message(u).read() for u in (1, 2, 3)], [ONE, TWO, THREE])
            self.assertEqual(inbox.message(2).internaldate, 1793869872)

        return self.in_thread(client).addCallback(check)

    def test_commit_in_slices(self):
        self.patch(append, "_COMMIT_SLICE", 0)  # one message per reactor turn

        def client():
            w = self.session()
            w.send(b"a1 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + nonsync(TWO, THREE) + b"\r\na2 NOOP\r\n")
            lines = w.until("a2")
            w.close()
            return lines

        def check(lines):
            self.assertRegex(lines[0], r"^a1 OK \[APPENDUID \d+ 1:3\] APPEND completed$")
            self.assertEqual(lines[1:], ["a2 OK NOOP completed"])
            self.assertEqual([self.inbox().message(u).read() for u in (1, 2, 3)], [ONE, TWO, THREE])

        return self.in_thread(client).addCallback(check)

    def test_connection_lost_half_way_adds_nothing(self):
        def client():
            w = self.session()
            w.send(b"a1 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + b" {%d+}\r\n" % len(TWO) + TWO[:10])
            w.close()
            w = self.session()
            lines = w.cmd("s1", "STATUS INBOX (MESSAGES)")
            w.close()
            return lines

        def check(lines):
            self.assertEqual(lines, ['* STATUS "INBOX" (MESSAGES 0)', "s1 OK STATUS completed"])

        return self.in_thread(client).addCallback(check)

    def test_one_message_too_large_adds_nothing(self):
        self.factory.max_message_size = 100
        big = b"x" * 200

        def client():
            w = self.session()
            w.send(b"a1 APPEND INBOX {%d}\r\n" % len(ONE))
            cont = w.readline()
            w.send(ONE + b" {200}\r\n")
            sync = w.until("a1")
            w.send(b"a2 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + nonsync(big, TWO) + b"\r\n")
            nonsync_lines = w.until("a2")
            noop = w.cmd("a3", "NOOP")
            w.close()
            return cont, sync, nonsync_lines, noop

        def check(result):
            cont, sync, nonsync_lines, noop = result
            self.assertEqual(cont, "+ Ready for literal data")
            self.assertEqual(sync, ["a1 NO [TOOBIG] Literal of 200 octets is over the limit of 100"])
            # the client sent all three: the big one and the one after are read and dropped
            self.assertEqual(nonsync_lines, ["a2 NO [TOOBIG] Literal of 200 octets is over the limit of 100"])
            self.assertEqual(noop, ["a3 OK NOOP completed"])
            self.assertEqual(self.inbox().uids(), [])

        return self.in_thread(client).addCallback(check)

    def test_message_limit(self):
        self.factory.max_append_messages = 2

        return self.three_refused_two_fit("a1 NO [LIMIT] At most 2 messages in one APPEND")

    def three_refused_two_fit(self, refusal):
        """An APPEND of ONE, TWO, THREE gets ``refusal`` and stores nothing; then one of
        ONE, TWO is stored whole."""

        def client():
            w = self.session()
            w.send(b"a1 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + nonsync(TWO, THREE) + b"\r\n")
            over = w.until("a1")
            w.send(b"a2 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + nonsync(TWO) + b"\r\n")
            fits = w.until("a2")
            w.close()
            return over, fits

        def check(result):
            over, fits = result
            self.assertEqual(over, [refusal])
            self.assertRegex(fits[-1], r"^a2 OK \[APPENDUID \d+ 1:2\] APPEND completed$")
            self.assertEqual(self.inbox().uids(), [1, 2])

        return self.in_thread(client).addCallback(check)

    def test_size_limit_for_the_whole_command(self):
        """All the messages of one APPEND together stay under max_append_size; the one that
        would pass it refuses the command, nothing stored, its literal read and dropped."""
        self.factory.max_message_size = len(ONE) + len(TWO)
        self.factory.max_append_size = len(ONE) + len(TWO)

        return self.three_refused_two_fit(
            "a1 NO [LIMIT] At most %d octets in one APPEND" % (len(ONE) + len(TWO)))

    def test_bad_syntax_after_a_message(self):
        def client():
            w = self.session()
            w.send(b"a1 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + b" {abc}\r\n")
            literal = w.until("a1")
            w.send(b"a2 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + b" (\\Bogus)" + nonsync(TWO) + b"\r\n")
            flag = w.until("a2")
            w.send(b"a3 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + b" (\\Seen)\r\n")
            no_literal = w.until("a3")
            w.send(b"a4 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + b" {3+}\r\nab")
            w.send(b"c\r\n")  # the literal's last octet, then the end of the command
            whole = w.until("a4")
            noop = w.cmd("a5", "NOOP")
            w.close()
            return literal, flag, no_literal, whole, noop

        def check(result):
            literal, flag, no_literal, whole, noop = result
            self.assertEqual(literal, ["a1 BAD Expected a message literal"])
            self.assertEqual(flag, ["a2 BAD Unknown system flag \\Bogus"])
            self.assertEqual(no_literal, ["a3 BAD Expected a message literal"])
            self.assertRegex(whole[-1], r"^a4 OK \[APPENDUID \d+ 1:2\] APPEND completed$")
            self.assertEqual(noop, ["a5 OK NOOP completed"])
            self.assertEqual(self.inbox().message(2).read(), b"abc")

        return self.in_thread(client).addCallback(check)

    def test_store_failure_half_way_keeps_none(self):
        inbox = self.inbox()
        real_add = inbox.add
        calls = []

        def add(data, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise errors.StoreError("No space left on device")
            return real_add(data, *args, **kwargs)

        self.patch(inbox, "add", add)

        def client():
            w = self.session()
            w.send(b"a1 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + nonsync(TWO, THREE) + b"\r\n")
            lines = w.until("a1")
            status = w.cmd("a2", "STATUS INBOX (MESSAGES UIDNEXT)")
            w.close()
            return lines, status

        def check(result):
            lines, status = result
            self.assertEqual(lines, ["a1 NO No space left on device"])
            self.assertEqual(status[0], '* STATUS "INBOX" (MESSAGES 0 UIDNEXT 3)')
            self.assertEqual(self.inbox().uids(), [])

        return self.in_thread(client).addCallback(check)

    def test_idle_and_pushes_see_each_message(self):
        listener = _Added()
        self.store.bus.subscribe(listener)

        def client():
            a, b = self.session(select="INBOX"), self.session()
            a.send("i1 IDLE\r\n")
            cont = a.readline()
            b.send(b"a1 APPEND INBOX {%d+}\r\n" % len(ONE) + ONE + nonsync(TWO) + b"\r\n")
            b.until("a1")
            pushed = [a.readline() for _ in range(4)]
            a.send("DONE\r\n")
            a.until("i1")
            a.close()
            b.close()
            return cont, pushed

        def check(result):
            cont, pushed = result
            self.assertEqual(cont, "+ idling")
            self.assertEqual(pushed, ["* 1 EXISTS", "* 1 RECENT", "* 2 EXISTS", "* 2 RECENT"])
            self.assertEqual(listener.uids, [1, 2])

        return self.in_thread(client).addCallback(check)


class Literal8AppendTests(IMAPTestCase):
    BINARY = (
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n"
        b"\r\n"
        b"\x00\x01\x02\xff\r\n\x00"
    )

    def test_literal8_append(self):
        def client():
            w = self.session()
            caps = w.cmd("c1", "CAPABILITY")
            w.send(b"a1 APPEND INBOX ~{%d}\r\n" % len(self.BINARY))
            cont = w.readline()
            w.send(self.BINARY + b" ~{%d+}\r\n" % len(self.BINARY) + self.BINARY + b"\r\n")
            lines = w.until("a1")
            w.close()
            return caps, cont, lines

        def check(result):
            caps, cont, lines = result
            self.assertIn(" BINARY", caps[0])
            self.assertEqual(cont, "+ Ready for literal data")
            self.assertRegex(lines[-1], r"^a1 OK \[APPENDUID \d+ 1:2\] APPEND completed$")
            self.assertEqual(self.inbox().message(1).read(), self.BINARY)
            self.assertEqual(self.inbox().message(2).read(), self.BINARY)

        return self.in_thread(client).addCallback(check)

    def test_literal8_with_bare_lf_is_refused(self):
        lossy = self.BINARY + b"\n\x00"

        def client():
            w = self.session()
            w.send(b"a1 APPEND INBOX {%d+}\r\n" % len(self.BINARY) + self.BINARY)
            w.send(b" ~{%d+}\r\n" % len(lossy) + lossy + b"\r\n")
            lines = w.until("a1")
            w.close()
            return lines

        def check(lines):
            self.assertEqual(
                lines,
                [
                    "a1 NO [UNKNOWN-CTE] Binary content with a bare LF cannot be stored unchanged "
                    "(this store ends lines with CRLF); send it base64-encoded"
                ],
            )
            self.assertEqual(self.inbox().uids(), [])

        return self.in_thread(client).addCallback(check)


class RefusedCommandMemoryTests(unittest.TestCase):
    """A refused APPEND whose client goes on sending literals costs no memory per literal."""

    def setUp(self):
        clock = Clock()
        store = MailStore(self.mktemp(), clock=clock)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER.encode(), PASSWORD.encode())
        factory = IMAPFactory(Portal(IMAPRealm(store), [checker]), store, allow_plaintext_auth=True, clock=clock)
        factory.max_append_messages = 1
        self.wire = MemoryWire(factory)
        self.addCleanup(self.wire.close)
        self.wire.send(b'L LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))

    def deferreds(self):
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, defer.Deferred))

    def test_skipped_literals_are_not_chained(self):
        self.assertEqual(self.wire.send_raw(b"a1 APPEND INBOX {1+}\r\nx {1+}\r\nx"), [])
        before = self.deferreds()
        self.assertEqual(self.wire.send_raw(b" {1+}\r\nx" * 2000), [])
        # one Deferred per skipped literal, kept until the command ends, was 2000 more
        self.assertLess(self.deferreds() - before, 10)
        self.assertEqual(self.wire.send(b""), [b"a1 NO [LIMIT] At most 1 messages in one APPEND"])
