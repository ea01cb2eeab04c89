"""Prometheus metrics of one server, on a registry of its own (``--metrics ENDPOINT``).

Why a registry per server and not prometheus-client's global one: two servers
in one process (the test suite, an embedding application) would otherwise
count into, and clash on, the same names. The components keep plain counts
(``PushDeliveryService.retries``, ``WebPushService.deleted``,
``PushDispatcher.rate_limited``, the sender's queue); this module reads them
when scraped, and counts at the few seams that are protocol-wide: store
events (SMTP deliveries), the IMAP protocol class (sessions, commands), the
cred checker (login failures) and the push outcomes.

The names are listed in docs/operating.rst.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from imapwebpush.events import MessageAdded
from imapwebpush.interfaces import IPushOutcomeObserver

DEFAULT_METRICS = None  # off; e.g. tcp:9464:interface=127.0.0.1

# Push latency buckets, seconds from the change to the push service's 2xx.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)

# IMAP commands counted by name; any other is counted as "other" (bounded label values).
_IMAP_COMMANDS = frozenset(
    "CAPABILITY NOOP LOGOUT STARTTLS AUTHENTICATE LOGIN SELECT EXAMINE CREATE DELETE RENAME"
    " SUBSCRIBE UNSUBSCRIBE LIST LSUB STATUS APPEND CHECK CLOSE EXPUNGE SEARCH FETCH STORE"
    " COPY MOVE UID IDLE NAMESPACE ID ENABLE UNSELECT GETVAPID WEBPUSH ACKWEBPUSH LWEBPUSH"
    " SILWEBPUSH".split())


def status_class(status):
    """``2xx``, ``4xx``... of an HTTP status; ``none`` when there was no answer."""
    return "none" if status is None else "%dxx" % (status // 100)


class ServerMetrics:
    """The metrics of one server; ``registry`` is what the endpoint serves."""

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.smtp_deliveries = Counter(
            "imapwebpush_smtp_deliveries", "Messages SMTP stored in a local INBOX (one per"
            " recipient).", registry=r)
        self.imap_sessions = Counter(
            "imapwebpush_imap_sessions", "IMAP connections accepted.", registry=r)
        self.imap_sessions_open = Gauge(
            "imapwebpush_imap_sessions_open", "IMAP connections open now.", registry=r)
        self.imap_commands = Counter(
            "imapwebpush_imap_commands", "IMAP commands received, by name.", ["command"],
            registry=r)
        self.login_failures = Counter(
            "imapwebpush_login_failures", "Refused logins by protocol (imap: LOGIN and"
            " AUTHENTICATE, smtp: submission AUTH).", ["protocol"], registry=r)
        self.push_sends = Counter(
            "imapwebpush_push_sends", "Pushes finished, by the push service's status class"
            " (none: no answer).", ["status_class"], registry=r)
        self.push_latency = Histogram(
            "imapwebpush_push_latency_seconds", "From the mail change to the push service's"
            " 2xx.", buckets=LATENCY_BUCKETS, registry=r)
        self._components = []
        r.register(_ComponentCollector(self._components))

    # -- seams --------------------------------------------------------------------------

    def watch_store(self, bus):
        """Count SMTP deliveries on a store's change bus."""
        bus.subscribe(self._store_event)

    def _store_event(self, event):
        if isinstance(event, MessageAdded) and event.origin == "smtp":
            self.smtp_deliveries.inc()

    def watch_webpush(self, webpush):
        """Push outcomes, latency, retries, deletions, rate limits and outbox depth of a WebPush."""
        webpush.sender.observer = _Tee(self, webpush.sender.observer)
        webpush.dispatcher.latency = self.push_latency.observe
        self._components.append(webpush)

    def pushOutcome(self, outcome):
        self.push_sends.labels(status_class(outcome.status)).inc()

    def imap_protocol(self, base):
        """A subclass of the IMAP server class ``base`` that counts sessions and commands."""
        metrics = self

        class Metered(base):
            def connectionMade(self):
                metrics.imap_sessions.inc()
                metrics.imap_sessions_open.inc()
                super().connectionMade()

            def connectionLost(self, reason):
                metrics.imap_sessions_open.dec()
                super().connectionLost(reason)

            def dispatchCommand(self, tag, cmd, rest, uid=None):
                name = cmd.decode("ascii", "replace").upper()
                metrics.imap_commands.labels(name if name in _IMAP_COMMANDS else "other").inc()
                return super().dispatchCommand(tag, cmd, rest, uid)

        Metered.__name__ = Metered.__qualname__ = "Metered" + base.__name__
        return Metered

    def checker(self, checker, protocol):
        """``checker`` (an ICredentialsChecker) counting the credentials it refuses, as
        refused logins of ``protocol`` (``imap``, ``smtp``): one wrapper per listener."""
        return _CountingChecker(checker, self.login_failures.labels(protocol))

    def site(self):
        """The web site serving ``/metrics``."""
        root = Resource()
        root.putChild(b"metrics", _MetricsPage(self.registry))
        site = Site(root)
        site.log = lambda request: None  # a scrape every 15 s is not worth a log line
        return site


@implementer(IPushOutcomeObserver)
class _Tee:
    def __init__(self, metrics, observer):
        self._metrics = metrics
        self._observer = observer

    def pushOutcome(self, outcome):
        self._metrics.pushOutcome(outcome)
        if self._observer is not None:
            self._observer.pushOutcome(outcome)


class _CountingChecker:
    def __init__(self, checker, counter):
        self._checker = checker
        self._counter = counter
        self.credentialInterfaces = checker.credentialInterfaces

    def requestAvatarId(self, credentials):
        d = self._checker.requestAvatarId(credentials)

        def refused(failure):
            self._counter.inc()
            return failure
        return d.addErrback(refused)

    def __getattr__(self, name):
        return getattr(self._checker, name)


class _ComponentCollector:
    """Reads the counts the Web Push components keep, at scrape time."""

    def __init__(self, components):
        self._components = components

    def describe(self):
        return []

    def collect(self):
        retries = CounterMetricFamily("imapwebpush_push_retries", "Push attempts scheduled"
                                      " again (backoff or Retry-After).")
        limited = CounterMetricFamily("imapwebpush_push_rate_limited", "New-mail pushes of a"
                                      " subscription sent as generic syncs by the rate limit.")
        pruned = CounterMetricFamily("imapwebpush_subscriptions_pruned", "Subscriptions the"
                                     " server deleted, by reason.", labels=["reason"])
        depth = GaugeMetricFamily("imapwebpush_push_outbox_depth", "Pushes without a final"
                                  " outcome (queued, waiting for a retry, in flight).")
        r = l = o = 0
        reasons = {"gone": 0, "failing": 0, "pending": 0}
        for webpush in self._components:
            r += webpush.sender.retries
            l += webpush.dispatcher.rate_limited
            o += webpush.sender.pending()
            for reason, n in webpush.service.deleted.items():
                reasons[reason] = reasons.get(reason, 0) + n
        retries.add_metric([], r)
        limited.add_metric([], l)
        depth.add_metric([], o)
        for reason, n in sorted(reasons.items()):
            pruned.add_metric([reason], n)
        return [retries, limited, pruned, depth]


class _MetricsPage(Resource):
    isLeaf = True

    def __init__(self, registry):
        Resource.__init__(self)
        self._registry = registry

    def render_GET(self, request):
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._registry)
