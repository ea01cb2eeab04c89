"""What mail from other servers gets on port 25: SPF (RFC 7208) in Authentication-Results, and
no forged Authentication-Results naming this server (RFC 8601 section 5).

A real server (``mx.remote.test``) asks a twisted.names server on loopback
for the senders' SPF records; the client is smtplib on 127.0.0.1, so the
records say what they think of 127.0.0.1. Nothing is refused for SPF.
"""

import ipaddress
import smtplib

from twisted.internet import defer, task, threads
from twisted.names import dns
from twisted.trial import unittest

from imapwebpush.outbound.spfcheck import DEFAULT_SPF_SKIP, SPFChecker, parse_networks

from tests.test_outbound_end_to_end import OutboundWorld

BODY = b"From: someone\r\nSubject: spf\r\n\r\nHello\r\n"


class InboundWorld(OutboundWorld):
    def setUp(self):
        self.make_zone()
        self.add_user(self.remote_data, "bob@remote.test")

    def start_receiver(self):
        # One second for all SPF lookups of a message: the temperror test waits that long.
        return self.start_remote("--dns-timeout", "1")

    def send(self, running, sender, message=BODY, helo="client.example"):
        """Send over port 25 from 127.0.0.1; the stored copy."""

        def run():
            s = smtplib.SMTP("127.0.0.1", running.ports["smtp"], local_hostname=helo, timeout=20)
            try:
                return s.sendmail(sender, ["bob@remote.test"], message)
            finally:
                s.quit()

        def stored(refused):
            self.assertEqual(refused, {})
            return self.inbox(running, "bob@remote.test")[-1]

        return threads.deferToThread(run).addCallback(stored)

    @staticmethod
    def results(stored):
        """The Authentication-Results field this server added (the second header line)."""
        lines = stored.split(b"\r\nReceived: ", 1)[0].split(b"\r\n", 1)[1]
        return lines


class SPFTests(InboundWorld, unittest.TestCase):
    def setUp(self):
        InboundWorld.setUp(self)
        z = self.zone
        z.add("pass.test", "TXT", "v=spf1 mx -all")  # MX, then the MX host's A: 127.0.0.1
        z.add("pass.test", "MX", 10, "mx.pass.test")
        z.add("mx.pass.test", "A", "127.0.0.1")
        z.add("fail.test", "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
        z.add("soft.test", "TXT", "v=spf1 a:out.soft.test ~all")
        z.add("out.soft.test", "A", "192.0.2.7")
        z.add("neutral.test", "TXT", "v=spf1 ?all")
        z.add("none.test", "MX", 10, "mx.none.test")  # a domain, but no SPF record
        z.add("bad.test", "TXT", "v=spf1 ip4:127.0.0.1 bogus:x -all")
        z.add("slow.test", "TXT", "v=spf1 +all")
        z.silent.add("slow.test")  # its DNS server never answers
        # Eleven mechanisms that each need a lookup: RFC 7208 4.6.4 allows ten.
        z.add("many.test", "TXT", "v=spf1 %s ip4:127.0.0.1 -all" % " ".join(
            "a:h%d.many.test" % i for i in range(11)))
        for i in range(11):
            z.add("h%d.many.test" % i, "A", "192.0.2.%d" % (i + 1))
        z.add("helo.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")

    @defer.inlineCallbacks
    def check(self, sender, expected, helo="client.example"):
        running = yield self.start_receiver()
        stored = yield self.send(running, sender, helo=helo)
        self.assertEqual(self.results(stored),
                         b"Authentication-Results: mx.remote.test;\r\n\tdkim=none;\r\n\t" + expected)
        self.assertTrue(stored.endswith(b"\r\n" + BODY))
        return running

    @defer.inlineCallbacks
    def test_pass(self):
        yield self.check("alice@pass.test", b"spf=pass smtp.mailfrom=alice@pass.test")
        # The lookups went to our DNS server (the --dns-server resolver), not the system's.
        self.assertEqual([q for q in self.zone.queries if "pass.test" in q[0]],
                         [("pass.test", "TXT"), ("pass.test", "MX"), ("mx.pass.test", "A")])

    def test_fail_is_recorded_not_refused(self):
        return self.check("alice@fail.test", b"spf=fail smtp.mailfrom=alice@fail.test")

    def test_softfail(self):
        return self.check("alice@soft.test", b"spf=softfail smtp.mailfrom=alice@soft.test")

    def test_neutral(self):
        return self.check("alice@neutral.test", b"spf=neutral smtp.mailfrom=alice@neutral.test")

    def test_none(self):
        return self.check("alice@none.test", b"spf=none smtp.mailfrom=alice@none.test")

    def test_unknown_domain_is_none(self):
        return self.check("alice@nowhere.test", b"spf=none smtp.mailfrom=alice@nowhere.test")

    def test_permerror_for_a_bad_record(self):
        return self.check("alice@bad.test", b"spf=permerror smtp.mailfrom=alice@bad.test")

    def test_permerror_past_ten_lookups(self):
        return self.check("alice@many.test", b"spf=permerror smtp.mailfrom=alice@many.test")

    @defer.inlineCallbacks
    def test_temperror_when_dns_does_not_answer(self):
        yield self.check("alice@slow.test", b"spf=temperror smtp.mailfrom=alice@slow.test")
        self.assertIn(("slow.test", "TXT"), self.zone.queries)

    def test_null_sender_checks_the_helo_name(self):
        return self.check("", b"spf=pass smtp.mailfrom=postmaster@helo.test", helo="helo.test")


class SubmissionTests(InboundWorld, unittest.TestCase):
    """Mail of our own logged-in users is not checked, and brings no claim of ours either."""

    def setUp(self):
        InboundWorld.setUp(self)
        self.add_user(self.remote_data, "carol@remote.test", "pw")

    @defer.inlineCallbacks
    def test_submission_copy_has_no_results_and_no_forged_ones(self):
        running = yield self.start_remote("--submission", "tcp:0:interface=127.0.0.1",
                                          "--allow-plaintext-auth")
        message = (b"Authentication-Results: mx.remote.test; dkim=pass header.d=bank.test\r\n"
                   + BODY)

        def run():
            s = smtplib.SMTP("127.0.0.1", running.ports["submission"], timeout=20)
            try:
                s.login("carol@remote.test", "pw")
                return s.sendmail("carol@remote.test", ["bob@remote.test"], message)
            finally:
                s.quit()

        refused = yield threads.deferToThread(run)
        self.assertEqual(refused, {})
        [stored] = self.inbox(running, "bob@remote.test")
        self.assertRegex(stored, rb"\AReturn-Path: <carol@remote\.test>\r\nReceived: from ")
        self.assertTrue(stored.endswith(b"\r\n" + BODY))
        self.assertNotIn(b"Authentication-Results", stored)


FORGED = (
    b"Authentication-Results: mx.remote.test; dkim=pass header.d=bank.test\r\n"
    b"X-Before: kept\r\n"
    b"authentication-results:(said by us)\r\n"
    b'\t"MX.Remote.Test."; spf=pass\r\n'
    b"   smtp.mailfrom=ceo@bank.test\r\n"
    b"Authentication-Results: relay.other.test; spf=fail smtp.mailfrom=ceo@bank.test\r\n"
    b"ARC-Authentication-Results: i=1; mx.remote.test; spf=pass\r\n"
    b"Authentication-Results: mx.remote.test.evil.test; dkim=pass\r\n"
)
KEPT = (
    b"X-Before: kept\r\n"
    b"Authentication-Results: relay.other.test; spf=fail smtp.mailfrom=ceo@bank.test\r\n"
    b"ARC-Authentication-Results: i=1; mx.remote.test; spf=pass\r\n"
    b"Authentication-Results: mx.remote.test.evil.test; dkim=pass\r\n"
)
AFTER = (
    b"From: someone\r\n"
    b"Authentication-Results: mx.remote.test; dkim=pass\r\n"
    b"Subject: forged\r\n"
    b"\r\n"
    b"Authentication-Results: mx.remote.test; a body line, not a header\r\n"
    b".a dotted line\r\n"
)
# What the user gets after our trace fields: every field claiming mx.remote.test left out.
STORED = KEPT + (
    b"From: someone\r\n"
    b"Subject: forged\r\n"
    b"\r\n"
    b"Authentication-Results: mx.remote.test; a body line, not a header\r\n"
    b".a dotted line\r\n"
)


class ForgedResultsTests(InboundWorld, unittest.TestCase):
    @defer.inlineCallbacks
    def test_fields_claiming_our_name_are_removed_others_kept(self):
        running = yield self.start_receiver()
        stored = yield self.send(running, "", FORGED + AFTER)
        head, rest = stored.split(b"\r\nReceived: from client.example (127.0.0.1)\r\n", 1)
        self.assertEqual(head, b"Return-Path: <>\r\n"
                               b"Authentication-Results: mx.remote.test;\r\n\tdkim=none;\r\n"
                               b"\tspf=none smtp.mailfrom=postmaster@client.example")
        trace_end = rest.index(b"\r\n", rest.index(b"\tfor <bob@remote.test>; ")) + 2
        self.assertEqual(rest[trace_end:], STORED)

    @defer.inlineCallbacks
    def test_removed_without_the_checks_too(self):
        running = yield self.start_remote("--no-authentication-results")
        stored = yield self.send(running, "x@none.test", FORGED + AFTER)
        self.assertRegex(stored, rb"\AReturn-Path: <x@none\.test>\r\nReceived: from client\.example ")
        self.assertTrue(stored.endswith(b"\r\n" + STORED), stored)


class SlowResolver:
    """Answers TXT for pass.test after a second, and never anything else; records the timeouts asked."""

    def __init__(self, clock):
        self.clock = clock
        self.asked = []

    def lookupText(self, name, timeout=None):
        self.asked.append((name, "TXT", timeout))
        d = defer.Deferred()
        if name == b"pass.test":
            record = dns.RRHeader(name=name, type=dns.TXT, payload=dns.Record_TXT(b"v=spf1 a:slow.test -all"))
            self.clock.callLater(1, d.callback, ([record], [], []))
        return d

    def lookupAddress(self, name, timeout=None):
        self.asked.append((name, "A", timeout))
        return defer.Deferred()


class DeadlineTests(unittest.TestCase):
    """All lookups of one message share one --dns-timeout, and the resolver is told how long it has."""

    def test_lookups_share_the_timeout(self):
        clock = task.Clock()
        resolver = SlowResolver(clock)
        results = []
        SPFChecker(resolver, clock, timeout=5).check("192.0.2.1", "a@pass.test", "h.test").addCallback(
            results.append)
        clock.advance(1)  # the record arrives; now the A lookup, with 4 seconds left
        self.assertEqual(resolver.asked, [(b"pass.test", "TXT", (1, 3, 1)), (b"slow.test", "A", (1, 3))])
        clock.advance(4.9)
        self.assertEqual(results, [])  # the resolver gives up by itself at 4; this is its backstop
        clock.advance(0.2)
        self.assertEqual(results, ["temperror"])
        self.assertEqual(clock.getDelayedCalls(), [])


class SkippedClientTests(unittest.TestCase):
    """Loopback clients (this machine's own software) are not SPF-checked by default."""

    def check(self, client_ip, skip=parse_networks(",".join(DEFAULT_SPF_SKIP))):
        clock = task.Clock()
        resolver = SlowResolver(clock)
        results = []
        SPFChecker(resolver, clock, timeout=5, skip=skip).check(
            client_ip, "a@pass.test", "h.test").addCallback(results.append)
        return results, resolver.asked

    def test_loopback_is_not_checked(self):
        for ip in ("127.0.0.1", b"127.9.9.9", "::1", "::ffff:127.0.0.1"):
            self.assertEqual(self.check(ip), ([None], []), ip)

    def test_other_clients_are(self):
        results, asked = self.check("192.0.2.1")
        self.assertEqual((results, asked[0][:2]), ([], (b"pass.test", "TXT")))

    def test_empty_list_checks_loopback_too(self):
        results, asked = self.check("127.0.0.1", skip=parse_networks(""))
        self.assertEqual(asked[0][:2], (b"pass.test", "TXT"))

    def test_networks_are_checked_as_networks(self):
        self.assertEqual(parse_networks(" 10.0.0.0/8, 2001:db8::/32 ,"),
                         (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")))
        with self.assertRaises(ValueError) as e:
            parse_networks("10.0.0.0/8,not-a-net")
        self.assertEqual(str(e.exception), "'not-a-net' is not an IP network (like 192.0.2.0/24 or ::1)")

    def test_option_refuses_a_bad_network(self):
        from twisted.python import usage

        from imapwebpush.tap import Options

        options = Options()
        with self.assertRaises(usage.UsageError) as e:
            options.parseOptions(["--data", self.mktemp(), "--spf-skip-networks", "300.1.1.1"])
        self.assertIn("--spf-skip-networks: '300.1.1.1' is not an IP network", str(e.exception))
