"""Brakes on password guessing: failures per client address and per account slow, then stop, tries.

Why: without them an attacker got 20-35 LOGIN tries a second from one address,
and as many more from each further connection. Here each client address (an
IPv4 address or IPv6 /64, L{imapwebpush.connlimit.peer_key}) and each account
name keeps a count of its failed logins:

* the first L{DEFAULT_FREE_FAILURES} failures cost nothing;
* after that, tries of that address or account wait their turn: each starts
  at least 1 s after the previous one, then 2 s, 4 s, ... doubling with each
  failure up to L{DEFAULT_MAX_DELAY}. A try that would have to wait longer
  than that (many connections trying at once) is refused at once;
* after L{DEFAULT_REFUSE_AFTER} failures every try is refused, without
  checking the password, until L{DEFAULT_REFUSE_FOR} seconds have passed
  since the last failure; then the count is forgotten.

A successful login clears its account's count (not its address's: whoever owns
one account could clear their address that way) and exempts its address from
that account's brakes for as long, so an attacker hammering an account does
not lock its owner out where the owner already logs in from.

IMAP LOGIN/AUTHENTICATE and SMTP AUTH go through L{ThrottledPortal}; the
protocols answer a L{LoginRefused} with a temporary error (``NO [UNAVAILABLE]``,
``454 4.7.0``). Time comes from an injected clock.
"""

from collections import OrderedDict

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.logger import Logger

DEFAULT_FREE_FAILURES = 3
DEFAULT_MAX_DELAY = 30.0
DEFAULT_REFUSE_AFTER = 20
DEFAULT_REFUSE_FOR = 900.0
MAX_RECORDS = 100000  # addresses and accounts remembered at once (oldest forgotten first)
TRUSTED_PER_ACCOUNT = 16  # addresses an account's owner logged in from, kept per account


class LoginRefused(Exception):
    """Too many failed logins from this address or for this account: refused unchecked."""

    def __str__(self):
        return "Too many failed logins, try again later"


class _Record:
    __slots__ = ("failures", "last", "next_start", "refused_until", "trusted")

    def __init__(self):
        self.failures = 0
        self.last = 0.0  # time of the last failure (or success, for an account)
        self.next_start = 0.0  # the earliest start of the next try
        self.refused_until = 0.0
        self.trusted = None  # accounts: addresses their owner logged in from


class LoginThrottle:
    """Failure counts of addresses and accounts; one per process, shared by every listener.

    @param clock: IReactorTime.
    @param free_failures: failures before tries are spaced (0: space from the first failure).
    @param max_delay: the longest spacing and the longest a try may wait, in seconds.
    @param refuse_after: failures after which tries are refused unchecked (0: never).
    @param refuse_for: seconds after the last failure that a count is kept (and a refusal lasts).
    """

    log = Logger()

    def __init__(
        self,
        clock,
        free_failures=DEFAULT_FREE_FAILURES,
        max_delay=DEFAULT_MAX_DELAY,
        refuse_after=DEFAULT_REFUSE_AFTER,
        refuse_for=DEFAULT_REFUSE_FOR,
        max_records=MAX_RECORDS,
    ):
        self.clock = clock
        self.free_failures = free_failures
        self.max_delay = max_delay
        self.refuse_after = refuse_after
        self.refuse_for = refuse_for
        self.max_records = max_records
        self._records = OrderedDict()

    def delay(self, failures):
        """The spacing between tries of a key with ``failures`` failures, in seconds."""
        if failures < self.free_failures or failures == 0:
            return 0.0
        return min(self.max_delay, 2.0 ** (failures - self.free_failures))

    def _record(self, key, create=True):
        now = self.clock.seconds()
        record = self._records.get(key)
        if record is not None and now - record.last >= self.refuse_for and record.refused_until <= now:
            del self._records[key]  # forgotten: no failure for refuse_for seconds
            record = None
        if record is None:
            if not create:
                return None
            record = self._records[key] = _Record()
            while len(self._records) > self.max_records:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(key)
        return record

    def _keys(self, peer, account):
        keys = []
        if peer is not None:
            keys.append(("address", peer))
        if account:
            record = self._record(("account", account), create=False)
            if record is None or record.trusted is None or peer not in record.trusted:
                keys.append(("account", account))
        return keys

    def attempt(self, peer, account):
        """A Deferred that fires when a try of ``account`` from ``peer`` may check its password.

        Fails with L{LoginRefused} at once when either key is refused or its turn
        is more than C{max_delay} away.
        """
        now = self.clock.seconds()
        records = [self._record(key) for key in self._keys(peer, account)]
        start = now
        for record in records:
            if record.refused_until > now:
                return defer.fail(LoginRefused())
            start = max(start, record.next_start)
        if start - now > self.max_delay:
            return defer.fail(LoginRefused())
        for record in records:
            record.next_start = start + self.delay(record.failures)
        if start <= now:
            return defer.succeed(None)
        return task.deferLater(self.clock, start - now, lambda: None)

    def failed(self, peer, account):
        now = self.clock.seconds()
        for key in self._keys(peer, account):
            record = self._record(key)
            record.failures += 1
            record.last = now
            record.next_start = max(record.next_start, now + self.delay(record.failures))
            if self.refuse_after and record.failures >= self.refuse_after:
                if record.refused_until <= now:
                    self.log.warn(
                        "login refused for {seconds:.0f} s to the {kind} {key} after {failures} failures",
                        kind=key[0],
                        key=key[1],
                        failures=record.failures,
                        seconds=self.refuse_for,
                    )
                record.refused_until = now + self.refuse_for

    def succeeded(self, peer, account):
        if not account:
            return
        record = self._record(("account", account))
        record.failures = 0
        record.next_start = 0.0
        record.refused_until = 0.0
        record.last = self.clock.seconds()
        if peer is not None:
            if record.trusted is None:
                record.trusted = OrderedDict()
            record.trusted[peer] = True
            record.trusted.move_to_end(peer)
            while len(record.trusted) > TRUSTED_PER_ACCOUNT:
                record.trusted.popitem(last=False)

    def login(self, portal, peer, credentials, mind, *interfaces):
        """``portal.login(credentials, mind, *interfaces)`` behind the brakes of ``peer`` and the account."""
        account = account_key(getattr(credentials, "username", None))
        d = self.attempt(peer, account)
        d.addCallback(lambda _: portal.login(credentials, mind, *interfaces))

        def succeeded(result):
            self.succeeded(peer, account)
            return result

        def failed(reason):
            if reason.check(UnauthorizedLogin):
                self.failed(peer, account)
            return reason

        d.addCallbacks(succeeded, failed)
        return d


def account_key(username):
    """The account a user name counts against: lower-cased text, at most 256 characters."""
    if username is None:
        return None
    if isinstance(username, bytes):
        username = username.decode("utf-8", "replace")
    return username.strip().lower()[:256] or None


class ThrottledPortal:
    """A portal for one connection: its logins go through a L{LoginThrottle} as ``peer``.

    Protocols keep calling ``self.portal.login(...)``; C{LoginRefused} reaches
    their errback like any other failure. ``busy`` is true while a login of the
    connection is in flight: a protocol that reads ahead (SMTP) refuses a second
    one, which would otherwise queue password checks without end.
    """

    def __init__(self, portal, throttle, peer):
        self.portal = portal
        self.throttle = throttle
        self.peer = peer
        self.busy = False

    def login(self, credentials, mind, *interfaces):
        self.busy = True
        d = self.throttle.login(self.portal, self.peer, credentials, mind, *interfaces)

        def done(result):
            self.busy = False
            return result

        return d.addBoth(done)

    def listCredentialsInterfaces(self):
        return self.portal.listCredentialsInterfaces()
