"""Random arguments for every WEBPUSH command: the answer is always one tagged OK/NO/BAD,
never a server error, the session survives, and nothing changes unless the answer is OK.

The server runs on an in-memory transport (twisted's StringTransport) so hypothesis can
try hundreds of commands quickly; the bytes are the same as on a socket.
"""

import os

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from imapwebpush.imap.avatar import Avatar
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.imap.server import IMAPServer
from imapwebpush.imap.webpush_commands import WebPushAvatarFactory, webpush_server_class
from imapwebpush.store.account import MailStore
from imapwebpush.webpush.policy import EndpointPolicy
from imapwebpush.webpush.service import WebPushService
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore
from imapwebpush.webpush.vapid import VapidKeyring
from tests.harness.webpush import (
    ENDPOINT, SUBJECT, RecordingSender, Realm, UAKeys, WebPushAvatar, WebPushIMAPServer)

KEYS = UAKeys()
COMMANDS = ["GETVAPID", "WEBPUSH", "ACKWEBPUSH", "LWEBPUSH", "SILWEBPUSH", "webpush",
            "SilWebPush"]

atoms = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                              blacklist_characters='(){"\\'), min_size=1, max_size=30)
plausible = st.sampled_from([
    "phone-1", "p", "x" * 64, "x" * 65, "NIL", "nil", "0", "600", "86401", "-1",
    ENDPOINT, "http://push.example.net/x", "https://127.0.0.1/x", "https://a@b/x",
    KEYS.p256dh_text, KEYS.auth_text, KEYS.p256dh_text[:-4], "AAAAAAAAAAAAAAAAAAAAAA", "*", "%",
])


def quoted(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


argument = st.one_of(
    plausible.map(lambda t: ("raw", t.encode())),
    atoms.map(lambda t: ("raw", t.encode())),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
            max_size=40).map(lambda t: ("raw", quoted(t).encode("utf-8"))),
    plausible.map(lambda t: ("raw", quoted(t).encode())),
    st.binary(max_size=40).map(lambda b: ("literal", b)),
    plausible.map(lambda t: ("literal", t.encode())),
)


def form(text):
    """One argument in any of the three astring forms."""
    return st.sampled_from(["raw", "quoted", "literal"]).map(
        lambda kind: ("raw", quoted(text).encode()) if kind == "quoted"
        else (kind, text.encode()))


webpush_args = st.tuples(
    st.sampled_from(["phone-1", "phone-2", "a.b_c-9", "bad id", "", "x" * 65]).flatmap(form),
    st.sampled_from([ENDPOINT, ENDPOINT + "?x=1", "https://push.example.net/%41*",
                     "http://push.example.net/", "https://10.0.0.1/x", "ftp://x/",
                     "https://push.example.net/#f"]).flatmap(form),
    st.sampled_from([KEYS.p256dh_text, KEYS.p256dh_text + "=", UAKeys().p256dh_text,
                     KEYS.auth_text, "BA" + "A" * 85]).flatmap(form),
    st.sampled_from([KEYS.auth_text, KEYS.auth_text + "==", UAKeys().auth_text,
                     KEYS.p256dh_text, "AAAA"]).flatmap(form),
).map(list)


def wire(tag, command, args):
    """The pieces a client sends: a literal's data goes only after the server's "+"."""
    pieces = []
    out = tag + b" " + command.encode()
    for kind, value in args:
        if kind == "literal":
            pieces.append(out + b" {%d}\r\n" % len(value))
            out = value
        else:
            out += b" " + value
    pieces.append(out + b"\r\n")
    return pieces


class PlainServerProperties(unittest.TestCase):
    """A plain twisted IMAP4Server with the mixin."""

    def setUp(self):
        base = self.mktemp()
        os.makedirs(base)
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.store = SQLiteSubscriptionStore(os.path.join(base, "s.sqlite"))
        self.addCleanup(self.store.close)
        keyring = VapidKeyring(os.path.join(base, "vapid"), SUBJECT, self.clock)
        self.sender = RecordingSender()
        self.service = WebPushService(self.store, keyring, EndpointPolicy(), self.clock,
                                      sender=self.sender)
        self.server = self.make_server()
        self.transport = StringTransport()
        self.server.makeConnection(self.transport)
        self.addCleanup(self.server.connectionLost, None)
        self.exchange(b"L LOGIN " + self.user + b" secret\r\n", b"L")
        # a subscription that exists, so updates and silences have something to hit
        self.exchange(("S WEBPUSH phone-1 %s %s %s\r\n" % (
            ENDPOINT, KEYS.p256dh_text, KEYS.auth_text)).encode(), b"S")
        self.account = self.store.accounts()[0]

    user = b"alice"

    def make_server(self):
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(b"alice", b"secret")
        server = WebPushIMAPServer()
        server.portal = Portal(Realm(lambda name: WebPushAvatar(name, self.service)), [checker])
        return server

    def exchange(self, pieces, tag):
        """Send the pieces of one command (see wire); the lines answered, up to the tagged one."""
        if isinstance(pieces, bytes):
            pieces = [pieces]
        self.transport.clear()
        for piece in pieces:
            self.server.dataReceived(piece)
            lines = self.transport.value().split(b"\r\n")
            tagged = [l for l in lines if l.startswith(tag + b" ")]
            if tagged:
                break
            self.assertTrue(lines[-2].startswith(b"+"), (pieces, lines))
        self.assertEqual(len(tagged), 1, (pieces, lines))
        return lines[:lines.index(tagged[0]) + 1]

    def snapshot(self):
        return (self.store.list(self.account), self.store.token_count(),
                [self.store.health(self.account, s.id) for s in self.store.list(self.account)])

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.differing_executors])
    @given(st.sampled_from(COMMANDS), st.lists(argument, max_size=6))
    def test_random_arguments(self, command, args):
        before = self.snapshot()
        sent = len(self.sender.sent)
        lines = self.exchange(wire(b"T", command, args), b"T")
        answer = lines[-1].split(b" ")[1]
        self.assertIn(answer, (b"OK", b"NO", b"BAD"), lines)
        self.assertNotIn(b"rror", lines[-1], lines)  # no "Server error", "Internal error"
        self.assertNotIn(b"SERVERBUG", lines[-1], lines)
        if answer != b"OK":
            self.assertEqual(self.snapshot(), before, lines)
            self.assertEqual(len(self.sender.sent), sent, lines)
            self.assertEqual([l for l in lines[:-1] if l.startswith(b"* ")], [], lines)
        # the session still works
        self.assertEqual(self.exchange(b"N NOOP\r\n", b"N")[-1][:4], b"N OK")

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.differing_executors])
    @given(webpush_args)
    def test_webpush_variants(self, args):
        self.clock.advance(3600)  # keep the verification rate limit from hiding the OK paths
        before = self.snapshot()
        lines = self.exchange(wire(b"T", "WEBPUSH", args), b"T")
        answer = lines[-1].split(b" ")[1]
        self.assertIn(answer, (b"OK", b"NO", b"BAD"), lines)
        untagged = [l for l in lines[:-1] if l.startswith(b"* ")]
        if answer == b"OK":
            sid = args[0][1].strip(b'"').decode()
            sub = self.store.get(self.account, sid)
            self.assertIsNotNone(sub)
            self.assertEqual(untagged[0], b"* VAPID " + self.service.vapid_key().encode())
            self.assertTrue(untagged[1].startswith(b"* WEBPUSH " + sid.encode() + b" "))
            self.assertEqual(len(untagged), 2)
        else:
            self.assertEqual(untagged, [], lines)
            self.assertEqual(self.snapshot(), before, lines)


class OurServerProperties(PlainServerProperties):
    """The same through our IMAPServer (its own parser, LITERAL+, state checks)."""

    user = b"alice@example.org"

    def make_server(self):
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(b"alice@example.org", b"secret")
        realm = IMAPRealm(MailStore(self.mktemp()),
                          avatar_factory=WebPushAvatarFactory(self.service, Avatar))
        server = webpush_server_class(IMAPServer)()
        server.portal = Portal(realm, [checker])
        server.allow_plaintext_auth = True
        server.clock = self.clock
        server.callLater = self.clock.callLater
        return server
