"""imapwebpush.testing.MailServer: the in-process server for client tests, both ways of calling it."""

import os

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from imapwebpush.testing import MailServer
from imapwebpush.testing.trial import start_mail_server
from tests.harness.connections import ConnectionTracker
from tests.harness.wire import connect_line_client

ALICE = "alice@example.org"
MESSAGE = b"From: bob@example.org\nSubject: hi\n\nhello\n"


class DeferredMode(unittest.TestCase):
    """On trial's reactor: the waiting calls return Deferreds."""

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield start_mail_server(self)
        self.assertFalse(self.server.blocking)
        self.server.add_user(ALICE, "secret")
        self.tracker = ConnectionTracker()
        self.addCleanup(self.tracker.close)

    @defer.inlineCallbacks
    def test_ports_and_login(self):
        ports = {self.server.imap_port, self.server.smtp_port, self.server.submission_port}
        self.assertEqual(len(ports), 3)
        client = yield connect_line_client(self.tracker, self.server.imap_port,
                                           user=ALICE.encode())
        lines = yield client.command(b"c CAPABILITY")
        self.assertIn(b"WEBPUSH", lines[0].split())

    @defer.inlineCallbacks
    def test_deliver_and_wait_for_message(self):
        waiting = self.server.wait_for_message(ALICE, count=2)
        uid = self.server.deliver(ALICE, MESSAGE)
        self.assertFalse(waiting.called)
        reactor.callLater(0, self.server.deliver, ALICE, MESSAGE)
        found = yield waiting
        self.assertEqual(uid, 1)
        self.assertEqual(found, [MESSAGE.replace(b"\n", b"\r\n")] * 2)
        self.assertEqual(self.server.messages(ALICE), found)

    @defer.inlineCallbacks
    def test_wait_for_message_times_out(self):
        e = yield self.assertFailure(self.server.wait_for_message(ALICE, timeout=0.05),
                                     TimeoutError)
        self.assertEqual(str(e), "no 1 message(s) in INBOX of alice@example.org within 0.05 s")

    @defer.inlineCallbacks
    def test_webpush_subscription_and_new_mail_push(self):
        phone = self.server.push_service.new_subscription()
        client = yield connect_line_client(self.tracker, self.server.imap_port,
                                           user=ALICE.encode())
        lines = yield client.command(b"w WEBPUSH phone %s %s %s" % (
            phone.endpoint.encode(), phone.p256dh.encode(), phone.auth.encode()))
        self.assertEqual(lines[-1], b"w OK WEBPUSH completed")
        verification = yield self.server.wait_for_push(phone)
        yield client.command(b"k ACKWEBPUSH " + verification.plaintext.split()[2])
        self.assertEqual([(s.id, s.state) for s in self.server.subscriptions(ALICE)],
                         [("phone", "active")])
        self.server.deliver(ALICE, MESSAGE)
        push = yield self.server.wait_for_push(phone, count=2)
        self.assertEqual(push.problems, [])
        self.assertTrue(push.plaintext.startswith(b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS () '
                                                  b'ENVELOPE (NIL "hi" '), push.plaintext)

    @defer.inlineCallbacks
    def test_wait_for_push_times_out_and_forgets_the_waiter(self):
        phone = self.server.push_service.new_subscription()
        e = yield self.assertFailure(self.server.wait_for_push(phone, timeout=0.05), TimeoutError)
        self.assertEqual(str(e), "no 1 push(es) within 0.05 s")
        self.assertEqual(self.server.push_service.waiting(), 0)

    def test_add_user_of_another_domain(self):
        self.server.add_user("carol@example.net", "secret")
        smtp = self.server._running.service.getServiceNamed("smtp").factory
        self.assertIn("example.net", smtp.domains)
        self.assertTrue(self.server.components.users.exists("carol@example.net"))

    def test_blocking_server_on_the_reactor_thread_is_refused(self):
        server = MailServer(blocking=True)
        e = self.assertRaises(RuntimeError, server.add_user, ALICE, "x")
        self.assertIn("blocking=False", str(e))


class StopRemovesItsFolder(unittest.TestCase):

    @defer.inlineCallbacks
    def test_stop(self):
        server = MailServer(blocking=False)
        yield server.start()
        folder = server.data_dir
        self.assertTrue(os.path.isdir(folder))
        yield server.stop()
        self.assertFalse(os.path.exists(folder))


class BlockingMode(unittest.TestCase):
    """From a thread that is not the reactor's: every call blocks and returns a value."""

    timeout = 30

    def test_from_a_plain_thread(self):
        def plain_test():
            server = MailServer()
            assert server.blocking
            server.start()
            try:
                server.add_user(ALICE, "secret")
                phone = server.push_service.new_subscription()
                uid = server.deliver(ALICE, MESSAGE)
                found = server.wait_for_message(ALICE)
                try:
                    server.wait_for_push(phone, timeout=0.05)
                except TimeoutError as e:
                    timed_out = str(e)
                return uid, found, phone.endpoint.startswith("http://127.0.0.1:"), timed_out
            finally:
                server.stop()

        d = threads.deferToThread(plain_test)
        d.addCallback(self.assertEqual, (1, [MESSAGE.replace(b"\n", b"\r\n")], True,
                                         "no 1 push(es) within 0.05 s"))
        return d
