"""IMAP wire clients that read exact lines, for assertions on what a client sees.

``Wire`` is a blocking socket client for test code that runs in a thread (next to
imaplib or imapclient); ``LineClient`` is its twin on the reactor, whose calls
return Deferreds. Both send raw text and hand back every line up to a tagged answer.
``MemoryWire`` runs a server protocol (IMAP or SMTP) on an in-memory transport.
``imaplib_session`` is Python's imaplib, logged in, for tests of what a stock
client gets.
"""

import imaplib
import socket
from contextlib import contextmanager

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from imapwebpush.conformance.client import LineReader

USER = "alice@example.org"
PASSWORD = "secret"


class Wire:
    """A blocking raw-socket IMAP client (run it in a thread); lines are text."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.greeting = self.readline()

    def readline(self):
        line = self.file.readline()
        if not line:
            raise EOFError("server closed the connection")
        return line.decode("utf-8", "replace").rstrip("\r\n")

    def read_exactly(self, size):
        """``size`` octets (a literal's contents), however the server split them."""
        data = b""
        while len(data) < size:
            chunk = self.file.read(size - len(data))
            if not chunk:
                raise EOFError("server closed the connection")
            data += chunk
        return data

    def read_raw_until(self, end):
        """The raw octets up to and including ``end`` (bytes), for non-UTF-8 answers."""
        data = b""
        while not data.endswith(end):
            line = self.file.readline()
            if not line:
                raise EOFError("server closed the connection")
            data += line
        return data

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def until(self, tag):
        """Lines up to and including the one tagged ``tag``."""
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if line.startswith(tag + " "):
                return lines

    def cmd(self, tag, text):
        self.send("%s %s\r\n" % (tag, text))
        return self.until(tag)

    def login(self, user=USER, password=PASSWORD):
        lines = self.cmd("L1", 'LOGIN "%s" "%s"' % (user, password))
        assert lines[-1].startswith("L1 OK"), lines
        return lines

    def close(self):
        try:
            self.sock.close()
        finally:
            self.file.close()


class LineClient(LineReader):
    """The reactor-side wire client: sends raw lines, collects the server's lines as bytes.

    Line collection and ``expect`` come from the conformance runner's reader.
    """

    def command(self, line):
        """Send one command line; fires with every line up to and including its tagged answer."""
        tag = line.split(b" ", 1)[0]
        self.sendLine(line)
        return self.expect(lambda received: received.startswith(tag + b" "))

    def continuation(self):
        return self.expect(lambda received: received.startswith(b"+"))


@defer.inlineCallbacks
def connect_line_client(tracker, port, user=None, password=b"secret"):
    """A tracked LineClient past the greeting, logged in as ``user`` (bytes) unless None."""
    client = LineClient()
    yield tracker.connect(client, port)
    yield client.expect(lambda line: line.startswith(b"* OK"))
    if user is not None:
        lines = yield client.command(b"L0 LOGIN " + user + b" " + password)
        if not lines[-1].startswith(b"L0 OK "):
            raise AssertionError(lines)
    return client


@contextmanager
def imaplib_session(port, user=USER, password=PASSWORD, timeout=10):
    """Python's imaplib, logged in on 127.0.0.1:``port``; LOGOUT at the end, whatever happened.

    For client code run in a thread (``threads.deferToThread``).
    """
    client = imaplib.IMAP4("127.0.0.1", port, timeout=timeout)
    try:
        client.login(user, password)
        yield client
    finally:
        client.logout()


class MemoryWire:
    """A server protocol (IMAP or SMTP) on an in-memory transport, for exact lines.

    ``send(b"LINE")`` returns the lines the server wrote for it at once; a test
    that moves a task.Clock reads what came later with ``read()``.
    """

    def __init__(self, factory, host="192.0.2.1", port=40000):
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self.greeting = self.read()

    def read(self):
        """The lines written since the last read (CRLF stripped)."""
        data = self.transport.value()
        self.transport.clear()
        return data.split(b"\r\n")[:-1]

    def send(self, line):
        return self.send_raw(line + b"\r\n")

    def send_raw(self, data):
        self.protocol.dataReceived(data)
        return self.read()

    @property
    def closed(self):
        return self.transport.disconnecting

    def close(self):
        if not self.transport.disconnecting:
            self.transport.loseConnection()
        self.protocol.connectionLost(None)
