"""The ``imapwebpush`` admin command, run through ``main(argv)`` with captured output."""

import io
import os
import stat
import subprocess
import sys

from twisted.trial import unittest

from imapwebpush import cli, datadir
from imapwebpush.store.account import MailStore
from imapwebpush.store.users import UserDatabase


class Run:
    """The outcome of one command: exit status and what it printed."""

    def __init__(self, status, out, err):
        self.status, self.out, self.err = status, out, err


class CLITests(unittest.TestCase):
    def setUp(self):
        self.data = os.path.abspath(self.mktemp())  # not created: the command creates it
        self.prompts = []

    def run_cli(self, *argv, stdin="", passwords=()):
        out, err = io.StringIO(), io.StringIO()
        answers = list(passwords)

        def fake_getpass(prompt):
            self.prompts.append(prompt)
            if not answers:
                raise EOFError()
            return answers.pop(0)

        status = cli.main(
            ["--data", self.data] + list(argv),
            stdin=io.StringIO(stdin),
            stdout=out,
            stderr=err,
            getpass_=fake_getpass,
        )
        return Run(status, out.getvalue(), err.getvalue())

    def test_add_with_prompt(self):
        r = self.run_cli("user", "add", "Alice@Example.org", passwords=["pw1", "pw1"])
        self.assertEqual((r.status, r.out, r.err), (0, "added alice@example.org\n", ""))
        self.assertEqual(self.prompts, ["Password for alice@example.org: ", "Repeat password: "])
        self.assertTrue(UserDatabase(self.data).check("alice@example.org", "pw1"))
        self.assertEqual(stat.S_IMODE(os.stat(datadir.users(self.data)).st_mode), 0o600)
        # The account's mailboxes exist.
        self.assertIn("INBOX", MailStore(datadir.mail(self.data)).account("alice@example.org").list_mailboxes())

    def test_add_password_mismatch(self):
        r = self.run_cli("user", "add", "alice@example.org", passwords=["pw1", "pw2"])
        self.assertEqual((r.status, r.err), (1, "imapwebpush: error: the passwords do not match\n"))
        self.assertEqual(UserDatabase(self.data).users(), [])

    def test_add_no_terminal(self):
        r = self.run_cli("user", "add", "alice@example.org")
        self.assertEqual(r.status, 1)
        self.assertEqual(
            r.err,
            "imapwebpush: error: no password given (use --password-stdin when there is no terminal)\n",
        )

    def test_add_password_stdin(self):
        r = self.run_cli("user", "add", "--password-stdin", "bob@example.org", stdin="s3cret pass\n")
        self.assertEqual(r.status, 0)
        self.assertEqual(self.prompts, [])
        self.assertTrue(UserDatabase(self.data).check("bob@example.org", "s3cret pass"))
        r = self.run_cli("user", "add", "--password-stdin", "carol@example.org", stdin="")
        self.assertEqual((r.status, r.err), (1, "imapwebpush: error: no password on standard input\n"))

    def test_add_existing(self):
        self.run_cli("user", "add", "--password-stdin", "alice@example.org", stdin="pw\n")
        r = self.run_cli("user", "add", "--password-stdin", "ALICE@example.org", stdin="other\n")
        self.assertEqual((r.status, r.out), (1, ""))
        self.assertEqual(r.err, "imapwebpush: error: user already exists: alice@example.org\n")
        self.assertTrue(UserDatabase(self.data).check("alice@example.org", "pw"))

    def test_add_invalid_address(self):
        r = self.run_cli("user", "add", "--password-stdin", "alice", stdin="pw\n")
        self.assertEqual(r.status, 2)
        self.assertEqual(
            r.err, "imapwebpush: error: not a valid address (expected local@domain): 'alice'\n"
        )

    def test_list(self):
        self.assertEqual(self.run_cli("user", "list").out, "")
        for name in ["zed@example.org", "amy@example.org"]:
            self.run_cli("user", "add", "--password-stdin", name, stdin="pw\n")
        r = self.run_cli("user", "list")
        self.assertEqual((r.status, r.out), (0, "amy@example.org\nzed@example.org\n"))

    def test_delete(self):
        self.run_cli("user", "add", "--password-stdin", "alice@example.org", stdin="pw\n")
        store = MailStore(datadir.mail(self.data))
        store.account("alice@example.org").mailbox("INBOX").add(b"Subject: x\r\n\r\nhi\r\n")
        r = self.run_cli("user", "delete", "Alice@example.org")
        self.assertEqual((r.status, r.out), (0, "deleted alice@example.org and its mailboxes\n"))
        self.assertEqual(UserDatabase(self.data).users(), [])
        self.assertEqual(MailStore(datadir.mail(self.data)).accounts(), [])

    def test_delete_unknown(self):
        r = self.run_cli("user", "delete", "nobody@example.org")
        self.assertEqual((r.status, r.err), (1, "imapwebpush: error: no such user: nobody@example.org\n"))

    def test_passwd(self):
        self.run_cli("user", "add", "--password-stdin", "alice@example.org", stdin="old\n")
        r = self.run_cli("user", "passwd", "alice@example.org", passwords=["new", "new"])
        self.assertEqual((r.status, r.out), (0, "password changed for alice@example.org\n"))
        self.assertEqual(self.prompts, ["New password for alice@example.org: ", "Repeat password: "])
        db = UserDatabase(self.data)
        self.assertTrue(db.check("alice@example.org", "new"))
        self.assertFalse(db.check("alice@example.org", "old"))
        r = self.run_cli("user", "passwd", "--password-stdin", "bob@example.org", stdin="x\n")
        self.assertEqual((r.status, r.err), (1, "imapwebpush: error: no such user: bob@example.org\n"))

    def test_missing_parent_folder(self):
        self.data = os.path.join(self.data, "deeper", "data")
        r = self.run_cli("user", "list")
        self.assertEqual(r.status, 1)
        self.assertTrue(r.err.startswith("imapwebpush: error: cannot create data folder "), r.err)
        self.assertTrue(r.err.endswith(" does not exist\n"), r.err)
        self.assertEqual(r.err.count("\n"), 1)

    def test_data_is_a_file(self):
        with open(self.data, "w") as f:
            f.write("x")
        r = self.run_cli("user", "list")
        self.assertEqual(r.status, 1)
        self.assertEqual(
            r.err, "imapwebpush: error: data folder %s exists and is not a folder\n" % (self.data,)
        )

    def test_corrupt_users_file(self):
        os.mkdir(self.data)
        with open(datadir.users(self.data), "w") as f:
            f.write("[")
        r = self.run_cli("user", "list")
        self.assertEqual(r.status, 1)
        self.assertTrue(r.err.startswith("imapwebpush: error: cannot parse "), r.err)
        self.assertEqual(r.err.count("\n"), 1)

    def test_usage_errors(self):
        r = self.run_cli()
        self.assertEqual(r.status, 2)
        self.assertIn("usage: imapwebpush", r.err)
        r = self.run_cli("user", "frobnicate")
        self.assertEqual(r.status, 2)
        self.assertIn("invalid choice: 'frobnicate'", r.err)

    def test_help(self):
        r = self.run_cli("--help")
        self.assertEqual(r.status, 0)
        self.assertIn("user", r.out)
        r = self.run_cli("user", "add", "--help")
        self.assertEqual(r.status, 0)
        self.assertIn("--password-stdin", r.out)
        self.assertFalse(os.path.exists(self.data), "--help must not create the data folder")

    def test_groups_plug_in(self):
        """A new group is one function in GROUPS."""

        def register(subparsers):
            group = subparsers.add_parser("hello")
            group.set_defaults(func=lambda args, ctx: ctx.print("hi from", ctx.data_dir()) or 3)

        self.patch(cli, "GROUPS", cli.GROUPS + [register])
        r = self.run_cli("hello")
        self.assertEqual((r.status, r.out), (3, "hi from %s\n" % (self.data,)))

    def test_console_script_module(self):
        """``python -m imapwebpush.cli`` exits with the status, no traceback."""
        p = subprocess.run(
            [sys.executable, "-m", "imapwebpush.cli", "--data", self.data, "user", "delete", "x@y.org"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__))),
        )
        self.assertEqual((p.returncode, p.stdout), (1, ""))
        self.assertEqual(p.stderr, "imapwebpush: error: no such user: x@y.org\n")
