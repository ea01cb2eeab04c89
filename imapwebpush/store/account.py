"""Accounts and their mailbox tree, and the MailStore that holds every account.

On disk (``<path>/<address>/``, Maildir++; the server's path is ``<data>/mail``):

* the account folder itself is INBOX (cur/ new/ tmp/ and its journal);
* every other mailbox is a sub-folder named by ``names.folder_for``;
  a name with children but no folder of its own is ``\\Noselect``;
* ``subscriptions`` (one name per line), ``imapwebpush-special-use`` (JSON),
  ``imapwebpush-uidvalidity`` (last UIDVALIDITY given) and
  ``imapwebpush-account`` (a random id, to notice a folder deleted and made
  again by another process) are written atomically.
"""

import json
import os
import time

from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush.constants import DELIMITER, INBOX
from imapwebpush.interfaces import IAccount, IMailStore
from imapwebpush.private import make_folders
from imapwebpush.store import names
from imapwebpush.store.bus import ChangeBus, Forwarder
from imapwebpush.store.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxNotFound,
    NotAllowed,
)
from imapwebpush.events import MailboxCreated, MailboxDeleted, MailboxRenamed
from imapwebpush.store.fsutil import atomic_write, fsync_dir, remove_tree
from imapwebpush.store.maildir import Mailbox, make_folder, remove_folder

log = Logger()

SUBSCRIPTIONS_FILE = "subscriptions"
SPECIAL_USE_FILE = "imapwebpush-special-use"
UIDVALIDITY_FILE = "imapwebpush-uidvalidity"
ACCOUNT_ID_FILE = "imapwebpush-account"

# RFC 6154 attributes an account may give its mailboxes.
SPECIAL_USES = frozenset(
    ["\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"]
)
# What a new account starts with.
DEFAULT_MAILBOXES = (
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
)


def _allocate_uidvalidity(account_path, clock):
    """A UIDVALIDITY never given before in this account: max(now, last + 1)."""
    path = os.path.join(account_path, UIDVALIDITY_FILE)
    try:
        with open(path, "rb") as f:
            last = int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        last = 0
    value = max(int(clock.seconds()), last + 1, 1) & 0xFFFFFFFF or 1
    atomic_write(path, b"%d\n" % value)
    return value


# Half-made folders older than this are leftovers of a crash (see _sweep).
_LEFTOVER_AGE = 3600


def _sweep(path, prefixes):
    """Remove what a crash left behind: trash folders, and half-made folders
    old enough that no other process can still be building them."""
    try:
        entries = os.listdir(path)
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.startswith(prefixes):
            continue
        full = os.path.join(path, entry)
        if "trash-" not in entry:
            try:
                if time.time() - os.stat(full).st_mtime < _LEFTOVER_AGE:
                    continue  # wall clock: compared with a file-system timestamp
            except OSError:
                continue
        log.info("removing leftover {path}", path=full)
        remove_tree(full)


def _random_name(prefix):
    return prefix + os.urandom(6).hex()


def check_address(address):
    """The lower-cased address; ValueError when it cannot name an account folder."""
    if not isinstance(address, str):
        raise ValueError("address must be text")
    key = address.lower()
    if (
        not key
        or key.startswith(".")
        or "/" in key
        or "\\" in key
        or any(ord(c) < 32 or ord(c) == 127 for c in key)
        or len(key.encode("utf-8", "surrogateescape")) > 255
    ):
        raise ValueError("not a valid account address: %r" % (address,))
    return key


@implementer(IAccount)
class Account:
    """An L{IAccount}: one user's mailbox tree under ``path``.

    Made by L{MailStore.account}; one object per address. Mailbox objects are
    cached here too, one per mailbox, so every session shares one index.
    """

    def __init__(self, address, path, clock, store_bus, max_message_size=None, staging=None):
        self.address = address
        self.path = path
        self._clock = clock
        self._max_size = max_message_size
        self._staging = staging or {}
        self.bus = ChangeBus()
        self.bus.subscribe(Forwarder(store_bus))
        self._mailboxes = {}
        self._tree_stamp = None
        self._selectable = frozenset()
        self._names = frozenset()
        self._deleted = False
        self._subscriptions = set(self._read_lines(SUBSCRIPTIONS_FILE))
        self._special = self._read_special()
        _sweep(self.path, ("imapwebpush-trash-", "imapwebpush-new-"))
        self._ino = self._identity()
        if self._ino is None:
            # An account folder made by another tool: give it an identity.
            self._ino = os.urandom(16).hex()
            atomic_write(os.path.join(self.path, ACCOUNT_ID_FILE), self._ino.encode("ascii"))

    def _identity(self):
        """The random id written when the folder was made (inode numbers get reused)."""
        try:
            with open(os.path.join(self.path, ACCOUNT_ID_FILE), "rb") as f:
                return f.read().decode("ascii", "replace").strip() or None
        except FileNotFoundError:
            return None

    def check(self):
        """MailboxNotFound (and every object stops working) if the folder was deleted or replaced."""
        if self._deleted or self._identity() != self._ino:
            self._gone()
            raise MailboxNotFound("Account %s does not exist any more" % (self.address,))

    def _gone(self):
        """This account's folder was removed: every object of it stops working."""
        self._deleted = True
        for box in self._mailboxes.values():
            box.mark_gone()
        self._mailboxes.clear()

    # -- persistence helpers -------------------------------------------------

    def _read_lines(self, filename):
        try:
            with open(os.path.join(self.path, filename), "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines():
            try:
                out.append(names.normalise(line))
            except InvalidMailboxName:
                pass
        return out

    def _read_special(self):
        try:
            with open(os.path.join(self.path, SPECIAL_USE_FILE), "rb") as f:
                data = json.loads(f.read())
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if v in SPECIAL_USES}

    def _save_subscriptions(self):
        text = "".join(n + "\n" for n in sorted(self._subscriptions))
        atomic_write(os.path.join(self.path, SUBSCRIPTIONS_FILE), text.encode("utf-8"))
        self._tree_stamp = None

    def _save_special(self):
        blob = json.dumps(self._special, sort_keys=True, ensure_ascii=False).encode("utf-8")
        atomic_write(os.path.join(self.path, SPECIAL_USE_FILE), blob)
        self._tree_stamp = None

    def _publish(self, event):
        self.bus.publish(event)

    def _new_uidvalidity(self):
        return _allocate_uidvalidity(self.path, self._clock)

    # -- the tree ------------------------------------------------------------

    def _tree(self):
        """(selectable names, every name) from the folder listing, cached by mtime."""
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if self._deleted or stamp is None or (
            stamp != self._tree_stamp and self._identity() != self._ino
        ):
            self._gone()
            raise MailboxNotFound("Account %s does not exist any more" % (self.address,))
        if stamp != self._tree_stamp:
            selectable = {INBOX}
            every = {INBOX}
            for entry in os.listdir(self.path):
                name = names.name_for_folder(entry)
                if name is None:
                    continue
                folder = os.path.join(self.path, entry)
                if not os.path.isdir(folder):
                    continue
                if os.path.isdir(os.path.join(folder, "cur")):
                    selectable.add(name)
                every.add(name)
                every.update(names.parents(name))
            self._selectable = frozenset(selectable)
            self._names = frozenset(every)
            self._tree_stamp = stamp
        return self._selectable, self._names

    def _folder_path(self, name):
        return os.path.join(self.path, names.folder_for(name))

    def _make(self, name):
        """Create the folder of ``name`` atomically (built under a temporary name)."""
        final = self._folder_path(name)
        if os.path.lexists(final):
            raise MailboxExists("Mailbox %s already exists" % (name,))
        tmp = os.path.join(self.path, _random_name("imapwebpush-new-"))
        make_folder(tmp, self._new_uidvalidity())
        os.rename(tmp, final)
        fsync_dir(self.path)
        self._tree_stamp = None

    # -- IAccount ------------------------------------------------------------

    def mailbox(self, name):
        name = names.normalise(name)
        selectable, _ = self._tree()
        box = self._mailboxes.get(name)
        if box is not None:
            try:
                box.check()
            except MailboxNotFound:
                if self._deleted:
                    raise  # the whole account was replaced (check() forgot every mailbox)
                del self._mailboxes[name]
                box = None
        if name not in selectable:
            if box is not None:
                box.mark_gone()
                del self._mailboxes[name]
            raise MailboxNotFound("Mailbox %s does not exist" % (name,))
        if box is None:
            box = Mailbox(
                self,
                name,
                self.path if name == INBOX else self._folder_path(name),
                self._clock,
                self._new_uidvalidity,
                self._max_size,
                **self._staging,
            )
            self._mailboxes[name] = box
            try:
                box.open()
            except BaseException:
                self._mailboxes.pop(name, None)
                raise
        return box

    def list_mailboxes(self):
        _, every = self._tree()
        return [INBOX] + sorted(every - {INBOX})

    def has_children(self, name):
        name = names.normalise(name)
        _, every = self._tree()
        prefix = name + DELIMITER
        return any(n.startswith(prefix) for n in every)

    def is_selectable(self, name):
        try:
            name = names.normalise(name)
        except InvalidMailboxName:
            return False
        selectable, _ = self._tree()
        return name in selectable

    def create_mailbox(self, name, origin=None):
        name = names.normalise(name)
        names.folder_for(name)  # refuses names too long before anything is made
        selectable, every = self._tree()
        if name in selectable:
            raise MailboxExists("Mailbox %s already exists" % (name,))
        created = []
        for parent in names.parents(name):
            if parent not in every:
                self._make(parent)
                created.append(parent)
        self._make(name)
        created.append(name)
        for made in created:
            self._publish(MailboxCreated(self.address, made, origin=origin))
        return self.mailbox(name)

    def delete_mailbox(self, name, origin=None):
        name = names.normalise(name)
        if name == INBOX:
            raise NotAllowed("INBOX cannot be deleted")
        selectable, every = self._tree()
        if name not in every:
            raise MailboxNotFound("Mailbox %s does not exist" % (name,))
        folder = self._folder_path(name)
        if name not in selectable:
            if self.has_children(name):
                raise NotAllowed("Mailbox %s has children and is \\Noselect" % (name,))
            if not os.path.isdir(folder):
                raise MailboxNotFound("Mailbox %s does not exist" % (name,))
        remove_folder(folder, os.path.join(self.path, _random_name("imapwebpush-trash-")))
        self._tree_stamp = None
        box = self._mailboxes.pop(name, None)
        if box is not None:
            box.mark_gone()
        if self._special.pop(name, None) is not None:
            self._save_special()
        self._publish(MailboxDeleted(self.address, name, origin=origin))

    def rename_mailbox(self, old, new, origin=None):
        old = names.normalise(old)
        new = names.normalise(new)
        if old == INBOX:
            return self._rename_inbox(new, origin)
        selectable, every = self._tree()
        if old not in every:
            raise MailboxNotFound("Mailbox %s does not exist" % (old,))
        if new in every:
            raise MailboxExists("Mailbox %s already exists" % (new,))
        if names.is_inside(new, old):
            raise NotAllowed("Mailbox %s cannot be moved inside itself" % (old,))
        affected = sorted(n for n in every if names.is_inside(n, old))
        moves = [(n, new + n[len(old):]) for n in affected]
        plan = []
        for was, now in moves:
            target = os.path.join(self.path, names.folder_for(now))  # refuses long names
            source = self._folder_path(was)
            if os.path.isdir(source):
                if os.path.lexists(target):
                    raise MailboxExists("Mailbox %s already exists" % (now,))
                plan.append((source, target))
        created = []
        for parent in names.parents(new):
            if parent not in every:
                self._make(parent)
                created.append(parent)
        for source, target in plan:
            os.rename(source, target)
        fsync_dir(self.path)
        self._tree_stamp = None
        self._carry_over(moves)
        for made in created:
            self._publish(MailboxCreated(self.address, made, origin=origin))
        for was, now in moves:
            self._publish(MailboxRenamed(self.address, was, now, origin=origin))

    def _carry_over(self, moves):
        """Mailbox objects, special use and subscriptions follow renamed mailboxes."""
        for was, now in moves:
            box = self._mailboxes.pop(was, None)
            if box is not None:
                box.moved_to(now, self._folder_path(now))
                self._mailboxes[now] = box
        if any(was in self._special for was, _ in moves):
            for was, now in moves:
                if was in self._special:
                    self._special[now] = self._special.pop(was)
            self._save_special()
        if any(was in self._subscriptions for was, _ in moves):
            for was, now in moves:
                if was in self._subscriptions:
                    self._subscriptions.discard(was)
                    self._subscriptions.add(now)
            self._save_subscriptions()

    def _rename_inbox(self, new, origin):
        """RFC 3501 6.3.5: move INBOX's messages to a new mailbox; INBOX stays, empty."""
        if new == INBOX or new in self._tree()[1]:
            raise MailboxExists("Mailbox %s already exists" % (new,))
        target = self.create_mailbox(new, origin=origin)
        inbox = self.mailbox(INBOX)
        inbox.move(inbox.uids(), target, origin=origin)

    def special_use(self, name):
        try:
            name = names.normalise(name)
        except InvalidMailboxName:
            return None
        return self._special.get(name)

    def set_special_use(self, name, use):
        """Give ``name`` a RFC 6154 attribute (or None to clear it); persisted."""
        name = names.normalise(name)
        if use is not None and use not in SPECIAL_USES:
            raise ValueError("unknown special use %r" % (use,))
        if not self.is_selectable(name):
            raise MailboxNotFound("Mailbox %s does not exist" % (name,))
        if use is None:
            if self._special.pop(name, None) is None:
                return
        else:
            self._special[name] = use
        self._save_special()

    def subscribe(self, name):
        name = names.normalise(name)
        if name not in self._subscriptions:
            self._subscriptions.add(name)
            self._save_subscriptions()

    def unsubscribe(self, name):
        name = names.normalise(name)
        if name in self._subscriptions:
            self._subscriptions.discard(name)
            self._save_subscriptions()

    def subscriptions(self):
        return sorted(self._subscriptions)

    def __repr__(self):
        return "<Account %s>" % (self.address,)


@implementer(IMailStore)
class MailStore:
    """An L{IMailStore}: every account is a folder ``<path>/<address>/``.

    The server passes ``<data>/mail`` as ``path``.

    ``clock`` is an IReactorTime (the reactor when None); it gives internal
    dates and UIDVALIDITY values. ``max_message_size`` (octets, None for no
    limit) makes C{add} raise L{MessageTooLarge}. ``run`` (``threads.deferToThread``
    when None) and ``stage_threshold`` (octets) say how and from what size
    C{add_staged} copies a message into tmp/ off the reactor.
    """

    def __init__(self, path, clock=None, max_message_size=None, run=None, stage_threshold=None):
        if clock is None:
            # Late: importing the reactor installs the default one.
            from twisted.internet import reactor as clock
        self.path = path
        make_folders(self.path)
        self._clock = clock
        self._max_size = max_message_size
        self._staging = {"run": run, "stage_threshold": stage_threshold}
        self.bus = ChangeBus()
        self._accounts = {}
        _sweep(self.path, (".trash-", ".new-"))

    def _dir(self, key):
        return os.path.join(self.path, key)

    def exists(self, address):
        """True when the account has a folder."""
        try:
            key = check_address(address)
        except ValueError:
            return False
        return os.path.isdir(self._dir(key))

    def accounts(self):
        """Sorted addresses of every account with a folder."""
        return sorted(
            e for e in os.listdir(self.path) if not e.startswith(".") and os.path.isdir(self._dir(e))
        )

    def account(self, address):
        key = check_address(address)
        account = self._accounts.get(key)
        path = self._dir(key)
        if account is not None and not account._deleted:
            if account._identity() == account._ino:
                return account
            account._gone()  # deleted (and maybe made again) by another process
        if not os.path.isdir(path):
            self._create(path)
        account = Account(key, path, self._clock, self.bus, self._max_size, self._staging)
        self._accounts[key] = account
        return account

    def _create(self, path):
        """Make an account folder with INBOX and the default mailboxes, atomically."""
        tmp = os.path.join(self.path, _random_name(".new-"))
        make_folder(tmp, lambda: _allocate_uidvalidity(tmp, self._clock), marker=False)
        atomic_write(os.path.join(tmp, ACCOUNT_ID_FILE), os.urandom(16).hex().encode("ascii"))
        special = {}
        for name, use in DEFAULT_MAILBOXES:
            make_folder(os.path.join(tmp, names.folder_for(name)), _allocate_uidvalidity(tmp, self._clock))
            special[name] = use
        atomic_write(
            os.path.join(tmp, SPECIAL_USE_FILE),
            json.dumps(special, sort_keys=True).encode("utf-8"),
        )
        subscribed = [INBOX] + [n for n, _ in DEFAULT_MAILBOXES]
        atomic_write(
            os.path.join(tmp, SUBSCRIPTIONS_FILE),
            "".join(n + "\n" for n in sorted(subscribed)).encode("utf-8"),
        )
        try:
            os.rename(tmp, path)
        except OSError:
            remove_folder(tmp, os.path.join(self.path, _random_name(".trash-")))
            if not os.path.isdir(path):
                raise
        fsync_dir(self.path)

    def delete_account(self, address):
        """Remove the account's folder; True if there was one. Announces MailboxDeleted per mailbox."""
        key = check_address(address)
        path = self._dir(key)
        account = self._accounts.pop(key, None)
        if not os.path.isdir(path):
            return False
        if account is None:
            account = Account(key, path, self._clock, self.bus, self._max_size, self._staging)
        gone = account.list_mailboxes()
        remove_folder(path, os.path.join(self.path, _random_name(".trash-")))
        account._gone()
        for name in gone:
            account._publish(MailboxDeleted(key, name))
        return True

