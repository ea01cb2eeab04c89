"""The outbound queue on disk and its scheduler on a task.Clock.

What a sender sees over five simulated days: a 4xx then a 2xx gives one copy,
a 5xx gives a bounce (RFC 3464) at once, a dead host gives retries that back
off, one delay notice after 4 h and a bounce at the end of the lifetime; and
whatever was queued is still queued by a new process on the same folder.
"""

import json
import os

from hypothesis import given, settings, strategies as st
from twisted.internet import task
from twisted.trial import unittest

from imapwebpush.outbound import client
from imapwebpush.outbound.queue import DELIVERED, PENDING, DiskQueue, QueueFileError
from imapwebpush.outbound.service import OutboundService

from tests.outbound_fakes import FakeMX, FakeRouter, permanent, settle

MESSAGE = (
    b"From: Alice <alice@local.test>\r\n"
    b"To: Bob <bob@remote.test>\r\n"
    b"Subject: hello out there\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b".a line with a leading dot\r\n"
)
HOUR = 3600.0
DAY = 24 * HOUR


class DiskQueueTests(unittest.TestCase):
    def setUp(self):
        self.path = os.path.abspath(self.mktemp())

    def test_add_is_on_disk_for_a_new_process(self):
        queue = DiskQueue(self.path)
        entry = queue.add("alice@local.test", ["bob@remote.test", "carol@other.test"], MESSAGE, 1000.0)
        self.assertEqual(sorted(os.listdir(self.path)), [entry.id + ".json", entry.id + ".msg"])
        again = DiskQueue(self.path)
        [loaded] = again.entries()
        self.assertEqual(loaded.to_json(), entry.to_json())
        self.assertEqual(again.read_message(entry.id), MESSAGE)
        self.assertEqual([r.state for r in loaded.recipients], [PENDING, PENDING])

    def test_save_and_remove(self):
        queue = DiskQueue(self.path)
        entry = queue.add("alice@local.test", ["bob@remote.test"], MESSAGE, 1000.0)
        entry.recipients[0].state = DELIVERED
        entry.recipients[0].answer = "250 2.0.0 ok"
        queue.save(entry)
        self.assertEqual(DiskQueue(self.path).get(entry.id).recipients[0].answer, "250 2.0.0 ok")
        queue.remove(entry.id)
        self.assertEqual(os.listdir(self.path), [])
        self.assertEqual(DiskQueue(self.path).entries(), [])

    def test_message_without_state_was_never_acknowledged(self):
        """A crash between the two writes leaves a .msg alone: removed, as the client got no 250."""
        os.makedirs(self.path)
        with open(os.path.join(self.path, "00000001abcdef0123.msg"), "wb") as f:
            f.write(MESSAGE)
        with open(os.path.join(self.path, "x.json.tmp-1-abcd"), "wb") as f:
            f.write(b"{")
        self.assertEqual(DiskQueue(self.path).entries(), [])
        self.assertEqual(os.listdir(self.path), [])

    def test_broken_state_file_is_one_line(self):
        os.makedirs(self.path)
        with open(os.path.join(self.path, "abc.json"), "wb") as f:
            f.write(b"{not json")
        with open(os.path.join(self.path, "abc.msg"), "wb") as f:
            f.write(MESSAGE)
        e = self.assertRaises(QueueFileError, DiskQueue, self.path)
        self.assertIn("unreadable queue file", str(e))
        self.assertIn("abc.json", str(e))

    def test_entries_oldest_first(self):
        queue = DiskQueue(self.path)
        second = queue.add("a@local.test", ["b@remote.test"], MESSAGE, 2000.0)
        first = queue.add("a@local.test", ["b@remote.test"], MESSAGE, 1000.0)
        self.assertEqual([e.id for e in DiskQueue(self.path).entries()], [first.id, second.id])


class ServiceTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.path = os.path.abspath(self.mktemp())
        self.mx = FakeMX(self.clock)
        self.router = FakeRouter()
        self.notices = []
        self.service = self.make_service()

    def make_service(self, queue=None):
        service = OutboundService(
            queue or DiskQueue(self.path), self.router, self.clock, "mail.local.test",
            self.mx.connect, self.notify,
        )
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def notify(self, address, data):
        self.notices.append((address, data, self.clock.seconds()))
        return True

    def submit(self, recipients=("bob@remote.test",), sender="alice@local.test"):
        queue_id = self.successResultOf(self.service.submit(sender, list(recipients), MESSAGE))
        settle(self.clock)
        return queue_id

    def test_delivered_at_once(self):
        self.submit(["bob@remote.test", "carol@remote.test"])
        [(sender, recipients, data)] = self.mx.messages
        self.assertEqual((sender, recipients), (b"alice@local.test", ["bob@remote.test", "carol@remote.test"]))
        self.assertEqual(data, MESSAGE)  # dot-stuffing undone by the peer's parser
        self.assertIn(b"MAIL FROM:<alice@local.test> SIZE=%d" % len(MESSAGE), self.mx.commands)
        self.assertEqual(self.service.queue.entries(), [])
        self.assertEqual(os.listdir(self.path), [])
        self.assertEqual(self.notices, [])

    def test_one_connection_per_domain(self):
        """Two recipient domains: one connection each; the peer sees the same message."""
        self.submit(["bob@remote.test", "dave@other.test"])
        self.assertEqual(self.mx.connections, 2)
        self.assertEqual(sorted(r for _, rs, _ in self.mx.messages for r in rs),
                         ["bob@remote.test", "dave@other.test"])

    def test_busy_domain_batches_messages(self):
        """Mail queued while a domain's connection is busy goes in one later connection."""
        self.service.submit("alice@local.test", ["bob@remote.test"], MESSAGE)
        self.clock.advance(0)  # the first run has started: its session waits for the greeting
        self.assertEqual(self.mx.connections, 1)
        self.service.submit("alice@local.test", ["carol@remote.test"], MESSAGE)
        self.service.submit("alice@local.test", ["dan@remote.test"], MESSAGE)
        settle(self.clock)
        self.assertEqual([rs for _, rs, _ in self.mx.messages],
                         [["bob@remote.test"], ["carol@remote.test"], ["dan@remote.test"]])
        self.assertEqual(self.mx.connections, 2)
        self.assertEqual(self.mx.commands.count(b"EHLO mail.local.test"), 2)

    def test_4xx_then_2xx_delivered_once(self):
        self.mx.rcpt["bob@remote.test"] = [b"450 4.2.0 mailbox busy", b"250 2.1.5 ok"]
        queue_id = self.submit()
        self.assertEqual(self.mx.messages, [])
        [entry] = DiskQueue(self.path).entries()
        [r] = entry.recipients
        self.assertEqual((r.state, r.attempts, r.answer, r.status), (PENDING, 1, "450 4.2.0 mailbox busy", "4.2.0"))
        self.assertEqual(r.next_attempt, self.clock.seconds() + 300)
        self.clock.advance(299)
        settle(self.clock)
        self.assertEqual(self.mx.messages, [])
        self.clock.advance(1)
        settle(self.clock)
        self.assertEqual([rs for _, rs, _ in self.mx.messages], [["bob@remote.test"]])
        self.assertEqual(self.service.queue.entries(), [])
        self.clock.advance(DAY)
        settle(self.clock)
        self.assertEqual(len(self.mx.messages), 1)
        self.assertEqual(self.notices, [])
        self.assertTrue(queue_id)

    def test_sent_as_a_stream(self):
        """The queued file is read in pieces (to find 8-bit octets, then to send it), never whole."""
        reads = []
        message_file = self.service.queue.message_file

        def counting(queue_id):
            found = message_file(queue_id)
            opened = found.open

            def open_counted():
                return _Reads(opened(), reads)

            found.open = open_counted
            return found

        self.service.queue.message_file = counting
        self.mx.extensions = [b"SIZE 10000000", b"8BITMIME"]
        big = MESSAGE + b"".join(b".line %d \xc3\xa9\r\n" % i for i in range(40000))  # 660 KB, dots, 8-bit
        self.successResultOf(self.service.submit("alice@local.test", ["bob@remote.test"], big))
        settle(self.clock)
        [(_, _, data)] = self.mx.messages
        self.assertEqual(data, big)
        self.assertIn(b"MAIL FROM:<alice@local.test> SIZE=%d BODY=8BITMIME" % len(big), self.mx.commands)
        self.assertTrue(reads and all(0 < n <= client.SEND_PIECE for n in reads), set(reads))

    def test_peer_that_stops_taking_data_is_given_up_and_retried(self):
        self.mx.stalls = True
        self.submit()
        self.assertEqual(self.mx.messages, [])
        self.clock.advance(300)  # --outbound-timeout without progress
        settle(self.clock)
        [entry] = self.service.queue.entries()
        [r] = entry.recipients
        self.assertEqual((r.state, r.attempts), (PENDING, 1))
        self.assertEqual(r.answer, "mx.remote.test: timed out: the message was not taken for 300 s")
        self.mx.stalls = False
        self.clock.advance(300)
        settle(self.clock)
        [(_, _, data)] = self.mx.messages
        self.assertEqual(data, MESSAGE)
        self.assertEqual(self.service.queue.entries(), [])

    def test_failed_run_waits_instead_of_spinning(self):
        """An unexpected error in a run (here the router's) is logged once, then retried after --queue-retry."""
        calls = []
        route = self.router.route

        def broken(domain):
            calls.append(domain)
            if len(calls) == 1:
                raise RuntimeError("a bug")
            return route(domain)

        self.router.route = broken
        self.submit()
        self.assertEqual(calls, ["remote.test"])  # not again and again
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.mx.messages, [])
        self.clock.advance(300)
        settle(self.clock)
        self.assertEqual(calls, ["remote.test"] * 2)
        self.assertEqual(len(self.mx.messages), 1)
        self.assertEqual(self.service.queue.entries(), [])

    def test_5xx_bounces_at_once(self):
        self.mx.rcpt["nobody@remote.test"] = [b"550 5.1.1 no such user"]
        queue_id = self.submit(["nobody@remote.test", "bob@remote.test"])
        self.assertEqual([rs for _, rs, _ in self.mx.messages], [["bob@remote.test"]])
        [(address, report, when)] = self.notices
        self.assertEqual(address, "alice@local.test")
        head, _, body = report.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nSubject: Undelivered Mail Returned to Sender\r\n", head)
        self.assertIn(b"Content-Type: multipart/report; report-type=delivery-status;", head)
        self.assertIn(b"To: <alice@local.test>\r\n", head)
        self.assertIn(
            b"Content-Type: message/delivery-status\r\n\r\n"
            b"Reporting-MTA: dns; mail.local.test\r\n"
            b"X-Queue-ID: " + queue_id.encode() + b"\r\n", body)
        self.assertIn(
            b"Final-Recipient: rfc822; nobody@remote.test\r\n"
            b"Action: failed\r\n"
            b"Status: 5.1.1\r\n"
            b"Remote-MTA: dns; mx.remote.test\r\n"
            b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n", body)
        self.assertNotIn(b"bob@remote.test", body.split(b"text/rfc822-headers")[0])
        self.assertIn(b"Content-Type: text/rfc822-headers\r\n\r\nFrom: Alice <alice@local.test>\r\n", body)
        self.assertNotIn(b"Hi Bob", report)  # headers only
        self.assertEqual(self.service.queue.entries(), [])

    def test_permanent_dns_error_bounces(self):
        self.router.errors["nowhere.test"] = permanent("nowhere.test")
        self.submit(["x@nowhere.test"])
        [(_, report, _)] = self.notices
        self.assertIn(b"Status: 5.1.2\r\n", report)
        self.assertIn(b"<x@nowhere.test>: domain nowhere.test does not exist", report)
        self.assertEqual(self.mx.connections, 0)

    def test_null_sender_gets_no_bounce(self):
        self.mx.rcpt["nobody@remote.test"] = [b"550 5.1.1 no such user"]
        self.submit(["nobody@remote.test"], sender="")
        self.assertEqual(self.notices, [])
        self.assertEqual(self.service.queue.entries(), [])

    def test_backoff_delay_notice_and_expiry(self):
        self.mx.refuse = True
        start = self.clock.seconds()
        self.submit()
        attempts = [0.0]
        while self.service.queue.entries():
            [entry] = self.service.queue.entries()
            due = entry.recipients[0].next_attempt
            self.clock.advance(due - self.clock.seconds())
            settle(self.clock)
            attempts.append(self.clock.seconds() - start)
        gaps = [b - a for a, b in zip(attempts, attempts[1:])]
        self.assertEqual(gaps[:6], [300, 600, 1200, 2400, 3600, 3600])
        self.assertEqual(attempts[-1], 5 * DAY)  # the last try is at the end of the lifetime
        self.assertTrue(all(g <= 3600 for g in gaps))
        delay, bounce = self.notices
        self.assertEqual(delay[2] - start, min(a for a in attempts if a >= 4 * HOUR))
        self.assertIn(b"Subject: Delayed Mail (still being retried)\r\n", delay[1])
        self.assertIn(b"Action: delayed\r\nStatus: 4.4.1\r\n", delay[1])
        self.assertIn(b"Will-Retry-Until: ", delay[1])
        self.assertIn(b"Action: failed\r\nStatus: 4.4.7\r\n", bounce[1])
        self.assertEqual(bounce[2] - start, 5 * DAY)
        self.assertIn(b"gave up after %d attempts" % len(attempts), bounce[1])

    def test_restart_delivers_what_was_queued(self):
        """A new service on the same folder (the old one never stopped cleanly) delivers."""
        self.mx.refuse = True
        self.submit()
        self.assertEqual(self.mx.messages, [])
        # The first process is gone without a word; only its files remain.
        self.service.running = False
        if self.service._timer is not None:
            self.service._timer.cancel()
        self.mx.refuse = False
        self.service = self.make_service(DiskQueue(self.path))
        self.clock.advance(300)
        settle(self.clock)
        self.assertEqual([rs for _, rs, _ in self.mx.messages], [["bob@remote.test"]])
        self.assertEqual(os.listdir(self.path), [])

    def test_retry_now(self):
        self.mx.refuse = True
        self.submit()
        self.mx.refuse = False
        self.assertEqual(self.service.retry_now(), 1)
        settle(self.clock)
        self.assertEqual(len(self.mx.messages), 1)

    def test_state_file_says_what_happened(self):
        self.mx.rcpt["bob@remote.test"] = [b"451 4.3.0 try later"]
        queue_id = self.submit()
        with open(os.path.join(self.path, queue_id + ".json")) as f:
            state = json.load(f)
        self.assertEqual(state["recipients"][0]["answer"], "451 4.3.0 try later")
        self.assertEqual(state["recipients"][0]["remote"], "mx.remote.test")
        self.assertEqual(state["sender"], "alice@local.test")

    def test_size_over_peer_limit_bounces(self):
        self.mx.extensions = [b"SIZE 10"]
        self.submit()
        [(_, report, _)] = self.notices
        self.assertIn(b"Status: 5.3.4\r\n", report)
        self.assertNotIn(b"MAIL FROM:<alice@local.test> SIZE=%d" % len(MESSAGE), self.mx.commands)

    def test_8bit_and_smtputf8(self):
        self.mx.extensions = [b"8BITMIME", b"SMTPUTF8"]
        self.service.submit("alice@local.test", ["bj\u00f6rn@remote.test"], MESSAGE + "\u00e9\r\n".encode())
        settle(self.clock)
        self.assertIn("MAIL FROM:<alice@local.test> BODY=8BITMIME SMTPUTF8".encode(), self.mx.commands)
        self.assertIn("RCPT TO:<bj\u00f6rn@remote.test>".encode(), self.mx.commands)

    def test_smtputf8_not_offered_bounces(self):
        self.mx.extensions = [b"8BITMIME"]
        self.service.submit("alice@local.test", ["bj\u00f6rn@remote.test"], MESSAGE)
        settle(self.clock)
        [(_, report, _)] = self.notices
        self.assertIn(b"Status: 5.6.7\r\n", report)


def dot_stuff(data):
    """The DATA block of a whole message, the plain way (what the streamed one must equal)."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class _Reads:
    """A file whose ``read`` sizes are noted."""

    def __init__(self, f, reads):
        self._f = f
        self._reads = reads

    def read(self, size=-1):
        self._reads.append(size)
        return self._f.read(size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


class DotStuffingTests(unittest.TestCase):
    """The message goes out a piece at a time; its DATA block is the same whatever the pieces."""

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.sampled_from([b".", b"..", b"\r\n", b"\r", b"\n", b"a", b"\r\n.\r\n"]), max_size=30).map(
        b"".join), st.integers(1, 5))
    def test_same_as_the_whole_message_stuffed(self, message, size):
        stuffer = client._DotStuffer(lambda: None)
        pieces = [stuffer(message[i:i + size]) for i in range(0, len(message), size)]
        self.assertEqual(b"".join(pieces) + stuffer.end(), dot_stuff(message))
