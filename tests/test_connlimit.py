"""Connection caps: what a client beyond the total or per-address cap reads, and who counts as whom."""

from twisted.internet import protocol
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from imapwebpush.connlimit import ConnectionCounter, LimitedFactory, peer_key
from imapwebpush.imap.factory import IMAPFactory
from tests.harness.smtp import SMTPWorldMixin


class PeerKeyTests(unittest.TestCase):
    def test_ipv4(self):
        self.assertEqual(peer_key(IPv4Address("TCP", "192.0.2.7", 1234)), "192.0.2.7")

    def test_ipv6_counts_by_its_64(self):
        a = peer_key(IPv6Address("TCP", "2001:db8:1:2:aaaa::1", 1))
        b = peer_key(IPv6Address("TCP", "2001:db8:1:2:bbbb::2", 2))
        c = peer_key(IPv6Address("TCP", "2001:db8:1:3::1", 3))
        self.assertEqual(a, "2001:db8:1:2::/64")
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_ipv4_mapped_and_scoped(self):
        self.assertEqual(peer_key(IPv6Address("TCP", "::ffff:192.0.2.7", 1)), "192.0.2.7")
        self.assertEqual(peer_key(IPv6Address("TCP", "fe80::1%eth0", 1)), "fe80::/64")

    def test_no_ip(self):
        self.assertIsNone(peer_key(UNIXAddress(b"/run/imap.sock")))


class CounterTests(unittest.TestCase):
    def test_caps(self):
        counter = ConnectionCounter(max_total=3, max_per_peer=2)
        self.assertIsNone(counter.admit("a"))
        self.assertIsNone(counter.admit("a"))
        self.assertEqual(counter.admit("a"), "Too many connections from your address, try again later")
        self.assertIsNone(counter.admit("b"))
        self.assertEqual(counter.admit("c"), "Too many connections, try again later")
        counter.release("a")
        self.assertIsNone(counter.admit("c"))
        self.assertEqual((counter.total, counter.count("a"), counter.count("c")), (3, 1, 1))

    def test_zero_means_no_cap(self):
        counter = ConnectionCounter(max_total=0, max_per_peer=0)
        for _ in range(1000):
            self.assertIsNone(counter.admit("a"))

    def test_forgets_addresses_with_no_connection(self):
        counter = ConnectionCounter()
        counter.admit("a")
        counter.release("a")
        self.assertEqual(counter.peers(), 0)


def connect(factory, host="192.0.2.1"):
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    p = factory.buildProtocol(transport.getPeer())
    p.makeConnection(transport)
    return p, transport


class SMTPLimitTests(SMTPWorldMixin, unittest.TestCase):
    def setUp(self):
        self.make_world()
        self.counter = ConnectionCounter(max_total=3, max_per_peer=2)
        self.factory = LimitedFactory(self.receiving_factory(), self.counter, "smtp", clock=self.clock)

    def test_per_address_cap(self):
        first, _ = connect(self.factory)
        second, t2 = connect(self.factory)
        self.assertTrue(t2.value().startswith(b"220 mx.example.org "))
        third, t3 = connect(self.factory)
        self.assertEqual(t3.value(), b"421 4.7.0 mx.example.org Too many connections from your address, try again later\r\n")
        self.assertTrue(t3.disconnecting)
        other, t4 = connect(self.factory, "192.0.2.2")
        self.assertTrue(t4.value().startswith(b"220 "))
        first.connectionLost(None)
        again, t5 = connect(self.factory)
        self.assertTrue(t5.value().startswith(b"220 "))
        self.assertEqual(self.factory.refused, 1)
        for p in (second, other, again):
            p.connectionLost(None)
        self.assertEqual(self.counter.total, 0)

    def test_total_cap(self):
        for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            connect(self.factory, host)
        _, t = connect(self.factory, "192.0.2.4")
        self.assertEqual(t.value(), b"421 4.7.0 mx.example.org Too many connections, try again later\r\n")

    def test_one_log_line_per_address_and_minute(self):
        logged = []
        self.patch(LimitedFactory, "log", type("L", (), {"warn": lambda self, *a, **kw: logged.append(kw)})())
        connect(self.factory)
        connect(self.factory)
        for _ in range(50):
            connect(self.factory)
        self.assertEqual(len(logged), 1)
        self.assertEqual(logged[0]["peer"], "192.0.2.1")
        self.clock.advance(61)
        connect(self.factory)
        self.assertEqual(len(logged), 2)
        self.assertEqual(self.factory.refused, 51)


class IMAPLimitTests(unittest.TestCase):
    def test_refusal_is_bye(self):
        clock = Clock()
        factory = LimitedFactory(IMAPFactory(None, clock=clock), ConnectionCounter(max_per_peer=1), "imap", clock)
        first, t1 = connect(factory)
        self.assertTrue(t1.value().startswith(b"* OK "))
        _, t2 = connect(factory)
        self.assertEqual(t2.value(), b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n")
        self.assertTrue(t2.disconnecting)
        first.connectionLost(None)


class WrappedFactoryTests(unittest.TestCase):
    def test_starts_and_stops_the_wrapped_factory(self):
        wrapped = protocol.ServerFactory()
        wrapped.protocol = protocol.Protocol
        factory = LimitedFactory(wrapped, ConnectionCounter(), clock=Clock())
        factory.doStart()
        self.assertEqual(wrapped.numPorts, 1)
        factory.doStop()
        self.assertEqual(wrapped.numPorts, 0)

    def test_no_refusal_line(self):
        wrapped = protocol.ServerFactory()
        wrapped.protocol = protocol.Protocol
        factory = LimitedFactory(wrapped, ConnectionCounter(max_per_peer=1), clock=Clock())
        connect(factory)
        _, t = connect(factory)
        self.assertEqual(t.value(), b"")
        self.assertTrue(t.disconnecting)

    def test_other_attributes_are_the_wrapped_factorys(self):
        wrapped = protocol.ServerFactory()
        wrapped.portal = object()
        factory = LimitedFactory(wrapped, ConnectionCounter(), clock=Clock())
        self.assertIs(factory.portal, wrapped.portal)
        self.assertRaises(AttributeError, getattr, factory, "nothing_of_that_name")
