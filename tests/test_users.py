"""The users file: scrypt hashes, atomic rewrites, reloads, and the cred checker."""

import json
import os
import stat

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.trial import unittest

from imapwebpush import datadir
from imapwebpush.interfaces import IUserDatabase
from imapwebpush.store import users as users_module
from imapwebpush.store.users import (
    InvalidAddress,
    UnknownUser,
    UserChecker,
    UserDatabase,
    UserExists,
    normalize_address,
)

# Cheap scrypt for tests; one test uses the real defaults.
FAST = {"n": 16, "r": 1, "p": 1}


class RecordingStore:
    """Records which accounts the user database creates and deletes."""

    def __init__(self):
        self.calls = []

    def account(self, address):
        self.calls.append(("account", address))

    def delete_account(self, address):
        self.calls.append(("delete_account", address))


class AddressTests(unittest.TestCase):
    def test_lower_cased(self):
        self.assertEqual(normalize_address("Alice@Example.ORG"), "alice@example.org")
        self.assertEqual(normalize_address(b"bob.smith+tag@mail.example"), "bob.smith+tag@mail.example")

    def test_invalid(self):
        for bad in ["", "alice", "@example.org", "alice@", "a@b@c", "al ice@example.org",
                    "alice@exa_mple.org", "alice@-example.org", ".alice@example.org",
                    "alice..x@example.org", "x" * 65 + "@example.org", "al\u00efce@example.org",
                    "a/b@example.org", "/etc@example.org"]:
            self.assertRaises(InvalidAddress, normalize_address, bad)
        self.assertRaises(InvalidAddress, normalize_address, b"\xff@example.org")


class UserDatabaseTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.store = RecordingStore()
        self.db = UserDatabase(self.dir, mail_store=self.store, scrypt_params=FAST)

    def read_file(self):
        with open(datadir.users(self.dir)) as f:
            return json.load(f)

    def test_interface(self):
        self.assertTrue(IUserDatabase.providedBy(self.db))

    def test_add_and_check(self):
        self.db.add("Alice@Example.org", "correct horse")
        self.assertTrue(self.db.check("alice@example.org", "correct horse"))
        self.assertTrue(self.db.check("ALICE@example.org", b"correct horse"))
        self.assertFalse(self.db.check("alice@example.org", "wrong horse"))
        self.assertFalse(self.db.check("nobody@example.org", "correct horse"))
        self.assertFalse(self.db.check("not an address", "correct horse"))
        self.assertEqual(self.db.users(), ["alice@example.org"])
        self.assertTrue(self.db.exists("ALICE@EXAMPLE.ORG"))
        self.assertFalse(self.db.exists("bob@example.org"))
        self.assertEqual(self.store.calls, [("account", "alice@example.org")])

    def test_file_format_and_mode(self):
        self.db.add("alice@example.org", "correct horse")
        self.db.add("bob@example.org", "correct horse")
        path = datadir.users(self.dir)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        raw = open(path, "rb").read()
        self.assertNotIn(b"correct horse", raw)
        doc = self.read_file()
        alice = doc["users"]["alice@example.org"]["scrypt"]
        bob = doc["users"]["bob@example.org"]["scrypt"]
        self.assertEqual((alice["n"], alice["r"], alice["p"]), (16, 1, 1))
        # A random salt per user: same password, different salts and hashes.
        self.assertNotEqual(alice["salt"], bob["salt"])
        self.assertNotEqual(alice["hash"], bob["hash"])

    def test_default_parameters(self):
        db = UserDatabase(self.dir)
        db.add("carol@example.org", "s3cret")
        record = self.read_file()["users"]["carol@example.org"]["scrypt"]
        self.assertEqual((record["n"], record["r"], record["p"]), (2**14, 8, 1))
        self.assertTrue(db.check("carol@example.org", "s3cret"))

    def test_stored_parameters_used(self):
        """Hashes keep verifying after the parameters for new hashes change."""
        self.db.add("alice@example.org", "pw1")
        other = UserDatabase(self.dir, scrypt_params={"n": 32, "r": 2, "p": 1})
        self.assertTrue(other.check("alice@example.org", "pw1"))
        other.add("bob@example.org", "pw2")
        self.assertTrue(self.db.check("bob@example.org", "pw2"))
        self.assertEqual(self.read_file()["users"]["bob@example.org"]["scrypt"]["n"], 32)

    def test_restart(self):
        self.db.add("alice@example.org", "pw")
        again = UserDatabase(self.dir, scrypt_params=FAST)
        self.assertEqual(again.users(), ["alice@example.org"])
        self.assertTrue(again.check("alice@example.org", "pw"))
        self.assertFalse(again.check("alice@example.org", "pW"))

    def test_sees_changes_of_another_process(self):
        """The server's instance picks up users the admin command adds."""
        server = UserDatabase(self.dir, scrypt_params=FAST)
        self.assertEqual(server.users(), [])
        self.db.add("alice@example.org", "pw")
        self.assertTrue(server.exists("alice@example.org"))
        self.assertTrue(server.check("alice@example.org", "pw"))
        self.db.delete("alice@example.org")
        self.assertFalse(server.exists("alice@example.org"))

    def test_add_existing(self):
        self.db.add("alice@example.org", "pw")
        e = self.assertRaises(UserExists, self.db.add, "ALICE@example.org", "other")
        self.assertIsInstance(e, ValueError)
        self.assertTrue(self.db.check("alice@example.org", "pw"))

    def test_add_invalid(self):
        self.assertRaises(InvalidAddress, self.db.add, "alice", "pw")
        self.assertRaises(ValueError, self.db.add, "alice@example.org", "")
        self.assertEqual(self.db.users(), [])
        self.assertFalse(os.path.exists(datadir.users(self.dir)))

    def test_delete(self):
        self.db.add("alice@example.org", "pw")
        self.db.add("bob@example.org", "pw")
        self.db.delete("Alice@example.org")
        self.assertEqual(self.db.users(), ["bob@example.org"])
        self.assertEqual(self.store.calls[-1], ("delete_account", "alice@example.org"))
        self.assertEqual(UserDatabase(self.dir).users(), ["bob@example.org"])

    def test_delete_unknown(self):
        e = self.assertRaises(UnknownUser, self.db.delete, "nobody@example.org")
        self.assertIsInstance(e, KeyError)
        self.assertEqual(str(e), "no such user: nobody@example.org")
        self.assertRaises(UnknownUser, self.db.delete, "not-an-address")
        self.assertNotIn("delete_account", [c[0] for c in self.store.calls])

    def test_set_password(self):
        self.db.add("alice@example.org", "old")
        self.db.set_password("alice@example.org", "new")
        self.assertFalse(self.db.check("alice@example.org", "old"))
        self.assertTrue(UserDatabase(self.dir).check("alice@example.org", "new"))
        self.assertRaises(UnknownUser, self.db.set_password, "bob@example.org", "x")

    def test_atomic_write(self):
        """A crash before the rename leaves the old file whole and no tmp file visible as users."""
        self.db.add("alice@example.org", "pw")
        path = datadir.users(self.dir)
        before = open(path, "rb").read()

        def crash(src, dst):
            raise OSError(28, "No space left on device")

        self.patch(users_module.os, "replace", crash)
        self.assertRaises(OSError, self.db.add, "bob@example.org", "pw")
        self.assertEqual(open(path, "rb").read(), before)
        self.assertEqual(UserDatabase(self.dir).users(), ["alice@example.org"])
        self.assertEqual(sorted(n for n in os.listdir(self.dir) if not n.startswith(".")), [datadir.USERS_FILE])

    def test_rewrite_replaces_file(self):
        self.db.add("alice@example.org", "pw")
        path = datadir.users(self.dir)
        inode = os.stat(path).st_ino
        self.db.add("bob@example.org", "pw")
        self.assertNotEqual(os.stat(path).st_ino, inode)
        leftovers = [n for n in os.listdir(self.dir) if ".tmp" in n]
        self.assertEqual(leftovers, [])

    def test_corrupt_file(self):
        with open(datadir.users(self.dir), "w") as f:
            f.write("{not json")
        e = self.assertRaises(users_module.UsersFileError, UserDatabase, self.dir)
        self.assertIn("cannot parse", str(e))
        self.assertIn(datadir.USERS_FILE, str(e))


class CheckerTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.db = UserDatabase(self.dir, scrypt_params=FAST)
        self.db.add("alice@example.org", "pw")
        self.threaded = []

        def defer_to_thread(f, *args):
            self.threaded.append(f)
            return defer.maybeDeferred(f, *args)

        self.checker = UserChecker(self.db, defer_to_thread=defer_to_thread)

    def test_right_password(self):
        d = self.checker.requestAvatarId(UsernamePassword(b"Alice@Example.org", b"pw"))
        self.assertEqual(self.successResultOf(d), "alice@example.org")
        self.assertEqual(len(self.threaded), 1, "scrypt must run through deferToThread")

    def test_wrong_password(self):
        d = self.checker.requestAvatarId(UsernamePassword(b"alice@example.org", b"pW"))
        self.failureResultOf(d, UnauthorizedLogin)

    def test_unknown_user_costs_one_scrypt_too(self):
        for name in [b"bob@example.org", b"not an address", b"\xff\xfe"]:
            d = self.checker.requestAvatarId(UsernamePassword(name, b"pw"))
            self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(len(self.threaded), 3)

    def test_corrupt_file_refuses_logins(self):
        with open(datadir.users(self.dir), "w") as f:
            f.write("{broken")
        d = self.checker.requestAvatarId(UsernamePassword(b"alice@example.org", b"pw"))
        self.failureResultOf(d, UnauthorizedLogin)

    def test_str_credentials(self):
        d = self.checker.requestAvatarId(UsernamePassword("alice@example.org", "pw"))
        self.assertEqual(self.successResultOf(d), "alice@example.org")

    def test_real_thread(self):
        """With the default deferToThread the answer comes back through the reactor."""
        checker = UserChecker(self.db)
        d = checker.requestAvatarId(UsernamePassword(b"alice@example.org", b"pw"))
        d.addCallback(self.assertEqual, "alice@example.org")
        return d


class CheckerConcurrencyTests(unittest.TestCase):
    """At most ``max_concurrent`` scrypt computations at once (16 MiB each): 200 parallel
    logins used to add 160 MB."""

    def setUp(self):
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.db = UserDatabase(self.dir, scrypt_params=FAST)
        self.db.add("alice@example.org", "pw")
        self.running = []

        def defer_to_thread(f, *args):
            d = defer.Deferred()
            self.running.append((d, f, args))
            return d

        self.checker = UserChecker(self.db, defer_to_thread=defer_to_thread, max_concurrent=2)

    def finish_one(self):
        d, f, args = self.running.pop(0)
        d.callback(f(*args))

    def test_at_most_two_at_once(self):
        results = [
            self.checker.requestAvatarId(UsernamePassword(b"alice@example.org", b"pw" if i % 2 else b"no"))
            for i in range(10)
        ]
        self.assertEqual(len(self.running), 2)
        for done in range(1, 9):
            self.finish_one()
            self.assertEqual(len(self.running), 2, "after %d done" % (done,))
        self.finish_one()
        self.finish_one()
        self.assertEqual(self.running, [])
        for i, d in enumerate(results):
            if i % 2:
                self.assertEqual(self.successResultOf(d), "alice@example.org")
            else:
                self.failureResultOf(d, UnauthorizedLogin)
