"""Tests for the expunge history of a mailbox (QRESYNC's VANISHED): tombstones
in the journal, through restarts, compaction and other tools' removals."""

import os

from imapwebpush.store import index
from imapwebpush.events import MessagesExpunged
from imapwebpush.store.journal import JOURNAL_NAME, Journal
from imapwebpush.wire import expand
from twisted.trial import unittest

from tests.test_store_maildir import MESSAGE, StoreTestMixin


def vanished_since(box, modseq):
    """The UIDs of ``box.vanished_ranges(modseq)``, one by one."""
    return expand(box.vanished_ranges(modseq))


class VanishedTests(StoreTestMixin, unittest.TestCase):
    def add(self, n, flags=()):
        return [self.inbox.add(MESSAGE, flags=flags) for _ in range(n)]

    def expunge(self, uids):
        self.inbox.set_flags(uids, ["\\Deleted"], "add")
        return self.inbox.expunge(uids)

    def test_fresh_mailbox_has_no_history(self):
        self.assertEqual(self.inbox.vanished_floor, 1)
        self.assertEqual(vanished_since(self.inbox, 1), [])
        self.assertEqual(self.inbox.vanished_ranges(1), [])

    def test_expunge_is_told_by_modseq(self):
        uids = self.add(6)
        before = self.inbox.highestmodseq
        self.expunge([uids[1], uids[2]])
        (first,) = self.recorder.of(MessagesExpunged)
        middle = self.inbox.highestmodseq
        self.expunge([uids[4]])
        self.assertEqual(vanished_since(self.inbox, before), [2, 3, 5])
        self.assertEqual(self.inbox.vanished_ranges(before), [(2, 3), (5, 5)])
        # The expunge's own modseq is not "since" it; the event carries it.
        self.assertEqual(vanished_since(self.inbox, first.modseq), [5])
        self.assertEqual(vanished_since(self.inbox, middle), [5])
        self.assertEqual(vanished_since(self.inbox, self.inbox.highestmodseq), [])

    def test_flag_changes_are_not_expunges(self):
        uids = self.add(3)
        start = self.inbox.highestmodseq
        self.inbox.set_flags(uids, ["\\Seen"], "add")
        self.assertEqual(vanished_since(self.inbox, start), [])

    def test_move_leaves_tombstones_in_the_source(self):
        uids = self.add(3)
        start = self.inbox.highestmodseq
        self.account.create_mailbox("Archive")
        archive = self.account.mailbox("Archive")
        self.inbox.move([uids[0], uids[2]], archive)
        self.assertEqual(vanished_since(self.inbox, start), [1, 3])
        self.assertEqual(vanished_since(archive, 1), [])

    def test_survives_restart(self):
        uids = self.add(4)
        start = self.inbox.highestmodseq
        self.expunge(uids[:2])
        first = self.inbox.highestmodseq
        self.expunge(uids[3:])
        fresh = self.reopen()
        self.assertEqual(vanished_since(fresh, start), [1, 2, 4])
        self.assertEqual(vanished_since(fresh, first - 1), [1, 2, 4])  # the STORE before it
        self.assertEqual(vanished_since(fresh, first), [4])
        self.assertEqual(fresh.vanished_floor, 1)

    def test_survives_compaction(self):
        uids = self.add(4)
        start = self.inbox.highestmodseq
        self.expunge([uids[0]])
        mid = self.inbox.highestmodseq
        self.expunge([uids[2]])
        for i in range(300):
            self.inbox.set_flags([uids[1]], ["\\Seen"], "add" if i % 2 else "remove")
        journal = os.path.join(self.inbox.path, JOURNAL_NAME)
        records, bad = Journal(journal).load()
        self.assertEqual(bad, 0)
        self.assertLess(len(records), 300)  # it was compacted
        self.assertNotIn("x", [r["t"] for r in records[:2]])
        self.assertEqual(vanished_since(self.inbox, start), [1, 3])
        fresh = self.reopen()
        self.assertEqual(vanished_since(fresh, start), [1, 3])
        self.assertEqual(vanished_since(fresh, mid), [3])
        self.assertEqual(fresh.vanished_floor, 1)
        # A second compaction of the compacted journal keeps them too.
        for i in range(300):
            fresh.set_flags([uids[1]], ["\\Seen"], "add" if i % 2 else "remove")
        self.assertEqual(vanished_since(self.reopen(), mid), [3])

    def test_file_removed_by_other_tool_is_a_tombstone(self):
        uids = self.add(2)
        start = self.inbox.highestmodseq
        os.unlink(self.inbox.message(uids[0]).path())
        # Make sure new/'s mtime moves even on coarse clocks.
        new = os.path.join(self.inbox.path, "new")
        st = os.stat(new)
        os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
        self.assertEqual(self.inbox.uids(), [uids[1]])
        self.assertEqual(vanished_since(self.inbox, start), [uids[0]])
        self.assertEqual(vanished_since(self.reopen(), start), [uids[0]])

    def test_trimmed_history_raises_the_floor(self):
        self.patch(index, "VANISHED_HISTORY", 3)
        uids = self.add(8)
        start = self.inbox.highestmodseq
        marks = []
        for uid in uids[:6]:  # six expunges of one message each
            self.expunge([uid])
            marks.append(self.inbox.highestmodseq)
        self.compact(self.inbox, uids[7])
        # The three oldest tombstones are gone; the floor is the last dropped one.
        self.assertEqual(self.inbox.vanished_floor, marks[2])
        self.assertEqual(vanished_since(self.inbox, marks[2]), [4, 5, 6])
        self.assertEqual(vanished_since(self.inbox, marks[3]), [5, 6])
        # From before the floor: every UID below UIDNEXT that is not there.
        self.assertEqual(self.inbox.vanished_ranges(start), [(1, 6)])
        fresh = self.reopen()
        self.assertEqual(fresh.vanished_floor, marks[2])
        self.assertEqual(vanished_since(fresh, marks[3]), [5, 6])
        self.assertEqual(vanished_since(fresh, start), [1, 2, 3, 4, 5, 6])

    def test_below_the_floor_counts_gaps_and_the_tail(self):
        self.patch(index, "VANISHED_HISTORY", 0)
        uids = self.add(6)
        self.expunge([uids[0], uids[2], uids[5]])
        expunged_at = self.inbox.highestmodseq
        self.compact(self.inbox, uids[1])
        self.assertEqual(self.inbox.vanished_floor, expunged_at)
        self.assertEqual(self.inbox.vanished_ranges(1), [(1, 1), (3, 3), (6, 6)])
        self.assertEqual(vanished_since(self.inbox, expunged_at), [])

    def test_legacy_compacted_journal_has_its_floor_at_its_modseq(self):
        """A journal compacted before tombstones were kept lost its expunges."""
        uids = self.add(3)
        self.expunge([uids[0]])
        journal = Journal(os.path.join(self.inbox.path, JOURNAL_NAME))
        state = {
            "t": "s",
            "v": self.inbox.uidvalidity,
            "n": self.inbox.uidnext,
            "m": self.inbox.highestmodseq,
        }
        added = [
            {"t": "a", "u": m.uid, "f": m.filename, "m": m.modseq, "s": m.size, "d": m.internaldate}
            for m in map(self.inbox.message, uids[1:])
        ]
        journal.rewrite([state] + added)
        fresh = self.reopen()
        self.assertEqual(fresh.vanished_floor, self.inbox.highestmodseq)
        self.assertEqual(vanished_since(fresh, 1), [1])  # below the floor: the gap
        self.assertEqual(vanished_since(fresh, fresh.highestmodseq), [])

    def test_damaged_journal_forgets_history(self):
        uids = self.add(3)
        self.expunge([uids[0]])
        path = os.path.join(self.inbox.path, JOURNAL_NAME)
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        lines[1] = lines[1][:20] + b"X" + lines[1][21:]
        with open(path, "wb") as f:
            f.write(b"\n".join(lines))
        fresh = self.reopen()
        self.assertNotEqual(fresh.uidvalidity, self.inbox.uidvalidity)
        self.assertEqual(fresh.vanished_floor, fresh.highestmodseq)
