"""Where mail for a domain goes: MX records, else the domain's own A/AAAA (RFC 5321 5.1).

Why our own router on top of twisted.names: the answers need RFC 5321 and
RFC 7505 rules (preference order, implicit MX, null MX) and every lookup must
be bounded in time on the injected clock. The resolver is injected too, so
tests and ``--dns-server`` point it at any DNS server; the default reads the
servers of /etc/resolv.conf once (no re-read timer).
"""

import random
import socket

from twisted.internet import defer
from twisted.internet.error import TimeoutError as DeferredTimeout
from twisted.names import client, dns, error
from zope.interface import implementer

from imapwebpush.interfaces import IMailRouter

DEFAULT_DNS_TIMEOUT = 30.0  # seconds for one whole route() (all its lookups)
RESOLV_CONF = "/etc/resolv.conf"


class RouteError(Exception):
    """No destination now: ``permanent`` (5xx, bounce) or not (retry later).

    ``status`` is the enhanced status code of the DSN, ``str()`` the reason.
    """

    def __init__(self, reason, permanent, status):
        Exception.__init__(self, reason)
        self.permanent = permanent
        self.status = status


class Destination:
    """One host to try, with its addresses, and the port to connect to."""

    def __init__(self, host, addresses, port):
        self.host = host
        self.addresses = list(addresses)
        self.port = port

    def __repr__(self):
        return "Destination(%r, %r, %r)" % (self.host, self.addresses, self.port)


def parse_host_port(text, default_port=53):
    """``HOST:PORT``, ``HOST`` or ``[IPV6]:PORT`` -> (host, port); ValueError when bad."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError("no host in %r" % (text,))
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("bad port in %r" % (text,))
        return host, int(port)
    return host, default_port


def system_servers(path=RESOLV_CONF):
    """The ``nameserver`` lines of resolv.conf as (address, 53); 127.0.0.1 when none."""
    servers = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    servers.append((parts[1], dns.PORT))
    except OSError:
        pass
    return servers or [("127.0.0.1", dns.PORT)]


def lookup_timeouts(left, steps=(1, 3, 11, 45)):
    """twisted.names' retry timeouts (its default steps) cut to end after ``left`` seconds.

    Given as a lookup's ``timeout``, the resolver gives up by itself at the
    deadline, its retry timers done; a lookup cancelled by ``addTimeout``
    instead leaves its query's timer running for up to 45 seconds.
    """
    tries = []
    for step in steps:
        if left <= 0:
            break
        tries.append(min(step, left))
        left -= step
    return tuple(tries)


def make_resolver(reactor, server=None):
    """A twisted.names resolver asking ``server`` ((host, port)) or the system's servers."""
    servers = [server] if server else system_servers()
    return client.Resolver(servers=servers, reactor=reactor)


@implementer(IMailRouter)
class MXRouter:
    """MX lookup, best preference first (random among equals), then A/AAAA of each host.

    @param resolver: an L{twisted.internet.interfaces.IResolver}.
    @param clock: bounds each route() by ``timeout`` seconds.
    @param port: the port to deliver to (25; tests use another).
    """

    def __init__(self, resolver, clock, port=25, timeout=DEFAULT_DNS_TIMEOUT):
        self.resolver = resolver
        self.clock = clock
        self.port = port
        self.timeout = timeout

    def route(self, domain):
        deadline = self.clock.seconds() + self.timeout
        d = defer.ensureDeferred(self._route(domain.lower().rstrip("."), deadline))
        d.addTimeout(self.timeout + 1, self.clock)  # a backstop: the lookups end by the deadline
        d.addErrback(self._timeout, domain)
        return d

    def _tries(self, deadline):
        return lookup_timeouts(deadline - self.clock.seconds()) or (0.001,)

    def _timeout(self, failure, domain):
        # addTimeout's error is defer.TimeoutError (error.TimeoutError is a connect's)
        failure.trap(defer.TimeoutError, DeferredTimeout, defer.CancelledError)
        raise RouteError("DNS lookup for %s timed out" % (domain,), False, "4.4.3")

    async def _route(self, domain, deadline):
        try:
            answers, _, _ = await self.resolver.lookupMailExchange(domain, timeout=self._tries(deadline))
        except error.DNSNameError:
            raise RouteError("domain %s does not exist" % (domain,), True, "5.1.2")
        except (error.DomainError, error.DNSServerError, error.DNSQueryRefusedError,
                error.ResolverError, DeferredTimeout, defer.TimeoutError) as e:
            raise RouteError("DNS error for %s: %s" % (domain, type(e).__name__), False, "4.4.3")
        mx = [
            (a.payload.preference, str(a.payload.name).lower().rstrip("."))
            for a in answers
            if a.type == dns.MX
        ]
        if any(name == "" for _, name in mx):
            # RFC 7505: a null MX says the domain takes no mail.
            raise RouteError("domain %s accepts no mail (null MX)" % (domain,), True, "5.1.10")
        if not mx:
            hosts = [domain]  # RFC 5321 5.1: the implicit MX
        else:
            random.shuffle(mx)
            hosts = [name for _, name in sorted(mx, key=lambda p: p[0])]
        destinations = []
        for host in hosts:
            addresses = await self._addresses(host, deadline)
            if addresses:
                destinations.append(Destination(host, addresses, self.port))
        if not destinations:
            if not mx:
                raise RouteError("domain %s has no MX and no address" % (domain,), True, "5.1.2")
            raise RouteError("no address for the MX hosts of %s" % (domain,), False, "4.4.4")
        return destinations

    async def _addresses(self, host, deadline):
        found = []
        for lookup, rtype in ((self.resolver.lookupAddress, dns.A),
                              (self.resolver.lookupIPV6Address, dns.AAAA)):
            try:
                answers, _, _ = await lookup(host, timeout=self._tries(deadline))
            except error.DNSNameError:
                return []
            except Exception:
                continue
            found.extend(
                a.payload.dottedQuad() if rtype == dns.A
                else socket.inet_ntop(socket.AF_INET6, a.payload.address)
                for a in answers if a.type == rtype
            )
        return found


@implementer(IMailRouter)
class SmarthostRouter:
    """Everything goes to one relay host (``--relay-host``)."""

    def __init__(self, host, port):
        self.host = host
        self.port = port

    def route(self, domain):
        return defer.succeed([Destination(self.host, [self.host], self.port)])
