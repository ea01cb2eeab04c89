"""Tests for imapwebpush.store.account: the mailbox tree, subscriptions, special use, the store."""

import os

from twisted.internet.task import Clock
from twisted.trial import unittest

from imapwebpush.store.account import MailStore
from imapwebpush.store.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxNotFound,
    NotAllowed,
)
from imapwebpush.events import (
    MailboxCreated,
    MailboxDeleted,
    MailboxRenamed,
    MessageAdded,
    MessagesExpunged,
)

T0 = 1700000000.0
MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"
DEFAULTS = ["INBOX", "Drafts", "Junk", "Sent", "Trash"]


class AccountTestCase(unittest.TestCase):
    def setUp(self):
        self.path = self.mktemp()
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MailStore(self.path, self.clock)
        self.account = self.store.account("Bob@Example.org")
        self.events = []
        self.account.bus.subscribe(self.events.append)

    def restarted(self):
        return MailStore(self.path, self.clock).account("bob@example.org")


class StoreTests(AccountTestCase):
    def test_one_account_object_per_address(self):
        self.assertIs(self.store.account("BOB@example.ORG"), self.account)
        self.assertEqual(self.account.address, "bob@example.org")
        self.assertTrue(os.path.isdir(os.path.join(self.path, "bob@example.org", "cur")))

    def test_exists(self):
        self.assertTrue(self.store.exists("bob@EXAMPLE.org"))
        self.assertFalse(self.store.exists("alice@example.org"))
        self.assertFalse(os.path.exists(os.path.join(self.path, "alice@example.org")))
        self.assertFalse(self.store.exists("../etc"))
        self.assertEqual(self.store.accounts(), ["bob@example.org"])

    def test_bad_address(self):
        for bad in ["", "a/b", ".hidden", "a\nb", "..", "x\\y"]:
            self.assertRaises(ValueError, self.store.account, bad)

    def test_new_account_defaults(self):
        self.assertEqual(self.account.list_mailboxes(), DEFAULTS)
        self.assertEqual(self.account.subscriptions(), sorted(DEFAULTS))
        for name, use in [("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk")]:
            self.assertEqual(self.account.special_use(name), use)
            self.assertTrue(self.account.is_selectable(name))
        self.assertIsNone(self.account.special_use("INBOX"))
        self.assertIsNone(self.account.special_use("//bad"))
        self.assertEqual(self.restarted().special_use("Sent"), "\\Sent")

    def test_store_bus_gets_every_account(self):
        seen = []
        self.store.bus.subscribe(seen.append)
        other = self.store.account("carol@example.org")
        self.account.mailbox("INBOX").add(MESSAGE)
        other.mailbox("INBOX").add(MESSAGE)
        self.assertEqual(
            [(e.account, type(e)) for e in seen],
            [("bob@example.org", MessageAdded), ("carol@example.org", MessageAdded)],
        )
        self.assertEqual(len(self.events), 1)

    def test_delete_account(self):
        inbox = self.account.mailbox("INBOX")
        inbox.add(MESSAGE)
        self.assertTrue(self.store.delete_account("BOB@example.org"))
        self.assertFalse(self.store.exists("bob@example.org"))
        self.assertEqual(
            [e.mailbox for e in self.events if isinstance(e, MailboxDeleted)], DEFAULTS
        )
        self.assertRaises(MailboxNotFound, inbox.uids)
        self.assertFalse(self.store.delete_account("bob@example.org"))
        fresh = self.store.account("bob@example.org")
        self.assertIsNot(fresh, self.account)
        self.assertEqual(fresh.mailbox("INBOX").uids(), [])
        self.assertEqual(os.listdir(self.path), ["bob@example.org"])


class TreeTests(AccountTestCase):
    def test_inbox_any_case(self):
        inbox = self.account.mailbox("inBox")
        self.assertIs(self.account.mailbox("INBOX"), inbox)
        self.assertEqual(inbox.name, "INBOX")
        self.assertRaises(MailboxExists, self.account.create_mailbox, "inbox")
        self.assertTrue(self.account.is_selectable("Inbox"))

    def test_create_with_parents(self):
        box = self.account.create_mailbox("Archive/2024/Q1", origin="me")
        self.assertEqual(box.name, "Archive/2024/Q1")
        self.assertEqual(
            self.account.list_mailboxes(),
            ["INBOX", "Archive", "Archive/2024", "Archive/2024/Q1", "Drafts", "Junk", "Sent", "Trash"],
        )
        self.assertEqual(
            self.events,
            [
                MailboxCreated("bob@example.org", "Archive"),
                MailboxCreated("bob@example.org", "Archive/2024"),
                MailboxCreated("bob@example.org", "Archive/2024/Q1"),
            ],
        )
        self.assertEqual(self.events[0].origin, "me")
        self.assertTrue(self.account.has_children("Archive"))
        self.assertFalse(self.account.has_children("Archive/2024/Q1"))
        self.assertRaises(MailboxExists, self.account.create_mailbox, "Archive/2024")
        self.assertIs(self.account.mailbox("Archive/2024/Q1"), box)

    def test_names_with_dots_and_odd_characters(self):
        names = ["v1.2/notes", "100%", "a.b.c", "Ünïcødé ✓", "tab\there", "back\\slash", "..", "x:y"]
        for name in names:
            self.account.create_mailbox(name).add(MESSAGE)
        listed = self.restarted().list_mailboxes()
        for name in names:
            self.assertIn(name, listed)
            self.assertEqual(self.restarted().mailbox(name).uids(), [1])
        self.assertNotIn("v1", listed)
        self.assertNotIn("a", listed)
        self.assertIn(".v1%2E2.notes", os.listdir(self.account.path))

    def test_inbox_children(self):
        self.account.create_mailbox("inbox/Lists")
        self.assertIn("INBOX/Lists", self.account.list_mailboxes())
        self.assertTrue(self.account.has_children("INBOX"))
        self.assertEqual(self.account.list_mailboxes()[0], "INBOX")

    def test_bad_names(self):
        for bad in ["", "/a", "a/", "a//b", "a\0b", "a\rb", "a\nb", "x" * 300, "\udcff"]:
            self.assertRaises(InvalidMailboxName, self.account.create_mailbox, bad)
            self.assertFalse(self.account.is_selectable(bad))
        self.assertRaises(InvalidMailboxName, self.account.mailbox, "a//b")
        self.assertRaises(InvalidMailboxName, self.account.subscribe, "a\nb")
        self.assertEqual(self.account.list_mailboxes(), DEFAULTS)

    def test_unknown_mailbox(self):
        self.assertRaises(MailboxNotFound, self.account.mailbox, "Nope")
        self.assertRaises(MailboxNotFound, self.account.delete_mailbox, "Nope")
        self.assertRaises(MailboxNotFound, self.account.rename_mailbox, "Nope", "Yes")

    def test_uidvalidity_differs_after_recreate(self):
        first = self.account.create_mailbox("Box").uidvalidity
        self.account.delete_mailbox("Box")
        second = self.account.create_mailbox("Box").uidvalidity
        self.assertNotEqual(first, second)
        self.assertEqual(self.restarted().mailbox("Box").uidvalidity, second)


class DeleteTests(AccountTestCase):
    def test_delete_leaf(self):
        box = self.account.create_mailbox("Old")
        box.add(MESSAGE)
        self.events.clear()
        self.account.delete_mailbox("Old", origin="me")
        self.assertNotIn("Old", self.account.list_mailboxes())
        self.assertEqual(self.events, [MailboxDeleted("bob@example.org", "Old")])
        self.assertRaises(MailboxNotFound, self.account.mailbox, "Old")
        self.assertRaises(MailboxNotFound, box.add, MESSAGE)
        self.assertNotIn("Old", self.restarted().list_mailboxes())
        self.assertEqual(
            [e for e in os.listdir(self.account.path) if "trash" in e or "new-" in e], []
        )

    def test_delete_with_children_becomes_noselect(self):
        self.account.create_mailbox("P/C").add(MESSAGE)
        self.account.mailbox("P").add(MESSAGE)
        self.account.delete_mailbox("P")
        self.assertIn("P", self.account.list_mailboxes())
        self.assertFalse(self.account.is_selectable("P"))
        self.assertTrue(self.account.has_children("P"))
        self.assertRaises(MailboxNotFound, self.account.mailbox, "P")
        self.assertEqual(self.account.mailbox("P/C").uids(), [1])
        self.assertRaises(NotAllowed, self.account.delete_mailbox, "P")
        # Selectable again when created again, and empty.
        self.assertEqual(self.account.create_mailbox("P").uids(), [])
        self.account.delete_mailbox("P")
        self.account.delete_mailbox("P/C")
        self.assertNotIn("P", self.account.list_mailboxes())

    def test_delete_inbox_refused(self):
        self.assertRaises(NotAllowed, self.account.delete_mailbox, "inbox")
        self.assertTrue(self.account.is_selectable("INBOX"))

    def test_special_use_dropped(self):
        self.account.delete_mailbox("Junk")
        self.account.create_mailbox("Junk")
        self.assertIsNone(self.account.special_use("Junk"))


class RenameTests(AccountTestCase):
    def test_rename_with_children(self):
        parent = self.account.create_mailbox("Work")
        child = self.account.create_mailbox("Work/2024")
        parent.add(MESSAGE, flags=["\\Seen"])
        child.add(MESSAGE, flags=["kw"])
        validity = child.uidvalidity
        self.account.subscribe("Work/2024")
        self.events.clear()
        self.account.rename_mailbox("Work", "Jobs/Old", origin="me")
        self.assertEqual(
            self.events,
            [
                MailboxCreated("bob@example.org", "Jobs"),
                MailboxRenamed("bob@example.org", "Work", "Jobs/Old"),
                MailboxRenamed("bob@example.org", "Work/2024", "Jobs/Old/2024"),
            ],
        )
        self.assertEqual(self.events[1].origin, "me")
        listed = self.account.list_mailboxes()
        self.assertNotIn("Work", listed)
        self.assertNotIn("Work/2024", listed)
        self.assertIs(self.account.mailbox("Jobs/Old/2024"), child)
        self.assertEqual(child.name, "Jobs/Old/2024")
        self.assertEqual(child.uids(), [1])
        self.assertEqual(child.message(1).flags, frozenset(["kw"]))
        self.assertEqual(child.message(1).read(), MESSAGE)
        child.add(MESSAGE)
        fresh = self.restarted()
        self.assertEqual(fresh.mailbox("Jobs/Old/2024").uidvalidity, validity)
        self.assertEqual(fresh.mailbox("Jobs/Old/2024").uids(), [1, 2])
        self.assertEqual(fresh.mailbox("Jobs/Old").message(1).flags, frozenset(["\\Seen"]))
        self.assertIn("Jobs/Old/2024", fresh.subscriptions())
        self.assertNotIn("Work/2024", fresh.subscriptions())

    def test_rename_keeps_special_use(self):
        self.account.rename_mailbox("Sent", "Sent Items")
        self.assertEqual(self.account.special_use("Sent Items"), "\\Sent")
        self.assertIsNone(self.account.special_use("Sent"))

    def test_rename_conflicts(self):
        self.account.create_mailbox("A/B")
        self.assertRaises(MailboxExists, self.account.rename_mailbox, "A", "Sent")
        self.assertRaises(MailboxExists, self.account.rename_mailbox, "A", "inbox")
        self.assertRaises(NotAllowed, self.account.rename_mailbox, "A", "A/B/C")
        self.assertRaises(InvalidMailboxName, self.account.rename_mailbox, "A", "A/")
        self.assertIn("A/B", self.account.list_mailboxes())

    def test_rename_inbox(self):
        inbox = self.account.mailbox("INBOX")
        u1 = inbox.add(MESSAGE, flags=["\\Flagged", "kw"], internaldate=T0 - 5)
        inbox.add(MESSAGE)
        self.account.create_mailbox("INBOX/Keep")
        self.events.clear()
        self.account.rename_mailbox("INBOX", "Old Inbox", origin="me")
        self.assertEqual(inbox.uids(), [])
        self.assertTrue(self.account.is_selectable("INBOX"))
        self.assertIn("INBOX/Keep", self.account.list_mailboxes())
        moved = self.account.mailbox("Old Inbox")
        self.assertEqual(moved.uids(), [1, 2])
        self.assertEqual(moved.message(1).flags, frozenset(["\\Flagged", "kw"]))
        self.assertEqual(moved.message(1).internaldate, T0 - 5)
        kinds = [type(e) for e in self.events]
        self.assertEqual(kinds, [MailboxCreated, MessageAdded, MessageAdded, MessagesExpunged])
        self.assertEqual(self.events[-1].uids, (u1, 2))
        self.assertEqual(inbox.add(MESSAGE), 3)


class SubscriptionTests(AccountTestCase):
    def test_subscribe_persists(self):
        self.account.subscribe("Lists/Twisted")  # need not exist
        self.account.subscribe("lists/twisted")
        self.account.unsubscribe("Junk")
        self.account.unsubscribe("never")
        expected = ["Drafts", "INBOX", "Lists/Twisted", "Sent", "Trash", "lists/twisted"]
        self.assertEqual(self.account.subscriptions(), expected)
        self.assertEqual(self.restarted().subscriptions(), expected)

    def test_inbox_name_normalised(self):
        self.account.unsubscribe("inbox")
        self.assertNotIn("INBOX", self.account.subscriptions())
        self.account.subscribe("Inbox")
        self.assertIn("INBOX", self.account.subscriptions())

    def test_set_special_use(self):
        self.account.create_mailbox("Everything")
        self.account.set_special_use("Everything", "\\All")
        self.assertEqual(self.restarted().special_use("Everything"), "\\All")
        self.assertRaises(ValueError, self.account.set_special_use, "Everything", "\\Bogus")
        self.assertRaises(MailboxNotFound, self.account.set_special_use, "Nope", "\\All")
        self.account.set_special_use("Everything", None)
        self.assertIsNone(self.restarted().special_use("Everything"))


class OtherProcessTests(AccountTestCase):
    """Another process (the admin command) deletes and re-creates an account."""

    def test_account_replaced_behind_our_back(self):
        inbox = self.account.mailbox("INBOX")
        inbox.add(MESSAGE)
        other = MailStore(self.path, self.clock)
        other.delete_account("bob@example.org")
        other.account("bob@example.org")
        self.assertRaises(MailboxNotFound, inbox.uids)
        self.assertRaises(MailboxNotFound, self.account.list_mailboxes)
        fresh = self.store.account("bob@example.org")
        self.assertIsNot(fresh, self.account)
        self.assertEqual(fresh.mailbox("INBOX").uids(), [])
        self.assertEqual(fresh.mailbox("INBOX").add(MESSAGE), 1)

    def test_mailbox_deleted_behind_our_back(self):
        box = self.account.create_mailbox("Box")
        box.add(MESSAGE)
        MailStore(self.path, self.clock).account("bob@example.org").delete_mailbox("Box")
        self.assertRaises(MailboxNotFound, box.add, MESSAGE)
        self.assertRaises(MailboxNotFound, self.account.mailbox, "Box")
        self.assertNotIn("Box", self.account.list_mailboxes())

    def test_mailbox_replaced_behind_our_back(self):
        box = self.account.create_mailbox("Box")
        box.add(MESSAGE)
        other = MailStore(self.path, self.clock).account("bob@example.org")
        other.delete_mailbox("Box")
        other.create_mailbox("Box")
        fresh = self.account.mailbox("Box")
        self.assertIsNot(fresh, box)
        self.assertEqual(fresh.uids(), [])
        self.assertNotEqual(fresh.uidvalidity, box.uidvalidity)
        self.assertRaises(MailboxNotFound, box.uids)

    def test_account_replaced_within_one_mtime_tick(self):
        """The account folder's mtime looks unchanged (same tick) but its identity is new:
        asking for a mailbox again says the account is gone (no KeyError)."""
        inbox = self.account.mailbox("INBOX")
        inbox.add(MESSAGE)
        self.account.list_mailboxes()  # caches the tree's mtime
        before = os.stat(self.account.path)
        with open(os.path.join(self.account.path, "imapwebpush-account"), "w") as f:
            f.write("another-process")
        with open(os.path.join(self.account.path, "new", "foreign"), "wb") as f:
            f.write(MESSAGE)
        os.utime(self.account.path, ns=(before.st_atime_ns, before.st_mtime_ns))
        self.assertRaises(MailboxNotFound, self.account.mailbox, "INBOX")
        self.assertRaises(MailboxNotFound, inbox.uids)


class LeftoverTests(unittest.TestCase):
    def test_crash_leftovers_removed(self):
        path = self.mktemp()
        clock = Clock()
        account = MailStore(path, clock).account("bob@example.org")
        for leftover in [
            os.path.join(path, ".trash-abc"),
            os.path.join(path, ".new-old"),
            os.path.join(account.path, "imapwebpush-trash-1"),
            os.path.join(account.path, "imapwebpush-new-old"),
        ]:
            os.makedirs(os.path.join(leftover, "cur"))
            os.utime(leftover, (0, 0))
        recent = os.path.join(account.path, "imapwebpush-new-recent")
        os.makedirs(recent)
        MailStore(path, clock).account("bob@example.org")
        self.assertEqual(sorted(os.listdir(path)), ["bob@example.org"])
        left = [e for e in os.listdir(account.path) if e.startswith("imapwebpush-new-") or "trash" in e]
        self.assertEqual(left, ["imapwebpush-new-recent"])
