"""Tests for imapwebpush.store.maildir: one mailbox, its files, its journal, its events."""

import os

from twisted.internet.task import Clock
from twisted.trial import unittest

from imapwebpush.store.account import MailStore
from imapwebpush.store.errors import MailboxNotFound, MessageTooLarge
from imapwebpush.events import FlagsChanged, MessageAdded, MessagesExpunged
from imapwebpush.store import scan
from imapwebpush.store.journal import JOURNAL_NAME, Journal
from imapwebpush.store.message import MAX_HEADER_BLOCK

T0 = 1700000000.0
MESSAGE = b"From: a@example.org\r\nSubject: hello\r\n\r\nBody line\r\n"


class Recorder:
    def __init__(self):
        self.events = []

    def changed(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


class StoreTestMixin:
    def setUp(self):
        self.path = self.mktemp()
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MailStore(self.path, self.clock)
        self.account = self.store.account("bob@example.org")
        self.inbox = self.account.mailbox("INBOX")
        self.recorder = Recorder()
        self.account.bus.subscribe(self.recorder)

    def reopen(self, name="INBOX"):
        """The same mailbox as a freshly started server sees it."""
        return MailStore(self.path, self.clock).account("bob@example.org").mailbox(name)

    def files(self, box, sub):
        return sorted(os.listdir(os.path.join(box.path, sub)))

    def journal_lines(self, box):
        with open(os.path.join(box.path, JOURNAL_NAME), "rb") as f:
            return f.read().count(b"\n")

    def compact(self, box, uid):
        """Change ``uid``'s flags until the journal of ``box`` rewrites itself."""
        seen = "add"
        lines = self.journal_lines(box)
        while True:
            box.set_flags([uid], ["\\Seen"], seen)
            seen = "remove" if seen == "add" else "add"
            now = self.journal_lines(box)
            if now < lines:
                return
            lines = now


class AddTests(StoreTestMixin, unittest.TestCase):
    def test_add_without_flags_goes_to_new(self):
        uid = self.inbox.add(MESSAGE)
        self.assertEqual(uid, 1)
        self.assertEqual(self.inbox.uids(), [1])
        (name,) = self.files(self.inbox, "new")
        self.assertEqual(self.files(self.inbox, "cur"), [])
        self.assertEqual(self.files(self.inbox, "tmp"), [])
        self.assertNotIn(":", name)
        with open(os.path.join(self.inbox.path, "new", name), "rb") as f:
            self.assertEqual(f.read(), MESSAGE)

    def test_add_with_flags_goes_to_cur_with_sorted_letters(self):
        uid = self.inbox.add(MESSAGE, flags=["\\Seen", "\\flagged", "\\Answered", "\\Draft", "\\Recent"])
        (name,) = self.files(self.inbox, "cur")
        self.assertTrue(name.endswith(":2,DFRS"), name)
        self.assertEqual(
            self.inbox.message(uid).flags,
            frozenset(["\\Seen", "\\Flagged", "\\Answered", "\\Draft"]),
        )

    def test_bare_lf_becomes_crlf(self):
        uid = self.inbox.add(b"Subject: x\n\nline1\nline2\r\nline3\n")
        msg = self.inbox.message(uid)
        self.assertEqual(msg.read(), b"Subject: x\r\n\r\nline1\r\nline2\r\nline3\r\n")
        self.assertEqual(msg.size, len(msg.read()))

    def test_attributes(self):
        uid = self.inbox.add(MESSAGE, flags=["$Label1"], internaldate=T0 - 3600)
        msg = self.inbox.message(uid)
        self.assertEqual(msg.uid, uid)
        self.assertEqual(msg.size, len(MESSAGE))
        self.assertEqual(msg.internaldate, T0 - 3600)
        self.assertEqual(msg.flags, frozenset(["$Label1"]))
        self.assertEqual(msg.headers(), b"From: a@example.org\r\nSubject: hello\r\n\r\n")
        self.assertEqual(os.stat(msg.path()).st_mtime, T0 - 3600)
        self.assertEqual(self.inbox.uidnext, uid + 1)

    def test_default_internaldate_from_clock(self):
        self.clock.advance(42)
        uid = self.inbox.add(MESSAGE)
        self.assertEqual(self.inbox.message(uid).internaldate, T0 + 42)

    def test_open_for_partial_reads(self):
        uid = self.inbox.add(MESSAGE)
        with self.inbox.message(uid).open() as f:
            f.seek(6)
            self.assertEqual(f.read(13), b"a@example.org")

    def test_headers_from_disk_after_restart(self):
        uid = self.inbox.add(MESSAGE)
        self.assertEqual(self.reopen().message(uid).headers(), b"From: a@example.org\r\nSubject: hello\r\n\r\n")

    def test_headers_without_body(self):
        uid = self.inbox.add(b"Subject: only headers\r\n")
        self.assertEqual(self.inbox.message(uid).headers(), b"Subject: only headers\r\n")

    def test_unknown_uid(self):
        self.assertRaises(KeyError, self.inbox.message, 99)

    def test_too_large(self):
        store = MailStore(self.mktemp(), self.clock, max_message_size=10)
        box = store.account("x@example.org").mailbox("INBOX")
        self.assertRaises(MessageTooLarge, box.add, MESSAGE)
        self.assertEqual(box.uids(), [])

    def test_event_once_after_durable(self):
        """MessageAdded comes once, when a new server already sees the message."""
        seen = []

        def listener(event):
            fresh = self.reopen()
            msg = fresh.message(event.uid)
            seen.append((event, msg.read(), msg.flags))

        self.account.bus.subscribe(listener)
        uid = self.inbox.add(MESSAGE, flags=["\\Seen", "work"], origin="session-1")
        self.assertEqual(len(seen), 1)
        event, data, flags = seen[0]
        self.assertEqual(
            event,
            MessageAdded(
                account="bob@example.org",
                mailbox="INBOX",
                uid=uid,
                flags=frozenset(["\\Seen", "work"]),
                modseq=self.inbox.message(uid).modseq,
                size=len(MESSAGE),
                internaldate=T0,
                headers=b"From: a@example.org\r\nSubject: hello\r\n\r\n",
                body=b"Body line\r\n",
            ),
        )
        self.assertEqual(event.origin, "session-1")
        self.assertEqual(data, MESSAGE)
        self.assertEqual(flags, frozenset(["\\Seen", "work"]))
        self.assertEqual(self.recorder.events, [event])

    def test_every_event_after_durable(self):
        """When any event arrives, a freshly started server already sees the change."""
        checked = []

        def listener(event):
            fresh = self.reopen()
            if isinstance(event, FlagsChanged):
                for uid, flags, modseq in event.changes:
                    self.assertEqual(fresh.message(uid).flags, flags)
                    self.assertEqual(fresh.message(uid).modseq, modseq)
            elif isinstance(event, MessagesExpunged):
                for uid in event.uids:
                    self.assertRaises(KeyError, fresh.message, uid)
                self.assertEqual(fresh.highestmodseq, event.modseq)
            checked.append(type(event))

        self.account.bus.subscribe(listener)
        uid = self.inbox.add(MESSAGE)
        self.inbox.set_flags([uid], ["\\Deleted", "kw"], "add")
        self.inbox.expunge()
        self.assertEqual(checked, [MessageAdded, FlagsChanged, MessagesExpunged])
        self.assertEqual([type(e) for e in self.recorder.events], checked)

    def test_modseq_grows(self):
        before = self.inbox.highestmodseq
        uid1 = self.inbox.add(MESSAGE)
        uid2 = self.inbox.add(MESSAGE)
        m1 = self.inbox.message(uid1).modseq
        m2 = self.inbox.message(uid2).modseq
        self.assertTrue(before < m1 < m2)
        self.assertEqual(self.inbox.highestmodseq, m2)


class RestartTests(StoreTestMixin, unittest.TestCase):
    def test_state_survives_restart(self):
        u1 = self.inbox.add(MESSAGE, internaldate=T0 - 10)
        u2 = self.inbox.add(MESSAGE, flags=["\\Seen", "$Work"])
        u3 = self.inbox.add(MESSAGE)
        self.inbox.set_flags([u1], ["\\Flagged", "later"], "add")
        self.inbox.set_flags([u3], ["\\Deleted"], "add")
        self.inbox.expunge()
        fresh = self.reopen()
        self.assertEqual(fresh.uids(), [u1, u2])
        self.assertEqual(fresh.uidvalidity, self.inbox.uidvalidity)
        self.assertEqual(fresh.uidnext, u3 + 1)
        self.assertEqual(fresh.highestmodseq, self.inbox.highestmodseq)
        for uid in (u1, u2):
            a, b = self.inbox.message(uid), fresh.message(uid)
            self.assertEqual(
                (a.flags, a.modseq, a.size, a.internaldate),
                (b.flags, b.modseq, b.size, b.internaldate),
            )
        self.assertEqual(fresh.message(u1).flags, frozenset(["\\Flagged", "later"]))
        self.assertEqual(fresh.message(u1).internaldate, T0 - 10)

    def test_expunged_uids_never_come_back(self):
        for _ in range(3):
            self.inbox.add(MESSAGE, flags=["\\Deleted"])
        self.inbox.expunge()
        fresh = self.reopen()
        self.assertEqual(fresh.uids(), [])
        self.assertEqual(fresh.add(MESSAGE), 4)

    def test_torn_last_line_is_ignored(self):
        u1 = self.inbox.add(MESSAGE, flags=["kw"])
        journal = os.path.join(self.inbox.path, JOURNAL_NAME)
        with open(journal, "ab") as f:
            f.write(b'1234abcd {"t":"a","u":7,"f":"new/x","m"')
        fresh = self.reopen()
        self.assertEqual(fresh.uids(), [u1])
        self.assertEqual(fresh.uidvalidity, self.inbox.uidvalidity)
        self.assertEqual(fresh.message(u1).flags, frozenset(["kw"]))
        # The next append starts on a fresh line, and a third start reads it.
        u2 = fresh.add(MESSAGE)
        self.assertEqual(self.reopen().uids(), [u1, u2])

    def test_damaged_middle_line_means_new_uidvalidity(self):
        self.inbox.add(MESSAGE)
        self.inbox.add(MESSAGE)
        journal = os.path.join(self.inbox.path, JOURNAL_NAME)
        with open(journal, "rb") as f:
            lines = f.read().split(b"\n")
        lines[1] = lines[1][:20] + b"X" + lines[1][21:]
        with open(journal, "wb") as f:
            f.write(b"\n".join(lines))
        fresh = self.reopen()
        self.assertNotEqual(fresh.uidvalidity, self.inbox.uidvalidity)
        self.assertEqual(len(fresh.uids()), 2)
        for uid in fresh.uids():
            self.assertEqual(fresh.message(uid).read(), MESSAGE)

    def test_missing_journal_line_repaired_from_files(self):
        """A crash after the file rename but before the journal line loses nothing."""
        u1 = self.inbox.add(MESSAGE)
        journal = os.path.join(self.inbox.path, JOURNAL_NAME)
        with open(journal, "rb") as f:
            lines = f.read().splitlines(True)
        self.inbox.add(b"Subject: second\r\n\r\n")
        with open(journal, "wb") as f:
            f.write(b"".join(lines))
        fresh = self.reopen()
        self.assertEqual(fresh.uids(), [u1, 2])
        self.assertEqual(fresh.message(2).read(), b"Subject: second\r\n\r\n")

    def test_failed_journal_append_leaves_no_torn_line(self):
        u1 = self.inbox.add(MESSAGE)
        real_fsync = os.fsync

        def failing_fsync(fd):
            if os.readlink("/proc/self/fd/%d" % (fd,)).endswith(JOURNAL_NAME):
                raise OSError(28, "No space left on device")
            return real_fsync(fd)

        self.patch(os, "fsync", failing_fsync)
        self.assertRaises(OSError, self.inbox.add, MESSAGE)
        self.patch(os, "fsync", real_fsync)
        with open(os.path.join(self.inbox.path, JOURNAL_NAME), "rb") as f:
            self.assertTrue(f.read().endswith(b"\n"))
        self.assertEqual(self.recorder.of(MessageAdded)[1:], [])
        # The file that was written is not lost: it gets the next UID.
        self.assertEqual(self.inbox.uids(), [u1, u1 + 1])
        fresh = self.reopen()
        self.assertEqual(fresh.uidvalidity, self.inbox.uidvalidity)
        self.assertEqual(fresh.uids(), [u1, u1 + 1])

    def assertSameAsRestart(self):
        """A freshly started server sees exactly what memory holds."""
        fresh = self.reopen()

        def state(box):
            return (
                box.uidvalidity,
                box.uidnext,
                box.highestmodseq,
                [(m.uid, m.filename, m.flags, m.modseq) for m in map(box.message, box.uids())],
            )

        self.assertEqual(state(fresh), state(self.inbox))

    def test_failed_journal_append_during_scan_changes_no_counter(self):
        u1 = self.inbox.add(MESSAGE)
        before = (self.inbox.uidnext, self.inbox.highestmodseq)
        msg = self.inbox.message(u1)
        os.rename(msg.path(), os.path.join(self.inbox.path, "cur", msg.base + ":2,S"))
        for n in range(2):
            with open(os.path.join(self.inbox.path, "new", "1699999999.drop%d.host" % n), "wb") as f:
                f.write(MESSAGE)

        def full(journal, records, sync=True):
            raise OSError(28, "No space left on device")

        disk_full = self.patch(Journal, "append", full)
        self.assertRaises(OSError, self.inbox.uids)
        self.assertEqual((self.inbox.uidnext, self.inbox.highestmodseq), before)
        self.assertEqual(self.inbox.count(), 1)
        self.assertEqual(msg.flags, frozenset())
        disk_full.restore()
        # The retry (here a delivery) first finishes the scan that failed.
        u4 = self.inbox.add(MESSAGE)
        self.assertEqual(self.inbox.uids(), [u1, u1 + 1, u1 + 2, u1 + 3])
        self.assertEqual(u4, u1 + 3)
        self.assertEqual(msg.flags, frozenset(["\\Seen"]))
        self.assertSameAsRestart()

    def test_flag_changes_are_not_fsynced_messages_are(self):
        """fsync_mode=optimized, as Dovecot: a STORE costs no fsync (it held every
        session for milliseconds); an added message is still durable before it is told."""
        calls = []
        real_fsync = os.fsync
        self.patch(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
        u1 = self.inbox.add(MESSAGE)
        self.assertTrue(calls)
        del calls[:]
        self.inbox.set_flags([u1], ["\\Seen", "$Label"], "add")
        self.inbox.claim_recent()
        self.assertEqual(calls, [])
        self.assertSameAsRestart()

    def test_expunge_syncs_the_folder_not_the_journal(self):
        """The unlinks are durable (the folder is fsynced) before EXPUNGE answers; its
        journal line is not fsynced: lost in a crash, the next scan expunges the same."""
        u1 = self.inbox.add(MESSAGE)
        u2 = self.inbox.add(MESSAGE)
        self.inbox.set_flags([u1], ["\\Deleted"], "add")
        journal = os.path.join(self.inbox.path, JOURNAL_NAME)
        with open(journal, "rb") as f:
            before_expunge = f.read()
        synced = []
        real_fsync = os.fsync
        self.patch(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_ino), real_fsync(fd))[1])
        self.assertEqual(self.inbox.expunge(), [u1])
        self.assertEqual(synced, [os.stat(os.path.join(self.inbox.path, "cur")).st_ino])
        # the crash: the expunge's journal line never reached the disk
        with open(journal, "wb") as f:
            f.write(before_expunge)
        fresh = self.reopen()
        self.assertEqual(fresh.uids(), [u2])
        self.assertEqual(fresh.uidnext, u2 + 1)

    def test_failed_journal_append_during_add_changes_no_counter(self):
        u1 = self.inbox.add(MESSAGE)
        before = (self.inbox.uidnext, self.inbox.highestmodseq)

        def full(journal, records, sync=True):
            raise OSError(28, "No space left on device")

        disk_full = self.patch(Journal, "append", full)
        self.assertRaises(OSError, self.inbox.add, MESSAGE)
        self.assertEqual((self.inbox.uidnext, self.inbox.highestmodseq), before)
        self.assertEqual(self.inbox.count(), 1)
        disk_full.restore()
        u3 = self.inbox.add(MESSAGE)
        self.assertEqual(self.inbox.uids(), [u1, u1 + 1, u3])
        self.assertEqual(u3, u1 + 2)
        self.assertSameAsRestart()

    def test_compaction_keeps_state(self):
        uids = [self.inbox.add(MESSAGE) for _ in range(5)]
        for i in range(200):
            self.inbox.set_flags(uids, ["\\Seen"], "add" if i % 2 else "remove")
        journal = os.path.join(self.inbox.path, JOURNAL_NAME)
        with open(journal, "rb") as f:
            self.assertLess(len(f.read().splitlines()), 300)
        fresh = self.reopen()
        self.assertEqual(fresh.uids(), uids)
        self.assertEqual(fresh.highestmodseq, self.inbox.highestmodseq)
        for uid in uids:
            self.assertEqual(fresh.message(uid).flags, self.inbox.message(uid).flags)
            self.assertEqual(fresh.message(uid).modseq, self.inbox.message(uid).modseq)

    def fill_journal(self, uid):
        """Change ``uid`` until the next journal line makes the journal compact itself."""
        seen = "add"
        while self.journal_lines(self.inbox) < 2 * self.inbox.count() + 256:
            self.inbox.set_flags([uid], ["\\Seen"], seen)
            seen = "remove" if seen == "add" else "add"

    def test_add_that_compacts_is_kept(self):
        first = self.inbox.add(MESSAGE)
        self.fill_journal(first)
        second = self.inbox.add(MESSAGE, flags=["$Second"])
        third = self.inbox.add(MESSAGE)
        fresh = self.reopen()
        self.assertEqual(fresh.uids(), [first, second, third])
        self.assertEqual(fresh.message(second).keywords, frozenset(["$Second"]))
        self.assertEqual(fresh.highestmodseq, self.inbox.highestmodseq)

    def test_flag_change_that_compacts_is_kept(self):
        uid = self.inbox.add(MESSAGE)
        self.fill_journal(uid)
        self.inbox.set_flags([uid], ["$Last"], "add")
        fresh = self.reopen()
        self.assertEqual(fresh.message(uid).keywords, frozenset(["$Last"]))
        self.assertEqual(fresh.message(uid).modseq, self.inbox.message(uid).modseq)
        self.assertEqual(fresh.highestmodseq, self.inbox.highestmodseq)


class ForeignFileTests(StoreTestMixin, unittest.TestCase):
    def drop(self, sub, name, data):
        with open(os.path.join(self.inbox.path, sub, name), "wb") as f:
            f.write(data)
        # Make sure the directory mtime differs even on coarse clocks.
        st = os.stat(os.path.join(self.inbox.path, sub))
        os.utime(os.path.join(self.inbox.path, sub), ns=(st.st_atime_ns, st.st_mtime_ns + 1000))

    def test_file_dropped_into_new_gets_uid(self):
        u1 = self.inbox.add(MESSAGE)
        self.drop("new", "1699999999.foreign.host", b"Subject: dropped\n\nhi\n")
        self.assertEqual(self.inbox.uids(), [u1, u1 + 1])
        msg = self.inbox.message(u1 + 1)
        self.assertEqual(msg.read(), b"Subject: dropped\r\n\r\nhi\r\n")
        self.assertEqual(msg.size, len(msg.read()))
        (event,) = self.recorder.of(MessageAdded)[1:]
        self.assertEqual(event.uid, u1 + 1)
        self.assertEqual(event.headers, b"Subject: dropped\r\n\r\n")
        self.assertEqual(self.reopen().uids(), [u1, u1 + 1])
        self.assertIn(u1 + 1, self.inbox.claim_recent())

    def test_file_dropped_while_stopped_gets_uid_on_start(self):
        self.drop("cur", "1699999999.other.host:2,S", b"Subject: x\r\n\r\n")
        fresh = self.reopen()
        (uid,) = fresh.uids()
        self.assertEqual(fresh.message(uid).flags, frozenset(["\\Seen"]))

    def test_flags_changed_by_other_tool(self):
        uid = self.inbox.add(MESSAGE, flags=["\\Seen"])
        msg = self.inbox.message(uid)
        old = msg.path()
        modseq = msg.modseq
        os.rename(old, old.replace(":2,S", ":2,FS"))
        self.drop("cur", ".touch", b"")
        self.assertEqual(self.inbox.uids(), [uid])
        self.assertEqual(msg.flags, frozenset(["\\Seen", "\\Flagged"]))
        self.assertGreater(msg.modseq, modseq)
        (event,) = self.recorder.of(FlagsChanged)
        self.assertEqual(event.changes, ((uid, msg.flags, msg.modseq),))

    def test_unseen_and_expunge_follow_flags_changed_by_other_tool(self):
        """UNSEEN and EXPUNGE read sets the index keeps; a rename by another tool moves them too."""
        u1 = self.inbox.add(MESSAGE, flags=["\\Seen"])
        u2 = self.inbox.add(MESSAGE, flags=["\\Flagged"])
        self.assertEqual(self.inbox.unseen(), [u2])
        old = self.inbox.message(u1).path()
        os.rename(old, old.replace(":2,S", ":2,T"))  # \Seen off, \Deleted on
        self.drop("cur", ".touch", b"")
        self.assertEqual(self.inbox.uids(), [u1, u2])  # the look that finds the rename
        self.assertEqual(self.inbox.unseen(), [u1, u2])
        self.assertEqual(self.inbox.expunge(), [u1])
        self.assertEqual(self.inbox.unseen(), [u2])
        self.assertEqual(self.reopen().unseen(), [u2])

    def test_file_removed_by_other_tool(self):
        u1 = self.inbox.add(MESSAGE)
        u2 = self.inbox.add(MESSAGE)
        os.unlink(self.inbox.message(u1).path())
        self.drop("new", ".touch", b"")
        self.assertEqual(self.inbox.uids(), [u2])
        (event,) = self.recorder.of(MessagesExpunged)
        self.assertEqual(event.uids, (u1,))

    def test_file_dropped_in_the_same_timestamp_tick(self):
        """A drop that leaves new/'s mtime unchanged is found once the mtime has aged."""
        u1 = self.inbox.add(MESSAGE)
        new = os.path.join(self.inbox.path, "new")
        before = os.stat(new)
        with open(os.path.join(new, "1699999999.same.tick"), "wb") as f:
            f.write(MESSAGE)
        os.utime(new, ns=(before.st_atime_ns, before.st_mtime_ns))
        self.assertEqual(self.inbox.uids(), [u1])
        later = before.st_mtime_ns / 1e9 + scan.MTIME_TRUST + 1
        self.patch(scan.time, "time", lambda: later)
        self.assertEqual(self.inbox.uids(), [u1, u1 + 1])

    def test_aged_delivery_relists_only_new(self):
        """After our own add to new/, the aged snapshot re-lists new/ only, not a big cur/."""
        old = [self.inbox.add(MESSAGE, flags=["\\Seen"]) for _ in range(3)]
        cur = os.path.join(self.inbox.path, "cur")
        os.utime(cur, (T0 - 3600, T0 - 3600))  # cur/ last changed long ago
        self.inbox.uids()
        uid = self.inbox.add(MESSAGE)
        later = os.stat(os.path.join(self.inbox.path, "new")).st_mtime + scan.MTIME_TRUST + 1
        self.patch(scan.time, "time", lambda: later)
        listed = []
        real_listdir = os.listdir

        def listdir(path):
            listed.append(os.path.basename(path))
            return real_listdir(path)

        self.patch(os, "listdir", listdir)
        self.assertEqual(self.inbox.uids(), old + [uid])
        self.assertEqual(listed, ["new"])
        listed[:] = []
        self.assertEqual(self.inbox.uids(), old + [uid])
        self.assertEqual(listed, [])

    def test_same_base_name_dropped_into_new_while_cur_is_trusted(self):
        """A second file named like a message of the unlisted cur/ gets a UID of its own."""
        uid = self.inbox.add(MESSAGE, flags=["\\Seen"])
        cur = os.path.join(self.inbox.path, "cur")
        os.utime(cur, (T0 - 3600, T0 - 3600))
        self.inbox.uids()
        self.drop("new", self.inbox.message(uid).base, b"Subject: twin\r\n\r\n")
        self.assertEqual(self.inbox.uids(), [uid, uid + 1])
        self.assertEqual(self.reopen().uids(), [uid, uid + 1])
        bodies = sorted(self.inbox.message(u).read() for u in (uid, uid + 1))
        self.assertEqual(bodies, sorted([MESSAGE, b"Subject: twin\r\n\r\n"]))

    def test_file_vanishing_during_store_is_noticed(self):
        u1 = self.inbox.add(MESSAGE)
        u2 = self.inbox.add(MESSAGE)
        new = os.path.join(self.inbox.path, "new")
        before = os.stat(new)
        os.unlink(self.inbox.message(u1).path())
        os.utime(new, ns=(before.st_atime_ns, before.st_mtime_ns))  # as if in the same timestamp tick
        changed, _ = self.inbox.set_flags([u1, u2], ["\\Seen"], "add")
        self.assertEqual(list(changed), [u2])
        self.assertEqual(self.inbox.uids(), [u2])
        (event,) = self.recorder.of(MessagesExpunged)
        self.assertEqual(event.uids, (u1,))

    def test_read_follows_a_rename_by_other_tool(self):
        uid = self.inbox.add(MESSAGE)
        msg = self.inbox.message(uid)
        os.rename(msg.path(), os.path.join(self.inbox.path, "cur", msg.base + ":2,S"))
        self.assertEqual(msg.read(), MESSAGE)
        self.assertEqual(msg.flags, frozenset(["\\Seen"]))


class FlagTests(StoreTestMixin, unittest.TestCase):
    def test_modes(self):
        uid = self.inbox.add(MESSAGE, flags=["\\Seen", "a"])
        changed, failed = self.inbox.set_flags([uid], ["\\Flagged", "B"], "add")
        flags = frozenset(["\\Seen", "\\Flagged", "a", "B"])
        self.assertEqual(changed, {uid: (flags, self.inbox.highestmodseq)})
        self.assertEqual(failed, [])
        self.inbox.set_flags([uid], ["\\seen", "b"], "remove")
        self.assertEqual(self.inbox.message(uid).flags, frozenset(["\\Flagged", "a"]))
        self.inbox.set_flags([uid], ["\\Answered", "\\Recent"], "replace")
        self.assertEqual(self.inbox.message(uid).flags, frozenset(["\\Answered"]))
        (name,) = self.files(self.inbox, "cur")
        self.assertTrue(name.endswith(":2,R"), name)

    def test_bad_mode(self):
        uid = self.inbox.add(MESSAGE)
        self.assertRaises(ValueError, self.inbox.set_flags, [uid], ["\\Seen"], "toggle")

    def test_no_change_no_event_no_modseq(self):
        uid = self.inbox.add(MESSAGE, flags=["\\Seen"])
        before = self.inbox.highestmodseq
        changed, failed = self.inbox.set_flags([uid, 999], ["\\Seen"], "add")
        self.assertEqual((changed, failed), ({}, []))
        self.assertEqual(self.inbox.highestmodseq, before)
        self.assertEqual(self.recorder.of(FlagsChanged), [])

    def test_one_event_for_all(self):
        u1 = self.inbox.add(MESSAGE)
        u2 = self.inbox.add(MESSAGE, flags=["\\Seen"])
        changed, _ = self.inbox.set_flags([u2, u1], ["\\Seen"], "add", origin="me")
        self.assertEqual(list(changed), [u1])
        modseq = self.inbox.highestmodseq
        (event,) = self.recorder.of(FlagsChanged)
        self.assertEqual(
            event,
            FlagsChanged("bob@example.org", "INBOX", ((u1, frozenset(["\\Seen"]), modseq),)),
        )
        self.assertEqual(event.origin, "me")

    def test_unchangedsince(self):
        u1 = self.inbox.add(MESSAGE)
        u2 = self.inbox.add(MESSAGE)
        m1 = self.inbox.message(u1).modseq
        changed, failed = self.inbox.set_flags([u1, u2], ["\\Seen"], "add", unchangedsince=m1)
        self.assertEqual(list(changed), [u1])
        self.assertEqual(failed, [u2])
        self.assertEqual(self.inbox.message(u2).flags, frozenset())
        changed, failed = self.inbox.set_flags([u1], ["\\Flagged"], "add", unchangedsince=m1)
        self.assertEqual((changed, failed), ({}, [u1]))

    def test_keyword_case(self):
        uid = self.inbox.add(MESSAGE, flags=["$Junk"])
        changed, _ = self.inbox.set_flags([uid], ["$junk"], "add")
        self.assertEqual(changed, {})
        self.inbox.set_flags([uid], ["$JUNK"], "remove")
        self.assertEqual(self.inbox.message(uid).flags, frozenset())

    def test_queries(self):
        u1 = self.inbox.add(MESSAGE)
        u2 = self.inbox.add(MESSAGE, flags=["\\Seen"])
        m = self.inbox.highestmodseq
        self.inbox.set_flags([u1], ["x"], "add")
        self.assertEqual(self.inbox.count(), 2)
        self.assertEqual(self.inbox.unseen(), [u1])
        self.assertEqual(self.inbox.recent(), [u1])
        self.assertEqual(self.inbox.changed_since(m), [u1])
        self.assertEqual(self.inbox.changed_since(0), [u1, u2])


class ExpungeTests(StoreTestMixin, unittest.TestCase):
    def test_only_deleted(self):
        u1 = self.inbox.add(MESSAGE, flags=["\\Deleted"])
        u2 = self.inbox.add(MESSAGE)
        u3 = self.inbox.add(MESSAGE, flags=["\\Deleted", "\\Seen"])
        path3 = self.inbox.message(u3).path()
        self.assertEqual(self.inbox.expunge(origin="s"), [u1, u3])
        self.assertEqual(self.inbox.uids(), [u2])
        self.assertFalse(os.path.exists(path3))
        self.assertRaises(KeyError, self.inbox.message, u1)
        (event,) = self.recorder.of(MessagesExpunged)
        self.assertEqual(event, MessagesExpunged("bob@example.org", "INBOX", (u1, u3), self.inbox.highestmodseq))
        self.assertEqual(event.origin, "s")
        self.assertEqual(self.inbox.expunge(), [])
        self.assertEqual(len(self.recorder.of(MessagesExpunged)), 1)

    def test_among_uids(self):
        u1 = self.inbox.add(MESSAGE, flags=["\\Deleted"])
        u2 = self.inbox.add(MESSAGE, flags=["\\Deleted"])
        self.assertEqual(self.inbox.expunge([u2, 77]), [u2])
        self.assertEqual(self.inbox.uids(), [u1])

    def test_read_after_expunge(self):
        uid = self.inbox.add(MESSAGE, flags=["\\Deleted"])
        msg = self.inbox.message(uid)
        self.inbox.expunge()
        self.assertRaises(KeyError, msg.read)


class RecentTests(StoreTestMixin, unittest.TestCase):
    def test_claim_once(self):
        u1 = self.inbox.add(MESSAGE)
        u2 = self.inbox.add(MESSAGE, flags=["\\Seen"])
        u3 = self.inbox.add(MESSAGE, flags=["kw"])
        self.assertEqual(self.inbox.claim_recent(), {u1, u3})
        self.assertEqual(self.inbox.claim_recent(), set())
        self.assertEqual(self.files(self.inbox, "new"), [])
        self.assertEqual(len(self.files(self.inbox, "cur")), 3)
        self.assertEqual(self.inbox.message(u3).flags, frozenset(["kw"]))
        self.assertEqual(self.reopen().claim_recent(), set())
        self.assertNotIn(u2, self.inbox.recent())


class CopyMoveTests(StoreTestMixin, unittest.TestCase):
    def setUp(self):
        StoreTestMixin.setUp(self)
        self.archive = self.account.create_mailbox("Archive")
        self.recorder.events.clear()

    def test_copy_keeps_flags_and_date(self):
        u1 = self.inbox.add(MESSAGE, flags=["\\Seen", "\\Deleted", "kw"], internaldate=T0 - 99)
        u2 = self.inbox.add(b"Subject: two\r\n\r\n")
        self.recorder.events.clear()
        pairs = self.inbox.copy([u2, u1, 55], self.archive, origin="o")
        self.assertEqual(pairs, [(u1, 1), (u2, 2)])
        self.assertEqual(self.inbox.uids(), [u1, u2])
        copied = self.archive.message(1)
        self.assertEqual(copied.flags, frozenset(["\\Seen", "\\Deleted", "kw"]))
        self.assertEqual(copied.internaldate, T0 - 99)
        self.assertEqual(copied.read(), MESSAGE)
        self.assertEqual(os.stat(copied.path()).st_ino, os.stat(self.inbox.message(u1).path()).st_ino)
        self.assertEqual(self.archive.claim_recent(), {1, 2})  # a copy is recent, flags or not (RFC 3501 6.4.7)
        added = self.recorder.of(MessageAdded)
        self.assertEqual([(e.mailbox, e.uid) for e in added], [("Archive", 1), ("Archive", 2)])
        self.assertEqual(added[1].headers, b"Subject: two\r\n\r\n")
        self.assertEqual(self.recorder.of(MessagesExpunged), [])
        # Flags of copies are independent.
        self.inbox.set_flags([u1], ["\\Seen"], "remove")
        self.assertIn("\\Seen", self.archive.message(1).flags)
        fresh = self.reopen("Archive")
        self.assertEqual(fresh.message(1).flags, frozenset(["\\Seen", "\\Deleted", "kw"]))

    def test_move_ignores_deleted(self):
        u1 = self.inbox.add(MESSAGE, flags=["\\Flagged"])
        u2 = self.inbox.add(MESSAGE)
        self.recorder.events.clear()
        pairs = self.inbox.move([u1], self.archive, origin="o")
        self.assertEqual(pairs, [(u1, 1)])
        self.assertEqual(self.inbox.uids(), [u2])
        self.assertEqual(self.archive.message(1).flags, frozenset(["\\Flagged"]))
        self.assertEqual(self.archive.message(1).read(), MESSAGE)
        kinds = [(type(e).__name__, e.mailbox) for e in self.recorder.events]
        self.assertEqual(kinds, [("MessageAdded", "Archive"), ("MessagesExpunged", "INBOX")])
        self.assertEqual(self.recorder.events[1].uids, (u1,))
        self.assertEqual(self.reopen().uids(), [u2])
        self.assertEqual(self.reopen("Archive").uids(), [1])

    def test_listener_reading_source_during_move(self):
        """A listener that looks at the source while MessageAdded is delivered sees it
        consistent, and the expunge is still announced once, with its origin."""
        uid = self.inbox.add(MESSAGE)
        self.recorder.events.clear()
        seen = []

        def listener(event):
            if isinstance(event, MessageAdded):
                seen.append(self.inbox.uids())

        self.account.bus.subscribe(listener)
        self.inbox.move([uid], self.archive, origin="o")
        self.assertEqual(seen, [[]])
        (event,) = self.recorder.of(MessagesExpunged)
        self.assertEqual(event.origin, "o")

    def test_move_within_same_mailbox(self):
        uid = self.inbox.add(MESSAGE, flags=["\\Seen"])
        self.assertEqual(self.inbox.move([uid], self.inbox), [(uid, uid + 1)])
        self.assertEqual(self.inbox.uids(), [uid + 1])
        self.assertEqual(self.inbox.message(uid + 1).read(), MESSAGE)
        self.assertEqual(self.reopen().uids(), [uid + 1])

    def test_copy_to_deleted_mailbox(self):
        uid = self.inbox.add(MESSAGE)
        self.account.delete_mailbox("Archive")
        self.assertRaises(MailboxNotFound, self.inbox.copy, [uid], self.archive)
        self.assertRaises(MailboxNotFound, self.archive.uids)


class HeaderBlockTests(StoreTestMixin, unittest.TestCase):
    def test_blank_line_across_read_chunks(self):
        for split in (16383, 16384, 16385, 16386):
            head = b"X: " + b"a" * (split - 5) + b"\r\n"
            data = head + b"\r\nbody\r\n"
            uid = self.inbox.add(data)
            fresh = self.reopen()
            self.assertEqual(fresh.message(uid).headers(), head + b"\r\n")

    def test_no_blank_line_in_a_large_message(self):
        """Cut at the last line end within MAX_HEADER_BLOCK, not kept whole."""
        line = b"X: " + b"b" * 70 + b"\r\n"
        data = line * 20000
        uid = self.inbox.add(data)
        self.assertEqual(self.reopen().message(uid).headers(), line * (MAX_HEADER_BLOCK // len(line)))
        small = line * 20
        uid = self.inbox.add(small)
        self.assertEqual(self.reopen().message(uid).headers(), small)

    def test_empty_header_block(self):
        uid = self.inbox.add(b"\r\nbody only\r\n")
        self.assertEqual(self.reopen().message(uid).headers(), b"\r\n")
