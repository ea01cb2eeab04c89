"""The ``imapwebpush`` admin command: ``imapwebpush [--data DIR] GROUP ACTION ...``.

Why groups in a list: each group (``user`` here; ``vapid`` and
``subscriptions`` from the Web Push room) is one function
``register(subparsers)`` that adds its sub-parser and sets ``func`` on each
action. Adding a group is one line in L{GROUPS}.

An action is ``func(args, ctx) -> int or None``; it raises L{CommandError}
for anything the user can fix, which ``main`` prints as one line
(``imapwebpush: error: ...``) with exit status 1 (or the error's ``status``).
The Web Push groups raise their own L{AdminError}, printed the same way
(exit status 2 for an L{AdminUsageError}). Usage errors exit with 2, as
argparse does.
"""

import argparse
import getpass
import sys

from imapwebpush import __version__, datadir
from imapwebpush.datadir import DEFAULT_DATA, DataDirError
from imapwebpush.store.account import MailStore
from imapwebpush.store.users import (
    InvalidAddress,
    UnknownUser,
    UserDatabase,
    UserExists,
    UsersFileError,
    normalize_address,
)
from imapwebpush.outbound.admin import register_dkim, register_queue
from imapwebpush.testing.testserver import register_testserver
from imapwebpush.webpush.admin import (
    AdminError,
    AdminUsageError,
    forget_account,
    register_push,
    register_subscriptions,
    register_vapid,
)


class CommandError(Exception):
    """A one-line error for the user; ``status`` is the exit status."""

    def __init__(self, message, status=1):
        Exception.__init__(self, message)
        self.status = status


class Context:
    """What actions need, made on first use so ``--help`` touches nothing.

    Tests pass their own ``stdin``, ``stdout``, ``stderr`` and ``getpass``.
    """

    def __init__(self, args, stdin=None, stdout=None, stderr=None, getpass_=None):
        self.args = args
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.getpass = getpass_ or getpass.getpass
        self._data_dir = None
        self._mail_store = None
        self._users = None

    def data_dir(self):
        """The prepared data folder (created when missing, like the server does)."""
        if self._data_dir is None:
            try:
                self._data_dir = datadir.prepare(self.args.data)
            except DataDirError as e:
                raise CommandError(str(e))
        return self._data_dir

    def mail_store(self):
        if self._mail_store is None:
            self._mail_store = MailStore(datadir.mail(self.data_dir()))
        return self._mail_store

    def users(self):
        if self._users is None:
            try:
                self._users = UserDatabase(self.data_dir(), mail_store=self.mail_store())
            except UsersFileError as e:
                raise CommandError(str(e))
        return self._users

    def print(self, *parts):
        print(*parts, file=self.stdout)


# ---------------------------------------------------------------------------
# user: add, list, delete, passwd
# ---------------------------------------------------------------------------


def _read_password(args, ctx, prompt):
    if args.password_stdin:
        line = ctx.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise CommandError("no password on standard input")
        return password
    try:
        first = ctx.getpass(prompt)
        second = ctx.getpass("Repeat password: ")
    except (EOFError, KeyboardInterrupt):
        raise CommandError("no password given (use --password-stdin when there is no terminal)")
    if first != second:
        raise CommandError("the passwords do not match")
    if not first:
        raise CommandError("the password must not be empty")
    return first


def _address(text):
    try:
        return normalize_address(text)
    except InvalidAddress as e:
        raise CommandError(str(e), status=2)


def _user_errors(action):
    """Turn the user database's errors into one-line CommandErrors."""

    def wrapped(args, ctx):
        try:
            return action(args, ctx)
        except (UserExists, UnknownUser, UsersFileError) as e:
            raise CommandError(str(e))
        except ValueError as e:
            raise CommandError(str(e), status=2)
        except OSError as e:
            raise CommandError("%s: %s" % (e.filename or "data folder", e.strerror or e))

    return wrapped


@_user_errors
def user_add(args, ctx):
    address = _address(args.address)
    users = ctx.users()
    if users.exists(address):
        raise CommandError("user already exists: %s" % (address,))
    password = _read_password(args, ctx, "Password for %s: " % (address,))
    users.add(address, password)
    ctx.print("added %s" % (address,))


@_user_errors
def user_list(args, ctx):
    for address in ctx.users().users():
        ctx.print(address)


@_user_errors
def user_delete(args, ctx):
    users = ctx.users()
    # Any entry, even one an older version saved under an invalid address.
    address = users.entry(args.address) or _address(args.address)
    users.delete(address)
    forget_account(ctx, address)  # SPEC 4: deleting the account deletes its subscriptions
    ctx.print("deleted %s and its mailboxes" % (address,))


@_user_errors
def user_passwd(args, ctx):
    address = _address(args.address)
    users = ctx.users()
    if not users.exists(address):
        raise CommandError("no such user: %s" % (address,))
    password = _read_password(args, ctx, "New password for %s: " % (address,))
    users.set_password(address, password)
    ctx.print("password changed for %s" % (address,))


def _password_stdin(parser):
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )


def register_user(subparsers):
    group = subparsers.add_parser("user", help="add, list, delete users; change passwords")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="create a user and its mailboxes")
    add.add_argument("address", help="local@domain (lower-cased)")
    _password_stdin(add)
    add.set_defaults(func=user_add)

    lst = actions.add_parser("list", help="print every user, one a line")
    lst.set_defaults(func=user_list)

    delete = actions.add_parser("delete", help="delete a user and all their mail")
    delete.add_argument("address")
    delete.set_defaults(func=user_delete)

    passwd = actions.add_parser("passwd", help="change a user's password")
    passwd.add_argument("address")
    _password_stdin(passwd)
    passwd.set_defaults(func=user_passwd)


# Each entry: register(subparsers) adding one command group.
GROUPS = [register_user, register_vapid, register_subscriptions, register_push, register_testserver,
          register_queue, register_dkim]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="imapwebpush",
        description="Administer an imapwebpush data folder (run the server with 'twistd -n imapwebpush').",
    )
    parser.add_argument(
        "--data", default=DEFAULT_DATA, metavar="DIR", help="data folder (default: %(default)s)"
    )
    parser.add_argument("--version", action="version", version="imapwebpush " + __version__)
    subparsers = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for register in GROUPS:
        register(subparsers)
    return parser


def main(argv=None, stdin=None, stdout=None, stderr=None, getpass_=None):
    """Run one command; returns the exit status (the console script exits with it)."""
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        if stdout is not None or stderr is not sys.stderr:
            # argparse prints help and usage errors itself: send them where asked.
            out, err = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = stdout or sys.stdout, stderr
            try:
                args = parser.parse_args(argv)
            finally:
                sys.stdout, sys.stderr = out, err
        else:
            args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    ctx = Context(args, stdin=stdin, stdout=stdout, stderr=stderr, getpass_=getpass_)
    try:
        return args.func(args, ctx) or 0
    except CommandError as e:
        print("imapwebpush: error: %s" % (e,), file=stderr)
        return e.status
    except AdminError as e:
        print("imapwebpush: error: %s" % (e,), file=stderr)
        return 2 if isinstance(e, AdminUsageError) else 1
    except KeyboardInterrupt:
        print("imapwebpush: interrupted", file=stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
