"""The outbound HTTP client for pushes: one persistent pool, an Agent that applies the policy.

Built here so ``tap.py`` and the benchmark construct it the same way, and so
tests can pass ``treq.testing.StubTreq`` to the delivery service instead.
"""

from hyperlink import EncodedURL
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.abstract import isIPv6Address
from twisted.web.client import URI, Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from imapwebpush.decisions import CONNECT_TIMEOUT
from imapwebpush.webpush.delivery import DEFAULT_MAX_PER_HOST  # the pool keeps what the sender may use
from imapwebpush.webpush.policy import CheckingEndpointFactory

CACHED_CONNECTION_TIMEOUT = 120  # seconds an idle connection to a push service is kept
URI_CACHE = 4096  # endpoints whose request URI is kept ready
ENDPOINT_CACHE = 256  # push service (scheme, host, port) whose connect endpoint is kept
_PUSH_KWARGS = frozenset(["headers", "data", "allow_redirects", "unbuffered"])


def make_pool(reactor, max_per_host=DEFAULT_MAX_PER_HOST):
    """A persistent HTTPConnectionPool keeping up to ``max_per_host`` idle connections per host."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max_per_host
    pool.cachedConnectionTimeout = CACHED_CONNECTION_TIMEOUT
    pool.retryAutomatically = False  # a POST is not idempotent; the delivery service retries
    return pool


@implementer(IAgentEndpointFactory)
class _EndpointCache:
    """Keeps the endpoint the policy's factory makes for each push service.

    An Agent asks for an endpoint on every request, even one that reuses a
    pooled connection; for https that builds new TLS options (a fresh OpenSSL
    context) each time. The endpoints are stateless (each connect resolves
    and checks the addresses again, SPEC 7), so one per (scheme, host, port)
    serves every request.
    """

    def __init__(self, factory):
        self._factory = factory
        self._endpoints = {}

    def endpointForURI(self, uri):
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._factory.endpointForURI(uri)
            if len(self._endpoints) >= ENDPOINT_CACHE:
                self._endpoints.clear()
            self._endpoints[key] = endpoint
        return endpoint


@implementer(IBodyProducer)
class _BytesProducer:
    """A body already in memory, written at once (treq would feed it through a Cooperator)."""

    def __init__(self, data):
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self._data)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class PushHTTPClient(HTTPClient):
    """treq's HTTPClient with a short path for the delivery service's requests.

    A ``request("POST", url, headers=..., data=<bytes>, allow_redirects=False,
    unbuffered=True)`` (what PushDeliveryService sends) goes straight to the
    Agent: the request URI and the Host header are worked out once per
    endpoint (as treq and the Agent would), the body is written at once, and
    no cookie jar or gzip decoding is
    involved (push services use neither: no Cookie or Accept-Encoding header is
    sent). The answer is the Agent's IResponse (``code``, ``headers``,
    ``deliverBody``: what the delivery service reads; ``treq.content`` reads it
    too). Every other call is treq's.
    """

    def __init__(self, agent, pool):
        HTTPClient.__init__(self, agent)
        self.agent = agent
        self.pool = pool
        self._uris = {}

    def request(self, method, url, **kwargs):
        if (
            method == "POST"
            and isinstance(url, str)
            and kwargs.keys() <= _PUSH_KWARGS
            and kwargs.get("allow_redirects") is False
            and kwargs.get("unbuffered") is True
            and isinstance(kwargs.get("data"), bytes)
        ):
            return self._post(url, kwargs.get("headers"), kwargs["data"])
        return HTTPClient.request(self, method, url, **kwargs)

    def _post(self, url, headers, data):
        target = self._uris.get(url)
        if target is None:
            target = _request_target(url)
            if len(self._uris) >= URI_CACHE:
                self._uris.clear()
            self._uris[url] = target
        uri, host = target
        headers = _new_headers(headers)
        if not headers.hasHeader(b"host"):
            headers.setRawHeaders(b"Host", host)  # so the Agent need not copy the headers to add it
        return self.agent.request(b"POST", uri, headers, _BytesProducer(data))


def _new_headers(headers):
    """A Headers of our own from a Headers, None or a dict of name: value or [values] (as treq takes)."""
    if isinstance(headers, Headers):
        return headers.copy()
    new = Headers()
    for name, value in (headers or {}).items():
        if isinstance(value, (bytes, str)):
            new.addRawHeader(name, value)
        else:
            new.setRawHeaders(name, value)
    return new


def _request_target(url):
    """(request URI as treq encodes it, [Host header value as the Agent computes it])."""
    uri = EncodedURL.from_text(url).to_uri().to_text().encode("ascii")
    parsed = URI.fromBytes(uri)
    host = parsed.host
    if isIPv6Address(host.decode("ascii")):
        host = b"[" + host + b"]"
    if (parsed.scheme, parsed.port) not in ((b"http", 80), (b"https", 443)):
        host = b"%b:%d" % (host, parsed.port)
    return uri, [host]


def make_http_client(
    reactor,
    policy,
    pool=None,
    resolver=None,
    trust_root=None,
    connect_timeout=CONNECT_TIMEOUT,
    max_per_host=DEFAULT_MAX_PER_HOST,
):
    """A PushHTTPClient (a treq HTTPClient) whose connections obey ``policy`` at connect time (SPEC 7).

    The client's pool is kept as ``client.pool``; PushDeliveryService closes
    its cached connections when it stops. ``resolver`` and ``trust_root`` are
    for tests (see CheckingEndpointFactory).
    """
    if pool is None:
        pool = make_pool(reactor, max_per_host)
    factory = CheckingEndpointFactory(
        reactor, policy, resolver=resolver, trust_root=trust_root, connect_timeout=connect_timeout
    )
    agent = Agent.usingEndpointFactory(reactor, _EndpointCache(factory), pool=pool)
    return PushHTTPClient(agent, pool)
