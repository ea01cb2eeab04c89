"""Admin command groups of the Web Push room: ``vapid show|rotate``,
``subscriptions list [ADDRESS] | delete ADDRESS ID | test ADDRESS ID`` and
``push privacy [ADDRESS [LEVEL|default]]``.

Registered in ``imapwebpush.cli.GROUPS``; each action is ``func(args, ctx)``
(see cli.py) and raises L{AdminError} for what the user can fix, which the
command prints as one line. A running server notices ``vapid rotate`` at its
next GETVAPID or WEBPUSH (it checks the keyring's ``current`` file), so no
restart is needed.
"""

import os
import shutil
import tempfile
import time

from twisted.internet import defer, task

from imapwebpush import datadir
from imapwebpush.store.users import InvalidAddress, normalize_address
from imapwebpush.webpush.privacy import LEVELS, check_level
from imapwebpush.webpush.service import ClientError, build_webpush
from imapwebpush.webpush.subscriptions import SQLiteSubscriptionStore
from imapwebpush.webpush.vapid import VapidKeyring

# The keyring wants a contact for JWTs; these commands sign nothing except `test`.
_NO_SUBJECT = "mailto:postmaster@localhost"


class AdminError(Exception):
    """Something the user of an admin command can fix; the message is one line for them."""


class AdminUsageError(AdminError):
    """The command line itself is wrong (an argument that is not an address)."""


def _keyring(ctx, subject=_NO_SUBJECT, clock=None):
    if clock is None:
        from twisted.internet import reactor as clock
    try:
        return VapidKeyring(datadir.vapid(ctx.data_dir()), subject, clock)
    except (OSError, ValueError) as e:
        raise AdminError("VAPID keys: %s" % (e,))


def _store(ctx):
    return SQLiteSubscriptionStore(datadir.subscriptions(ctx.data_dir()))


def _account(text):
    """The account an address names, as the store keys it (usage error if not an address)."""
    try:
        return normalize_address(text)
    except InvalidAddress as e:
        raise AdminUsageError(str(e))


# -- vapid -------------------------------------------------------------------------


def vapid_show(args, ctx):
    keyring = _keyring(ctx)
    current = keyring.current()
    for name in keyring.keys():
        ctx.print("%s %s" % (name, "current" if name == current else "old"))


def vapid_rotate(args, ctx):
    name = _keyring(ctx).rotate()
    ctx.print(name)
    ctx.print("new current VAPID key; a running server uses it from its next GETVAPID or WEBPUSH."
              " Active subscriptions keep their old key until their client sends WEBPUSH again.")


def register_vapid(subparsers):
    group = subparsers.add_parser("vapid", help="show or rotate the server's VAPID keys")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("show", help="print every VAPID public key (current first)"
                       ).set_defaults(func=vapid_show)
    actions.add_parser("rotate", help="make a new current VAPID key (old ones are kept)"
                       ).set_defaults(func=vapid_rotate)


# -- subscriptions -------------------------------------------------------------------


def forget_account(ctx, address):
    """Erase every subscription of a deleted account (SPEC 4); returns how many."""
    if not os.path.exists(datadir.subscriptions(ctx.data_dir())):
        return 0
    store = _store(ctx)
    try:
        return store.delete_account(_account(address))
    finally:
        store.close()


def format_subscription(sub, now):
    """One line: address id state silence endpoint key."""
    return "%s %s %s %s %s %s" % (sub.account, sub.id, sub.state, sub.silence_field(now),
                                  sub.endpoint, sub.vapid_key or "-")


def _when(stamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def format_health(health):
    """Indented lines: the last delivery and the last failure, each with the service's answer.

    "Is push working?": a subscription with a recent delivery works; one whose
    last failure is newer than its last delivery is in trouble (the answer says
    why). A subscription the server deleted (404/410, failing for 7 days, never
    acknowledged) is not listed at all: a client learns it the same way, when
    LWEBPUSH no longer lists its id.
    """
    lines = []
    for label, when, answer in (("last delivery", "last_success", "last_success_answer"),
                                ("last failure", "last_failure", "last_failure_answer")):
        if health and health.get(when) is not None:
            lines.append("  %s: %s %s" % (label, _when(health[when]), health.get(answer) or "-"))
    return lines


def subscriptions_list(args, ctx):
    store = _store(ctx)
    try:
        accounts = [_account(args.address)] if args.address else store.accounts()
        for account in accounts:
            for sub in store.list(account):
                ctx.print(format_subscription(sub, time.time()))
                for line in format_health(store.health(account, sub.id)):
                    ctx.print(line)
    finally:
        store.close()


def subscriptions_delete(args, ctx):
    store = _store(ctx)
    try:
        if not store.delete(_account(args.address), args.id):
            raise AdminError("no subscription %s for %s" % (args.id, _account(args.address)))
    finally:
        store.close()
    ctx.print("deleted %s of %s" % (args.id, _account(args.address)))


def send_test_push(webpush, address, subscription_id):
    """Deferred[str]: send one push through ``webpush`` (started sender) and describe the answer."""
    try:
        d = webpush.test_push(_account(address), subscription_id)
    except ClientError as e:
        return defer.fail(AdminError(e.message))
    return d.addCallback(lambda outcome: outcome.describe())


def run_test_push(reactor, data_dir, address, subscription_id, subject, insecure=False):
    """Deferred[str]: send one test push from this process and describe the answer.

    The sender gets an outbox of its own in a temporary folder: started on
    the server's outbox it would resend, and remove, the pushes the running
    server still has pending.
    """
    @defer.inlineCallbacks
    def run():
        folder = tempfile.mkdtemp(prefix="imapwebpush-test-push-")
        try:
            webpush = build_webpush(data_dir, reactor, subject, insecure=insecure,
                                    outbox_path=datadir.outbox(folder))
            webpush.sender.startService()
            try:
                line = yield send_test_push(webpush, address, subscription_id)
            finally:
                yield webpush.sender.stopService()
                webpush.store.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return line

    return run()


def subscriptions_test(args, ctx):
    address = _account(args.address)
    subject = args.subject or "mailto:postmaster@%s" % (address.rpartition("@")[2] or "localhost")
    result = []

    @defer.inlineCallbacks
    def run(reactor):
        try:
            line = yield run_test_push(reactor, ctx.data_dir(), address, args.id, subject,
                                       insecure=args.insecure)
            result.append(line)
        except Exception as e:  # AdminError (or the CLI's), reported after the reactor stops
            result.append(e)

    try:
        task.react(run)
    except SystemExit as e:
        if e.code:
            raise AdminError("the test push could not be sent")
    if result and isinstance(result[0], Exception):
        raise result[0]
    ctx.print(result[0] if result else "no answer")


def register_subscriptions(subparsers):
    group = subparsers.add_parser("subscriptions", help="list, delete or test Web Push"
                                  " subscriptions")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    lst = actions.add_parser("list", help="one line per subscription: address id state"
                             " silence endpoint vapid-key; then its last delivery and last"
                             " failure, with the push service's answer")
    lst.add_argument("address", nargs="?", help="only this account")
    lst.set_defaults(func=subscriptions_list)

    delete = actions.add_parser("delete", help="delete one subscription (its keys are erased)")
    delete.add_argument("address")
    delete.add_argument("id")
    delete.set_defaults(func=subscriptions_delete)

    test = actions.add_parser("test", help="send a generic-sync push and print the push"
                              " service's answer")
    test.add_argument("address")
    test.add_argument("id")
    test.add_argument("--subject", help="VAPID contact (default mailto:postmaster@DOMAIN)")
    test.add_argument("--insecure", action="store_true",
                      help="allow http:// and private-address endpoints (local tests only)")
    test.set_defaults(func=subscriptions_test)


# -- push ----------------------------------------------------------------------------

DEFAULT_LEVEL = "default"


def push_privacy(args, ctx):
    """Show or set an account's privacy level (a running server uses it from its next push)."""
    store = _store(ctx)
    try:
        if args.address is None:
            for account, level in store.privacy_levels().items():
                ctx.print("%s %s" % (account, level))
            return
        account = _account(args.address)
        if args.level is not None:
            if args.level.strip().lower() == DEFAULT_LEVEL:
                level = None
            else:
                try:
                    level = check_level(args.level)
                except ValueError as e:
                    raise AdminUsageError(str(e))
            store.set_privacy(account, level)
        ctx.print("%s %s" % (account, store.privacy(account) or DEFAULT_LEVEL))
    finally:
        store.close()


def register_push(subparsers):
    group = subparsers.add_parser("push", help="what pushes reveal, per account")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    privacy = actions.add_parser(
        "privacy", help="show or set an account's privacy level: %s, or %s (the server's"
        " --push-privacy)" % (", ".join(LEVELS), DEFAULT_LEVEL))
    privacy.add_argument("address", nargs="?", help="the account (none: list the accounts"
                         " that have a level of their own)")
    privacy.add_argument("level", nargs="?", help="%s or %s" % ("|".join(LEVELS), DEFAULT_LEVEL))
    privacy.set_defaults(func=push_privacy)
