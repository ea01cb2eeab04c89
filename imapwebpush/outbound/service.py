"""The delivery service: takes submitted mail into the queue and works the queue off.

Why per (message, domain): each recipient domain has its own route, its own
answers and its own retry time. A run groups every due recipient of one domain,
across messages, into one connection (several transactions of up to
L{MAX_RECIPIENTS} recipients), and at most one connection per domain is open
at a time, so a burst to one domain shares connections instead of opening one
per message. Retries back off from ``retry`` seconds, doubling, up to
``max_retry``; after ``delay_notice`` seconds the sender gets a delay notice
once; after ``lifetime`` seconds, or on a 5xx, a bounce (RFC 3464) that goes
into the sender's INBOX through the store, so it is pushed like any mail.
"""

import io

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush.interfaces import IMailSubmitter
from imapwebpush.outbound import dsn
from imapwebpush.outbound.client import DEFAULT_COMMAND_TIMEOUT, Transaction, deliver
from imapwebpush.outbound.queue import DELIVERED, FAILED, PENDING
from imapwebpush.outbound.resolver import RouteError

DEFAULT_LIFETIME = 5 * 24 * 3600.0
DEFAULT_DELAY_NOTICE = 4 * 3600.0
DEFAULT_RETRY = 300.0
DEFAULT_MAX_RETRY = 3600.0
DEFAULT_MAX_CONNECTIONS = 20
MAX_RECIPIENTS = 100  # RFC 5321 4.5.3.1.8: what every server must take in one transaction
MAX_TRANSACTIONS = 50  # messages sent over one connection before the next run
RESCAN_INTERVAL = 60.0  # seconds between looks at what the admin command changed


class Outcome:
    """What one attempt did for one recipient, whatever the cause."""

    __slots__ = ("kind", "line", "status", "remote")

    def __init__(self, kind, line, status, remote=""):
        self.kind = kind  # DELIVERED, FAILED or PENDING (retry)
        self.line = line
        self.status = status
        self.remote = remote

    @classmethod
    def from_answer(cls, answer):
        if answer.ok:
            kind = DELIVERED
        elif answer.permanent:
            kind = FAILED
        else:
            kind = PENDING
        status = answer.status if answer.code is not None else "4.4.1"
        return cls(kind, answer.line(), status, answer.host)


@implementer(IMailSubmitter)
class OutboundService(service.Service):
    """Queue plus scheduler plus delivery.

    @param queue: L{imapwebpush.interfaces.IOutboundQueue}.
    @param router: L{imapwebpush.interfaces.IMailRouter}.
    @param clock: L{twisted.internet.interfaces.IReactorTime}.
    @param hostname: our name in EHLO and in the DSNs.
    @param connect: ``(host, port, factory) -> Deferred`` (L{client.connect_tcp}).
    @param notify: ``(address, data) -> bool``: store a DSN for a local
        sender, False when the address is not local (the DSN is then queued
        with a null sender).
    @param signer: L{imapwebpush.interfaces.IMessageSigner} or None.
    @param tls: client TLS creator for STARTTLS, or None.
    @param run: ``(f, *args) -> Deferred`` where signing runs (a thread; tests: at once).
    """

    log = Logger()

    def __init__(self, queue, router, clock, hostname, connect, notify, signer=None, tls=None,
                 require_tls=False, auth=None, lifetime=DEFAULT_LIFETIME,
                 delay_notice=DEFAULT_DELAY_NOTICE, retry=DEFAULT_RETRY,
                 max_retry=DEFAULT_MAX_RETRY, max_connections=DEFAULT_MAX_CONNECTIONS,
                 timeout=DEFAULT_COMMAND_TIMEOUT, run=defer.maybeDeferred):
        self.run = run
        self.queue = queue
        self.router = router
        self.clock = clock
        self.hostname = hostname
        self.connect = connect
        self.notify = notify
        self.signer = signer
        self.tls = tls
        self.require_tls = require_tls
        self.auth = auth
        self.lifetime = lifetime
        self.delay_notice = delay_notice
        self.retry = retry
        self.max_retry = max_retry
        self.max_connections = max_connections
        self.timeout = timeout
        self._timer = None
        self._busy = set()  # domains with a run under way
        self._runs = set()  # their Deferreds
        self._sessions = set()  # open connections, aborted at stop
        self._run_waiters = []
        self._inflight = {}  # domain -> its run's items
        self._rescan = None

    # -- IMailSubmitter ------------------------------------------------------

    def submit(self, sender, recipients, data):
        now = self.clock.seconds()
        # Signing (hashing the body) and copying to disk with fsync: off the reactor.
        d = self.run(self._write, sender, data, now)
        return d.addCallback(self._add, sender, recipients, now)

    def _write(self, sender, data, now):
        """In a thread: the signature (one pass over the message), then header + message on disk."""
        opened = (lambda: io.BytesIO(data)) if isinstance(data, bytes) else data.reader
        header = self.signer.sign(sender, opened()) if self.signer is not None else b""
        return self.queue.write_message([header, opened()], now)

    def _add(self, written, sender, recipients, now):
        queue_id, size = written
        entry = self.queue.commit(queue_id, sender, recipients, size, now)
        self.log.info(
            "outbound {queue_id}: queued {size} octets from <{sender}> for {count} recipient(s)",
            queue_id=entry.id, size=entry.size, sender=sender, count=len(recipients),
        )
        self._schedule()
        return entry.id

    # -- service -------------------------------------------------------------

    def startService(self):
        service.Service.startService(self)
        self._rescan = task.LoopingCall(self._refresh)
        self._rescan.clock = self.clock
        self._rescan.start(RESCAN_INTERVAL, now=False)
        self._schedule()

    def _refresh(self):
        """Pick up 'imapwebpush queue retry/delete' made while we run."""
        busy = {entry.id for items in self._inflight.values() for entry, _ in items}
        if self.queue.refresh(busy):
            self._schedule()

    def stopService(self):
        service.Service.stopService(self)
        if self._rescan is not None and self._rescan.running:
            self._rescan.stop()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for session in list(self._sessions):
            session.transport.abortConnection()
        # Unanswered recipients stay pending on disk: the next start retries them.
        return defer.DeferredList(list(self._runs))

    def retry_now(self, queue_id=None):
        """Make every pending recipient (of one entry, or all) due now; how many."""
        now = self.clock.seconds()
        count = 0
        for entry in self.queue.entries():
            if queue_id is not None and entry.id != queue_id:
                continue
            for r in entry.pending():
                r.next_attempt = now
                count += 1
            self.queue.save(entry)
        self._schedule()
        return count

    # -- scheduling ----------------------------------------------------------

    def _due(self):
        """``(earliest next attempt, {domain: [(entry, recipients)]})`` of the idle domains."""
        earliest = None
        now = self.clock.seconds()
        due = {}
        for entry in self.queue.entries():
            mine = {}
            for r in entry.pending():
                if r.domain in self._busy:
                    continue
                if r.next_attempt <= now:
                    mine.setdefault(r.domain, []).append(r)
                elif earliest is None or r.next_attempt < earliest:
                    earliest = r.next_attempt
            for domain, recipients in mine.items():
                due.setdefault(domain, []).append((entry, recipients))
        if due:
            earliest = now
        return earliest, due

    def _schedule(self):
        if not self.running:
            return
        earliest, _ = self._due()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if earliest is not None:
            delay = max(0.0, earliest - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self):
        self._timer = None
        _, due = self._due()
        for domain, items in sorted(due.items()):
            if len(self._busy) >= self.max_connections:
                break
            self._busy.add(domain)
            self._inflight[domain] = items[:MAX_TRANSACTIONS]
            d = defer.ensureDeferred(self._run(domain, items[:MAX_TRANSACTIONS]))
            d.addErrback(self._run_failed, domain, items[:MAX_TRANSACTIONS])
            d.addBoth(self._ran, domain, d)
            if not d.called:
                self._runs.add(d)
        if len(self._busy) < self.max_connections:
            self._schedule()

    def _run_failed(self, failure, domain, items):
        """A bug or a disk error in a run: logged, and its recipients wait ``retry`` seconds.

        Without the wait they would still be due, and the run would start
        again at once, and fail again, forever.
        """
        self.log.failure("outbound: delivery run for {domain} failed", failure, domain=domain)
        later = self.clock.seconds() + self.retry
        for entry, recipients in items:
            for r in recipients:
                r.next_attempt = max(r.next_attempt, later)
            try:
                self.queue.save(entry)
            except Exception:
                pass  # deleted meanwhile, or the disk again: the times above still hold in memory

    def _ran(self, _, domain, d):
        self._busy.discard(domain)
        self._inflight.pop(domain, None)
        self._runs.discard(d)
        self._schedule()
        waiters, self._run_waiters = self._run_waiters, []
        for waiter in waiters:
            waiter.callback(domain)

    def next_run(self):
        """A Deferred fired with the domain when the next delivery run has finished.

        For tests and benchmarks that wait for the queue without polling.
        """
        d = defer.Deferred()
        self._run_waiters.append(d)
        return d

    # -- one run ---------------------------------------------------------------

    async def _run(self, domain, items):
        outcomes = {}
        try:
            destinations = await self.router.route(domain)
        except RouteError as e:
            kind = FAILED if e.permanent else PENDING
            for entry, recipients in items:
                outcomes[entry.id] = [(r, Outcome(kind, str(e), e.status)) for r in recipients]
        else:
            transactions = []
            for entry, recipients in items:
                try:
                    message = self.queue.message_file(entry.id)  # sent as a stream, never held whole
                except OSError as e:
                    outcomes[entry.id] = [
                        (r, Outcome(PENDING, "cannot read the queued message: %s" % (e.strerror,), "4.3.0"))
                        for r in recipients
                    ]
                    continue
                by_address = {r.address: r for r in recipients}
                eight_bit = None
                for start in range(0, len(recipients), MAX_RECIPIENTS):
                    chunk = recipients[start:start + MAX_RECIPIENTS]
                    transactions.append(Transaction(
                        (entry, by_address), entry.sender, [r.address for r in chunk], message,
                        eight_bit=eight_bit))
                    eight_bit = transactions[-1].eight_bit  # one scan of the file per message
            await deliver(
                destinations, transactions, self.hostname, self.clock, self._connect,
                tls=self.tls, require_tls=self.require_tls, auth=self.auth, timeout=self.timeout,
            )
            for t in transactions:
                entry, by_address = t.key
                outcomes.setdefault(entry.id, []).extend(
                    (by_address[a], Outcome.from_answer(t.results[a])) for a in t.recipients
                )
        now = self.clock.seconds()
        for entry, _ in items:
            if entry.id in outcomes:
                self._apply(entry, domain, outcomes[entry.id], now)

    def _connect(self, host, port, factory):
        d = self.connect(host, port, factory)

        def connected(protocol):
            self._sessions.add(protocol)
            protocol.finished.addBoth(lambda _: self._sessions.discard(protocol))
            return protocol

        return d.addCallback(connected)

    def _apply(self, entry, domain, outcomes, now):
        """Record one run's outcomes for ``entry``; notify the sender; save or remove it."""
        try:
            self.queue.get(entry.id)
        except KeyError:
            return  # deleted by the operator meanwhile
        failed = []
        expires = entry.created + self.lifetime
        for r, o in outcomes:
            r.attempts += 1
            r.answer, r.status, r.remote = o.line, o.status, o.remote
            if o.kind == PENDING and now >= expires:
                o.kind = FAILED
                r.status = "4.4.7"
                r.answer = "gave up after %d attempts; last answer: %s" % (r.attempts, o.line)
            r.state = o.kind
            if o.kind == FAILED:
                failed.append(r)
            elif o.kind == PENDING:
                backoff = min(self.retry * 2 ** (r.attempts - 1), self.max_retry)
                r.next_attempt = min(now + backoff, expires)
        self._log_attempt(entry, domain, outcomes)
        if entry.sender:
            original = None
            if failed:
                original = self.queue.read_headers(entry.id)
                self._notify(dsn.FAILED, entry, failed, original, now)
            pending = entry.pending()
            if pending and not entry.delay_notified and now >= entry.created + self.delay_notice:
                original = original or self.queue.read_headers(entry.id)
                self._notify(dsn.DELAYED, entry, pending, original, now, retry_until=expires)
                entry.delay_notified = True
        if entry.pending():
            self.queue.save(entry)
        else:
            self.queue.remove(entry.id)
            self.log.info("outbound {queue_id}: done", queue_id=entry.id)

    _WORDS = {DELIVERED: "delivered", FAILED: "bounced", PENDING: "deferred"}

    def _log_attempt(self, entry, domain, outcomes):
        """One line per attempt (per answer when recipients got different ones)."""
        lines = {}
        for r, o in outcomes:
            lines.setdefault((r.state, r.remote, r.answer), []).append(r.address)
        for (state, remote, answer), addresses in lines.items():
            self.log.info(
                "outbound {queue_id} to {domain} via {remote}: {outcome} ({count}): {answer}",
                queue_id=entry.id, domain=domain, remote=remote or "-", outcome=self._WORDS[state],
                count=len(addresses), answer=answer,
            )

    def _notify(self, action, entry, recipients, original, now, retry_until=None):
        report = dsn.build_dsn(action, self.hostname, entry, recipients, original, now,
                               retry_until=retry_until)
        try:
            if not self.notify(entry.sender, report):
                # A remote sender: a null-sender DSN through the queue.
                self.submit("", [entry.sender], report).addErrback(
                    lambda f: self.log.failure("outbound {queue_id}: the {action} notice was not queued",
                                               f, queue_id=entry.id, action=action))
        except Exception:
            self.log.failure("outbound {queue_id}: the {action} notice to {sender} was not stored",
                             queue_id=entry.id, action=action, sender=entry.sender)
            return
        self.log.info("outbound {queue_id}: {action} notice for {count} recipient(s) to {sender}",
                      queue_id=entry.id, action=action, count=len(recipients), sender=entry.sender)
