"""Local delivery: which recipients we accept, and storing a message in their INBOX.

Why a shared envelope: Twisted hands every DATA line to one message object per
recipient. Only the first of them keeps the lines, so a message to ten local
users is received once and written once into each user's INBOX, each copy
with its own ``Received:`` header naming that recipient.

Why a spool: the lines go into a L{imapwebpush.spool.Spool} (memory up to
64 KiB, then an unnamed temporary file) as they arrive, and the store copies
each recipient's copy from it; a line is never kept as an object of its own,
so a connection in DATA holds a few buffers, whatever the message size.

A message is durable (the store fsyncs it) before the Deferred ``eomReceived``
returns fires, so the ``250`` the client reads after the final dot means the mail
is on disk. A large copy is written into the Maildir off the reactor
(``add_staged``), so other sessions go on meanwhile.

The local copies leave out any ``Authentication-Results:`` field that claims
this server's name (RFC 8601 section 5): only the one we add may say what
this server checked.
"""

import os
import re
from datetime import datetime, timezone

from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
from twisted.mail.smtp import SMTPBadRcpt, SMTPServerError
from zope.interface import implementer

from imapwebpush.constants import DEFAULT_MAX_MESSAGE_SIZE, INBOX
from imapwebpush.outbound.authres import ClaimedResults
from imapwebpush.smtp.senders import SenderPolicy
from imapwebpush.spool import Spool, closed_after
from imapwebpush.store.users import InvalidAddress, normalize_address

ORIGIN = "smtp"  # the ``origin`` token of store changes made by SMTP delivery

_HELO_UNSAFE = re.compile(rb"[^\x21-\x7e]")


def _clean(text, limit=255):
    """Client-supplied text made safe for a header: printable ASCII, no spaces."""
    if text is None:
        return "unknown"
    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    return _HELO_UNSAFE.sub(b"?", text[:limit]).decode("ascii") or "unknown"


class _Once:
    """One Deferred's result handed to every recipient's message, before or after it fires."""

    def __init__(self, d):
        self._fired = False
        self._result = None
        self._waiting = []
        d.addBoth(self._fire)

    def _fire(self, result):
        self._fired, self._result = True, result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            self._give(d)

    def _give(self, d):
        if isinstance(self._result, Failure):
            d.errback(self._result)
        else:
            d.callback(self._result)

    def get(self):
        d = defer.Deferred()
        if self._fired:
            self._give(d)
        else:
            self._waiting.append(d)
        return d


class _Envelope:
    """One SMTP transaction (MAIL FROM .. final dot): the body, spooled once for every recipient.

    The spool is opened at the first line and closed when the last recipient's
    message object is done with it (delivered, failed or the client gone).
    """

    def __init__(self, origin, max_size, transaction_id, spool_dir=None, authserv_id="unknown"):
        self.origin = origin
        self.max_size = max_size
        self.id = transaction_id
        self.spool_dir = spool_dir
        self.spool = None
        self.writer = None  # the one message object that writes the lines
        self.delivered = {}  # address -> _Once of the UID of its copy (stored or being stored)
        self.readers = 0  # message objects not yet done with the spool
        self.remote = []  # recipients of other domains, queued together (submission)
        self.client = (None, None)  # (HELO argument, client IP) for SPF
        self.authentication = None  # _Once: the Authentication-Results bytes, computed once
        self.queued = None  # _Once: their queue id once queued
        self.claims = ClaimedResults(authserv_id)  # forged Authentication-Results to leave out

    def append(self, line):
        if self.spool is None:
            self.spool = Spool(self.spool_dir)
        if self.spool.size + len(line) + 2 > self.max_size:
            self.discard()
            raise SMTPServerError(
                552,
                b"5.3.4 Message size exceeds fixed maximum message size (%d octets)" % self.max_size,
            )
        self.claims.line(self.spool.size, line)
        self.spool.write(line)
        self.spool.write(b"\r\n")

    @property
    def size(self):
        return self.spool.size if self.spool is not None else 0

    def reader(self, prefix, skip=()):
        """``prefix`` then the body (less the ``skip`` ranges), to be read once."""
        if self.spool is None:  # no line at all: an empty body after the header block
            self.spool = Spool(self.spool_dir)
            self.spool.write(b"\r\n")
        return self.spool.reader(prefix, skip)

    def snapshot(self, prefix):
        """A L{imapwebpush.spool.Snapshot} of ``prefix`` and the body, for a thread to read."""
        self.reader(b"")  # makes the empty spool of an empty body
        return self.spool.snapshot(prefix)

    def local_snapshot(self, prefix):
        """A L{imapwebpush.spool.Snapshot} of a local copy: ``prefix``, the body without our
        claimed results; a thread may read it, and it outlives the spool."""
        self.reader(b"")  # makes the empty spool of an empty body
        return self.spool.snapshot(prefix, self.claims.ranges())

    def done(self):
        """One message object is finished with the spool; the last one closes it."""
        self.readers -= 1
        if self.readers <= 0:
            self.discard()

    def discard(self):
        if self.spool is not None:
            self.spool.close()


@implementer(IMessageSMTP)
class _RecipientMessage:
    """One recipient's copy of the message; adds it to that user's INBOX."""

    log = Logger()

    def __init__(self, delivery, envelope, address, trace):
        self.delivery = delivery
        self.envelope = envelope
        self.address = address
        self.trace = trace  # Return-Path and Received header lines, CRLF-terminated
        self._done = False
        envelope.readers += 1

    def _finish(self):
        if not self._done:
            self._done = True
            self.envelope.done()

    def lineReceived(self, line):
        if self.envelope.writer is None:
            self.envelope.writer = self
        if self.envelope.writer is self:
            self.envelope.append(line)

    def eomReceived(self):
        results = self.delivery.authentication_results(self.envelope)
        if results is None:
            return self._store(b"")
        return results.addCallback(self._store)

    def _store(self, extra):
        """Add the copy, with ``extra`` header lines (Authentication-Results) under Return-Path.

        A Deferred of the UID, fired once the copy is durable: a large one is copied off
        the reactor from a snapshot of the spool, which outlives the connection (a client
        gone meanwhile loses nothing: the copy is stored, or its tmp/ file removed).
        """
        envelope = self.envelope
        try:
            if self.address in envelope.delivered:  # the same recipient twice: one copy
                return envelope.delivered[self.address].get()
            cut = self.trace.index(b"\r\n") + 2
            snapshot = envelope.local_snapshot(self.trace[:cut] + extra + self.trace[cut:])
        except Exception:
            self._finish()
            return self._failed_store(Failure())
        self._finish()
        try:
            mailbox = self.delivery.mail_store.account(self.address).mailbox(INBOX)
            d = mailbox.add_staged(snapshot, internaldate=self.delivery.clock.seconds(), origin=ORIGIN)
        except Exception:
            d = defer.fail()
        d.addBoth(closed_after, snapshot)
        d.addCallbacks(self._stored, self._failed_store, callbackArgs=(snapshot.size,))
        envelope.delivered[self.address] = _Once(d)
        return envelope.delivered[self.address].get()

    def _stored(self, uid, size):
        self.log.info(
            "delivered {size} octets from {sender} to {account} uid {uid} (transaction {transaction})",
            size=size,
            sender=self.envelope.origin,
            account=self.address,
            uid=uid,
            transaction=self.envelope.id,
        )
        return uid

    def _failed_store(self, failure):
        self.log.failure(
            "delivery to {account} failed (transaction {transaction})",
            failure,
            account=self.address,
            transaction=self.envelope.id,
        )
        return failure

    def connectionLost(self):
        self._finish()
        self.envelope.discard()


class _QueuedMessage(_RecipientMessage):
    """A remote recipient's copy: the first one queues the message for every remote recipient."""

    def eomReceived(self):
        envelope = self.envelope
        try:
            if envelope.queued is None:
                # Not read here: submit signs and copies it in a thread, as a
                # stream, from a snapshot that outlives this envelope's spool.
                snapshot = envelope.snapshot(self.trace)
                d = defer.maybeDeferred(
                    self.delivery.outbound.submit, envelope.origin, list(envelope.remote), snapshot)
                d.addBoth(closed_after, snapshot)
                envelope.queued = _Once(d.addErrback(self._failed))
        finally:
            self._finish()
        return envelope.queued.get()

    def _failed(self, failure):
        self.log.failure("queueing for {count} remote recipient(s) failed (transaction {transaction})",
                         failure, count=len(self.envelope.remote), transaction=self.envelope.id)
        return failure


@implementer(IMessageDelivery)
class LocalDelivery:
    """Accepts mail for the users of the local domains and stores it in their INBOX.

    One instance per SMTP connection (it keeps the current envelope).

    @param mail_store: L{imapwebpush.interfaces.IMailStore}.
    @param users: L{imapwebpush.interfaces.IUserDatabase}.
    @param domains: the local domains (lower-cased strings).
    @param hostname: the name of this server in ``Received:`` headers.
    @param clock: L{twisted.internet.interfaces.IReactorTime}.
    @param spool_dir: the folder of the DATA spool files (None: the system's temp folder).
    @param authenticated: the address of the authenticated sender on the
        submission port, None on the receiving port.
    @param outbound: L{imapwebpush.interfaces.IMailSubmitter} that queues mail
        for other domains from authenticated users; None: such mail is refused.
    @param senders: L{imapwebpush.smtp.senders.SenderPolicy} for the
        authenticated user's ``MAIL FROM``; None: their own address only.
    @param authenticator: L{imapwebpush.interfaces.IMessageAuthenticator} whose
        ``Authentication-Results:`` mail from other servers gets; None: none.
    """

    log = Logger()

    def __init__(
        self,
        mail_store,
        users,
        domains,
        hostname,
        clock,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
        authenticated=None,
        spool_dir=None,
        outbound=None,
        senders=None,
        authenticator=None,
    ):
        self.authenticator = authenticator
        self.outbound = outbound
        self.senders = senders or SenderPolicy()
        self.mail_store = mail_store
        self.users = users
        self.domains = frozenset(d.lower() for d in domains)
        self.hostname = hostname
        self.clock = clock
        self.max_message_size = max_message_size
        self.authenticated = authenticated
        self.spool_dir = spool_dir
        self._envelope = None

    def receivedHeader(self, helo, origin, recipients):
        # Each recipient's message writes its own (see _trace); Twisted's one
        # header per message object would be written before we know the user.
        return None

    def validateFrom(self, helo, origin):
        if self.authenticated is not None and not self.senders.allowed(self.authenticated, str(origin)):
            raise SMTPServerError(
                553, "5.7.1 <%s>: sender address not owned by %s" % (origin, self.authenticated)
            )
        if self._envelope is not None and not self._envelope.readers:
            self._envelope.discard()  # MAIL, RCPT, then RSET or MAIL again: never read
        self._envelope = _Envelope(
            str(origin), self.max_message_size, os.urandom(8).hex(), self.spool_dir, self.hostname
        )
        return origin

    def validateTo(self, user):
        try:
            address = normalize_address(str(user.dest))
        except InvalidAddress:
            raise SMTPBadRcpt(user.dest, 550, "5.1.3 <%s>: bad recipient address syntax" % (user.dest,))
        domain = address.split("@", 1)[1]
        if domain not in self.domains:
            if self.authenticated is not None and self.outbound is not None:
                envelope = self._envelope
                if address not in envelope.remote:
                    envelope.remote.append(address)
                trace = self._trace(user, None, envelope)
                return lambda: _QueuedMessage(self, envelope, address, trace)
            if self.authenticated is not None:
                raise SMTPBadRcpt(user.dest, 550, "5.7.1 <%s>: relaying not supported" % (address,))
            raise SMTPBadRcpt(
                user.dest, 550, "5.1.1 <%s>: not a local domain, relaying not supported" % (address,)
            )
        if not self.users.exists(address):
            raise SMTPBadRcpt(user.dest, 550, "5.1.1 <%s>: no such user here" % (address,))
        envelope = self._envelope
        envelope.client = user.helo or (None, None)
        trace = self._trace(user, address, envelope)
        return lambda: _RecipientMessage(self, envelope, address, trace)

    def authentication_results(self, envelope):
        """Deferred[bytes] of the envelope's Authentication-Results (checked once), or None.

        Only for mail from other servers: a logged-in user's mail is ours.
        """
        if self.authenticator is None or self.authenticated is not None:
            return None
        if envelope.authentication is None:
            helo, ip = envelope.client
            helo = helo.decode("ascii", "replace") if isinstance(helo, bytes) else helo
            # A snapshot, not the bytes: the DKIM check reads it as a stream, in a thread.
            snapshot = envelope.snapshot(b"")
            d = self.authenticator.authenticate(snapshot, ip, helo, envelope.origin)
            envelope.authentication = _Once(d.addBoth(closed_after, snapshot))
        return envelope.authentication.get()

    def _trace(self, user, address, envelope):
        """``Return-Path:`` and ``Received:`` (RFC 5321 4.4) for one recipient.

        With ``address`` None (mail queued for other domains): ``Received:``
        only, without ``for``; the final server adds ``Return-Path:``.
        """
        helo_arg, peer = user.helo if user.helo else (None, None)
        protocol = user.protocol
        with_ = "ESMTP"
        transport = getattr(protocol, "transport", None)
        if getattr(protocol, "startedTLS", False) or ISSLTransport.providedBy(transport):
            with_ += "S"
        if getattr(protocol, "authenticated", False):
            with_ += "A"
        when = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        date = when.strftime("%a, %d %b %Y %H:%M:%S +0000")
        origin = envelope.origin
        lines = [
            "Return-Path: <%s>" % (_clean(origin, 512) if origin else "",),
            "Received: from %s (%s)" % (_clean(helo_arg), _clean(peer)),
            "\tby %s (imapwebpush) with %s id %s" % (_clean(self.hostname), with_, envelope.id),
            "\tfor <%s>; %s" % (address, date),
        ]
        if address is None:
            lines = lines[1:3]
            lines[-1] += "; " + date
        return ("\r\n".join(lines) + "\r\n").encode("ascii")
