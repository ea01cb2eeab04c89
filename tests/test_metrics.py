"""--metrics: the Prometheus endpoint, scraped after real SMTP, IMAP and push traffic."""

import imaplib
import re
import smtplib
import urllib.request

from twisted.internet import defer, threads
from twisted.trial import unittest

from imapwebpush.metrics import ServerMetrics, status_class
from imapwebpush.testing import Answer
from tests.test_push_end_to_end import ALICE, MESSAGE, ServerHarness


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode("utf-8")


def value(text, name, labels=""):
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return None if m is None else float(m.group(1))


class EndpointTests(ServerHarness):
    options = ("--metrics", "tcp:0:interface=127.0.0.1",
               "--submission", "tcp:0:interface=127.0.0.1")

    @defer.inlineCallbacks
    def test_scrape_after_traffic(self):
        def traffic():
            with smtplib.SMTP("127.0.0.1", self.server.ports["smtp"], timeout=10) as smtp:
                smtp.sendmail("fred@blurdybloop.example", [ALICE], MESSAGE)
            bad = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"])
            try:
                self.assertRaises(imaplib.IMAP4.error, bad.login, ALICE, "wrong")
            finally:
                bad.logout()
            for password in ("wrong", "wronger"):  # one AUTH PLAIN each (login() tries them all)
                with smtplib.SMTP("127.0.0.1", self.server.ports["submission"], timeout=10) as sub:
                    sub.ehlo()
                    sub.user, sub.password = ALICE, password
                    self.assertRaises(smtplib.SMTPAuthenticationError,
                                      sub.auth, "PLAIN", sub.auth_plain)
            with self.imap() as client:
                client.select("INBOX")
                client.uid("FETCH", "1", "(FLAGS)")
                client.noop()

        yield self.client(traffic)
        yield self.pushes(1)
        yield self.outcomes.idle()
        ctype, text = yield threads.deferToThread(scrape, self.server.ports["metrics"])
        self.assertTrue(ctype.startswith("text/plain"))
        self.assertEqual(value(text, "imapwebpush_smtp_deliveries_total"), 1)
        self.assertEqual(value(text, "imapwebpush_imap_sessions_total"), 2)
        self.assertEqual(value(text, "imapwebpush_imap_sessions_open"), 0)
        self.assertEqual(value(text, "imapwebpush_imap_commands_total", '{command="LOGIN"}'), 2)
        self.assertEqual(value(text, "imapwebpush_imap_commands_total", '{command="SELECT"}'), 1)
        self.assertEqual(value(text, "imapwebpush_imap_commands_total", '{command="UID"}'), 1)
        self.assertEqual(value(text, "imapwebpush_login_failures_total", '{protocol="imap"}'), 1)
        self.assertEqual(value(text, "imapwebpush_login_failures_total", '{protocol="smtp"}'), 2)
        # the verification push and the new-mail push, both 201
        self.assertEqual(value(text, "imapwebpush_push_sends_total", '{status_class="2xx"}'), 2)
        self.assertEqual(value(text, "imapwebpush_push_latency_seconds_count"), 1)
        self.assertEqual(value(text, "imapwebpush_push_outbox_depth"), 0)
        self.assertEqual(value(text, "imapwebpush_push_retries_total"), 0)
        self.assertEqual(value(text, "imapwebpush_push_rate_limited_total"), 0)
        self.assertEqual(value(text, "imapwebpush_subscriptions_pruned_total", '{reason="gone"}'), 0)


class RetryAndGoneTests(ServerHarness):
    options = ("--metrics", "tcp:0:interface=127.0.0.1")

    @defer.inlineCallbacks
    def test_retries_and_pruned(self):
        self.phone.respond(Answer(503, headers={"Retry-After": "0"}), Answer.gone())
        self.inbox.add(MESSAGE)
        while not any(o.status == 410 for o in self.outcomes.outcomes):
            yield self.outcomes.next_outcome()
        ctype, text = yield threads.deferToThread(scrape, self.server.ports["metrics"])
        self.assertEqual(value(text, "imapwebpush_push_retries_total"), 1, text)
        self.assertEqual(value(text, "imapwebpush_push_sends_total", '{status_class="4xx"}'), 1, text)
        self.assertEqual(value(text, "imapwebpush_subscriptions_pruned_total", '{reason="gone"}'), 1)


class UnitTests(unittest.TestCase):
    def test_two_servers_in_one_process_do_not_clash(self):
        a, b = ServerMetrics(), ServerMetrics()
        a.smtp_deliveries.inc()
        self.assertEqual(a.registry.get_sample_value("imapwebpush_smtp_deliveries_total"), 1)
        self.assertEqual(b.registry.get_sample_value("imapwebpush_smtp_deliveries_total"), 0)

    def test_status_class(self):
        self.assertEqual([status_class(s) for s in (201, 410, 503, None)],
                         ["2xx", "4xx", "5xx", "none"])
