"""Random and hostile command lines at IMAP and SMTP: every one gets an answer or a clean
close, nothing is logged as an error, and another client is served meanwhile.

The servers run on in-memory transports (twisted's StringTransport) with a task.Clock,
so hypothesis tries a few hundred commands in seconds; the bytes are those of a socket.
Deterministic (derandomize, no example database) and bounded (max_examples) so the
normal suite runs it every time.
"""

import re

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.store.account import MailStore
from tests.harness.imap import MESSAGE, message
from tests.harness.logs import LogWatch
from tests.harness.smtp import SMTPWorldMixin
from tests.harness.wire import PASSWORD, USER

FUZZ = settings(
    max_examples=120,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

_LITERAL_AT_END = re.compile(rb"\{(\d{1,6})\+?\}\Z")

# -- IMAP ------------------------------------------------------------------------------

IMAP_COMMANDS = [
    "CAPABILITY", "NOOP", "LOGIN", "AUTHENTICATE", "STARTTLS", "SELECT", "EXAMINE", "CREATE",
    "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "STATUS", "APPEND", "CHECK",
    "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID", "ENABLE",
    "IDLE", "NAMESPACE", "ID", "XYZZY", "UID FETCH", "UID SEARCH", "UID STORE", "UID COPY",
    "UID EXPUNGE", "UID MOVE",
]
IMAP_TOKENS = [
    "NIL", "(", ")", "()", "[", "]", "*", "%", '"', '""', "\\", "\\Seen", "\\Recent", "\\Nope",
    "{5}", "{3+}", "{0}", "{70000}", "{99999999999}", "0", "1", "2", "1:*", "*:1", "-1", "1,,2",
    "4294967295", "4294967296", "99999999999999999999", "BODY[", "BODY[]", "BODY.PEEK[]<0.5>",
    "BODY[1.2.3.4.5.6.7.8.9]", "BODY[HEADER.FIELDS (", "BODY[0]", "BODYSTRUCTURE", "ENVELOPE",
    "RFC822", "FLAGS", "UID", "NOT", "OR", "ALL", "CHARSET", "UTF-8", "KOI8-R", "SUBJECT",
    "HEADER", "LARGER", "SINCE", "1-Jan-2024", "32-Foo-99999", "INBOX", "inbox", "INBOX/x",
    "../x", "~root", "&AOQ-", "&Jjo", "\x00", "\x7f", "\xff", "é", "MODSEQ", "CHANGEDSINCE",
    "(CHANGEDSINCE 1)", "(QRESYNC (1 2))", "CONDSTORE", "QRESYNC", "+FLAGS", "-FLAGS.SILENT",
    "(UNCHANGEDSINCE 0)", "PLAIN", "XOAUTH2", "=", "MESSAGES", "(MESSAGES UNSEEN HIGHESTMODSEQ)",
]
# The attacks of issue 10, as they were sent (some are long: built here).
IMAP_HOSTILE = [
    "SEARCH NIL", "SEARCH (NIL)", "SEARCH SUBJECT NIL", "SEARCH HEADER NIL NIL", "SEARCH UID NIL",
    "SEARCH NOT", "SEARCH OR ALL", "SEARCH " + "(" * 400 + "ALL" + ")" * 400,
    "SEARCH " + "NOT " * 5000 + "ALL", "SEARCH " + "[" * 3000,
    "STATUS INBOX " + "(" * 2000 + "MESSAGES" + ")" * 2000,
    "APPEND INBOX " + "(" * 3000 + " {5}", "FETCH 1 (" + "(" * 3000 + "FLAGS" + ")" * 3000 + ")",
    "FETCH 1 BODY[HEADER.FIELDS (" + "(" * 3000 + ")]", "STORE 1 +FLAGS " + "(" * 3000,
    "FETCH 4294967296 FLAGS", "UID FETCH 1:4294967296 FLAGS", "COPY 4294967296 INBOX",
    "UID EXPUNGE 4294967296", "STORE 4294967296 +FLAGS (\\Seen)", "SEARCH UID 1:4294967296",
    "SELECT INBOX (QRESYNC (4294967296 1))", "LIST \"\" \"" + "*%" * 3000 + "x\"",
    "SEARCH " + "OR ALL " * 3000 + "ALL", "SEARCH ()", "FETCH 1 BODY[]<4294967296.1>",
    "FETCH * (BODY[1.1.1.1.1.1.1] BODYSTRUCTURE ENVELOPE)", "SEARCH LARGER 99999999999999999999",
]

imap_line = st.one_of(
    st.sampled_from(IMAP_HOSTILE),
    st.tuples(
        st.sampled_from(IMAP_COMMANDS),
        st.lists(st.one_of(st.sampled_from(IMAP_TOKENS), st.text(max_size=12)), max_size=8),
    ).map(lambda ct: " ".join([ct[0]] + ct[1])),
)
imap_raw = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def encode(text):
    return text.encode("utf-8", "surrogatepass")


class IMAPConnection:
    """One IMAP session on a StringTransport; ``lines()`` is what it was sent since last time."""

    def __init__(self, factory, clock):
        self.clock = clock
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self.buffer = b""
        self.read()

    def read(self):
        for _ in range(50):  # streamed answers go out a slice per reactor turn
            self.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        self.buffer += data
        return data

    @property
    def closed(self):
        return self.transport.disconnecting

    def command(self, tag, line):
        """Send ``tag line`` (bytes); answer the server's continuations; the octets it wrote."""
        self.buffer = b""
        data = tag + b" " + line
        self.protocol.dataReceived(data + b"\r\n")
        self.read()
        for _ in range(6):
            if self.closed or self.tagged(tag):
                return self.buffer
            m = _LITERAL_AT_END.search(data)
            if m is not None and int(m.group(1)) <= 100000:
                data = b"x" * int(m.group(1))  # the literal's octets, then the end of the line
                self.protocol.dataReceived(data + b"\r\n")
            elif b"+ idling" in self.buffer:
                self.protocol.dataReceived(b"DONE\r\n")
                data = b""
            else:
                self.protocol.dataReceived(b"*\r\n")  # ends AUTHENTICATE; else a BAD of its own
                data = b""
            self.read()
        return self.buffer

    def tagged(self, tag):
        return re.search(rb"(^|\r\n)" + re.escape(tag) + rb" (OK|NO|BAD)[ \r]", self.buffer) is not None

    def close(self):
        if not self.transport.disconnecting:
            self.transport.loseConnection()
        self.protocol.connectionLost(None)


class IMAPFuzzTests(unittest.TestCase):
    def setUp(self):
        self.watch = LogWatch(self)
        self.clock = task.Clock()
        self.store = MailStore(self.mktemp(), clock=self.clock)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER.encode(), PASSWORD.encode())
        self.factory = IMAPFactory(Portal(IMAPRealm(self.store), [checker]), self.store,
                                   allow_plaintext_auth=True, clock=self.clock)
        inbox = self.store.account(USER).mailbox("INBOX")
        inbox.add(MESSAGE, ["\\Seen"])
        inbox.add(message("two", b"--x\r\n" * 50), [])
        self.bystander = self.connect(select=False)
        self.attacker = None
        self.count = 0
        self.addCleanup(self.close_all)

    def close_all(self):
        for c in (self.attacker, self.bystander):
            if c is not None:
                c.close()

    def connect(self, select=True):
        c = IMAPConnection(self.factory, self.clock)
        out = c.command(b"L", b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
        self.assertIn(b"L OK", out)
        if select:
            c.command(b"S", b"SELECT INBOX")
        return c

    def attack(self, line):
        if self.attacker is None or self.attacker.closed:
            if self.attacker is not None:
                self.attacker.close()
            self.attacker = self.connect()
        self.count += 1
        tag = b"a%d" % (self.count,)
        out = self.attacker.command(tag, line)
        self.assertTrue(self.attacker.closed or self.attacker.tagged(tag), (line[:200], out[-500:]))
        self.assertNotIn(b"Traceback", out)
        self.assertNotIn(b"Internal server error", out, line[:200])
        # the other client is served meanwhile
        ping = b"n%d" % (self.count,)
        self.assertEqual(self.bystander.command(ping, b"NOOP")[-len(ping) - 20:].split(b"\r\n")[-2],
                         ping + b" OK NOOP completed")
        self.assertEqual(self.watch.bad, [], line[:200])

    @FUZZ
    @given(st.lists(st.one_of(imap_line.map(encode), imap_raw), min_size=1, max_size=4))
    def test_random_lines(self, lines):
        for line in lines:
            self.attack(line)

    def test_the_known_attacks(self):
        for line in IMAP_HOSTILE:
            self.attack(encode(line))


# -- SMTP ------------------------------------------------------------------------------

SMTP_COMMANDS = ["HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "QUIT", "VRFY",
                 "EXPN", "HELP", "STARTTLS", "AUTH", "BDAT", "TURN", "XYZZY", ""]
SMTP_TOKENS = ["<>", "<alice@example.org>", "<bob@example.net>", "<a@b>", "<@x:a@b>", "<" + "a" * 300 + ">",
               "SIZE=1", "SIZE=99999999999999", "BODY=8BITMIME", "SMTPUTF8", "PLAIN", "LOGIN", "=",
               "AGFsaWNlAGFsaWNlLXB3", "\xff", "\x00", "é", "<postmaster>", ".", "x" * 1000]
SMTP_HOSTILE = ["\xffHELO x", "\x00\x00\x00", "MAIL FROM:<a@b>", "DATA", "." * 5000, "EHLO " + "x" * 2000,
                "AUTH PLAIN", "AUTH PLAIN =", "AUTH PLAIN !!!", "AUTH LOGIN", "RCPT TO:<" + "%" * 500 + ">"]

smtp_line = st.one_of(
    st.sampled_from(SMTP_HOSTILE),
    st.tuples(
        st.sampled_from(SMTP_COMMANDS),
        st.lists(st.one_of(st.sampled_from(SMTP_TOKENS), st.text(max_size=12)), max_size=5),
    ).map(lambda ct: ct[0] + " ".join(ct[1])),
)

_REPLY = re.compile(rb"(^|\r\n)\d\d\d[ -]")


class SMTPFuzzTests(SMTPWorldMixin, unittest.TestCase):
    def setUp(self):
        self.watch = LogWatch(self)
        self.make_world()
        self.factory = self.receiving_factory()
        self.bystander = self.connect(self.factory, "192.0.2.9")
        self.attacker = None

    def attack(self, line):
        if self.attacker is None or self.attacker.closed:
            self.attacker = self.connect(self.factory)
        replies = self.attacker.send(line)
        if not replies and not self.attacker.closed:
            replies = self.attacker.send(b".")  # a line inside DATA: the dot ends the message
        self.assertTrue(self.attacker.closed or any(_REPLY.match(r) for r in replies), (line[:200], replies))
        self.assertEqual(self.bystander.send(b"NOOP")[-1][:3], b"250")
        self.assertEqual(self.watch.bad, [], line[:200])

    @FUZZ
    @given(st.lists(st.one_of(smtp_line.map(encode), imap_raw), min_size=1, max_size=4))
    def test_random_lines(self, lines):
        for line in lines:
            self.attack(line)

    def test_the_known_attacks(self):
        for line in SMTP_HOSTILE:
            self.attack(encode(line))
