"""The SMTP client that hands queued mail to another server.

Why our own small client rather than twisted.mail.smtp.ESMTPSender: that one
sends one message and knows no ``MAIL FROM`` parameters, while we send several
messages with several recipients over one connection, add ``SIZE=``,
``BODY=8BITMIME`` and ``SMTPUTF8`` as the peer offers them, and need each
recipient's exact answer for the queue, the log and the DSN.

One L{DeliverySession} is one connection; L{deliver} tries the hosts of a
route in order until one of them holds a session.
"""

import base64
import io
import re

from twisted.internet import defer, endpoints, error as net_error
from twisted.internet.interfaces import IPullProducer, ISSLTransport
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

DEFAULT_COMMAND_TIMEOUT = 300.0  # RFC 5321 4.5.3.2: 5 minutes for greeting, MAIL, RCPT
DATA_END_TIMEOUT = 600.0  # RFC 5321 4.5.3.2.6: 10 minutes after the final dot
CONNECT_TIMEOUT = 30.0
SEND_PIECE = 64 * 1024  # octets of a message read at a time to send it

_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


class Answer:
    """What happened to one recipient: the SMTP code (None: no answer) and text."""

    __slots__ = ("code", "text", "host")

    def __init__(self, code, text, host=""):
        self.code = code
        self.text = text
        self.host = host

    @property
    def ok(self):
        return self.code is not None and 200 <= self.code < 300

    @property
    def permanent(self):
        return self.code is not None and self.code >= 500

    @property
    def status(self):
        """The enhanced status code (RFC 3463) of the answer, or one guessed from the code."""
        m = _STATUS.match(self.text)
        if m:
            return "%s.%s.%s" % m.groups()
        if self.ok:
            return "2.0.0"
        return "5.0.0" if self.permanent else "4.0.0"

    def line(self):
        """One line for logs and queue files: ``250 2.0.0 ok`` or the local reason."""
        return ("%d %s" % (self.code, self.text)) if self.code is not None else self.text

    def __repr__(self):
        return "Answer(%r, %r, %r)" % (self.code, self.text, self.host)


class Transaction:
    """One message for some recipients of one domain; ``results`` fills in as they answer.

    ``message``: bytes, or an object with ``size`` and ``open()`` (a new binary
    file at each call), such as L{imapwebpush.outbound.queue.MessageFile}: it
    is then sent as a stream.
    """

    def __init__(self, key, sender, recipients, message, smtputf8=False, eight_bit=None):
        self.key = key
        self.sender = sender
        self.recipients = list(recipients)
        if isinstance(message, bytes):
            self.size, self.open = len(message), (lambda: io.BytesIO(message))
        else:
            self.size, self.open = message.size, message.open
        self.smtputf8 = smtputf8 or not _ascii(sender) or not all(_ascii(r) for r in recipients)
        self.eight_bit = _has_8bit(self.open) if eight_bit is None else eight_bit
        self.results = {}

    def unanswered(self):
        return [r for r in self.recipients if r not in self.results]


def _ascii(value):
    return value.isascii()  # str or bytes


def _has_8bit(opened):
    """Whether the message has an octet over 127 (BODY=8BITMIME), read in pieces."""
    with opened() as f:
        return any(not piece.isascii() for piece in iter(lambda: f.read(SEND_PIECE), b""))


class _DotStuffer:
    """The DATA block of a message, a piece at a time: a line starting with "." gets another
    one (RFC 5321 4.5.2), and ``end()`` adds a missing last CRLF and the final dot line.

    Called by the FileSender for each piece it sends; ``touch`` is called too
    (the stall watchdog).
    """

    def __init__(self, touch):
        self._tail = b"\r\n"  # the start of the message counts as a line start
        self._touch = touch
        self._sent = False  # an empty message still gets its CRLF

    def __call__(self, piece):
        self._touch()
        self._sent = True
        data = self._tail + piece
        self._tail = data[-2:]
        return data.replace(b"\r\n.", b"\r\n..")[2:]

    def end(self):
        ended = self._tail == b"\r\n" and self._sent
        return (b"" if ended else b"\r\n") + b".\r\n"


@implementer(IPullProducer)
class _DataSender:
    """Pulls a message into the transport a piece at a time, as the peer takes it.

    It reads one piece ahead, so the last piece carries the end of the DATA
    block: a small message is one write, and no short write of ".\\r\\n" waits
    behind it (Nagle's algorithm and the peer's delayed ACK cost 40 ms a
    message that way). ``done`` fires when all is written.
    """

    def __init__(self, f, consumer, stuffer):
        self._f = f
        self._consumer = consumer
        self._stuffer = stuffer
        self.done = defer.Deferred()
        self._next = f.read(SEND_PIECE)
        consumer.registerProducer(self, False)

    def resumeProducing(self):
        if self.done.called:
            return
        piece, self._next = self._next, self._f.read(SEND_PIECE)
        data = self._stuffer(piece) if piece else b""
        if self._next:
            self._consumer.write(data)
            return
        self._consumer.write(data + self._stuffer.end())
        self._consumer.unregisterProducer()
        self.done.callback(None)

    def stopProducing(self):
        self.fail(_Protocol("the connection ended while sending the message"))

    def fail(self, reason):
        if not self.done.called:
            self.done.errback(reason)


class SessionFailed(Exception):
    """The session ended before any message was tried: another host may do better."""

    def __init__(self, answer):
        Exception.__init__(self, answer.line())
        self.answer = answer


class DeliverySession(LineOnlyReceiver):
    """One outbound SMTP connection: EHLO, STARTTLS, AUTH, then every transaction.

    @param tls: a client TLS connection creator for STARTTLS, or None for none.
    @param require_tls: end the session (temporary failure) without STARTTLS.
    @param auth: ``(user, password)`` for AUTH PLAIN (smarthost), or None.
    """

    delimiter = b"\r\n"
    MAX_LENGTH = 8192
    log = Logger()

    def __init__(self, hostname, transactions, clock, host="", tls=None, require_tls=False,
                 auth=None, timeout=DEFAULT_COMMAND_TIMEOUT):
        self.hostname = hostname
        self.transactions = transactions
        self.clock = clock
        self.host = host
        self.tls = tls
        self.require_tls = require_tls
        self.auth = auth
        self.timeout = timeout
        self.started = False  # a MAIL FROM was sent: no other host is tried
        self.secure = False
        self.tls_failed = False  # the session ended in the TLS handshake (or just after it)
        self._lines = []
        self._waiting = None
        self._timer = None
        self._lost = None
        self.finished = defer.Deferred()

    # -- wire --------------------------------------------------------------

    def connectionMade(self):
        self.secure = ISSLTransport.providedBy(self.transport)
        d = defer.ensureDeferred(self._session())
        d.addErrback(self._failed)
        d.addBoth(self._close)
        self._result = d

    def lineReceived(self, line):
        self._lines.append(line)
        if len(line) >= 4 and line[3:4] == b"-":
            return
        lines, self._lines = self._lines, []
        code = lines[-1][:3]
        waiting, self._waiting = self._waiting, None
        self._stop_timer()
        if waiting is None:
            return  # an answer nobody asked for: ignore it
        if not code.isdigit() or any(not l[:3] == code for l in lines):
            waiting.errback(_Protocol("malformed reply %r" % (lines[-1][:80],)))
            return
        text = [l[4:].decode("utf-8", "replace") for l in lines]
        waiting.callback((int(code), text))

    def lineLengthExceeded(self, line):
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self._lost = reason
        self._stop_timer()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(reason)
        if not self.finished.called:
            self._result.addBoth(lambda _: self.finished.callback(self))

    def _reply(self, timeout=None):
        if self._lost is not None:
            return defer.fail(self._lost)
        self._waiting = defer.Deferred()
        self._timer = self.clock.callLater(timeout or self.timeout, self._timed_out)
        return self._waiting

    def _timed_out(self):
        self._timer = None
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(_Protocol("timed out waiting for an answer"))
        self.transport.abortConnection()

    def _stop_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _command(self, line, timeout=None):
        self.sendLine(line)
        return self._reply(timeout)

    # -- the session ---------------------------------------------------------

    def _answer(self, code, text):
        return Answer(code, " ".join(t.strip() for t in text)[:400], self.host)

    async def _session(self):
        code, text = await self._reply()
        if code != 220:
            raise SessionFailed(self._answer(code, text))
        extensions = await self._ehlo()
        if not self.secure and self.tls is not None and b"STARTTLS" in extensions:
            code, text = await self._command(b"STARTTLS")
            if code == 220:
                self.transport.startTLS(self.tls)
                self.secure = True
                self.tls_failed = True  # until the peer answers EHLO over TLS
                extensions = await self._ehlo()
                self.tls_failed = False
            elif self.require_tls:
                raise SessionFailed(self._answer(code, text))
        if self.require_tls and not self.secure:
            raise SessionFailed(Answer(None, "TLS required but %s offers no STARTTLS" % (self.host,), self.host))
        if self.auth is not None:
            user, password = self.auth
            token = base64.b64encode(b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8"))
            code, text = await self._command(b"AUTH PLAIN " + token)
            if code != 235:
                # A relay refusing our login is a setup error: keep the mail and retry.
                raise SessionFailed(Answer(None, "relay %s refused AUTH: %s" % (
                    self.host, self._answer(code, text).line()), self.host))
        for transaction in self.transactions:
            await self._transaction(transaction, extensions)
        try:
            await self._command(b"QUIT")
        except Exception:
            pass

    async def _ehlo(self):
        code, text = await self._command(b"EHLO " + self.hostname.encode("ascii"))
        if code == 250:
            extensions = {}
            for line in text[1:]:
                word, _, value = line.strip().partition(" ")
                extensions[word.upper().encode("ascii", "replace")] = value.strip()
            return extensions
        code, text = await self._command(b"HELO " + self.hostname.encode("ascii"))
        if code != 250:
            raise SessionFailed(self._answer(code, text))
        return {}

    async def _transaction(self, t, extensions):
        if t.smtputf8 and b"SMTPUTF8" not in extensions:
            for r in t.recipients:
                t.results[r] = Answer(553, "5.6.7 %s does not support SMTPUTF8 addresses" % (self.host,), self.host)
            return
        limit = extensions.get(b"SIZE", "")
        if limit.isdigit() and int(limit) > 0 and t.size > int(limit):
            for r in t.recipients:
                t.results[r] = Answer(
                    552, "5.3.4 message of %d octets exceeds %s's limit of %s" % (t.size, self.host, limit),
                    self.host,
                )
            return
        params = []
        if b"SIZE" in extensions:
            params.append(b"SIZE=%d" % t.size)
        if t.eight_bit and b"8BITMIME" in extensions:
            params.append(b"BODY=8BITMIME")
        if t.smtputf8:
            params.append(b"SMTPUTF8")
        self.started = True
        code, text = await self._command(
            b" ".join([b"MAIL FROM:<" + t.sender.encode("utf-8") + b">"] + params)
        )
        if code != 250:
            answer = self._answer(code, text)
            for r in t.recipients:
                t.results[r] = answer
            if code == 421:
                raise _Closing()
            await self._rset()
            return
        accepted = []
        for r in t.recipients:
            code, text = await self._command(b"RCPT TO:<" + r.encode("utf-8") + b">")
            if code in (250, 251):
                accepted.append(r)
            else:
                t.results[r] = self._answer(code, text)
                if code == 421:
                    raise _Closing()
        if not accepted:
            await self._rset()
            return
        code, text = await self._command(b"DATA")
        if code != 354:
            answer = self._answer(code, text)
            for r in accepted:
                t.results[r] = answer
            if code == 421:
                raise _Closing()
            await self._rset()
            return
        await self._send(t)
        code, text = await self._reply(DATA_END_TIMEOUT)
        answer = self._answer(code, text)
        for r in accepted:
            t.results[r] = answer
        if code == 421:
            raise _Closing()

    async def _send(self, t):
        """The DATA block, read from the message a piece at a time as the peer takes it.

        A peer that takes nothing for ``timeout`` seconds (RFC 5321 4.5.3.2.5
        asks for 3 minutes per piece) has the connection aborted.
        """
        sender = None
        watchdog = [None]

        def stalled():
            watchdog[0] = None
            if sender is not None:  # the transfer fails now, whatever the transport does
                sender.fail(_Protocol("timed out: the message was not taken for %d s" % (self.timeout,)))
            self.transport.abortConnection()

        def touch():
            if watchdog[0] is not None and watchdog[0].active():
                watchdog[0].reset(self.timeout)
            else:
                watchdog[0] = self.clock.callLater(self.timeout, stalled)

        try:
            with t.open() as f:
                touch()
                sender = _DataSender(f, self.transport, _DotStuffer(touch))
                await sender.done
        finally:
            if watchdog[0] is not None and watchdog[0].active():
                watchdog[0].cancel()
        if self._lost is not None:
            raise _Protocol("connection lost while sending the message")

    async def _rset(self):
        code, text = await self._command(b"RSET")
        if code != 250:
            raise _Closing()

    def _failed(self, failure):
        """Whatever ended the session early: recorded, then the connection closes."""
        if failure.check(SessionFailed):
            self.failure = failure.value.answer
        elif failure.check(_Closing):
            self.failure = Answer(None, "%s closed the session" % (self.host,), self.host)
        elif failure.check(_Protocol):
            self.failure = Answer(None, "%s: %s" % (self.host, failure.value), self.host)
        else:
            self.failure = Answer(None, "connection to %s lost: %s" % (
                self.host, failure.getErrorMessage() or failure.type.__name__), self.host)

    failure = None

    def _close(self, _):
        if self._lost is None:
            self.transport.loseConnection()


class _Protocol(Exception):
    """The peer broke the protocol (or was too slow)."""


class _Closing(Exception):
    """The peer answered 421 or refused RSET: the session is over."""


class _SessionFactory(Factory):
    noisy = False

    def __init__(self, make):
        self.make = make

    def buildProtocol(self, addr):
        return self.make()


def connect_tcp(reactor):
    """The default connector: ``(host, port, factory) -> Deferred[protocol]``."""

    def connect(host, port, factory):
        endpoint = endpoints.HostnameEndpoint(reactor, host.encode("idna"), port, timeout=CONNECT_TIMEOUT)
        return endpoint.connect(factory)

    return connect


async def deliver(destinations, transactions, hostname, clock, connect, tls=None,
                  require_tls=False, auth=None, timeout=DEFAULT_COMMAND_TIMEOUT):
    """Try each destination (and each of its addresses) until one holds a session.

    Fills ``transaction.results``; a recipient without an answer when every
    host failed gets the last failure (no code: retried later). Returns the
    list of failures met on the way (Answer), for the log.
    """
    failures = []
    for destination in destinations:
        tries = [(address, tls) for address in destination.addresses]
        while tries:
            address, session_tls = tries.pop(0)
            session = DeliverySession(
                hostname, transactions, clock, host=destination.host, tls=session_tls,
                require_tls=require_tls, auth=auth, timeout=timeout,
            )
            try:
                await connect(address, destination.port, _SessionFactory(lambda: session))
            except (net_error.ConnectError, net_error.DNSLookupError, net_error.TimeoutError,
                    defer.CancelledError, OSError) as e:
                failures.append(Answer(None, "cannot connect to %s[%s]:%d: %s" % (
                    destination.host, address, destination.port, e.__class__.__name__), destination.host))
                continue
            await session.finished
            if session.tls_failed and not require_tls:
                # Opportunistic TLS (RFC 7435): a peer whose TLS does not work with
                # ours still gets the mail, in the clear, over a new connection.
                failures.append(session.failure)
                tries.insert(0, (address, None))
                continue
            if session.started or session.failure is None:
                _fill(transactions, session.failure or Answer(None, "no answer", destination.host))
                if session.failure is not None:
                    failures.append(session.failure)
                return failures
            failures.append(session.failure)
    # Failures before any MAIL FROM (no connection, a 554 greeting, TLS) are
    # about the host, not the message: always retried, never bounced.
    last = failures[-1] if failures else Answer(None, "no destination")
    _fill(transactions, Answer(None, last.line(), last.host))
    return failures


def _fill(transactions, answer):
    for t in transactions:
        for r in t.unanswered():
            t.results[r] = answer
