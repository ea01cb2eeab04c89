"""The outbound HTTP client for pushes: one persistent pool, an Agent that applies the policy.

Built here so ``tap.py`` and the benchmark construct it the same way, and so
tests can pass ``treq.testing.StubTreq`` to the delivery service instead.
"""

from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool

from imapwebpush.decisions import CONNECT_TIMEOUT
from imapwebpush.webpush.policy import CheckingEndpointFactory

DEFAULT_MAX_PER_HOST = 16
CACHED_CONNECTION_TIMEOUT = 120  # seconds an idle connection to a push service is kept


def make_pool(reactor, max_per_host=DEFAULT_MAX_PER_HOST):
    """A persistent HTTPConnectionPool keeping up to ``max_per_host`` idle connections per host."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max_per_host
    pool.cachedConnectionTimeout = CACHED_CONNECTION_TIMEOUT
    pool.retryAutomatically = False  # a POST is not idempotent; the delivery service retries
    return pool


def make_http_client(
    reactor,
    policy,
    pool=None,
    resolver=None,
    trust_root=None,
    connect_timeout=CONNECT_TIMEOUT,
    max_per_host=DEFAULT_MAX_PER_HOST,
):
    """A treq HTTPClient whose connections obey ``policy`` at connect time (SPEC 7).

    The client's pool is kept as ``client.pool``; PushDeliveryService closes
    its cached connections when it stops. ``resolver`` and ``trust_root`` are
    for tests (see CheckingEndpointFactory).
    """
    if pool is None:
        pool = make_pool(reactor, max_per_host)
    factory = CheckingEndpointFactory(
        reactor, policy, resolver=resolver, trust_root=trust_root, connect_timeout=connect_timeout
    )
    agent = Agent.usingEndpointFactory(reactor, factory, pool=pool)
    client = HTTPClient(agent)
    client.pool = pool
    return client
