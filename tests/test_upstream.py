"""Each private API of Twisted and treq that imapwebpush.upstream relies on still works.

A failure here after an upgrade names what changed upstream; fix upstream.py
(and only it), then move the tested upper bound in setup.cfg.
"""

import select
import socket

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer, protocol, reactor, task, tcp
from twisted.internet.testing import StringTransport
from twisted.mail import smtp
from twisted.mail.imap4 import PLAINCredentials
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
from twisted.trial import unittest
from zope.interface import implementer

from imapwebpush import upstream
from imapwebpush.upstream import ESMTPHooks


@implementer(IMessageSMTP)
class _Message:
    def lineReceived(self, line):
        pass

    def eomReceived(self):
        return defer.succeed("stored")

    def connectionLost(self):
        pass


@implementer(IMessageDelivery)
class _Delivery:
    def receivedHeader(self, helo, origin, recipients):
        return None

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        return _Message


class _Realm:
    def requestAvatar(self, avatarId, mind, *interfaces):
        raise AssertionError("no login succeeds here")


class _HookedESMTP(ESMTPHooks, smtp.ESMTP):
    """Twisted's ESMTP with nothing of ours but the hooks, recording their calls."""

    def message_handled(self, results):
        self.handled.append(results)
        self.sendCode(250, b"hook")

    def authentication_failed(self, reason):
        self.failed.append(reason)
        self.challenger = None
        self.sendCode(535, b"hook")


class ESMTPHooksTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.proto = _HookedESMTP()
        self.proto.callLater = self.clock.callLater  # its idle timeout
        self.proto.handled, self.proto.failed = [], []
        self.proto.delivery = _Delivery()
        self.proto.host = b"mx.example.org"
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.addCleanup(self.proto.connectionLost, None)
        self.send(b"EHLO client.example.org")

    def send(self, *lines):
        self.transport.clear()
        for line in lines:
            self.proto.dataReceived(line + b"\r\n")
        return self.transport.value().splitlines()

    def test_private_names_exist(self):
        for name in ("_messageHandled", "_ebAuthenticated"):
            self.assertTrue(
                callable(getattr(smtp.ESMTP, name, None)),
                "Twisted's ESMTP has no %s any more: imapwebpush.upstream.ESMTPHooks must follow" % name,
            )

    def test_final_dot_calls_message_handled(self):
        """``_messageHandled`` gets every recipient's eomReceived result and sends the reply."""
        self.send(b"MAIL FROM:<a@example.net>", b"RCPT TO:<b@example.org>", b"RCPT TO:<c@example.org>",
                  b"DATA")
        self.assertEqual(self.send(b"Subject: x", b"", b"hello", b"."), [b"250 hook"],
                         "ESMTP no longer calls _messageHandled after the final dot")
        self.assertEqual(self.proto.handled, [[(True, "stored"), (True, "stored")]])

    def test_failed_auth_calls_authentication_failed(self):
        """``_ebAuthenticated`` gets the failed cred login of an AUTH exchange."""
        self.proto.portal = Portal(_Realm(), [InMemoryUsernamePasswordDatabaseDontUse()])
        self.proto.challengers = {b"PLAIN": PLAINCredentials}
        self.assertEqual(self.send(b"AUTH PLAIN AGFsaWNlAHdyb25n"), [b"535 hook"],  # \0alice\0wrong
                         "ESMTP no longer calls _ebAuthenticated when the login fails")
        [reason] = self.proto.failed
        self.assertTrue(reason.check(UnauthorizedLogin), reason)

    def test_sender_given(self):
        """``_from`` is set by an accepted MAIL FROM and cleared by RSET and by the end of DATA."""
        self.assertFalse(self.proto.sender_given())
        self.send(b"MAIL FROM:<a@example.net>")
        self.assertTrue(self.proto.sender_given(), "ESMTP no longer keeps the sender in _from")
        self.send(b"RSET")
        self.assertFalse(self.proto.sender_given())
        self.send(b"MAIL FROM:<a@example.net>", b"RCPT TO:<b@example.org>", b"DATA")
        self.assertFalse(self.proto.sender_given())

    def test_forget_transaction(self):
        """Clearing ``_from`` and ``_to`` ends the transaction as RSET does."""
        self.send(b"MAIL FROM:<a@example.net>", b"RCPT TO:<b@example.org>")
        self.proto.forget_transaction()
        self.assertFalse(self.proto.sender_given())
        self.assertEqual(self.send(b"DATA"), [b"503 Must have valid receiver and originator"],
                         "ESMTP no longer keeps the transaction in _from and _to")


class SendNowTests(unittest.TestCase):
    """``send_now`` writes a plain TCP transport's buffer at once (tcp.Server internals)."""

    def test_tcp_server_attributes(self):
        for name in ("TLS", "producer", "connected", "disconnecting", "doWrite"):
            self.assertTrue(
                hasattr(tcp.Server, name),
                "twisted.internet.tcp.Server has no %s any more: imapwebpush.upstream.send_now"
                " must follow" % (name,),
            )

    def test_sent_before_the_reactor_turns(self):
        """Written and sent inside one callback: the client has the octets without a reactor turn."""
        connected = defer.Deferred()

        class Greeter(protocol.Protocol):
            def connectionMade(self):
                self.transport.write(b"ping")
                upstream.send_now(self.transport)
                readable, _, _ = select.select([client], [], [], 2)  # no reactor turn in between
                connected.callback(client.recv(10) if readable else b"")

        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Greeter), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)

        def check(data):
            self.assertEqual(data, b"ping", "send_now no longer sends a tcp.Server's buffer at once")

        return connected.addCallback(check)

    def test_other_transports_are_left_alone(self):
        transport = StringTransport()
        transport.write(b"held")
        upstream.send_now(transport)
        self.assertEqual(transport.value(), b"held")
