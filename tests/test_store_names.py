"""Tests for imapwebpush.store.names: IMAP names <-> Maildir++ folders."""

from hypothesis import given, strategies as st
from twisted.trial import unittest

from imapwebpush.store import names
from imapwebpush.store.errors import InvalidMailboxName


class NameTests(unittest.TestCase):
    def test_examples(self):
        self.assertEqual(names.folder_for("INBOX"), "")
        self.assertEqual(names.folder_for("Sent"), ".Sent")
        self.assertEqual(names.folder_for("Archive/2024"), ".Archive.2024")
        self.assertEqual(names.folder_for("v1.2"), ".v1%2E2")
        self.assertEqual(names.folder_for("100%"), ".100%25")
        self.assertEqual(names.folder_for("Ünï"), ".Ünï")
        self.assertEqual(names.folder_for("a\tb"), ".a%09b")
        self.assertEqual(names.folder_for("INBOX/x"), ".INBOX.x")

    def test_normalise(self):
        self.assertEqual(names.normalise("inbox"), "INBOX")
        self.assertEqual(names.normalise("Inbox/Sub"), "INBOX/Sub")
        self.assertEqual(names.normalise("Inboxes"), "Inboxes")
        self.assertEqual(names.normalise("Sent"), "Sent")
        for bad in ["", "/", "/a", "a/", "a//b", "a\0", "a\r", "a\n", b"bytes", "\ud800"]:
            self.assertRaises(InvalidMailboxName, names.normalise, bad)

    def test_foreign_folders_ignored(self):
        for entry in [".", "..", "cur", ".a..b", ".a%zz", ".INBOX", ".a%2e", ".%FF", ".a%2F"]:
            self.assertIsNone(names.name_for_folder(entry), entry)

    def test_too_long(self):
        self.assertRaises(InvalidMailboxName, names.folder_for, "a/" * 130 + "b")
        self.assertRaises(InvalidMailboxName, names.folder_for, "%" * 90)

    def test_parents(self):
        self.assertEqual(names.parents("a/b/c"), ["a", "a/b"])
        self.assertEqual(names.parents("a"), [])
        self.assertTrue(names.is_inside("a/b", "a"))
        self.assertTrue(names.is_inside("a", "a"))
        self.assertFalse(names.is_inside("ab", "a"))

    @given(st.lists(st.text(min_size=1, max_size=12).filter(lambda p: "/" not in p), min_size=1, max_size=4))
    def test_round_trip(self, parts):
        try:
            name = names.normalise("/".join(parts))
            folder = names.folder_for(name)
        except InvalidMailboxName:
            return
        if name == "INBOX":
            self.assertEqual(folder, "")
            return
        self.assertNotIn("/", folder)
        self.assertEqual(folder.count("."), len(parts))
        self.assertEqual(names.name_for_folder(folder), name)
