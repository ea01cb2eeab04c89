"""Gets encrypted, signed pushes to push services and acts on their answers (SPEC 6, 6.1).

``PushDeliveryService.send`` encrypts at once (so a retry resends the same
ciphertext and the outbox never holds plaintext), writes the delivery to the
outbox, and queues it. Requests run under a global and a per-host cap; a
429/503/507 holds every request to that endpoint until its Retry-After; other
transient failures retry with jittered exponential backoff until the TTL runs
out. The final ``PushOutcome`` fires the Deferred of ``send`` and goes to the
observer. Stopping the service cancels timers and requests and leaves every
unfinished delivery in the outbox; the next start resumes them.
"""

import base64
import email.utils
import json
import os
import random
import re

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from imapwebpush.decisions import DEFAULT_RETRY_AFTER, MAX_RESPONSE_BODY, MAX_TOPIC_LENGTH, REQUEST_TIMEOUT
from imapwebpush.interfaces import IPushSender
from imapwebpush.webpush import crypto
from imapwebpush.webpush.model import (
    CANCELLED,
    DELIVERED,
    EXPIRED,
    FAILED,
    GONE,
    REJECTED,
    TOO_LARGE,
    PushOutcome,
)
from imapwebpush.webpush.outbox import Outbox
from imapwebpush.webpush.policy import EndpointRefused
from imapwebpush.webpush.vapid import origin_of

URGENCIES = ("very-low", "low", "normal", "high")
TOPIC_RE = re.compile(r"\A[A-Za-z0-9_-]{1,%d}\Z" % MAX_TOPIC_LENGTH)

DEFAULT_MAX_IN_FLIGHT = 256
DEFAULT_MAX_PER_HOST = 16
DEFAULT_MAX_QUEUE = 10000  # deliveries waiting (queued or for a timer) before send() refuses
BACKOFF_BASE = 2.0  # seconds before the first retry (before jitter)
BACKOFF_CAP = 30 * 60.0  # longest wait between two attempts
MAX_RETRY_AFTER = 24 * 60 * 60  # a longer Retry-After is capped (the TTL usually ends first)
MIN_RETRY_AFTER = 1  # "Retry-After: 0" still waits a second, so a busy service is not hammered

_URGENCY_VALUES = {u: [u.encode("ascii")] for u in URGENCIES}  # header values, built once
_CONTENT_ENCODING = [b"aes128gcm"]
_CONTENT_TYPE = [b"application/octet-stream"]

_RETRY_AFTER_STATUSES = (429, 503, 507)
_GONE_STATUSES = (404, 410)
_REJECTED_STATUSES = (400, 401, 403)


def check_topic(topic):
    """ValueError unless ``topic`` is at most 32 base64url characters (RFC 8030 5.4)."""
    if not isinstance(topic, str) or not TOPIC_RE.match(topic):
        raise ValueError(
            "Topic must be 1 to %d base64url characters, got %r" % (MAX_TOPIC_LENGTH, topic)
        )


# What a record read back from the outbox must hold to be resumed (send() writes them).
_RECORD_FIELDS = {
    "account": str, "subscription_id": str, "endpoint": str, "vapid_key": str, "body": str,
    "urgency": str, "ttl": int, "deadline": (int, float), "not_before": (int, float),
    "attempts": int, "context": dict,
}


def _check_record(record):
    """ValueError unless an outbox record has every field send() wrote, each of its type."""
    for name, kind in _RECORD_FIELDS.items():
        if not isinstance(record.get(name), kind):
            raise ValueError("%s is missing or of the wrong type" % (name,))
    if record["urgency"] not in URGENCIES:
        raise ValueError("unknown Urgency %r" % (record["urgency"],))
    if "topic" not in record:
        raise ValueError("topic is missing")
    if record["topic"] is not None:
        check_topic(record["topic"])


def parse_retry_after(values, now):
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); default 60."""
    if not values:
        return DEFAULT_RETRY_AFTER
    text = values[0].decode("latin-1").strip() if isinstance(values[0], bytes) else values[0].strip()
    if text.isdigit():
        return min(int(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return DEFAULT_RETRY_AFTER
    if when is None or when.tzinfo is None:
        return DEFAULT_RETRY_AFTER
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


def _snippet(body, limit=200):
    """A printable excerpt of a response body for log lines and outcome reasons."""
    text = body[:limit].decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text


class _BodyReader(Protocol):
    """Reads at most ``limit`` octets of a response body; more aborts the connection."""

    def __init__(self, limit):
        self.limit = limit
        self.chunks = []
        self.size = 0
        self.done = defer.Deferred(self._cancel)

    def dataReceived(self, data):
        if self.done.called:
            return
        room = self.limit - self.size
        if len(data) > room:
            self.chunks.append(data[:room])
            self.done.callback(b"".join(self.chunks))
            self.transport.stopProducing()
            return
        self.chunks.append(data)
        self.size += len(data)

    def connectionLost(self, reason):
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)

    def _cancel(self, d):
        if self.transport is not None:
            self.transport.stopProducing()


def _read_response(response):
    reader = _BodyReader(MAX_RESPONSE_BODY)
    response.deliverBody(reader)
    return reader.done.addCallback(lambda body: (response.code, response.headers, body))


def _find(failure, kind):
    """The first exception of type ``kind`` in ``failure`` or the failures it wraps."""
    seen = [failure]
    while seen:
        f = seen.pop()
        if isinstance(f, Failure):
            if f.check(kind):
                return f.value
            seen.extend(getattr(f.value, "reasons", []) or [])
        elif isinstance(f, kind):
            return f
    return None


def _describe(failure):
    """A short reason for a transport-level failure."""
    f = failure
    while isinstance(f, Failure) and getattr(f.value, "reasons", None):
        f = f.value.reasons[0]
    value = f.value if isinstance(f, Failure) else f
    name = type(value).__name__
    text = str(value).strip()
    return "%s: %s" % (name, text) if text else name


class _Delivery:
    """One push on its way: the persisted record plus the in-memory bits."""

    __slots__ = ("record", "body", "deferred", "timer", "origin", "request", "timed_out", "checked")

    def __init__(self, record, deferred, body=None):
        self.record = record
        self.body = body if body is not None else base64.b64decode(record["body"])
        self.deferred = deferred
        self.timer = None
        self.request = None
        self.timed_out = False
        self.checked = False  # policy.check_url passed in this process
        self.origin = origin_of(record["endpoint"])


@implementer(IPushSender)
class PushDeliveryService(Service):
    """Sends pushes with the retries of SPEC 6.1; a twisted Service.

    ``reactor`` gives time and timers (IReactorTime), ``keyring`` an
    IVapidKeyring, ``http_client`` a treq HTTPClient (or StubTreq),
    ``policy`` an IEndpointPolicy, ``outbox_path`` the SQLite file of pending
    deliveries, ``observer`` an optional IPushOutcomeObserver.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        keyring,
        http_client,
        policy,
        outbox_path,
        observer=None,
        max_in_flight=DEFAULT_MAX_IN_FLIGHT,
        max_per_host=DEFAULT_MAX_PER_HOST,
        max_queue=DEFAULT_MAX_QUEUE,
        backoff_base=BACKOFF_BASE,
        backoff_cap=BACKOFF_CAP,
        request_timeout=REQUEST_TIMEOUT,
        rng=None,
    ):
        self.reactor = reactor
        self.keyring = keyring
        self.http_client = http_client
        self.policy = policy
        self.outbox_path = outbox_path
        self.observer = observer
        self.max_in_flight = max_in_flight
        self.max_per_host = max_per_host
        self.max_queue = max_queue
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.request_timeout = request_timeout
        self._random = rng if rng is not None else random.SystemRandom()
        self._outbox = None
        self._deliveries = {}  # id -> _Delivery, every delivery without a final outcome
        self._queues = {}  # origin -> list of _Delivery ready to go (FIFO via index)
        self._in_flight = 0
        self._host_in_flight = {}
        self._held = {}  # endpoint -> time before which nothing is sent to it (Retry-After)
        self._pumping = False
        self._repump = False
        self._last_authorization = (None, None)  # (header text, its header value list)
        self.retries = 0  # attempts scheduled again (backoff or Retry-After), for metrics

    # -- Service -----------------------------------------------------------

    def startService(self):
        Service.startService(self)
        self._outbox = Outbox(self.outbox_path, self.reactor)
        now = self.reactor.seconds()
        resumed = 0
        for record in self._outbox.records():
            try:
                _check_record(record)
                delivery = _Delivery(record, None)
            except ValueError as e:  # Outbox.records() gives only objects with their id
                self.log.warn("dropping an unreadable outbox record {id}: {reason}",
                              id=record["id"], reason=e)
                self._outbox.remove(record["id"])
                continue
            if now > record["deadline"]:
                self.log.info(
                    "dropping push for {account}/{subscription}: its TTL passed while stopped",
                    account=record["account"],
                    subscription=record["subscription_id"],
                )
                self._deliveries[record["id"]] = delivery
                self._final(delivery, EXPIRED, reason="its TTL passed while the server was stopped")
                continue
            self._deliveries[record["id"]] = delivery
            self._enqueue(delivery)
            resumed += 1
        if resumed:
            self.log.info("resumed {count} pending pushes from the outbox", count=resumed)
        self._pump()

    def stopService(self):
        Service.stopService(self)
        deliveries = list(self._deliveries.values())
        self._deliveries.clear()  # first, so cancelled requests are not handled as failures
        for delivery in deliveries:
            if delivery.timer is not None and delivery.timer.active():
                delivery.timer.cancel()
            delivery.timer = None
            if delivery.request is not None:
                request, delivery.request = delivery.request, None
                request.cancel()
        self._queues.clear()
        self._held.clear()
        self._in_flight = 0
        self._host_in_flight.clear()
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
        pool = getattr(self.http_client, "pool", None)
        if pool is not None:
            return pool.closeCachedConnections()
        return None

    # -- IPushSender -------------------------------------------------------

    def send(self, target, payload, urgency, ttl, topic=None, context=None):
        context = {} if context is None else context
        try:
            return self._send(target, payload, urgency, ttl, topic, context)
        except Exception:
            self.log.failure("unexpected error queueing a push")
            return defer.succeed(
                self._outcome_now(target, context, FAILED, "internal error while queueing the push")
            )

    def _send(self, target, payload, urgency, ttl, topic, context):
        if not self.running:
            return defer.succeed(
                self._outcome_now(target, context, FAILED, "the push delivery service is not running")
            )
        if len(self._deliveries) - self._in_flight >= self.max_queue:
            return defer.succeed(
                self._outcome_now(target, context, FAILED, "the push delivery queue is full")
            )
        try:
            json.dumps(context)
            if urgency not in URGENCIES:
                raise ValueError("Urgency must be one of %s, got %r" % (", ".join(URGENCIES), urgency))
            if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
                raise ValueError("TTL must be a non-negative integer, got %r" % (ttl,))
            if topic is not None:
                check_topic(topic)
            self.policy.check_url(target.endpoint)
            body = crypto.encrypt(payload, target.p256dh, target.auth)
        except crypto.PayloadTooLarge as e:
            return defer.succeed(self._outcome_now(target, context, TOO_LARGE, str(e)))
        except EndpointRefused as e:
            return defer.succeed(self._outcome_now(target, context, FAILED, e.reason))
        except (ValueError, TypeError) as e:
            return defer.succeed(self._outcome_now(target, context, FAILED, str(e)))
        now = self.reactor.seconds()
        record = {
            "id": os.urandom(16).hex(),  # 32 hex digits like uuid4().hex, without building a UUID
            "account": target.account,
            "subscription_id": target.subscription_id,
            "endpoint": target.endpoint,
            "vapid_key": target.vapid_key,
            "body": base64.b64encode(body).decode("ascii"),
            "urgency": urgency,
            "ttl": ttl,
            "topic": topic,
            "context": context,
            "deadline": now + ttl,
            "attempts": 0,
            "not_before": now,
            "last_error": "",
        }
        d = defer.Deferred()
        delivery = _Delivery(record, d, body)
        delivery.checked = True
        self._outbox.put(record)
        self._deliveries[record["id"]] = delivery
        self._enqueue(delivery)
        self._pump()
        return d

    def cancel(self, account, subscription_id):
        dropped = [
            d for d in self._deliveries.values()
            if d.request is None
            and d.record["account"] == account
            and d.record["subscription_id"] == subscription_id
        ]
        for delivery in dropped:
            queue = self._queues.get(delivery.origin)
            if queue is not None and delivery in queue:
                queue.remove(delivery)
                if not queue:
                    del self._queues[delivery.origin]
            self._final(delivery, CANCELLED, reason="the subscription was deleted or replaced")
        return len(dropped)

    # -- scheduling --------------------------------------------------------

    def _enqueue(self, delivery):
        """Queue it now, or set a timer for when it (or its endpoint) may be tried again."""
        now = self.reactor.seconds()
        record = delivery.record
        wake = max(record["not_before"], self._held.get(record["endpoint"], 0))
        if wake > now:
            delivery.timer = self.reactor.callLater(wake - now, self._wake, delivery)
            return
        self._queues.setdefault(delivery.origin, []).append(delivery)

    def _wake(self, delivery):
        delivery.timer = None
        if delivery.record["id"] not in self._deliveries:
            return
        self._enqueue(delivery)
        self._pump()

    def _pump(self):
        """Start queued deliveries while the caps allow; never re-entered."""
        if not self.running:
            return
        if self._pumping:
            self._repump = True
            return
        self._pumping = True
        try:
            self._repump = True
            while self._repump:
                self._repump = False
                for origin in list(self._queues):
                    queue = self._queues.get(origin)
                    taken = 0
                    while (
                        queue is not None
                        and taken < len(queue)
                        and self._in_flight < self.max_in_flight
                        and self._host_in_flight.get(origin, 0) < self.max_per_host
                    ):
                        delivery = queue[taken]
                        taken += 1
                        self._start(delivery)
                        queue = self._queues.get(origin)
                    if queue is not None:
                        del queue[:taken]
                        if not queue:
                            del self._queues[origin]
        finally:
            self._pumping = False

    def _start(self, delivery):
        record = delivery.record
        now = self.reactor.seconds()
        held = self._held.get(record["endpoint"])
        if held is not None:
            if held > now:
                delivery.timer = self.reactor.callLater(held - now, self._wake, delivery)
                return
            del self._held[record["endpoint"]]
        if now > record["deadline"] or (record["attempts"] and now >= record["deadline"]):
            self._expire(delivery)
            return
        try:
            if not delivery.checked:  # resumed from the outbox: the policy may have changed
                self.policy.check_url(record["endpoint"])
                delivery.checked = True
            authorization = self.keyring.authorization(record["vapid_key"], record["endpoint"])
        except EndpointRefused as e:
            self._final(delivery, FAILED, reason=e.reason)
            return
        except (KeyError, ValueError) as e:
            self._final(delivery, FAILED, reason="cannot sign the push: %s" % (e.args[0] if e.args else e,))
            return
        if authorization is not self._last_authorization[0]:  # the token changes rarely
            self._last_authorization = (authorization, [authorization.encode("ascii")])
        headers = {
            b"TTL": [b"%d" % (max(0, int(round(record["deadline"] - now))),)],
            b"Urgency": _URGENCY_VALUES[record["urgency"]],
            b"Content-Encoding": _CONTENT_ENCODING,
            b"Content-Type": _CONTENT_TYPE,
            b"Authorization": self._last_authorization[1],
        }
        if record["topic"]:
            headers[b"Topic"] = [record["topic"].encode("ascii")]
        record["attempts"] += 1
        self._in_flight += 1
        self._host_in_flight[delivery.origin] = self._host_in_flight.get(delivery.origin, 0) + 1
        delivery.timed_out = False
        timer = self.reactor.callLater(self.request_timeout, self._timeout, delivery)
        d = defer.maybeDeferred(
            self.http_client.request,
            "POST",
            record["endpoint"],
            headers=headers,
            data=delivery.body,
            allow_redirects=False,
            unbuffered=True,
        )
        d.addCallback(_read_response)
        delivery.request = d  # _attempt_done clears it, even when d has already fired
        d.addBoth(self._attempt_done, delivery, timer)

    def _timeout(self, delivery):
        if delivery.request is not None:
            delivery.timed_out = True
            delivery.request.cancel()

    def _attempt_done(self, result, delivery, timer):
        delivery.request = None
        if timer.active():
            timer.cancel()
        if self._deliveries.get(delivery.record["id"]) is not delivery:
            return None  # stopped meanwhile: the delivery stays in the outbox
        self._in_flight -= 1
        left = self._host_in_flight.get(delivery.origin, 1) - 1
        if left:
            self._host_in_flight[delivery.origin] = left
        else:
            self._host_in_flight.pop(delivery.origin, None)
        try:
            if isinstance(result, Failure):
                self._failed(delivery, result)
            else:
                self._answered(delivery, *result)
        except Exception:
            self.log.failure("unexpected error handling a push answer")
            if delivery.record["id"] in self._deliveries:
                self._final(delivery, FAILED, reason="internal error handling the answer")
        self._pump()
        return None

    # -- answers (SPEC 6.1) -------------------------------------------------

    def _answered(self, delivery, status, headers, body):
        if 200 <= status < 300:
            self._final(delivery, DELIVERED, status=status)
            return
        record = delivery.record
        detail = _snippet(body)
        suffix = (": %s" % detail) if detail else ""
        if status in _GONE_STATUSES:
            self._final(
                delivery, GONE, status=status,
                reason="push service answered %d: the subscription is gone%s" % (status, suffix),
            )
        elif status == 413:
            self._final(
                delivery, TOO_LARGE, status=status,
                reason="push service answered 413: the body is too large%s" % (suffix,),
            )
        elif status in _RETRY_AFTER_STATUSES:
            now = self.reactor.seconds()
            wait = max(MIN_RETRY_AFTER, parse_retry_after(headers.getRawHeaders(b"retry-after"), now))
            until = now + wait
            endpoint = record["endpoint"]
            self._held[endpoint] = max(self._held.get(endpoint, 0), until)
            reason = "push service answered %d, Retry-After %d s%s" % (status, wait, suffix)
            self._retry_at(delivery, until, reason, status)
        elif status in _REJECTED_STATUSES:
            self._final(
                delivery, REJECTED, status=status,
                reason="push service refused the request with %d%s" % (status, suffix),
            )
        elif 300 <= status < 400:
            location = headers.getRawHeaders(b"location", [b""])[0].decode("latin-1")
            self._final(
                delivery, FAILED, status=status,
                reason="push service answered %d (redirect to %r), redirects are never followed"
                % (status, location[:200]),
            )
        elif status >= 500 or status == 408:
            self._backoff(delivery, "push service answered %d%s" % (status, suffix), status)
        else:
            self._final(
                delivery, FAILED, status=status,
                reason="push service answered %d%s" % (status, suffix),
            )

    def _failed(self, delivery, failure):
        refused = _find(failure, EndpointRefused)
        if refused is not None:
            self._final(delivery, FAILED, reason=refused.reason)
            return
        if delivery.timed_out:
            reason = "no complete answer within %d s" % (self.request_timeout,)
        else:
            reason = _describe(failure)
        self._backoff(delivery, reason, None)

    def _backoff(self, delivery, reason, status):
        attempts = delivery.record["attempts"]
        delay = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1))
        delay *= self._random.uniform(0.5, 1.0)
        self._retry_at(delivery, self.reactor.seconds() + delay, reason, status)

    def _retry_at(self, delivery, when, reason, status):
        self.retries += 1
        record = delivery.record
        record["last_error"] = reason
        record["last_status"] = status
        if when >= record["deadline"]:
            self._expire(delivery)
            return
        record["not_before"] = when
        self._outbox.put(record)
        self.log.debug(
            "push to {account}/{subscription} will be retried in {delay:.1f} s: {reason}",
            account=record["account"], subscription=record["subscription_id"],
            delay=when - self.reactor.seconds(), reason=reason,
        )
        self._enqueue(delivery)

    def _expire(self, delivery):
        record = delivery.record
        reason = "its TTL of %d s passed before delivery" % (record["ttl"],)
        if record.get("last_error"):
            reason += "; last error: %s" % (record["last_error"],)
        self._final(delivery, EXPIRED, status=record.get("last_status"), reason=reason)

    # -- outcomes ----------------------------------------------------------

    def _final(self, delivery, kind, status=None, reason=""):
        record = delivery.record
        self._deliveries.pop(record["id"], None)
        if delivery.timer is not None and delivery.timer.active():
            delivery.timer.cancel()
        delivery.timer = None
        if self._outbox is not None:
            self._outbox.remove(record["id"])
        outcome = PushOutcome(
            kind, record["account"], record["subscription_id"], status, reason, record["context"]
        )
        self._report(outcome)
        if delivery.deferred is not None:
            d, delivery.deferred = delivery.deferred, None
            d.callback(outcome)

    def _outcome_now(self, target, context, kind, reason):
        outcome = PushOutcome(kind, target.account, target.subscription_id, None, reason, context)
        self._report(outcome)
        return outcome

    def _report(self, outcome):
        if outcome.kind != DELIVERED:
            self.log.info(
                "push to {account}/{subscription}: {kind} ({status}) {reason}",
                account=outcome.account, subscription=outcome.subscription_id,
                kind=outcome.kind, status=outcome.status, reason=outcome.reason,
            )
        if self.observer is not None:
            try:
                self.observer.pushOutcome(outcome)
            except Exception:
                self.log.failure("push outcome observer raised")

    # -- introspection -----------------------------------------------------

    def pending(self):
        """How many deliveries have no final outcome yet (queued, waiting or in flight)."""
        return len(self._deliveries)

    def in_flight(self):
        """How many POSTs are on the wire now, waiting for their answer."""
        return self._in_flight

    def stored(self):
        """How many deliveries the outbox keeps for a restart (0 while stopped)."""
        return len(self._outbox) if self._outbox is not None else 0
