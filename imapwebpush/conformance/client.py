"""The IMAP side of the conformance runner: a small line client on the reactor.

It sends raw commands and hands back every line up to the tagged answer, so a
check can look at exact untagged responses (``* VAPID``, ``* WEBPUSH``), and it
sends literals the RFC 3501 way (wait for ``+``), which every server accepts.
"""

import itertools

from twisted.internet import defer, endpoints, ssl
from twisted.protocols.basic import LineReceiver


class Answer:
    """A command's untagged lines and its tagged status (OK/NO/BAD) and text."""

    def __init__(self, lines, tag):
        self.lines = lines
        last = lines[-1][len(tag) + 1:]
        self.status, _, self.text = last.partition(b" ")
        self.untagged = [line for line in lines[:-1] if line.startswith(b"* ")]

    def named(self, name):
        """The untagged lines ``* NAME ...`` (their text after ``* NAME ``)."""
        prefix = b"* " + name + b" "
        return [line[len(prefix):] for line in self.untagged if line.upper().startswith(prefix)]

    def __repr__(self):
        return repr(b"\r\n".join(self.lines))


class LineReader(LineReceiver):
    """Collects a server's lines as they come; ``expect`` waits for the next that matches.

    Also the base of the test suite's wire client. When the connection ends,
    whatever still waits fails with ConnectionError instead of waiting forever.
    """

    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def __init__(self):
        self.received = []
        self.closed = defer.Deferred()
        self._read = 0  # lines already handed to a caller
        self._waiters = []  # (predicate, Deferred), served in order

    def lineReceived(self, line):
        self.received.append(line)
        self._serve()

    def connectionLost(self, reason):
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(ConnectionError("the server closed the connection"))
        self.closed.callback(None)

    def _serve(self):
        while self._waiters:
            predicate, d = self._waiters[0]
            for i in range(self._read, len(self.received)):
                if predicate(self.received[i]):
                    out = self.received[self._read:i + 1]
                    self._read = i + 1
                    self._waiters.pop(0)
                    d.callback(out)
                    break
            else:
                return

    def expect(self, predicate):
        """Fires with the unread lines up to and including the first that matches."""
        d = defer.Deferred()
        self._waiters.append((predicate, d))
        self._serve()
        return d


class LineClient(LineReader):
    """Tags commands itself and answers with an L{Answer}."""

    def __init__(self):
        LineReader.__init__(self)
        self._tags = ("c%d" % n for n in itertools.count(1))

    def command(self, text, literal=None):
        """Send ``<tag> text`` (bytes); with ``literal``, ``text`` ends in ``{n}`` and the
        literal follows the continuation. Fires with an L{Answer}."""
        tag = next(self._tags).encode()
        if literal is None:
            self.sendLine(tag + b" " + text)
        else:
            self.sendLine(tag + b" " + text + b" {%d}" % len(literal))
            d = self.expect(lambda line: line.startswith(b"+") or line.startswith(tag + b" "))

            def go_on(lines):
                if lines[-1].startswith(tag + b" "):
                    return lines
                self.transport.write(literal)
                self.sendLine(b"")
                return self.expect(lambda line: line.startswith(tag + b" "))

            return d.addCallback(go_on).addCallback(Answer, tag)
        return self.expect(lambda line: line.startswith(tag + b" ")).addCallback(Answer, tag)


@defer.inlineCallbacks
def connect(reactor, host, port, use_tls=False, timeout=10):
    """A LineClient past the greeting."""
    if use_tls:
        endpoint = endpoints.SSL4ClientEndpoint(
            reactor, host, port, ssl.optionsForClientTLS(host), timeout=timeout)
    else:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    client = LineClient()
    yield endpoints.connectProtocol(endpoint, client)
    greeting = yield client.expect(lambda line: True)
    if not greeting[0].startswith((b"* OK", b"* PREAUTH")):
        raise ConnectionError("unexpected greeting %r" % (greeting[0],))
    return client


def quoted(text):
    """An IMAP quoted string."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
