"""A DNS server on loopback serving a small test zone (MX, A, AAAA, TXT), for tests and benchmarks.

Why a real server: the outbound code must be tested with the resolver it uses
in production (twisted.names over UDP), so tests start this server on
127.0.0.1 port 0 and point ``--dns-server`` at it. Names not in the zone are
NXDOMAIN; a known name without the asked type answers empty; a name in
``zone.silent`` is never answered (a DNS timeout for the asker).
"""

from twisted.internet import defer
from twisted.names import dns, error, server
from twisted.names.common import ResolverBase

_TYPES = {"MX": dns.MX, "A": dns.A, "AAAA": dns.AAAA, "TXT": dns.TXT, "PTR": dns.PTR}


class Zone(ResolverBase):
    """Records held in memory: ``zone.add("example.test", "MX", 10, "mx.example.test")``."""

    def __init__(self):
        ResolverBase.__init__(self)
        self.records = {}  # (name, type) -> [payload]
        self.queries = []  # (name, type name) asked, in order
        self.silent = set()  # names never answered
        self._unanswered = []

    def add(self, name, rtype, *args):
        name = name.lower().rstrip(".")
        if rtype == "MX":
            payload = dns.Record_MX(args[0], args[1].encode("ascii"), ttl=60)
        elif rtype == "A":
            payload = dns.Record_A(args[0], ttl=60)
        elif rtype == "AAAA":
            payload = dns.Record_AAAA(args[0], ttl=60)
        elif rtype == "PTR":
            payload = dns.Record_PTR(args[0].encode("ascii"), ttl=60)
        elif rtype == "TXT":
            text = args[0].encode("ascii") if isinstance(args[0], str) else args[0]
            # A TXT record is a list of strings of at most 255 octets each.
            payload = dns.Record_TXT(*[text[i:i + 255] for i in range(0, len(text), 255)], ttl=60)
        else:
            raise ValueError(rtype)
        self.records.setdefault((name, _TYPES[rtype]), []).append(payload)

    def _lookup(self, name, cls, rtype, timeout):
        name = name.decode("ascii").lower().rstrip(".") if isinstance(name, bytes) else name.lower()
        self.queries.append((name, dns.QUERY_TYPES.get(rtype, rtype)))
        if name in self.silent:
            d = defer.Deferred()
            self._unanswered.append(d)  # kept, so it is not collected while "pending"
            return d
        if not any(n == name for n, _ in self.records):
            return defer.fail(error.DNSNameError(name))
        answers = [
            dns.RRHeader(name=name, type=rtype, cls=dns.IN, ttl=60, payload=p, auth=True)
            for p in self.records.get((name, rtype), [])
        ]
        return defer.succeed((answers, [], []))


def listen(reactor, zone, attempts=20):
    """Serve ``zone`` over UDP and TCP on one 127.0.0.1 port; (port number, [listening ports]).

    TCP too, for answers over 512 octets (a 2048-bit DKIM key). The UDP port
    is picked by the system; when its number is taken for TCP, try another.
    """
    from twisted.internet.error import CannotListenError

    factory = server.DNSServerFactory(authorities=[zone], verbose=0)
    factory.noisy = False
    for _ in range(attempts):
        protocol = dns.DNSDatagramProtocol(factory)
        protocol.noisy = False
        udp = reactor.listenUDP(0, protocol, interface="127.0.0.1")
        number = udp.getHost().port
        try:
            tcp = reactor.listenTCP(number, factory, interface="127.0.0.1")
        except CannotListenError:
            udp.stopListening()
            continue
        return number, [udp, tcp]
    raise CannotListenError("127.0.0.1", 0, "no port free for both UDP and TCP")


def loopback(reactor, zone=None):
    """``(HOST:PORT, stop)``: a server for ``zone`` (default: an empty one) for ``--dns-server``.

    For servers started in tests and benchmarks: their inbound DKIM lookups (and
    SPF, for clients outside ``--spf-skip-networks``; loopback clients are not
    checked by default) then stay on loopback (an empty zone answers NXDOMAIN)
    instead of going to the system's resolver. ``stop()`` returns a Deferred.
    """
    number, ports = listen(reactor, zone if zone is not None else Zone())

    def stop():
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])

    return "127.0.0.1:%d" % (number,), stop
