"""Where outbound mail goes (MXRouter) and how long its lookups may take, on a test zone and a Clock."""

from twisted.internet import task
from twisted.trial import unittest

from imapwebpush.outbound.resolver import MXRouter, RouteError, lookup_timeouts
from imapwebpush.testing.dns import Zone


class RecordingZone(Zone):
    """The test zone, used directly as the resolver, noting the ``timeout`` of each lookup."""

    def __init__(self):
        Zone.__init__(self)
        self.timeouts = []

    def _lookup(self, name, cls, rtype, timeout):
        self.timeouts.append(timeout)
        return Zone._lookup(self, name, cls, rtype, timeout)


class MXRouterTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.zone = RecordingZone()
        self.router = MXRouter(self.zone, self.clock, port=2525, timeout=30)

    def route(self, domain):
        return self.successResultOf(self.router.route(domain))

    def refused(self, domain):
        failure = self.failureResultOf(self.router.route(domain), RouteError)
        return str(failure.value), failure.value.permanent, failure.value.status

    def test_mx_hosts_best_first_with_their_addresses(self):
        self.zone.add("example.test", "MX", 20, "backup.example.test")
        self.zone.add("example.test", "MX", 10, "mx.example.test")
        self.zone.add("mx.example.test", "A", "192.0.2.1")
        self.zone.add("backup.example.test", "AAAA", "2001:db8::2")
        self.assertEqual([(d.host, d.addresses, d.port) for d in self.route("Example.TEST.")],
                         [("mx.example.test", ["192.0.2.1"], 2525), ("backup.example.test", ["2001:db8::2"], 2525)])
        # Every lookup was told the route's time (twisted.names' steps up to 30 s), not the default 60.
        self.assertEqual(set(self.zone.timeouts), {(1, 3, 11, 15)})

    def test_implicit_mx(self):
        self.zone.add("plain.test", "A", "192.0.2.9")
        self.assertEqual([(d.host, d.addresses) for d in self.route("plain.test")], [("plain.test", ["192.0.2.9"])])

    def test_null_mx_and_unknown_domain_are_permanent(self):
        self.zone.add("nomail.test", "MX", 0, "")
        self.assertEqual(self.refused("nomail.test"),
                         ("domain nomail.test accepts no mail (null MX)", True, "5.1.10"))
        self.assertEqual(self.refused("nowhere.test"), ("domain nowhere.test does not exist", True, "5.1.2"))

    def test_silent_dns_is_temporary_at_the_deadline_with_no_timer_left(self):
        self.zone.add("slow.test", "MX", 10, "mx.slow.test")
        self.zone.silent.add("slow.test")
        d = self.router.route("slow.test")
        self.clock.advance(30.5)
        self.assertNoResult(d)  # the resolver's own timeouts end the lookup; this is the backstop
        self.clock.advance(1)
        failure = self.failureResultOf(d, RouteError)
        self.assertEqual((str(failure.value), failure.value.permanent, failure.value.status),
                         ("DNS lookup for slow.test timed out", False, "4.4.3"))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LookupTimeoutsTests(unittest.TestCase):
    def test_steps_cut_at_the_time_left(self):
        self.assertEqual(lookup_timeouts(30), (1, 3, 11, 15))
        self.assertEqual(lookup_timeouts(2.5), (1, 1.5))
        self.assertEqual(lookup_timeouts(100), (1, 3, 11, 45))
        self.assertEqual(lookup_timeouts(0), ())
