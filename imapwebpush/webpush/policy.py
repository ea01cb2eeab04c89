"""Which push endpoints the server talks to (SPEC 7), checked twice.

``EndpointPolicy.check_url`` refuses bad URLs when a subscription is made (the
WEBPUSH command answers NO with the reason) and again before every request.
``CheckingEndpointFactory`` is the Agent's endpoint factory: it resolves the
host itself, refuses every address that is not public unicast, and connects
to the very address it checked, so a DNS answer that changes between the
check and the connection (rebinding) gains nothing.
"""

import ipaddress
import re
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolutionReceiver, IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from imapwebpush.decisions import CONNECT_TIMEOUT, MAX_ENDPOINT_OCTETS
from imapwebpush.interfaces import IEndpointPolicy

_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NUMERIC_LABEL = re.compile(r"\A(0x[0-9a-f]*|[0-9]+)\Z", re.IGNORECASE)


class EndpointRefused(Exception):
    """The endpoint (or the address it resolved to) is not allowed; ``reason`` says why."""

    def __init__(self, reason):
        Exception.__init__(self, reason)
        self.reason = reason

    def __str__(self):
        return self.reason


def has_space_or_control(text):
    """True when ``text`` holds a space, an ASCII control character or DEL (never in a URL)."""
    return _SPACE_OR_CONTROL.search(text) is not None


def _is_ip_literal(host):
    """Whether ``host`` (no brackets) is an IP address rather than a name."""
    # every IPv4 literal ends with a digit and every IPv6 one has a colon: most
    # names are told apart without ip_address() raising (it runs for every push)
    if not (":" in host or host[-1:].isdigit()):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ends_in_number(host):
    """Whether the last label of ``host`` is a number (decimal, or hex with 0x).

    Such a host is an IPv4 address to the resolver (inet_aton reads
    ``2130706433``, ``0x7f.1``, ``127.1`` and ``0177.0.0.1`` as 127.0.0.1)
    and to WHATWG URL parsers: never a name.
    """
    return _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]) is not None


def address_problem(text):
    """Why ``text`` (an IP address) is not a public unicast address, or None when it is."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return "%r is not an IP address" % (text,)
    if ip.version == 6:
        # Forms that reach an IPv4 address are judged by that address.
        embedded, routable = None, True
        if ip.ipv4_mapped is not None:
            embedded = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            embedded = ip.sixtofour
        elif ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif int(ip) >> 32 == 0 and int(ip) > 1:
            embedded = ipaddress.IPv4Address(int(ip))  # deprecated IPv4-compatible ::a.b.c.d
            routable = False
        if embedded is not None:
            inner = address_problem(str(embedded))
            if inner is not None:
                return "%s embeds %s" % (ip, inner)
            if routable:
                return None
    checks = [
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("carrier-grade NAT (100.64.0.0/10)", ip.version == 4 and ip in _CGNAT),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ]
    for label, hit in checks:
        if hit:
            return "%s is a %s address" % (ip, label)
    if not ip.is_global:
        return "%s is not a public unicast address" % (ip,)
    return None


@implementer(IEndpointPolicy)
class EndpointPolicy:
    """https only, public addresses only, optional host allowlist; ``insecure`` lifts the first two.

    ``allowlist`` is an iterable of host names; ``*.example.net`` matches every
    subdomain of example.net. ``insecure=True`` allows http and loopback or
    private targets, for integration tests and private deployments only.
    """

    log = Logger()

    def __init__(self, allowlist=None, insecure=False):
        self.insecure = bool(insecure)
        self.allowlist = None
        if allowlist is not None:
            self.allowlist = frozenset(h.strip().lower().rstrip(".") for h in allowlist if h.strip())
        if self.insecure:
            self.log.warn(
                "INSECURE PUSH ENDPOINTS ALLOWED: pushes may go to http:// URLs and to "
                "loopback/private addresses. Never use this on a public server: it lets "
                "any IMAP user make this server send requests into its own network."
            )

    def _host_allowed(self, host):
        if self.allowlist is None:
            return True
        if host in self.allowlist:
            return True
        return any(
            pattern.startswith("*.") and host.endswith(pattern[1:]) for pattern in self.allowlist
        )

    def check_scheme(self, scheme):
        """https only, or http too when insecure (``scheme`` in lower case)."""
        if scheme != "https" and not (self.insecure and scheme == "http"):
            raise EndpointRefused("the endpoint must be an https URL")

    def check_host(self, host):
        """Apply the allowlist to a host (lower case, no brackets); refuse numeric non-IP forms.

        A host ending in a number must be a plain IP address (``192.0.2.1``):
        other numeric spellings of an address would pass as names here and
        only meet the address checks at connect time.
        """
        if _ends_in_number(host) and not _is_ip_literal(host):
            raise EndpointRefused(
                "the endpoint host %s is a number but not a dotted-quad IPv4 address" % (host,)
            )
        if not self._host_allowed(host):
            raise EndpointRefused("push service host %s is not on the allowlist" % (host,))

    def check_address(self, address):
        """Refuse a non-public address (at connect time, after DNS) unless insecure."""
        if self.insecure:
            return
        problem = address_problem(address)
        if problem is not None:
            raise EndpointRefused("endpoint address refused: %s" % (problem,))

    def check_url(self, url):
        if not isinstance(url, str):
            raise EndpointRefused("the endpoint must be text")
        try:
            encoded = url.encode("ascii")
        except UnicodeEncodeError:
            raise EndpointRefused("the endpoint must be ASCII (use punycode and %-escapes)")
        if len(encoded) > MAX_ENDPOINT_OCTETS:
            raise EndpointRefused(
                "the endpoint is %d octets, more than %d" % (len(encoded), MAX_ENDPOINT_OCTETS)
            )
        if has_space_or_control(url):
            raise EndpointRefused("the endpoint contains spaces or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise EndpointRefused("the endpoint is not a valid URL: %s" % (e,))
        self.check_scheme(parts.scheme.lower())
        if "@" in parts.netloc:
            raise EndpointRefused("the endpoint must not contain userinfo")
        if "#" in url:
            raise EndpointRefused("the endpoint must not contain a fragment")
        host = parts.hostname
        if not host:
            raise EndpointRefused("the endpoint has no host")
        if port == 0:
            raise EndpointRefused("the endpoint has port 0")
        host = host.rstrip(".")
        self.check_host(host)
        if _is_ip_literal(host):
            self.check_address(host)
        return None


def _system_resolver(reactor):
    """resolve(host, port) -> Deferred[list of address text] via the reactor's name resolver."""

    def resolve(host, port):
        d = defer.Deferred()
        found = []

        @implementer(IResolutionReceiver)
        class Receiver:
            def resolutionBegan(self, resolution):
                pass

            def addressResolved(self, address):
                found.append(address.host)

            def resolutionComplete(self):
                d.callback(found)

        reactor.nameResolver.resolveHostName(Receiver(), host, port)
        return d

    return resolve


@implementer(IStreamClientEndpoint)
class _CheckedTCPEndpoint:
    """Resolve, refuse non-public addresses, connect to the first allowed one that answers."""

    def __init__(self, reactor, policy, resolver, host, port, timeout):
        self._reactor = reactor
        self._policy = policy
        self._resolver = resolver
        self._host = host
        self._port = port
        self._timeout = timeout

    @defer.inlineCallbacks
    def connect(self, factory):
        host = self._host
        if _is_ip_literal(host):
            addresses = [host]
        else:
            addresses = yield self._resolver(host, self._port)
        if not addresses:
            raise EndpointRefused("%s did not resolve to any address" % (host,))
        allowed = []
        refusals = []
        for address in dict.fromkeys(addresses):
            try:
                self._policy.check_address(address)
            except EndpointRefused as e:
                refusals.append(e.reason)
            else:
                allowed.append(address)
        if not allowed:
            raise EndpointRefused("%s: %s" % (host, "; ".join(refusals)))
        last = None
        for address in allowed:
            if ":" in address:
                endpoint = TCP6ClientEndpoint(self._reactor, address, self._port, self._timeout)
            else:
                endpoint = TCP4ClientEndpoint(self._reactor, address, self._port, self._timeout)
            try:
                protocol = yield endpoint.connect(factory)
            except defer.CancelledError:
                raise
            except Exception as e:
                last = e
                continue
            peer = protocol.transport.getPeer().host
            try:
                self._policy.check_address(peer)
            except EndpointRefused:
                protocol.transport.abortConnection()
                raise
            return protocol
        raise last


@implementer(IStreamClientEndpoint)
class _RefusedEndpoint:
    """An endpoint whose every connect fails with EndpointRefused."""

    def __init__(self, reason):
        self.reason = reason

    def connect(self, factory):
        return defer.fail(EndpointRefused(self.reason))


@implementer(IAgentEndpointFactory)
class CheckingEndpointFactory:
    """Endpoints for an Agent that apply the policy at connect time (SPEC 7).

    ``resolver(host, port) -> Deferred[list of address text]`` is injected by
    tests (a fake DNS); the default uses ``reactor.nameResolver``.
    ``trust_root`` replaces the platform CA store (tests with their own CA);
    certificates are always verified.
    """

    def __init__(self, reactor, policy, resolver=None, trust_root=None, connect_timeout=CONNECT_TIMEOUT):
        self._reactor = reactor
        self._policy = policy
        self._resolver = resolver if resolver is not None else _system_resolver(reactor)
        self._trust_root = trust_root
        self._connect_timeout = connect_timeout

    def endpointForURI(self, uri):
        scheme = uri.scheme.decode("ascii").lower()
        host = uri.host.decode("idna").lower().rstrip(".")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        # Refusals surface as a failed connect, as Agent expects, not as an exception.
        try:
            self._policy.check_scheme(scheme)
            self._policy.check_host(host)
        except EndpointRefused as e:
            return _RefusedEndpoint(e.reason)
        inner = _CheckedTCPEndpoint(
            self._reactor, self._policy, self._resolver, host, uri.port, self._connect_timeout
        )
        if scheme == "https":
            kwargs = {}
            if self._trust_root is not None:
                kwargs["trustRoot"] = self._trust_root
            return wrapClientTLS(optionsForClientTLS(host, **kwargs), inner)
        return inner
