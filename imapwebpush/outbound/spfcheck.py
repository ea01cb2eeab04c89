"""SPF (RFC 7208) of inbound mail with pyspf, its DNS lookups done by our twisted.names resolver.

Why pyspf: the record syntax, macros, ``include:``/``redirect=`` and the
processing limits (10 lookups, 2 void lookups, 10 MX or PTR names) are what
it gets right. Its lookups are synchronous, though, so it never does one
here: L{_Query} answers pyspf's ``dns()`` only from the answers fetched so
far and otherwise stops the evaluation with L{_Missing}. L{SPFChecker} then
fetches that one name through the injected resolver (the one of MX lookups
and ``--dns-server``), bounded by what is left of ``timeout``, and evaluates
again from the start, now one answer further. Each evaluation is pure
computation on cached answers (well under a millisecond; about a hundred of
them in the worst case the limits allow), so it runs on the reactor thread
and no thread ever waits for DNS: a sender whose DNS is slow holds nothing
but its own Deferred, not a worker of the shared thread pool.
"""

import ipaddress
import socket

from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import dns, error

from imapwebpush.outbound.resolver import DEFAULT_DNS_TIMEOUT, lookup_timeouts

# More evaluations than pyspf's limits allow (10 mechanisms, each at most
# 1 + 10 lookups, plus the record, redirect= and exp=): a record that still
# wants more is an error in the record (or in pyspf), not worth more DNS.
MAX_EVALUATIONS = 150


class _Missing(Exception):
    """pyspf asked for an answer not fetched yet: fetch ``key`` and evaluate again."""

    def __init__(self, key):
        Exception.__init__(self, "%s %s" % key)
        self.key = key


def _query_class():
    """pyspf's query with ``dns()`` reading fetched answers only (pyspf is imported on first use)."""
    import spf

    class _Query(spf.query):
        """``answers``: ``{(name, type): [value] or a spf.TempError}``, filled by the checker."""

        def __init__(self, answers, *args, **kwargs):
            spf.query.__init__(self, *args, **kwargs)
            self.answers = answers

        def dns(self, name, qtype, cnames=None, ignore_void=False):
            # pyspf's own dns() would ask DNS itself; this one keeps its rules
            # (bad names answer nothing, the void-lookup limit) and its value
            # shapes (see _values), with the answers of the twisted.names
            # resolver, which follows CNAMEs the server returns.
            name = str(name).rstrip(".").lower()
            if not name or not all(0 < len(label) < 64 for label in name.split(".")):
                return []
            key = (name, qtype)
            if key not in self.answers:
                raise _Missing(key)
            result = self.answers[key]
            if isinstance(result, Exception):
                raise result
            if not result and not ignore_void:
                self.void_lookups += 1
                if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                    raise spf.PermError("Void lookup limit of %d exceeded" % spf.MAX_VOID_LOOKUPS)
            return list(result)

    return _Query


_LOOKUPS = {
    "A": ("lookupAddress", dns.A),
    "AAAA": ("lookupIPV6Address", dns.AAAA),
    "MX": ("lookupMailExchange", dns.MX),
    "PTR": ("lookupPointer", dns.PTR),
    "TXT": ("lookupText", dns.TXT),
}


def _values(qtype, answers):
    """The answers of one lookup in the shapes pyspf's own DNS drivers return."""
    rtype = _LOOKUPS[qtype][1]
    found = []
    for a in answers:
        if a.type != rtype:
            continue  # CNAMEs on the way
        p = a.payload
        if qtype == "A":
            found.append(p.dottedQuad())
        elif qtype == "AAAA":
            found.append(socket.inet_ntop(socket.AF_INET6, p.address))
        elif qtype == "MX":
            found.append((p.preference, str(p.name)))
        elif qtype == "PTR":
            found.append(str(p.name))
        else:
            found.append(list(p.data))
    return found


# Clients whose mail is not SPF-checked: a loopback client is this machine's own
# software (a webmail, fetchmail, a test), and no SPF record can speak for it. The
# same default as Postfix's policyd-spf (Skip_Addresses).
DEFAULT_SPF_SKIP = ("127.0.0.0/8", "::1/128")


def parse_networks(text):
    """The ``ipaddress`` networks of a comma-separated list (``--spf-skip-networks``);
    ValueError naming the entry that is not one."""
    networks = []
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError("%r is not an IP network (like 192.0.2.0/24 or ::1)" % (entry,))
    return tuple(networks)


def _in(networks, client_ip):
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return any(address in net for net in networks if net.version == address.version)


class SPFChecker:
    """The SPF result of a client address, MAIL FROM and HELO: pass, fail, softfail,
    neutral, none, temperror or permerror.

    @param resolver: an IResolver (the same injected one as MX lookups).
    @param clock: bounds all lookups of one check by ``timeout`` seconds together.
    @param receiver: this server's name (the ``%{r}`` macro).
    @param skip: networks (``ipaddress``) whose clients are not checked: L{check}
        gives None and the Authentication-Results header has no ``spf`` result.
    """

    log = Logger()

    def __init__(self, resolver, clock, timeout=DEFAULT_DNS_TIMEOUT, receiver="unknown", skip=()):
        self.resolver = resolver
        self.skip = tuple(skip)
        self.clock = clock
        self.timeout = timeout
        self.receiver = receiver
        self._query = None

    def check(self, client_ip, mail_from, helo):
        """Deferred[str]; never errbacks for DNS trouble (that is ``temperror``).
        Deferred[None] for a client in ``skip``: not checked."""
        if isinstance(client_ip, bytes):
            client_ip = client_ip.decode("ascii", "replace")  # Twisted's SMTP keeps the peer as bytes
        if client_ip and self.skip and _in(self.skip, client_ip):
            return defer.succeed(None)
        if not client_ip or not (mail_from or helo):
            return defer.succeed("none")  # nothing to check (not a TCP client, or no identity)
        return defer.ensureDeferred(self._check(client_ip, mail_from or "", helo or ""))

    async def _check(self, client_ip, mail_from, helo):
        import spf

        if self._query is None:
            self._query = _query_class()
        answers = {}
        try:
            query = self._query(answers, i=client_ip, s=mail_from, h=helo, receiver=self.receiver)
        except spf.PermError:
            return "permerror"  # not an IP address pyspf can use
        deadline = self.clock.seconds() + self.timeout
        for _ in range(MAX_EVALUATIONS):
            try:
                result, _, _ = query.check()
            except _Missing as missing:
                answers[missing.key] = await self._fetch(missing.key, deadline)
                continue
            except Exception as e:
                # A record pyspf cannot digest is the record's error: one line, no traceback.
                self.log.info("SPF of {sender} from {ip}: pyspf failed: {error!r}",
                              sender=mail_from, ip=client_ip, error=e)
                return "permerror"
            return result
        self.log.info("SPF of {sender} from {ip}: more than {n} evaluations", sender=mail_from,
                      ip=client_ip, n=MAX_EVALUATIONS)
        return "permerror"

    async def _fetch(self, key, deadline):
        """The values of one lookup, [] when the name or the type does not exist, else TempError."""
        import spf

        name, qtype = key
        if qtype not in _LOOKUPS:
            return []  # the SPF (99) type: pyspf asks for it only in its "harsh" mode
        try:
            encoded = name.encode("idna")
        except UnicodeError:
            return []  # not a DNS name: nothing there (a void lookup)
        left = deadline - self.clock.seconds()
        if left <= 0:
            return spf.TempError("DNS: no time left for %s %s" % key)
        d = getattr(self.resolver, _LOOKUPS[qtype][0])(encoded, timeout=lookup_timeouts(left))
        # The resolver gives up by itself at the deadline, its timers done; this
        # is only for a resolver that would not (a second late, never earlier).
        d.addTimeout(left + 1, self.clock)
        try:
            found, _, _ = await d
        except error.DNSNameError:
            return []
        except Exception as e:
            # SERVFAIL, REFUSED, no answer in time (defer.TimeoutError from
            # twisted.names, error.TimeoutError from addTimeout), a broken reply.
            return spf.TempError("DNS %s for %s %s" % (type(e).__name__, name, qtype))
        return _values(qtype, found)
