"""A scripted SMTP peer on a task.Clock, for the outbound scheduling tests.

The real-network tests (test_outbound_end_to_end) show the client against a
real server; these fakes let retry, backoff, expiry and the delay notice run
through five simulated days in milliseconds. Answers are delivered with
``clock.callLater(0, ...)``, so ``settle(clock)`` pumps a whole session
without moving the clock.
"""

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.python.failure import Failure

from imapwebpush.outbound.resolver import Destination, RouteError

from tests.harness.settle import settle as harness_settle


def settle(clock):
    """Run every call due now (and those they schedule for now); the clock does not move."""
    return harness_settle(clock, horizon=0)


class FakeRouter:
    """Routes every domain to one fake host, or raises the RouteError set for it."""

    def __init__(self):
        self.errors = {}
        self.asked = []

    def route(self, domain):
        self.asked.append(domain)
        if domain in self.errors:
            return defer.fail(self.errors[domain])
        return defer.succeed([Destination("mx." + domain, ["192.0.2.1"], 25)])


class FakeTransport:
    disconnecting = False

    def __init__(self, peer, protocol):
        self.peer = peer
        self.protocol = protocol
        self.buffer = b""
        self.data = None  # bytes of the DATA block being received
        self.closed = False
        self.envelope = None

    def write(self, data):
        self.buffer += data
        while True:
            if self.data is not None:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.data += self.buffer[: end + 2]
                self.buffer = self.buffer[end + 5:]
                message, self.data = self.data, None
                self.reply(self.peer.message(self, message))
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                return
            self.buffer = rest
            self.peer.commands.append(line)
            answer = self.peer.command(self, line)
            if line.upper() == b"DATA" and answer.startswith(b"354"):
                self.data = b""
            self.reply(answer)
            if line.upper() == b"QUIT":
                self.loseConnection()

    producer = None

    def registerProducer(self, producer, streaming):
        """A pull producer (the client's FileSender) is asked for all it has, at once;
        never, when the peer ``stalls`` (it takes no more data)."""
        self.producer = producer
        while not streaming and self.producer is producer and not self.closed and not self.peer.stalls:
            producer.resumeProducing()

    def unregisterProducer(self):
        self.producer = None

    def writeSequence(self, parts):
        self.write(b"".join(parts))

    def reply(self, answer):
        self.peer.clock.callLater(0, self._deliver, answer + b"\r\n")

    def _deliver(self, data):
        if not self.closed:
            self.protocol.dataReceived(data)

    def loseConnection(self):
        if not self.closed:
            self.closed = True
            self.peer.clock.callLater(0, self.protocol.connectionLost, Failure(ConnectionDone()))

    abortConnection = loseConnection

    def getPeer(self):
        return None

    def getHost(self):
        return None


class FakeMX:
    """A peer whose RCPT answers come from ``rcpt`` (address -> list of answers, used in turn)."""

    def __init__(self, clock):
        self.clock = clock
        self.refuse = False
        self.stalls = False  # takes no data after DATA's 354
        self.rcpt = {}
        self.extensions = [b"SIZE 100000", b"8BITMIME"]
        self.commands = []
        self.messages = []  # (mail from, [rcpt], data)
        self.connections = 0

    def connect(self, host, port, factory):
        if self.refuse:
            return defer.fail(ConnectionRefusedError())
        self.connections += 1
        protocol = factory.buildProtocol(None)
        transport = FakeTransport(self, protocol)
        protocol.makeConnection(transport)
        transport.reply(b"220 fake ESMTP")
        return defer.succeed(protocol)

    def command(self, transport, line):
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"EHLO":
            ext = [b"fake"] + self.extensions
            return b"\r\n".join(b"250-" + e for e in ext[:-1]) + b"\r\n250 " + ext[-1]
        if verb == b"MAIL":
            transport.envelope = (line[10:].split(b">")[0].lstrip(b"<"), [])
            return b"250 2.1.0 ok"
        if verb == b"RCPT":
            address = line[8:].split(b">")[0].lstrip(b"<").decode()
            answers = self.rcpt.get(address, [])
            answer = answers.pop(0) if len(answers) > 1 else (answers[0] if answers else b"250 2.1.5 ok")
            if answer.startswith(b"2"):
                transport.envelope[1].append(address)
            return answer
        if verb == b"DATA":
            return b"354 go ahead"
        if verb == b"RSET":
            transport.envelope = None
            return b"250 2.0.0 ok"
        if verb == b"QUIT":
            return b"221 2.0.0 bye"
        return b"502 5.5.2 what"

    def message(self, transport, data):
        sender, recipients = transport.envelope
        if data.startswith(b"."):
            data = data[1:]
        self.messages.append((sender, recipients, data.replace(b"\r\n..", b"\r\n.")))
        return b"250 2.0.0 queued as fake"


def permanent(domain):
    return RouteError("domain %s does not exist" % (domain,), True, "5.1.2")
