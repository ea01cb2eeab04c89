"""Outbound mail for real, on loopback: two imapwebpush servers and a DNS server.

``local.test`` is the server under test (submission, outbound queue);
``remote.test`` is a second imapwebpush instance, found through MX records
that a twisted.names server on 127.0.0.1 serves. Nothing leaves 127.0.0.0/8:
the zone points every name at 127.0.0.1 and ``--outbound-port`` at the remote
instance's SMTP port.
"""

import io
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys

from twisted.internet import defer, reactor, threads
from twisted.mail.smtp import SMTPBadRcpt
from twisted.trial import unittest

from imapwebpush import cli
from imapwebpush.constants import INBOX
from imapwebpush.testing import dns as testing_dns

from tests.harness.settle import when
from tests.harness.connections import start_tracked

LOOPBACK = "tcp:0:interface=127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MESSAGE = (
    b"From: Alice <alice@local.test>\r\n"
    b"To: Bob <bob@remote.test>\r\n"
    b"Subject: across the loopback\r\n"
    b"Message-ID: <out-1@local.test>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b".a line that starts with a dot\r\n"
)


def free_port():
    """A loopback port nobody listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class OutboundWorld:
    """The DNS zone, the two servers, their users; helpers to send and wait."""

    def make_zone(self):
        self.servers = []
        self.zone = testing_dns.Zone()
        self.zone.add("remote.test", "MX", 10, "mx.remote.test")
        self.zone.add("mx.remote.test", "A", "127.0.0.1")
        self.zone.add("local.test", "MX", 10, "mx.local.test")
        self.zone.add("mx.local.test", "A", "127.0.0.1")
        self.dns_port, ports = testing_dns.listen(reactor, self.zone)
        for p in ports:
            self.addCleanup(p.stopListening)
        self.dns = "127.0.0.1:%d" % (self.dns_port,)
        self.remote_data = os.path.abspath(self.mktemp())
        self.local_data = os.path.abspath(self.mktemp())

    @defer.inlineCallbacks
    def start(self, argv):
        running = yield start_tracked(self, argv)
        self.servers.append(running)
        return running

    def start_remote(self, *extra):
        # loopback stands in for the Internet here: SPF-check it like any client
        return self.start(
            ["--data", self.remote_data, "--imap", "none", "--smtp", LOOPBACK,
             "--domain", "remote.test", "--hostname", "mx.remote.test", "--dns-server", self.dns,
             "--spf-skip-networks", ""]
            + list(extra)
        )

    def local_argv(self, outbound_port, submission=LOOPBACK, *extra):
        return (
            ["--data", self.local_data, "--imap", "none", "--smtp", "none",
             "--submission", submission, "--domain", "local.test", "--hostname", "mx.local.test",
             "--allow-plaintext-auth", "--dns-server", self.dns,
             "--outbound-port", str(outbound_port), "--outbound-timeout", "20"]
            + list(extra)
        )

    def start_local(self, outbound_port, *extra):
        return self.start(self.local_argv(outbound_port, LOOPBACK, *extra))

    def add_user(self, data, address, password="pw"):
        os.makedirs(data, exist_ok=True)
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(
            ["--data", data, "user", "add", "--password-stdin", address],
            stdin=io.StringIO(password + "\n"), stdout=out, stderr=err,
        )
        self.assertEqual((status, err.getvalue()), (0, ""))

    def submit(self, port, recipients, message=MESSAGE, sender="alice@local.test"):
        def run():
            s = smtplib.SMTP("127.0.0.1", port, timeout=20)
            try:
                s.login("alice@local.test", "pw")
                return s.sendmail(sender, recipients, message)
            finally:
                s.quit()

        return threads.deferToThread(run)

    @staticmethod
    def inbox(running, address):
        box = running.components.mail_store.account(address).mailbox(INBOX)
        box.refresh()
        return [box.message(uid).read() for uid in box.uids()]

    def wait_for(self, predicate):
        """Wait until ``predicate()``, looking again after each message stored or delivery run."""

        def next_event(running):
            def source():
                d = defer.Deferred()
                bus = running.components.mail_store.bus

                class Listener:
                    def changed(self, event):
                        bus.unsubscribe(self)
                        reactor.callLater(0, d.callback, None)

                bus.subscribe(Listener())
                return d

            return source

        sources = []
        for running in self.servers:
            sources.append(next_event(running))
            sources.append(running.components.outbound.next_run)
        return when(predicate, *sources)


class OutboundEndToEndTests(OutboundWorld, unittest.TestCase):
    def setUp(self):
        self.make_zone()
        self.add_user(self.remote_data, "bob@remote.test")
        self.add_user(self.local_data, "alice@local.test")
        self.add_user(self.local_data, "carol@local.test")

    @defer.inlineCallbacks
    def test_submit_arrives_at_the_remote_domain(self):
        remote = yield self.start_remote()
        local = yield self.start_local(remote.ports["smtp"])
        refused = yield self.submit(local.ports["submission"], ["bob@remote.test", "carol@local.test"])
        self.assertEqual(refused, {})
        # The local recipient has it at once (before the 250).
        [copy] = self.inbox(local, "carol@local.test")
        self.assertTrue(copy.endswith(MESSAGE))
        yield self.wait_for(lambda: self.inbox(remote, "bob@remote.test"))
        [arrived] = self.inbox(remote, "bob@remote.test")
        self.assertTrue(arrived.startswith(b"Return-Path: <alice@local.test>\r\nAuthentication-Results: "),
                        arrived[:200])
        self.assertIn(b"\r\nReceived: from mx.local.test (127.0.0.1)\r\n\tby mx.remote.test ", arrived)
        self.assertIn(b"\tby mx.local.test (imapwebpush) with ESMTPA id ", arrived)
        self.assertTrue(arrived.endswith(MESSAGE))
        # The remote stores before its 250 reaches us: the queue empties just after.
        yield self.wait_for(lambda: not local.components.outbound.queue.entries())
        self.assertEqual(
            [q for q in self.zone.queries if q[0] == "remote.test"][0], ("remote.test", "MX"))

    def cli(self, data, *argv):
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(["--data", data] + list(argv), stdout=out, stderr=err)
        self.assertEqual((status, err.getvalue()), (0, ""))
        return out.getvalue()

    @defer.inlineCallbacks
    def test_dkim_signed_here_verified_there(self):
        out = self.cli(self.local_data, "dkim", "generate", "local.test")
        m = re.search(r'^(imapwebpush\._domainkey\.local\.test)\. IN TXT "(v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+)"$',
                      out, re.M)
        self.assertIsNotNone(m, out)
        self.zone.add(m.group(1), "TXT", m.group(2))  # what the operator publishes
        self.zone.add("local.test", "TXT", "v=spf1 mx -all")  # and the SPF record of docs/operating
        remote = yield self.start_remote()
        local = yield self.start_local(remote.ports["smtp"])
        yield self.submit(local.ports["submission"], ["bob@remote.test"])
        yield self.wait_for(lambda: self.inbox(remote, "bob@remote.test"))
        [arrived] = self.inbox(remote, "bob@remote.test")
        head = arrived.split(b"\r\n\r\n", 1)[0]
        self.assertRegex(head, rb"^Return-Path: <alice@local\.test>\r\n"
                               rb"Authentication-Results: mx\.remote\.test;\r\n"
                               rb"\tdkim=pass header\.d=local\.test header\.s=imapwebpush;\r\n"
                               rb"\tspf=pass smtp\.mailfrom=alice@local\.test\r\n"
                               rb"Received: from mx\.local\.test ")
        self.assertIn(b"\r\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=local.test;", head)
        self.assertIn(("imapwebpush._domainkey.local.test", "TXT"), self.zone.queries)

    @defer.inlineCallbacks
    def test_large_message_signed_sent_and_checked_as_streams(self):
        """4 MB through submission, DKIM signing, the queue, STARTTLS and the remote's DKIM check:
        every step reads it in pieces; it arrives intact and its signature holds."""
        from tests.harness.tls import write_self_signed

        out = self.cli(self.local_data, "dkim", "generate", "local.test")
        name, value = re.search(r'^(\S+)\. IN TXT "([^"]+)"$', out, re.M).groups()
        self.zone.add(name, "TXT", value)
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        cert, key = write_self_signed(work, "mx.remote.test")
        remote = yield self.start_remote("--tls-cert", cert, "--tls-key", key)
        local = yield self.start_local(remote.ports["smtp"])
        big = MESSAGE + b"".join(b".%06d dotted line, spaced   out \t\r\n" % i for i in range(100000))
        yield self.submit(local.ports["submission"], ["bob@remote.test"], message=big)
        yield self.wait_for(lambda: self.inbox(remote, "bob@remote.test"))
        [arrived] = self.inbox(remote, "bob@remote.test")
        self.assertTrue(arrived.endswith(big))
        self.assertIn(b"\tdkim=pass header.d=local.test header.s=imapwebpush;\r\n", arrived)
        self.assertIn(b"(imapwebpush) with ESMTPS id ", arrived)

    @defer.inlineCallbacks
    def test_unsigned_mail_gets_dkim_none(self):
        remote = yield self.start_remote()
        local = yield self.start_local(remote.ports["smtp"])
        yield self.submit(local.ports["submission"], ["bob@remote.test"])
        yield self.wait_for(lambda: self.inbox(remote, "bob@remote.test"))
        [arrived] = self.inbox(remote, "bob@remote.test")
        self.assertIn(b"\r\nAuthentication-Results: mx.remote.test;\r\n\tdkim=none;\r\n"
                      b"\tspf=none smtp.mailfrom=alice@local.test\r\n", arrived)
        self.assertNotIn(b"DKIM-Signature", arrived)

    @defer.inlineCallbacks
    def test_sender_must_be_the_user(self):
        remote = yield self.start_remote()
        local = yield self.start_local(remote.ports["smtp"])

        def run():
            s = smtplib.SMTP("127.0.0.1", local.ports["submission"], timeout=20)
            try:
                s.login("alice@local.test", "pw")
                return s.docmd("MAIL", "FROM:<carol@local.test>"), s.docmd("RSET"), \
                    s.docmd("MAIL", "FROM:<>")
            finally:
                s.quit()

        other, _, null = yield threads.deferToThread(run)
        self.assertEqual(other, (553, b"5.7.1 <carol@local.test>: sender address not owned by alice@local.test"))
        self.assertEqual(null, (553, b"5.7.1 <>: sender address not owned by alice@local.test"))

    @defer.inlineCallbacks
    def test_sender_granted_by_option(self):
        remote = yield self.start_remote()
        local = yield self.start_local(
            remote.ports["smtp"], "--submission-allow-sender", "alice@local.test=@local.test")
        refused = yield self.submit(local.ports["submission"], ["bob@remote.test"],
                                    sender="sales@local.test")
        self.assertEqual(refused, {})
        yield self.wait_for(lambda: self.inbox(remote, "bob@remote.test"))
        self.assertTrue(self.inbox(remote, "bob@remote.test")[0].startswith(b"Return-Path: <sales@local.test>"))

    @defer.inlineCallbacks
    def test_5xx_bounces_into_the_senders_inbox(self):
        remote = yield self.start_remote()
        local = yield self.start_local(remote.ports["smtp"])
        refused = yield self.submit(local.ports["submission"], ["nobody@remote.test"])
        self.assertEqual(refused, {})  # accepted and queued: the remote says no later
        yield self.wait_for(lambda: self.inbox(local, "alice@local.test"))
        [bounce] = self.inbox(local, "alice@local.test")
        self.assertIn(b"Subject: Undelivered Mail Returned to Sender\r\n", bounce)
        self.assertIn(b"Final-Recipient: rfc822; nobody@remote.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                      b"Remote-MTA: dns; mx.remote.test\r\n"
                      b"Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.test>: no such user here\r\n", bounce)
        self.assertIn(b"Message-ID: <out-1@local.test>", bounce)
        yield self.wait_for(lambda: not local.components.outbound.queue.entries())

    @defer.inlineCallbacks
    def test_4xx_then_2xx_delivered_once(self):
        remote = yield self.start_remote()
        factory = remote.service.getServiceNamed("smtp").factory.wrapped  # inside its LimitedFactory
        make_delivery = factory.delivery
        answers = [450]

        def delivery(*a, **kw):
            d = make_delivery(*a, **kw)
            validate = d.validateTo

            def validateTo(user):
                if answers:
                    raise SMTPBadRcpt(user.dest, answers.pop(0), "4.2.0 busy, try later")
                return validate(user)

            d.validateTo = validateTo
            return d

        factory.delivery = delivery
        local = yield self.start_local(remote.ports["smtp"], "--queue-retry", "0.3")
        yield self.submit(local.ports["submission"], ["bob@remote.test"])
        yield self.wait_for(lambda: self.inbox(remote, "bob@remote.test"))
        yield self.wait_for(lambda: not local.components.outbound.queue.entries())
        # A second copy would need a second run: there is none (the queue is empty).
        self.assertEqual(len(self.inbox(remote, "bob@remote.test")), 1)
        self.assertEqual(self.inbox(local, "alice@local.test"), [])  # no notice, no bounce
        self.assertEqual(answers, [])  # the 450 was given

    @defer.inlineCallbacks
    def test_null_mx_bounces(self):
        self.zone.add("nomail.test", "MX", 0, "")
        remote = yield self.start_remote()
        local = yield self.start_local(remote.ports["smtp"])
        yield self.submit(local.ports["submission"], ["x@nomail.test"])
        yield self.wait_for(lambda: self.inbox(local, "alice@local.test"))
        [bounce] = self.inbox(local, "alice@local.test")
        self.assertIn(b"Status: 5.1.10\r\n", bounce)
        self.assertIn(b"<x@nomail.test>: domain nomail.test accepts no mail (null MX)", bounce)


class KillTests(OutboundWorld, unittest.TestCase):
    """kill -9 of a real twistd process with a queued message: delivered after restart."""

    def setUp(self):
        self.make_zone()
        self.add_user(self.remote_data, "bob@remote.test")
        self.add_user(self.local_data, "alice@local.test")

    @staticmethod
    def read_port(proc, name="submission"):
        """The port twistd logs for the listener ``name`` (read from its output)."""
        for line in proc.stdout:
            m = re.search(name + r" listening on .*port=(\d+)", line)
            if m:
                return int(m.group(1))
        raise AssertionError("twistd exited before %s listened (status %s)" % (name, proc.wait()))

    @defer.inlineCallbacks
    def test_kill_9_then_restart_delivers(self):
        dead_port = free_port()  # the remote is "down": connections are refused
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        argv = self.local_argv(
            dead_port, LOOPBACK, "--queue-retry", "0.2")
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "imapwebpush"] + argv,
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.addCleanup(lambda: proc.stdout.close())
        submission = yield threads.deferToThread(self.read_port, proc)
        refused = yield self.submit(submission, ["bob@remote.test"])
        self.assertEqual(refused, {})
        os.kill(proc.pid, signal.SIGKILL)
        yield threads.deferToThread(proc.wait)
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        queued = os.listdir(os.path.join(self.local_data, "queue"))
        self.assertEqual(sorted(name.rsplit(".", 1)[1] for name in queued), ["json", "msg"])

        remote = yield self.start_remote()
        local = yield self.start_local(remote.ports["smtp"])
        yield self.wait_for(lambda: self.inbox(remote, "bob@remote.test"))
        [arrived] = self.inbox(remote, "bob@remote.test")
        self.assertTrue(arrived.endswith(MESSAGE))
        yield self.wait_for(lambda: not local.components.outbound.queue.entries())
        self.assertEqual(os.listdir(os.path.join(self.local_data, "queue")), [])
