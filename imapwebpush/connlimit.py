"""Connection limits of one listener: a cap on all its connections and one per client address.

Why: every connection costs a file descriptor and up to its worst-case memory
(docs/operating.rst); without a cap one client opening thousands of
connections takes the descriptors and memory of everyone. A refused client
hears why before the connection closes (``* BYE [UNAVAILABLE] ...`` on IMAP,
``421 4.7.0 ...`` on SMTP), so a well-behaved one retries later.

Why a factory wrapper that hands out the wrapped factory's own protocols
instead of Twisted's ``policies.WrappingFactory``: a ProtocolWrapper would sit
between every protocol and its TCP transport, and the IMAP server writes
straight to a plain ``tcp.Server`` (``upstream.send_now``). The wrapper only
hooks the protocol's ``connectionLost`` to give the slot back.

Addresses: an IPv4 address counts as itself, an IPv6 address by its /64 (one
subscriber gets a whole /64), an IPv4-mapped IPv6 address as its IPv4
address. Connections without an IP address (UNIX sockets) only count
towards the total.
"""

import ipaddress

from twisted.internet import protocol
from twisted.logger import Logger

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_MAX_CONNECTIONS_PER_IP = 20

TOO_MANY = "Too many connections, try again later"
TOO_MANY_FROM_YOU = "Too many connections from your address, try again later"


def peer_key(address):
    """The client ``address`` (an IAddress) counts as: ``"192.0.2.1"``, ``"2001:db8::/64"``, or None."""
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network("%s/64" % (ip,), strict=False))
    return str(ip)


class ConnectionCounter:
    """Open connections, in total and per client key, against two caps (0: no cap)."""

    def __init__(self, max_total=DEFAULT_MAX_CONNECTIONS, max_per_peer=DEFAULT_MAX_CONNECTIONS_PER_IP):
        self.max_total = max_total
        self.max_per_peer = max_per_peer
        self.total = 0
        self._by_peer = {}

    def count(self, key):
        return self._by_peer.get(key, 0)

    def peers(self):
        """How many client keys have a connection open (a key is forgotten at its last)."""
        return len(self._by_peer)

    def admit(self, key):
        """Count a new connection of ``key`` and return None, or return why it is refused."""
        if self.max_total and self.total >= self.max_total:
            return TOO_MANY
        if key is not None and self.max_per_peer and self.count(key) >= self.max_per_peer:
            return TOO_MANY_FROM_YOU
        self.total += 1
        if key is not None:
            self._by_peer[key] = self.count(key) + 1
        return None

    def release(self, key):
        self.total -= 1
        if key is not None:
            left = self._by_peer.pop(key) - 1
            if left:
                self._by_peer[key] = left


class _Refusal(protocol.Protocol):
    """Says one line, then closes."""

    def __init__(self, line):
        self.line = line

    def connectionMade(self):
        if self.line:
            self.transport.write(self.line)
        self.transport.loseConnection()


class LimitedFactory(protocol.Factory):
    """Wraps a server factory: connections beyond the caps get its refusal line and are closed.

    @param wrapped: the server factory. Its ``refusal(text)`` (when it has one)
        gives the line a refused client reads, e.g. ``b"421 4.7.0 host text\\r\\n"``.
    @param counter: a L{ConnectionCounter} (one per listener).
    @param name: the listener's name in the log.
    @param clock: IReactorTime; a refused address is logged at most once a minute.
    """

    log = Logger()
    noisy = False
    COMPLAIN_EVERY = 60.0

    def __init__(self, wrapped, counter, name="server", clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.wrapped = wrapped
        self.counter = counter
        self.name = name
        self.clock = clock
        self.refused = 0  # how many connections were refused so far
        self._complaints = {}  # key (None: the total) -> when it was last logged

    def __getattr__(self, name):
        # Everything but the limits is the wrapped factory's (its portal, its options...).
        if name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def doStart(self):
        self.wrapped.doStart()

    def doStop(self):
        self.wrapped.doStop()

    def logPrefix(self):
        return self.wrapped.logPrefix()

    def buildProtocol(self, addr):
        key = peer_key(addr)
        reason = self.counter.admit(key)
        if reason is not None:
            self.refused += 1
            self._complain(key if reason == TOO_MANY_FROM_YOU else None, reason)
            refusal = getattr(self.wrapped, "refusal", None)
            return _Refusal(refusal(reason) if refusal is not None else b"")
        try:
            p = self.wrapped.buildProtocol(addr)
        except BaseException:
            self.counter.release(key)
            raise
        if p is None:
            self.counter.release(key)
            return None
        lost = p.connectionLost

        def connectionLost(reason):
            try:
                lost(reason)
            finally:
                self.counter.release(key)

        p.connectionLost = connectionLost
        return p

    def _complain(self, key, reason):
        """One log line per address and minute, not one per refused connection of a flood."""
        now = self.clock.seconds()
        last = self._complaints.get(key)
        if last is not None and now - last < self.COMPLAIN_EVERY:
            return
        if len(self._complaints) > 10000:
            self._complaints.clear()
        self._complaints[key] = now
        self.log.warn(
            "{listener}: refusing connections from {peer}: {reason}",
            listener=self.name,
            peer=key or "anyone",
            reason=reason,
        )
