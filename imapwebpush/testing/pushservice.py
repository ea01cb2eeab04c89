"""A local Web Push service for tests: checks each push like a strict push service would.

It listens on 127.0.0.1 (port 0) over plain HTTP, hands out subscriptions
with real RFC 8291 keys, and for every POST it checks the VAPID header (ES256
signature against ``k``, ``aud`` = its origin, ``exp`` within 24 hours,
``sub`` a mailto: or https: URI), TTL, Urgency, Topic, Content-Encoding and
the body size, decrypts the body, records a ``ReceivedPush`` and answers as
the test scripted (201 by default). Because it talks plain HTTP on loopback,
the sender under test must allow insecure endpoints.
"""

import binascii
import collections
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from imapwebpush.testing.tls import self_signed_tls
from imapwebpush.webpush import crypto
from imapwebpush.webpush.limits import MAX_BODY

URGENCIES = ("very-low", "low", "normal", "high")
_TOPIC_RE = re.compile(r"\A[A-Za-z0-9_-]{1,32}\Z")
MAX_VAPID_EXP = 24 * 60 * 60  # RFC 8292 2: exp no more than 24 hours ahead
_VERIFIED_CACHE = 4096  # tokens whose signature verified, remembered

log = Logger()


class Answer:
    """What the push service answers to one push. Build with the class methods."""

    def __init__(self, status=201, headers=None, body=b"", delay=0.0, kind="status"):
        self.status = status
        self.headers = dict(headers or {})
        self.body = body
        self.delay = delay
        self.kind = kind

    def __repr__(self):
        return "<Answer %s %s delay=%s>" % (self.kind, self.status, self.delay)

    @classmethod
    def created(cls, delay=0.0):
        return cls(201, delay=delay)

    @classmethod
    def gone(cls, status=410):
        return cls(status, body=b"subscription expired")

    @classmethod
    def retry_after(cls, value="60", status=429):
        """429 (or 503/507) with ``Retry-After: value`` (seconds or an HTTP date; None: no header)."""
        headers = {} if value is None else {"Retry-After": str(value)}
        return cls(status, headers, b"slow down")

    @classmethod
    def redirect(cls, location="https://elsewhere.example/", status=301):
        return cls(status, {"Location": location})

    @classmethod
    def garbage(cls, data=b"this is not HTTP at all\r\n\r\n"):
        """Raw bytes that are not an HTTP response, then close the connection."""
        return cls(0, body=data, kind="garbage")

    @classmethod
    def hang(cls):
        """Never answer (until the client gives up or the service stops)."""
        return cls(0, kind="hang")

    @classmethod
    def endless(cls, status=201):
        """A response whose body never ends (until the client closes the connection)."""
        return cls(status, kind="endless")

    @classmethod
    def close_midway(cls, status=201):
        """Announce a 1000-octet body, send 10 octets, close the connection."""
        return cls(status, kind="close")


class TestSubscription:
    """A push subscription the service will accept, with the user agent's private key.

    ``endpoint``, ``p256dh`` and ``auth`` (base64url text) are what a client
    hands to WEBPUSH; ``private_key`` and ``auth_secret`` decrypt.
    """

    __test__ = False  # not a test case, whatever pytest thinks

    def __init__(self, service, token, vapid_key=None):
        self.service = service
        self.token = token
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = crypto.public_bytes(self.private_key)
        self.auth_secret = os.urandom(crypto.AUTH_LENGTH)
        self.p256dh = crypto.b64url_encode(self.public_key)
        self.auth = crypto.b64url_encode(self.auth_secret)
        self.vapid_key = vapid_key  # when set, pushes signed with another key get 403
        self.answers = collections.deque()
        self.default = Answer()
        self.gone = False

    @property
    def endpoint(self):
        return "%s/push/%s" % (self.service.origin, self.token)

    def respond(self, *answers):
        """Queue answers for the next pushes, in order; then the ``default`` (201) again."""
        self.answers.extend(answers)
        return self

    def remove(self):
        """Unsubscribe: later pushes are answered 410 Gone."""
        self.gone = True

    def decrypt(self, body):
        return crypto.decrypt(body, self.private_key, self.auth_secret)

    def subscription_info(self):
        """The W3C PushSubscription JSON shape (what pywebpush and browsers use)."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def __repr__(self):
        return "<TestSubscription %s>" % (self.token,)


@dataclass
class ReceivedPush:
    """One POST the service received, what it found wrong with it, and what it answered."""

    subscription: Optional[TestSubscription]
    headers: Dict[str, str]  # lower-case names
    body: bytes
    plaintext: Optional[bytes]
    claims: Dict[str, Any]
    vapid_key: Optional[str]
    status: Optional[int]  # what was answered (None: no HTTP answer: hang, garbage)
    problems: List[str] = field(default_factory=list)
    received_at: float = 0.0

    @property
    def ok(self):
        return not self.problems


def _b64url(text):
    return crypto.b64url_decode(text, "JWT part")


class _Unreadable(Exception):
    """The Authorization header cannot be read far enough to check claims: ``problem`` says why."""

    def __init__(self, key_text, problem):
        Exception.__init__(self, problem)
        self.key_text = key_text
        self.problem = problem


def verify_vapid(authorization, origin, now, verified=None):
    """Check an ``Authorization: vapid t=..., k=...`` header (RFC 8292).

    Returns ``(claims, key text, problems)``. ``verified`` is an optional set of
    (token, key) whose signature already verified: a sender that reuses its
    token (as RFC 8292 suggests) is not verified again, as push services do.
    The claims are checked every time.
    """
    try:
        token, key_text = _vapid_params(authorization)
        public_key = _vapid_key(key_text)
        header, claims, signed, signature = _jws_parts(token, key_text)
    except _Unreadable as e:
        return {}, e.key_text, [e.problem]
    problems = []
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        problems.append("JWT alg is not ES256")
    if not isinstance(claims, dict):
        return {}, key_text, problems + ["JWT claims are not an object"]
    if verified is None or (token, key_text) not in verified:
        wrong = _signature_problem(public_key, signed, signature)
        if wrong:
            problems.append(wrong)
        elif verified is not None and not problems:
            if len(verified) >= _VERIFIED_CACHE:
                verified.clear()
            verified.add((token, key_text))
    return claims, key_text, problems + _claim_problems(claims, origin, now)


def _vapid_params(authorization):
    """(t, k) of a ``vapid`` Authorization header."""
    if not authorization:
        raise _Unreadable(None, "no Authorization header")
    scheme, _, params = authorization.partition(" ")
    if scheme.lower() != "vapid":
        raise _Unreadable(None, "Authorization scheme is %r, not vapid" % (scheme,))
    values = {}
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            values[name.strip().lower()] = value.strip()
    token, key_text = values.get("t"), values.get("k")
    if not token or not key_text:
        raise _Unreadable(key_text, "Authorization lacks t= or k=")
    return token, key_text


def _vapid_key(key_text):
    """The P-256 public key of k=."""
    try:
        key_raw = _b64url(key_text)
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_raw)
        if len(key_raw) != 65:
            raise ValueError("not an uncompressed point")
    except ValueError as e:
        raise _Unreadable(key_text, "k= is not a P-256 public key: %s" % (e,))
    return public_key


def _jws_parts(token, key_text):
    """(header, claims, signed octets, signature) of the JWS compact serialization t=."""
    parts = token.split(".")
    if len(parts) != 3:
        raise _Unreadable(key_text, "t= is not a JWS compact serialization")
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except ValueError as e:
        raise _Unreadable(key_text, "t= cannot be decoded: %s" % (e,))
    return header, claims, ("%s.%s" % (parts[0], parts[1])).encode("ascii"), signature


def _signature_problem(public_key, signed, signature):
    """Why the ES256 signature is wrong, or None."""
    if len(signature) != 64:
        return "JWT signature is not 64 octets"
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "JWT signature does not verify with k="
    return None


def _claim_problems(claims, origin, now):
    """What is wrong with the aud, exp and sub claims."""
    problems = []
    if claims.get("aud") != origin:
        problems.append("JWT aud is %r, expected %r" % (claims.get("aud"), origin))
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        problems.append("JWT exp is missing or not an integer")
    elif exp <= now:
        problems.append("JWT has expired")
    elif exp > now + MAX_VAPID_EXP:
        problems.append("JWT exp is more than 24 hours ahead")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not (sub.startswith("mailto:") or sub.startswith("https:")):
        problems.append("JWT sub must be a mailto: or https: URI, got %r" % (sub,))
    return problems


class _Channel(HTTPChannel):
    """HTTP/1.1 channel that tells the service when it closes (so stop() can wait)."""

    def connectionMade(self):
        HTTPChannel.connectionMade(self)
        self.site.service._channels.add(self)

    def connectionLost(self, reason):
        HTTPChannel.connectionLost(self, reason)
        self.site.service._channel_closed(self)


class _Site(Site):
    protocol = _Channel

    def log(self, request):
        pass  # no access log: it would drown the test log


class _PushResource(Resource):
    isLeaf = True

    def __init__(self, service):
        Resource.__init__(self)
        self.service = service

    def render_POST(self, request):
        return self.service._receive(request)

    def render_GET(self, request):
        request.setResponseCode(405)
        return b"push endpoints accept POST only\n"


class PushService:
    """A push service on 127.0.0.1 that verifies, decrypts, records and answers as scripted.

    ``strict`` (default True): a push with problems is answered 400 (bad
    headers or body), 401 (VAPID), 403 (signed with a key other than the
    subscription's ``vapid_key``) or 413 (body too large) instead of the
    scripted answer. ``origin`` may be set for in-memory use with StubTreq
    (``resource`` is the twisted.web resource) without ``start()``.
    """

    def __init__(self, reactor=None, strict=True, origin=None, tls=False):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.strict = strict
        self.origin = origin
        self.tls = tls
        self.certificate = None  # with tls: the self-signed twisted.internet.ssl.Certificate to trust
        self.resource = _PushResource(self)
        self.pushes = []
        self._subscriptions = {}
        self._waiters = []
        self._channels = set()
        self._closing = []
        self._calls = set()
        self._hanging = set()
        self._port = None
        self._verified = set()
        self.chaos = None  # a testing.chaos.Chaos: random failures for unscripted pushes
        self.observers = []  # called with each ReceivedPush once it is answered (or dropped)

    @property
    def port(self):
        """The TCP port it listens on, or None before ``start()`` and after ``stop()``."""
        return self._port.getHost().port if self._port is not None else None

    # -- life --------------------------------------------------------------

    def start(self):
        """Listen on 127.0.0.1, port 0; fires with the service once listening."""
        site = _Site(self.resource, reactor=self.reactor, parsePOSTFormSubmission=False)
        site.service = self
        if self.tls:
            options, self.certificate = self_signed_tls("imapwebpush test push service")
            self._port = self.reactor.listenSSL(0, site, options, interface="127.0.0.1")
            self.origin = "https://127.0.0.1:%d" % (self._port.getHost().port,)
        else:
            self._port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
            self.origin = "http://127.0.0.1:%d" % (self._port.getHost().port,)
        return defer.succeed(self)

    def stop(self):
        """Stop listening, close every connection, cancel timers; fires when all is closed."""
        for call in list(self._calls):
            if call.active():
                call.cancel()
        self._calls.clear()
        waits = []
        if self._port is not None:
            waits.append(defer.maybeDeferred(self._port.stopListening))
            self._port = None
        for channel in list(self._channels):
            d = defer.Deferred()
            self._closing.append((channel, d))
            waits.append(d)
            if channel.transport is not None:
                channel.transport.abortConnection()
        return defer.gatherResults(waits).addCallback(lambda _: None)

    def _channel_closed(self, channel):
        self._channels.discard(channel)
        for item in list(self._closing):
            if item[0] is channel:
                self._closing.remove(item)
                item[1].callback(None)

    def _later(self, delay, f, *args):
        def run():
            self._calls.discard(call)
            f(*args)

        call = self.reactor.callLater(delay, run)
        self._calls.add(call)
        return call

    # -- subscriptions -----------------------------------------------------

    def new_subscription(self, vapid_key=None):
        """A fresh subscription (new P-256 key and auth secret) with a random endpoint."""
        token = crypto.b64url_encode(os.urandom(12))
        sub = TestSubscription(self, token, vapid_key)
        self._subscriptions[token] = sub
        return sub

    # -- observing ---------------------------------------------------------

    def received(self, subscription=None, delivered=False):
        """The pushes received so far (for one subscription; only the 2xx-answered ones)."""
        return [p for p in self.pushes if self._matches(p, subscription, delivered)]

    @staticmethod
    def _matches(push, subscription, delivered):
        if subscription is not None and push.subscription is not subscription:
            return False
        if delivered and not (push.status is not None and 200 <= push.status < 300):
            return False
        return True

    def wait_for(self, count, subscription=None, delivered=False):
        """A Deferred that fires with the matching pushes once ``count`` of them arrived."""
        def forget(d):  # cancelled (a timeout): this waiter is gone
            self._waiters[:] = [w for w in self._waiters if w[3] is not d]

        d = defer.Deferred(forget)
        self._waiters.append((count, subscription, delivered, d))
        self._notify()
        return d

    def waiting(self):
        """How many ``wait_for()`` Deferreds have not fired (nor been cancelled) yet."""
        return len(self._waiters)

    def _notify(self):
        for waiter in list(self._waiters):
            count, subscription, delivered, d = waiter
            found = self.received(subscription, delivered)
            if len(found) >= count:
                self._waiters.remove(waiter)
                d.callback(found)

    # -- receiving ---------------------------------------------------------

    def _receive(self, request):
        path = request.path.decode("latin-1")
        token = path[len("/push/"):] if path.startswith("/push/") else None
        sub = self._subscriptions.get(token) if token else None
        headers = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        body = request.content.read()
        push = ReceivedPush(sub, headers, body, None, {}, None, None, received_at=self.reactor.seconds())
        self.pushes.append(push)
        if sub is None:
            return self._finish_plain(request, push, 404, b"no such subscription\n")
        if sub.gone:
            return self._finish_plain(request, push, 410, b"subscription expired\n")
        error_status = self._check(request, sub, headers, body, push)
        if error_status is not None and self.strict:
            return self._finish_plain(
                request, push, error_status, ("\n".join(push.problems) + "\n").encode("utf-8")
            )
        if sub.answers:
            answer = sub.answers.popleft()
        elif self.chaos is not None:
            answer = self.chaos.answer(sub.default)
        else:
            answer = sub.default
        if answer.delay:
            request.notifyFinish().addErrback(lambda _: None)
            self._later(answer.delay, self._apply, request, push, answer)
        else:
            self._apply(request, push, answer)
        return NOT_DONE_YET

    def _check(self, request, sub, headers, body, push):
        """Record every problem; return the status a strict service answers, or None."""
        status = None
        ttl = headers.get("ttl")
        if ttl is None:
            push.problems.append("no TTL header")
        elif not ttl.isdigit():
            push.problems.append("TTL is not a number of seconds: %r" % (ttl,))
        urgency = headers.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            push.problems.append("Urgency %r is not one of %s" % (urgency, ", ".join(URGENCIES)))
        topic = headers.get("topic")
        if topic is not None and not _TOPIC_RE.match(topic):
            push.problems.append("Topic %r is not 1-32 base64url characters" % (topic,))
        if headers.get("content-encoding") != "aes128gcm":
            push.problems.append("Content-Encoding is %r, not aes128gcm" % (headers.get("content-encoding"),))
        if push.problems:
            status = 400
        claims, key, vapid_problems = verify_vapid(
            headers.get("authorization"), self.origin, self.reactor.seconds(), self._verified
        )
        push.claims, push.vapid_key = claims, key
        if vapid_problems:
            push.problems.extend(vapid_problems)
            status = 401
        elif sub.vapid_key is not None and key != sub.vapid_key:
            push.problems.append("signed with VAPID key %s, subscription is bound to %s" % (key, sub.vapid_key))
            status = 403
        if len(body) > MAX_BODY:
            push.problems.append("body of %d octets exceeds %d" % (len(body), MAX_BODY))
            return 413
        try:
            push.plaintext = sub.decrypt(body)
        except (crypto.DecryptError, ValueError, binascii.Error) as e:
            push.problems.append(str(e))
            status = status or 400
        return status

    def _finish_plain(self, request, push, status, body):
        push.status = status
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        self._answered(push)
        return body

    def _apply(self, request, push, answer):
        if request.finished or request.channel is None or request.channel.transport is None:
            return  # the client went away during the delay
        transport = request.channel.transport
        if answer.kind == "garbage":
            transport.write(answer.body)
            transport.loseConnection()
        elif answer.kind == "hang":
            pass
        elif answer.kind == "close":
            push.status = answer.status
            request.setResponseCode(answer.status)
            request.setHeader(b"content-length", b"1000")
            request.write(b"x" * 10)
            transport.loseConnection()
        elif answer.kind == "endless":
            push.status = answer.status
            request.setResponseCode(answer.status)
            gone = []
            request.notifyFinish().addBoth(gone.append)

            def more():
                if not gone and request.channel is not None:
                    request.write(b"z" * 16384)
                    self._later(0, more)

            more()
        else:
            push.status = answer.status
            request.setResponseCode(answer.status)
            for name, value in answer.headers.items():
                request.setHeader(name.encode("latin-1"), str(value).encode("latin-1"))
            if answer.body:
                request.write(answer.body)
            request.finish()
        self._answered(push)

    def _answered(self, push):
        for observer in list(self.observers):
            try:
                observer(push)
            except Exception:
                log.failure("push service observer failed")
        self._notify()
