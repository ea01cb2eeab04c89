"""The short paths of the push hot path agree with the general code they replace.

crypto.encrypt is checked byte for byte against http_ece; PushHTTPClient's
POST is checked on the wire against what treq sends; the endpoint cache is
checked to ask the policy's factory once per push service.
"""

import os

import http_ece
import treq
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest
from twisted.web.client import URI

from imapwebpush.webpush import crypto
from imapwebpush.webpush.http import PushHTTPClient, _EndpointCache, _request_target, make_http_client
from imapwebpush.webpush.limits import MAX_PLAINTEXT, RECORD_SIZE
from imapwebpush.webpush.policy import EndpointPolicy
from tests.harness.connections import ConnectionTracker


class EncryptTests(unittest.TestCase):
    def setUp(self):
        self.ua = ec.generate_private_key(ec.SECP256R1())
        self.p256dh = crypto.public_bytes(self.ua)
        self.auth = os.urandom(16)

    def test_same_bytes_as_http_ece(self):
        from hypothesis import given, settings, strategies as st

        @settings(max_examples=40, deadline=None)
        @given(st.binary(min_size=1, max_size=MAX_PLAINTEXT), st.binary(min_size=16, max_size=16))
        def check(plaintext, salt):
            key = ec.generate_private_key(ec.SECP256R1())
            ours = crypto.encrypt(plaintext, self.p256dh, self.auth, salt=salt, private_key=key)
            theirs = http_ece.encrypt(
                plaintext, salt=salt, private_key=key, dh=self.p256dh, auth_secret=self.auth,
                rs=RECORD_SIZE, version="aes128gcm",
            )
            self.assertEqual(ours, theirs)

        check()

    def test_public_key_loaded_once(self):
        self.assertIs(crypto.check_p256dh(self.p256dh), crypto.check_p256dh(bytes(self.p256dh)))

    def test_bad_key_still_refused_after_good_ones(self):
        crypto.check_p256dh(self.p256dh)
        off_curve = b"\x04" + b"\x01" * 64
        for _ in range(2):
            with self.assertRaises(ValueError) as e:
                crypto.check_p256dh(off_curve)
            self.assertEqual(str(e.exception), "p256dh is not a point on the P-256 curve")

    def test_salt_must_be_16_octets(self):
        with self.assertRaises(ValueError) as e:
            crypto.encrypt(b"x", self.p256dh, self.auth, salt=b"short")
        self.assertEqual(str(e.exception), "the salt must be 16 octets")


class _Recorder(protocol.Protocol):
    """Reads one request (headers and a Content-Length body), answers 201, keeps the bytes."""

    def connectionMade(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data
        head, sep, body = self.data.partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(body) >= length:
            self.factory.requests.append(self.data)
            self.data = b""
            self.transport.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")


class WireTests(unittest.TestCase):
    """What PushHTTPClient puts on the wire, over loopback."""

    HEADERS = {
        b"TTL": [b"60"],
        b"Urgency": [b"high"],
        b"Content-Encoding": [b"aes128gcm"],
        b"Content-Type": [b"application/octet-stream"],
        b"Authorization": [b"vapid t=a.b.c, k=key"],
    }

    def setUp(self):
        factory = protocol.Factory.forProtocol(_Recorder)
        factory.requests = []
        self.factory = factory
        self.connections = ConnectionTracker(reactor)
        self.portno = self.connections.listen(factory)
        self.origin = "http://127.0.0.1:%d" % (self.portno,)
        self.client = make_http_client(reactor, EndpointPolicy(insecure=True))
        self.addCleanup(self.stop)

    @defer.inlineCallbacks
    def stop(self):
        yield self.client.pool.closeCachedConnections()
        yield self.connections.close(abort=False)

    @defer.inlineCallbacks
    def test_push_post(self):
        self.assertIsInstance(self.client, PushHTTPClient)
        url = self.origin + "/push/abc?x=%41"
        response = yield self.client.request(
            "POST", url, headers=self.HEADERS, data=b"hello", allow_redirects=False, unbuffered=True
        )
        self.assertEqual(response.code, 201)
        body = yield treq.content(response)
        self.assertEqual(body, b"ok")
        [sent] = self.factory.requests
        head, _, body = sent.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"POST /push/abc?x=%41 HTTP/1.1")
        self.assertEqual(
            sorted(lines[1:]),
            sorted([
                b"Content-Length: 5",
                b"Ttl: 60",
                b"Urgency: high",
                b"Content-Encoding: aes128gcm",
                b"Content-Type: application/octet-stream",
                b"Authorization: vapid t=a.b.c, k=key",
                b"Host: 127.0.0.1:%d" % (self.portno,),
            ]),
        )
        self.assertEqual(body, b"hello")

    @defer.inlineCallbacks
    def test_connection_reused(self):
        for n in range(3):
            response = yield self.client.request(
                "POST", self.origin + "/push/%d" % n, headers=self.HEADERS, data=b"x",
                allow_redirects=False, unbuffered=True,
            )
            yield treq.content(response)
        self.assertEqual(len(self.factory.requests), 3)
        self.assertEqual(len(self.connections.connections), 1)

    @defer.inlineCallbacks
    def test_other_requests_are_treqs(self):
        response = yield self.client.request("POST", self.origin + "/other", data=b"abc")
        self.assertEqual(response.code, 201)
        yield treq.content(response)
        [sent] = self.factory.requests
        self.assertIn(b"\r\nAccept-Encoding: gzip\r\n", sent)


class _CountingFactory:
    def __init__(self):
        self.asked = []

    def endpointForURI(self, uri):
        self.asked.append((uri.scheme, uri.host, uri.port))
        return object()


class EndpointCacheTests(unittest.TestCase):
    def test_one_endpoint_per_push_service(self):
        inner = _CountingFactory()
        cache = _EndpointCache(inner)
        a = cache.endpointForURI(URI.fromBytes(b"https://push.example/p/1"))
        b = cache.endpointForURI(URI.fromBytes(b"https://push.example/p/2"))
        c = cache.endpointForURI(URI.fromBytes(b"https://push.example:8443/p/1"))
        d = cache.endpointForURI(URI.fromBytes(b"http://push.example/p/1"))
        self.assertIs(a, b)
        self.assertEqual(len({id(a), id(c), id(d)}), 3)
        self.assertEqual(
            inner.asked,
            [(b"https", b"push.example", 443), (b"https", b"push.example", 8443), (b"http", b"push.example", 80)],
        )

    def test_request_target(self):
        self.assertEqual(_request_target("https://push.example/p/1"), (b"https://push.example/p/1", [b"push.example"]))
        # treq (hyperlink) drops a default port from the URI
        self.assertEqual(_request_target("http://push.example:80/p"), (b"http://push.example/p", [b"push.example"]))
        self.assertEqual(
            _request_target("https://push.example:8443/p"), (b"https://push.example:8443/p", [b"push.example:8443"])
        )
