"""SessionView: one session's sequence numbers over the store's UIDs, and what it may tell."""

from twisted.trial import unittest

from imapwebpush.imap.view import SessionView
from imapwebpush.store.account import MailStore
from imapwebpush.wire import format_set, parse_sequence_set
from tests.harness.imap import USER, message


class ViewTests(unittest.TestCase):
    def setUp(self):
        self.account = MailStore(self.mktemp()).account(USER)
        self.inbox = self.account.mailbox("INBOX")
        for n in range(3):
            self.inbox.add(message("m%d" % n), ["\\Seen"])
        self.me = object()
        self.told = []
        self.view = SessionView(self.account, self.inbox, self.me, False, lambda: self.told.append(1))
        self.addCleanup(self.view.close)

    def test_others_changes_wait_for_flush(self):
        self.inbox.set_flags([2], ["\\Flagged"], "add", origin="other")
        self.inbox.add(message("new"))
        self.assertEqual(self.view.exists(), 3)
        self.assertEqual(len(self.told), 2)  # the bus called it synchronously, twice
        self.assertEqual(
            self.view.flush(),
            [b"2 FETCH (FLAGS (\\Flagged \\Seen) UID 2)", b"4 EXISTS", b"1 RECENT"],
        )
        self.assertEqual(self.view.flush(), [])
        self.view.condstore = True
        self.inbox.set_flags([1], ["\\Answered"], "add", origin="other")
        modseq = self.inbox.message(1).modseq
        self.assertEqual(
            self.view.flush(), [b"1 FETCH (FLAGS (\\Answered \\Seen) UID 1 MODSEQ (%d))" % modseq]
        )

    def test_own_flag_changes_are_not_echoed(self):
        self.inbox.set_flags([2], ["\\Flagged"], "add", origin=self.me)
        self.assertFalse(self.view.pending())
        self.assertEqual(self.view.flush(), [])

    def test_expunge_held_back_then_told_in_order(self):
        self.inbox.set_flags([1, 3], ["\\Deleted"], "add", origin="other")
        self.inbox.expunge(origin="other")
        self.inbox.add(message("late"))
        held = self.view.flush(allow_expunge=False)
        self.assertEqual(held, [b"4 EXISTS", b"1 RECENT"])
        self.assertTrue(self.view.is_ghost(1))
        self.assertEqual(self.view.resolve(parse_sequence_set("1:*"), False), [(1, 1), (2, 2), (3, 3), (4, 4)])
        self.assertEqual(self.view.flush(), [b"3 EXPUNGE", b"1 EXPUNGE"])
        self.assertEqual(self.view.uids, [2, 4])

    def test_added_then_expunged_before_told_is_never_told(self):
        uid = self.inbox.add(message("brief"), ["\\Deleted"])
        self.inbox.expunge(uids=[uid], origin="other")
        self.assertEqual(self.view.flush(allow_expunge=False), [])
        self.assertEqual(self.view.uids, [1, 2, 3])

    def test_resolve(self):
        self.assertEqual(self.view.resolve(parse_sequence_set("2,*"), False), [(2, 2), (3, 3)])
        self.assertEqual(self.view.resolve(parse_sequence_set("3:1"), False), [(1, 1), (2, 2), (3, 3)])
        self.assertEqual(self.view.resolve(parse_sequence_set("2:9999"), True), [(2, 2), (3, 3)])
        self.assertEqual(self.view.resolve(parse_sequence_set("100:*"), True), [(3, 3)])
        self.assertEqual(self.view.resolve(parse_sequence_set("500:600"), True), [])
        self.assertRaises(ValueError, self.view.resolve, parse_sequence_set("4"), False)
        self.assertRaises(ValueError, self.view.resolve, parse_sequence_set("2:4"), False)
        self.assertEqual(self.view.resolve(parse_sequence_set("5:*"), False), [(3, 3)])
        for bad in ("0", "1:", "a", "1,,2", "*:*:*", ""):
            self.assertRaises(ValueError, parse_sequence_set, bad)

    def test_format_set(self):
        self.assertEqual(format_set([1, 2, 3, 7, 9, 10]), "1:3,7,9:10")
        self.assertEqual(format_set([5, 4]), "5,4")
        self.assertEqual(format_set([]), "")

    def test_other_mailboxes_are_ignored(self):
        self.account.mailbox("Trash").add(message("elsewhere"))
        self.assertFalse(self.view.pending())
        self.assertEqual(self.told, [])

    def test_empty_mailbox(self):
        trash = self.account.mailbox("Trash")
        view = SessionView(self.account, trash, self.me, False)
        self.addCleanup(view.close)
        self.assertEqual(view.resolve(parse_sequence_set("1:*"), False), [])
        self.assertEqual(view.resolve(parse_sequence_set("*"), False), [])
        self.assertEqual(view.resolve(parse_sequence_set("1:5"), True), [])
        self.assertRaises(ValueError, view.resolve, parse_sequence_set("1"), False)
