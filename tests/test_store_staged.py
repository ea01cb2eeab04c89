"""Large messages are copied into tmp/ off the reactor (``add_staged``), then committed on it.

The store's ``run`` is a L{HeldRun} here: the copy waits until the test lets it go, so
each test sees what a client hears while it is under way, and after.
"""

import os

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.task import Clock
from twisted.trial import unittest

from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.spool import Spool
from imapwebpush.store.account import MailStore
from tests.harness.smtp import SMTPWorldMixin
from tests.harness.threads import HeldRun
from tests.harness.wire import PASSWORD, USER, MemoryWire

THRESHOLD = 4096  # octets from which the copy runs through ``run``
LARGE = b"Subject: large\r\n\r\n" + b"x" * 78 + b"\r\n" + (b"y" * 998 + b"\r\n") * 8
SMALL = b"Subject: small\r\n\r\nhi\r\n"


def snapshot(data):
    spool = Spool(in_memory=1024)
    spool.write(data)
    shot = spool.snapshot()
    spool.close()  # the snapshot outlives its spool
    return shot


def tmp_files(box):
    return os.listdir(os.path.join(box.path, "tmp"))


def disk_full_in_tmp(test, box):
    """fsync of a file in ``box``'s tmp/ fails as on a full disk (as in test_store_maildir)."""
    real_fsync = os.fsync
    tmp = os.path.join(box.path, "tmp") + os.sep

    def failing_fsync(fd):
        if os.readlink("/proc/self/fd/%d" % (fd,)).startswith(os.path.realpath(tmp)):
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    return test.patch(os, "fsync", failing_fsync)


class AddStagedTests(unittest.TestCase):
    def setUp(self):
        self.run = HeldRun()
        self.path = self.mktemp()
        self.store = MailStore(self.path, Clock(), run=self.run, stage_threshold=THRESHOLD)
        self.inbox = self.store.account("bob@example.org").mailbox("INBOX")

    def outcome(self, d):
        box = []
        d.addBoth(box.append)
        return box

    def test_fires_once_the_file_is_in_place(self):
        done = self.outcome(self.inbox.add_staged(snapshot(LARGE)))
        self.assertEqual((done, self.inbox.uids(), len(self.run.held)), ([], [], 1))
        self.run.release()
        self.assertEqual(done, [1])
        self.assertEqual(self.inbox.message(1).read(), LARGE)
        self.assertEqual(tmp_files(self.inbox), [])
        fresh = MailStore(self.path, Clock()).account("bob@example.org").mailbox("INBOX")
        self.assertEqual(fresh.uids(), [1])

    def test_small_after_large_commits_after_it(self):
        large = self.outcome(self.inbox.add_staged(snapshot(LARGE)))
        small = self.outcome(self.inbox.add_staged(snapshot(SMALL)))
        self.assertEqual((large, small), ([], []))  # the small one waits its turn
        self.assertEqual(self.inbox.add(SMALL), 1)  # a plain add is not held
        self.run.release()
        self.assertEqual((large, small), ([2], [3]))
        self.assertEqual([self.inbox.message(u).read() for u in (2, 3)], [LARGE, SMALL])

    def test_small_alone_needs_no_thread(self):
        self.assertEqual(self.outcome(self.inbox.add_staged(snapshot(SMALL))), [1])
        self.assertEqual(self.run.held, [])

    def test_disk_full_in_the_thread_leaves_no_tmp_file(self):
        done = self.outcome(self.inbox.add_staged(snapshot(LARGE)))
        disk_full = disk_full_in_tmp(self, self.inbox)
        self.run.release()
        disk_full.restore()
        self.assertEqual(done[0].value.errno, 28)
        self.assertEqual((tmp_files(self.inbox), self.inbox.uids()), ([], []))
        # the next one is not held back by the failure
        self.assertEqual(self.outcome(self.inbox.add_staged(snapshot(SMALL))), [1])


class SMTPStagedTests(SMTPWorldMixin, unittest.TestCase):
    max_size = 1024 * 1024
    stage_threshold = THRESHOLD

    def setUp(self):
        self.store_run = HeldRun()
        self.make_world()
        self.wire = self.in_data()
        self.wire.send_raw(LARGE)

    def box(self, address):
        return self.store.account(address).mailbox("INBOX")

    def test_250_only_once_every_copy_is_in_place(self):
        self.assertEqual(self.wire.send(b"."), [])
        self.assertEqual(len(self.store_run.held), 2)
        self.store_run.release()
        self.assertEqual(self.wire.read(), [])
        self.assertEqual(len(self.inbox("alice@example.org")), 1)
        self.store_run.release()
        self.assertEqual(self.wire.read(), [b"250 2.0.0 Message accepted for delivery"])
        [(_, data)] = self.inbox("bob@example.net")
        self.assertTrue(data.endswith(LARGE))

    def test_connection_lost_while_copying_loses_nothing(self):
        self.assertEqual(self.wire.send(b"."), [])
        self.wire.close()
        self.store_run.release_all()
        for address in ("alice@example.org", "bob@example.net"):
            [(_, data)] = self.inbox(address)
            self.assertTrue(data.endswith(LARGE))
            self.assertEqual(tmp_files(self.box(address)), [])

    def test_disk_full_while_copying_is_452_and_leaves_no_tmp_file(self):
        self.assertEqual(self.wire.send(b"."), [])
        disk_full_in_tmp(self, self.box("alice@example.org"))
        self.store_run.release_all()
        self.assertEqual(
            self.wire.read(),
            [b"452 4.3.1 Insufficient system storage: message not stored for 1 of 2 recipients, try again later"],
        )
        self.assertEqual([len(self.inbox(a)) for a in ("alice@example.org", "bob@example.net")], [0, 1])
        self.assertEqual(tmp_files(self.box("alice@example.org")), [])
        self.flushLoggedErrors(OSError)


class AppendStagedTests(unittest.TestCase):
    def setUp(self):
        self.run = HeldRun()
        clock = Clock()
        self.store = MailStore(self.mktemp(), clock=clock, run=self.run, stage_threshold=THRESHOLD)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER.encode(), PASSWORD.encode())
        self.factory = IMAPFactory(
            Portal(IMAPRealm(self.store), [checker]), self.store, allow_plaintext_auth=True, clock=clock
        )
        self.inbox = self.store.account(USER).mailbox("INBOX")

    def session(self):
        wire = MemoryWire(self.factory)
        self.addCleanup(wire.close)
        wire.send(b'L LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
        return wire

    def append(self, wire, tag, *messages):
        literals = b"".join(b" {%d+}\r\n" % len(m) + m for m in messages)
        return wire.send(tag + b" APPEND INBOX" + literals)

    def test_ok_only_once_in_place_and_in_order(self):
        first, second = self.session(), self.session()
        self.assertEqual(self.append(first, b"a1", LARGE), [])
        self.assertEqual(self.append(second, b"b1", SMALL), [])  # commits after the large one
        self.assertEqual(self.inbox.uids(), [])
        self.run.release()
        self.assertEqual(first.read(), [b"a1 OK [APPENDUID %d 1] APPEND completed" % self.inbox.uidvalidity])
        self.assertEqual(second.read(), [b"b1 OK [APPENDUID %d 2] APPEND completed" % self.inbox.uidvalidity])
        self.assertEqual([self.inbox.message(u).read() for u in (1, 2)], [LARGE, SMALL])

    def test_multiappend_commits_in_order(self):
        wire = self.session()
        self.assertEqual(self.append(wire, b"a1", SMALL, LARGE, SMALL, LARGE), [])
        self.run.release()
        self.assertEqual(wire.read(), [])
        self.run.release()
        self.assertEqual(wire.read(), [b"a1 OK [APPENDUID %d 1:4] APPEND completed" % self.inbox.uidvalidity])
        self.assertEqual([self.inbox.message(u).read() for u in (1, 2, 3, 4)], [SMALL, LARGE, SMALL, LARGE])

    def test_connection_lost_while_copying_stores_the_message(self):
        wire = self.session()
        self.assertEqual(self.append(wire, b"a1", LARGE), [])
        wire.close()
        self.run.release()
        self.assertEqual(self.inbox.message(1).read(), LARGE)
        self.assertEqual(tmp_files(self.inbox), [])

    def test_disk_full_while_copying_is_no_and_keeps_none(self):
        wire = self.session()
        self.assertEqual(self.append(wire, b"a1", SMALL, LARGE), [])
        disk_full_in_tmp(self, self.inbox)
        self.run.release()
        self.assertEqual(wire.read(), [b"a1 NO [OVERQUOTA] Not enough disk space"])
        self.assertEqual((self.inbox.uids(), tmp_files(self.inbox)), ([], []))
