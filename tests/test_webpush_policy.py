"""The endpoint policy (SPEC 7): URL rules, address ranges, and the connect-time check."""

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from imapwebpush.decisions import MAX_ENDPOINT_OCTETS
from imapwebpush.interfaces import IEndpointPolicy
from imapwebpush.webpush.http import make_http_client
from imapwebpush.webpush.policy import EndpointPolicy, EndpointRefused, address_problem


class AddressTests(unittest.TestCase):
    BLOCKED = {
        "127.0.0.1": "loopback",
        "127.255.0.9": "loopback",
        "10.1.2.3": "private",
        "172.16.0.1": "private",
        "192.168.1.1": "private",
        "169.254.169.254": "link-local",
        "100.64.0.1": "carrier-grade NAT",
        "100.127.255.254": "carrier-grade NAT",
        "224.0.0.1": "multicast",
        "239.1.2.3": "multicast",
        "0.0.0.0": "unspecified",
        "240.0.0.1": "reserved",
        "255.255.255.255": "",
        "192.0.2.1": "",  # documentation (TEST-NET-1)
        "198.18.0.1": "",  # benchmarking
        "::1": "loopback",
        "::": "unspecified",
        "fe80::1": "link-local",
        "fe80::1%eth0": "link-local",
        "fc00::1": "private",
        "fd12:3456::1": "private",
        "ff02::1": "multicast",
        "2001:db8::1": "",  # documentation
        "::ffff:10.0.0.1": "embeds 10.0.0.1",
        "::ffff:127.0.0.1": "embeds 127.0.0.1",
        "::ffff:169.254.169.254": "embeds 169.254.169.254",
        "::ffff:100.64.0.1": "embeds 100.64.0.1",
        "64:ff9b::7f00:1": "embeds 127.0.0.1",
        "64:ff9b::a00:1": "embeds 10.0.0.1",
        "2002:c0a8:101::1": "embeds 192.168.1.1",
        "::127.0.0.1": "embeds 127.0.0.1",
    }
    PUBLIC = ["8.8.8.8", "93.184.216.34", "2001:4860:4860::8888", "2a00:1450:4001::1", "::ffff:8.8.8.8"]

    def test_blocked_ranges(self):
        for address, word in self.BLOCKED.items():
            problem = address_problem(address)
            self.assertIsNotNone(problem, address)
            self.assertIn(word, problem, address)

    def test_public_addresses(self):
        for address in self.PUBLIC:
            self.assertIsNone(address_problem(address), address)

    def test_not_an_address(self):
        self.assertIn("not an IP address", address_problem("push.example.net"))

    def test_check_address(self):
        policy = EndpointPolicy()
        with self.assertRaises(EndpointRefused) as e:
            policy.check_address("10.0.0.1")
        self.assertEqual(str(e.exception), "endpoint address refused: 10.0.0.1 is a private address")
        policy.check_address("8.8.8.8")
        with capturedLogs():
            EndpointPolicy(insecure=True).check_address("10.0.0.1")


class URLTests(unittest.TestCase):
    def setUp(self):
        self.policy = EndpointPolicy()

    def refused(self, url, policy=None):
        with self.assertRaises(EndpointRefused) as e:
            (policy or self.policy).check_url(url)
        return e.exception.reason

    def test_interface(self):
        verifyObject(IEndpointPolicy, self.policy)

    def test_good(self):
        self.assertIsNone(self.policy.check_url("https://push.example.net/p/JzLQ3raZ"))
        self.assertIsNone(self.policy.check_url("https://ntfy.example.org/upAbC123?up=1"))
        self.assertIsNone(self.policy.check_url("https://8.8.8.8:8443/x"))

    def test_scheme(self):
        self.assertEqual(self.refused("http://push.example.net/x"), "the endpoint must be an https URL")
        self.assertEqual(self.refused("ftp://push.example.net/x"), "the endpoint must be an https URL")
        self.assertEqual(self.refused("push.example.net/x"), "the endpoint must be an https URL")

    def test_userinfo_and_fragment(self):
        self.assertEqual(self.refused("https://u:p@push.example.net/x"), "the endpoint must not contain userinfo")
        self.assertEqual(self.refused("https://push.example.net/x#frag"), "the endpoint must not contain a fragment")

    def test_length(self):
        base = "https://push.example.net/"
        self.policy.check_url(base + "a" * (MAX_ENDPOINT_OCTETS - len(base)))
        self.assertEqual(
            self.refused(base + "a" * (MAX_ENDPOINT_OCTETS - len(base) + 1)),
            "the endpoint is 1025 octets, more than 1024",
        )

    def test_malformed(self):
        self.assertEqual(self.refused("https:///x"), "the endpoint has no host")
        self.assertIn("not a valid URL", self.refused("https://push.example.net:99999/x"))
        self.assertIn("spaces or control", self.refused("https://push.example.net/a b"))
        self.assertIn("ASCII", self.refused("https://püsh.example.net/"))
        self.assertEqual(self.refused(b"https://x/"), "the endpoint must be text")

    def test_literal_private_addresses_refused_early(self):
        self.assertIn("loopback", self.refused("https://127.0.0.1/x"))
        self.assertIn("private", self.refused("https://[fd00::1]/x"))
        self.assertIn("embeds 10.0.0.1", self.refused("https://[::ffff:10.0.0.1]/x"))

    def test_numeric_hosts_refused_early(self):
        # Resolvers read all of these as 127.0.0.1; they are refused before any lookup.
        for host in ["2130706433", "0x7f.1", "0X7F.0.0.1", "127.1", "0177.0.0.1", "017700000001",
                     "0x7f000001", "1.2.3.4.5", "example.123"]:
            for policy in (self.policy, EndpointPolicy(insecure=True)):
                self.assertEqual(
                    self.refused("https://%s/x" % (host,), policy),
                    "the endpoint host %s is a number but not a dotted-quad IPv4 address" % (host.lower(),),
                )
        self.policy.check_url("https://8.8.8.8/x")
        self.policy.check_url("https://123.example.net/x")
        self.policy.check_url("https://push.0x7f.example/x")

    def test_allowlist(self):
        policy = EndpointPolicy(allowlist=["push.example.net", "*.push.apple.com"])
        policy.check_url("https://push.example.net/x")
        policy.check_url("https://api.push.apple.com/x")
        self.assertEqual(self.refused("https://evil.example/x", policy), "push service host evil.example is not on the allowlist")
        self.refused("https://push.apple.com.evil.example/x", policy)

    def test_insecure_allows_http_and_loopback_loudly(self):
        with capturedLogs() as events:
            policy = EndpointPolicy(insecure=True)
        self.assertTrue(any("INSECURE PUSH ENDPOINTS" in e["log_format"] for e in events))
        policy.check_url("http://127.0.0.1:8080/push/x")
        policy.check_url("https://10.0.0.1/x")
        self.assertEqual(self.refused("ftp://127.0.0.1/", policy), "the endpoint must be an https URL")
        self.assertIn("userinfo", self.refused("http://a@127.0.0.1/", policy))


class ConnectTimeTests(unittest.TestCase):
    """The address checked is the one resolved at connect time, and the one connected to."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.answers = {}
        self.lookups = []

    def resolver(self, host, port):
        self.lookups.append(host)
        return defer.succeed(self.answers[host].pop(0))

    def client(self, policy=None):
        return make_http_client(self.reactor, policy or EndpointPolicy(), resolver=self.resolver)

    def post(self, client, url):
        return client.request("POST", url, data=b"x", allow_redirects=False, unbuffered=True)

    def test_private_answer_refused_before_connecting(self):
        self.answers["push.example.net"] = [["10.0.0.7"]]
        d = self.post(self.client(), "https://push.example.net/p/1")
        f = self.failureResultOf(d, EndpointRefused)
        self.assertIn("10.0.0.7 is a private address", f.value.reason)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.lookups, ["push.example.net"])

    def test_dns_rebinding(self):
        """A name that was public a moment ago and now points inside is refused."""
        self.answers["push.example.net"] = [["93.184.216.34"], ["127.0.0.1"]]
        client = self.client()
        self.post(client, "https://push.example.net/p/1")
        self.assertEqual([c[:2] for c in self.reactor.tcpClients], [("93.184.216.34", 443)])
        d = self.post(client, "https://push.example.net/p/2")
        f = self.failureResultOf(d, EndpointRefused)
        self.assertIn("127.0.0.1 is a loopback address", f.value.reason)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_mixed_answers_connect_only_to_public(self):
        self.answers["push.example.net"] = [["169.254.169.254", "::ffff:10.0.0.1", "2001:4860:4860::8888"]]
        self.post(self.client(), "https://push.example.net:8443/p/1")
        self.assertEqual([c[:2] for c in self.reactor.tcpClients], [("2001:4860:4860::8888", 8443)])

    def test_cgnat_and_mapped(self):
        for address, word in [("100.64.1.1", "carrier-grade NAT"), ("::ffff:127.0.0.1", "embeds 127.0.0.1")]:
            self.answers["push.example.net"] = [[address]]
            f = self.failureResultOf(self.post(self.client(), "https://push.example.net/"), EndpointRefused)
            self.assertIn(word, f.value.reason)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_no_address(self):
        self.answers["push.example.net"] = [[]]
        f = self.failureResultOf(self.post(self.client(), "https://push.example.net/"), EndpointRefused)
        self.assertEqual(f.value.reason, "push.example.net did not resolve to any address")

    def test_http_refused_at_connect_time_too(self):
        f = self.failureResultOf(self.post(self.client(), "http://push.example.net/"), EndpointRefused)
        self.assertEqual(f.value.reason, "the endpoint must be an https URL")
        self.assertEqual(self.lookups, [])

    def test_allowlist_at_connect_time(self):
        policy = EndpointPolicy(allowlist=["push.example.net"])
        f = self.failureResultOf(self.post(self.client(policy), "https://evil.example/"), EndpointRefused)
        self.assertIn("not on the allowlist", f.value.reason)

    def test_insecure_connects_to_loopback(self):
        with capturedLogs():
            policy = EndpointPolicy(insecure=True)
        self.answers["localhost"] = [["127.0.0.1"]]
        self.post(self.client(policy), "http://localhost:8080/p")
        self.assertEqual([c[:2] for c in self.reactor.tcpClients], [("127.0.0.1", 8080)])


class RobustnessTests(unittest.TestCase):
    def test_check_url_only_refuses(self):
        from hypothesis import given, settings, strategies as st

        policy = EndpointPolicy()

        @settings(max_examples=300, deadline=None)
        @given(st.one_of(st.text(max_size=80), st.text(max_size=60).map(lambda t: "https://" + t)))
        def check(url):
            try:
                policy.check_url(url)
            except EndpointRefused as e:
                self.assertTrue(e.reason)

        check()

    def test_address_problem_never_raises(self):
        from hypothesis import given, settings, strategies as st

        @settings(max_examples=300, deadline=None)
        @given(st.one_of(st.ip_addresses().map(str), st.text(max_size=40)))
        def check(text):
            problem = address_problem(text)
            self.assertTrue(problem is None or isinstance(problem, str))

        check()
