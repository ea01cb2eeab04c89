"""``imapwebpush queue list|retry|delete`` and ``imapwebpush dkim generate|show``, as an operator types them."""

import io
import os
import re

from twisted.trial import unittest

from imapwebpush import cli, datadir
from imapwebpush.outbound.queue import DiskQueue

MESSAGE = b"From: alice@local.test\r\nSubject: queued\r\n\r\nHi\r\n"


class AdminTests(unittest.TestCase):
    def setUp(self):
        self.data = os.path.abspath(self.mktemp())
        os.makedirs(self.data)

    def run_cli(self, *argv, status=0):
        out, err = io.StringIO(), io.StringIO()
        got = cli.main(["--data", self.data] + list(argv), stdout=out, stderr=err)
        self.assertEqual(got, status, err.getvalue())
        return out.getvalue(), err.getvalue()

    def queue_one(self):
        queue = DiskQueue(datadir.queue(self.data))
        entry = queue.add("alice@local.test", ["bob@remote.test"], MESSAGE, 1_700_000_000.0)
        entry.recipients[0].attempts = 2
        entry.recipients[0].answer = "451 4.3.0 try later"
        entry.recipients[0].next_attempt = 1_700_000_600.0
        queue.save(entry)
        return entry.id

    def test_list(self):
        self.assertEqual(self.run_cli("queue", "list"), ("the queue is empty\n", ""))
        queue_id = self.queue_one()
        out, _ = self.run_cli("queue", "list")
        self.assertEqual(out, (
            "%s 2023-11-14 22:13:20 <alice@local.test> %d octets\n"
            "  bob@remote.test pending attempts=2 next=2023-11-14 22:23:20 last: 451 4.3.0 try later\n"
        ) % (queue_id, len(MESSAGE)))

    def test_retry_makes_it_due(self):
        queue_id = self.queue_one()
        out, _ = self.run_cli("queue", "retry", queue_id)
        self.assertEqual(out, "1 recipient(s) due now (a running server tries them within a minute)\n")
        [entry] = DiskQueue(datadir.queue(self.data)).entries()
        self.assertGreater(entry.recipients[0].next_attempt, 1_700_000_600.0)
        _, err = self.run_cli("queue", "retry", "nosuchid", status=1)
        self.assertEqual(err, "imapwebpush: error: no such queue id: nosuchid\n")

    def test_delete(self):
        queue_id = self.queue_one()
        _, err = self.run_cli("queue", "delete", status=2)
        self.assertEqual(err, "imapwebpush: error: name the queue ids to delete, or give --all\n")
        out, _ = self.run_cli("queue", "delete", queue_id)
        self.assertEqual(out, "deleted 1 message(s) from the queue (no bounce is sent)\n")
        self.assertEqual(os.listdir(datadir.queue(self.data)), [])

    def test_dkim_generate_and_show(self):
        out, _ = self.run_cli("dkim", "generate", "Local.Test")
        lines = out.splitlines()
        self.assertEqual(lines[0], "Publish this TXT record, then restart the server:")
        self.assertRegex(lines[1], r'^imapwebpush\._domainkey\.local\.test\. IN TXT "v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*"$')
        key = os.path.join(datadir.dkim(self.data), "local.test.imapwebpush.pem")
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        self.assertEqual(self.run_cli("dkim", "show")[0], lines[1] + "\n")
        _, err = self.run_cli("dkim", "generate", "local.test", status=1)
        self.assertEqual(err, "imapwebpush: error: local.test already has a DKIM key (selector imapwebpush);"
                              " use --replace to make a new one\n")
        out, _ = self.run_cli("dkim", "generate", "local.test", "--selector", "s2", "--replace")
        self.assertTrue(re.search(r"^s2\._domainkey\.local\.test\. ", out, re.M), out)
        self.assertEqual(os.listdir(datadir.dkim(self.data)), ["local.test.s2.pem"])
