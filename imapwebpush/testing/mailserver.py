"""A whole mail server with a push service, in-process, for testing mail clients.

GreenMail and Mailpit give a client developer a throw-away IMAP/SMTP server;
neither knows Web Push. ``MailServer`` is this server (IMAP with WEBPUSH, SMTP,
submission, Maildir store, real push delivery) plus the loopback
``PushService`` and a DNS server on loopback (``dns_zone``: the SPF and DKIM
lookups of mail it receives never leave the machine), on ephemeral ports, in a
temporary data folder::

    server = MailServer()
    server.start()
    server.add_user("alice@example.org", "secret")
    phone = server.push_service.new_subscription()
    ...  # the client under test logs in to server.imap_port and sends WEBPUSH
    server.deliver("alice@example.org", b"Subject: hi\\r\\n\\r\\nhello\\r\\n")
    push = server.wait_for_push(phone, count=2)  # decrypted: push.plaintext
    server.stop()

Two ways to use it, chosen when it is made:

* inside Twisted (trial, or any code on the reactor thread while it runs): the
  waiting calls (``start``, ``stop``, ``wait_for_message``, ``wait_for_push``)
  return Deferreds, the others return at once;
* from plain code (pytest, unittest, a script): the reactor runs in a daemon
  thread started on first use and kept for the life of the process (a reactor
  cannot be restarted), and every call is made on that thread with
  ``blockingCallFromThread`` and blocks until it is done. The threading rule
  ("touch Twisted objects only on the reactor thread") is kept inside.
"""

import shutil
import tempfile
import threading

from twisted.internet import defer
from twisted.python import threadable

from imapwebpush.events import MessageAdded, canonical_mailbox
from imapwebpush.testing import dns as testing_dns
from imapwebpush.testing.pushservice import PushService

DEFAULT_TIMEOUT = 10.0
COALESCE = 0.05  # seconds flag/expunge news wait: short, so tests do not wait long

_thread_lock = threading.Lock()
_reactor_thread = None


def _ensure_reactor_thread(reactor):
    """Run ``reactor`` in a daemon thread (once per process) unless it runs already."""
    global _reactor_thread
    with _thread_lock:
        if reactor.running or (_reactor_thread is not None and _reactor_thread.is_alive()):
            return
        started = threading.Event()
        reactor.callWhenRunning(started.set)
        _reactor_thread = threading.Thread(
            target=reactor.run, kwargs={"installSignalHandlers": False},
            name="imapwebpush-testing-reactor", daemon=True)
        _reactor_thread.start()
    if not started.wait(30):
        raise RuntimeError("the reactor thread did not start")


def _with_timeout(d, seconds, reactor, what):
    """``d``, failing with TimeoutError("no <what> within N s") after ``seconds``."""
    def timed_out(failure):
        failure.trap(defer.TimeoutError, defer.CancelledError)
        raise TimeoutError("no %s within %g s" % (what, seconds))

    return d.addTimeout(seconds, reactor).addErrback(timed_out)


class _BlockingPushService:
    """The PushService seen from a thread that is not the reactor's: every call blocks."""

    def __init__(self, server):
        self._server = server

    def new_subscription(self, vapid_key=None):
        return self._server._call(self._server._push.new_subscription, vapid_key)

    def received(self, subscription=None, delivered=False):
        return self._server._call(self._server._push.received, subscription, delivered)

    def respond(self, subscription, *answers):
        """Queue scripted answers (``Answer``) for the next pushes to ``subscription``."""
        return self._server._call(subscription.respond, *answers)

    def wait_for(self, count, subscription=None, delivered=False, timeout=DEFAULT_TIMEOUT):
        return self._server._call(self._server._wait_for_pushes, count, subscription,
                                  delivered, timeout)

    @property
    def origin(self):
        return self._server._push.origin


class MailServer:
    """IMAP (with WEBPUSH), SMTP and submission on 127.0.0.1, and a loopback push service.

    @param reactor: default the global reactor.
    @param domains: the local domains (``add_user`` adds the domain of its address).
    @param data_dir: default a new temporary folder, removed by ``stop()``.
    @param blocking: True for plain code (reactor thread, blocking calls), False
        on the reactor thread; None (default) chooses: blocking unless called on
        the thread of a running reactor.
    """

    host = "127.0.0.1"

    def __init__(self, reactor=None, domains=("example.org",), data_dir=None, blocking=None,
                 coalesce=COALESCE, imap_port=0, smtp_port=0, submission_port=0):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        if blocking is None:
            blocking = not (reactor.running and threadable.isInIOThread())
        self.blocking = blocking
        self.domains = list(domains)
        self.coalesce = coalesce
        self._own_data = data_dir is None
        self.data_dir = data_dir
        self._running = None
        self._push = PushService(reactor)
        self.push_service = _BlockingPushService(self) if blocking else self._push
        self._waiters = []  # (address, mailbox, count, Deferred)
        self._ports = {"imap": imap_port, "smtp": smtp_port, "submission": submission_port}
        self.events = []  # dicts with "seq": messages stored and pushes answered, in order
        self._event_waiters = []
        self._push.observers.append(self._pushed)
        self.dns_zone = testing_dns.Zone()  # what its DNS server (on loopback) answers
        self._dns_stop = None

    # -- the threading rule, kept here ---------------------------------------------------

    def _call(self, f, *args):
        if self.blocking:
            if threadable.isInIOThread():
                raise RuntimeError("a blocking MailServer was called on the reactor thread;"
                                   " make it with blocking=False there")
            _ensure_reactor_thread(self.reactor)
            from twisted.internet.threads import blockingCallFromThread
            return blockingCallFromThread(self.reactor, f, *args)
        return f(*args)

    # -- life -----------------------------------------------------------------------------

    def start(self):
        """Start the push service and the server; then ``imap_port`` etc. are set."""
        return self._call(self._start)

    @defer.inlineCallbacks
    def _start(self):
        from imapwebpush.tap import start_server

        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="imapwebpush-test-")
        yield self._push.start()
        # SPF and DKIM lookups of the mail it receives stay on loopback (dns_zone: add records).
        self._dns, self._dns_stop = testing_dns.loopback(self.reactor, self.dns_zone)
        argv = ["--data", self.data_dir, "--allow-plaintext-auth", "--dns-server", self._dns,
                "--insecure-push-endpoints", "--push-coalesce", str(self.coalesce)]
        for name, port in self._ports.items():
            argv += ["--" + name, "tcp:%d:interface=127.0.0.1" % (port,)]
        for domain in self.domains:
            argv += ["--domain", domain]
        try:
            self._running = yield start_server(argv, self.reactor)
        except Exception:
            yield self._push.stop()
            yield self._dns_stop()
            raise
        self.components = self._running.components
        self.components.mail_store.bus.subscribe(self._changed)
        return self

    def stop(self):
        """Stop the server and the push service; remove the data folder if it was ours."""
        return self._call(self._stop)

    @defer.inlineCallbacks
    def _stop(self):
        for _, _, _, d in self._waiters:
            d.cancel()
        if self._running is not None:
            self.components.mail_store.bus.unsubscribe(self._changed)
            running, self._running = self._running, None
            yield running.stop()
            self.components.webpush.store.close()
        yield self._push.stop()
        if self._dns_stop is not None:
            stop, self._dns_stop = self._dns_stop, None
            yield stop()
        if self._own_data and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def imap_port(self):
        return self._running.ports["imap"]

    @property
    def smtp_port(self):
        return self._running.ports["smtp"]

    @property
    def submission_port(self):
        return self._running.ports["submission"]

    # -- users and mail -----------------------------------------------------------------

    def add_user(self, address, password):
        """Create a user (and accept mail for its domain); returns the normalised address."""
        return self._call(self._add_user, address, password)

    def _add_user(self, address, password):
        domain = address.rpartition("@")[2].lower()
        if domain and domain not in self.components.domains:
            self.components.domains.append(domain)
            for factory in self._factories():
                if domain not in factory.domains:
                    factory.domains.append(domain)
        self.components.users.add(address, password)
        return address.lower()

    def _factories(self):
        for name in ("smtp", "submission"):
            try:
                yield self._running.service.getServiceNamed(name).factory
            except KeyError:
                pass

    def deliver(self, address, message, mailbox="INBOX", flags=()):
        """Store ``message`` (bytes; LF is made CRLF) for ``address``; returns its UID.

        The same store call SMTP delivery makes, so pushes follow as for real mail.
        """
        return self._call(self._deliver, address, message, mailbox, flags)

    def _deliver(self, address, message, mailbox, flags):
        if isinstance(message, str):
            message = message.encode("utf-8")
        if b"\r\n" not in message:
            message = message.replace(b"\n", b"\r\n")
        account = self.components.mail_store.account(address.lower())
        return account.mailbox(mailbox).add(message, list(flags))

    def messages(self, address, mailbox="INBOX"):
        """The raw messages now in a mailbox, oldest first."""
        return self._call(self._messages, address, mailbox)

    def _messages(self, address, mailbox):
        box = self.components.mail_store.account(address.lower()).mailbox(mailbox)
        return [box.message(uid).read() for uid in box.uids()]

    def wait_for_message(self, address, mailbox="INBOX", count=1, timeout=DEFAULT_TIMEOUT):
        """Wait until the mailbox holds ``count`` messages (say, after the client sent
        one through submission); returns the raw messages."""
        return self._call(self._wait_for_message, address, mailbox, count, timeout)

    def _wait_for_message(self, address, mailbox, count, timeout):
        address, mailbox = address.lower(), canonical_mailbox(mailbox)
        d = defer.Deferred()
        self._waiters.append((address, mailbox, count, d))
        self._check_waiters()
        d = _with_timeout(d, timeout, self.reactor,
                          "%d message(s) in %s of %s" % (count, mailbox, address))

        def forget(result):
            self._waiters[:] = [w for w in self._waiters if not w[3].called]
            return result

        return d.addBoth(forget)

    def _changed(self, event):
        if isinstance(event, MessageAdded):
            self._log_event({"type": "message", "address": event.account,
                             "mailbox": event.mailbox, "uid": event.uid})
            if self._waiters:
                self._check_waiters()

    def _check_waiters(self):
        for address, mailbox, count, d in list(self._waiters):
            if d.called:
                continue
            try:
                found = self._messages(address, mailbox)
            except Exception:
                continue  # no such mailbox yet
            if len(found) >= count:
                d.callback(found)

    # -- pushes -----------------------------------------------------------------------

    def wait_for_push(self, subscription=None, count=1, timeout=DEFAULT_TIMEOUT):
        """The ``count``-th push received (for ``subscription``), decrypted: a ReceivedPush."""
        return self._call(self._wait_for_push, subscription, count, timeout)

    def _wait_for_push(self, subscription, count, timeout):
        d = self._wait_for_pushes(count, subscription, False, timeout)
        return d.addCallback(lambda pushes: pushes[count - 1])

    def _wait_for_pushes(self, count, subscription, delivered, timeout):
        return _with_timeout(self._push.wait_for(count, subscription, delivered), timeout,
                             self.reactor, "%d push(es)" % (count,))

    def subscriptions(self, address):
        """The WEBPUSH subscriptions of an account (``Subscription`` objects)."""
        return self._call(self._subscriptions, address)

    def _subscriptions(self, address):
        return self.components.webpush.store.list(address.lower())

    # -- the event log (what the control API's /events long-poll serves) -----------------

    def _pushed(self, push):
        self._log_event({"type": "push", "push": push})

    def _log_event(self, event):
        event["seq"] = len(self.events) + 1
        self.events.append(event)
        waiters, self._event_waiters = self._event_waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)

    def wait_for_events(self, since=0, timeout=DEFAULT_TIMEOUT):
        """The events after sequence number ``since``; waits up to ``timeout`` for one
        (an empty list when none came)."""
        return self._call(self._wait_for_events, since, timeout)

    def _wait_for_events(self, since, timeout):
        if len(self.events) > since or timeout <= 0:
            return defer.succeed(self.events[since:])
        d = defer.Deferred()
        self._event_waiters.append(d)
        call = self.reactor.callLater(timeout, lambda: d.called or d.callback(None))
        d.addCallback(lambda _: call.active() and call.cancel())
        return d.addCallback(lambda _: self.events[since:])

    # -- reset -------------------------------------------------------------------------

    def reset(self):
        """Forget every user, message, subscription, push and event; keep the ports."""
        return self._call(self._reset)

    def _reset(self):
        c = self.components
        accounts = set(c.users.users()) | set(c.webpush.store.accounts())
        for account in sorted(accounts):
            self._forget(account)
        self._push.pushes[:] = []
        self._push.chaos = None
        self.events[:] = []
        return sorted(accounts)

    def delete_user(self, address):
        """Delete a user, their mail and their subscriptions (waiting pushes are dropped)."""
        return self._call(self._forget, address.lower())

    def _forget(self, account):
        c = self.components
        subscriptions = c.webpush.store
        for sub in subscriptions.list(account):
            c.webpush.sender.cancel(account, sub.id)
        subscriptions.delete_account(account)
        if c.users.exists(account):
            c.users.delete(account)
        elif c.mail_store.exists(account):
            c.mail_store.delete_account(account)
