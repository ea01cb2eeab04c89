"""Commands on mailboxes by name: CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST, LSUB
and STATUS, as a mixin of L{imapwebpush.imap.core.IMAPCore}.

They talk to the account's store API (``self.mail_account``) and never to the
selected mailbox's session view, except STATUS RECENT of the selected mailbox.
LIST's extended arguments and which names it lists are L{imapwebpush.imap.list_extended}'s;
APPEND (and MULTIAPPEND) is in imap/append.py.
"""

from imapwebpush import wire
from imapwebpush.constants import DELIMITER, INBOX
from imapwebpush.imap import list_extended
from imapwebpush.imap.core import Bad, No, arg_astring, arg_finalastring, arg_list
from imapwebpush.imap.list_extended import parent_names
from imapwebpush.store import errors
from imapwebpush.wildcard import DEFAULT_MAX_PATTERN_LENGTH, PatternTooLong, list_pattern

_DELIMITER_WIRE = wire.quoted(DELIMITER.encode("ascii"))


def lsub_entries(subscribed, existing, matches):
    """[(name, attributes)] LSUB answers: each subscribed name that ``matches``, and each
    unsubscribed parent that matches when a name under it does not (``%`` stopped at
    the delimiter), as ``\\Noselect`` (RFC 3501 6.3.9: ``foo`` for ``foo/bar``)."""
    subscribed = list(subscribed)
    chosen = set(subscribed)
    out = []
    for name in subscribed:
        if matches(name):
            out.append((name, b"" if name in existing else b"\\Noselect"))
            continue
        for parent in sorted(parent_names([name])):
            if parent not in chosen and matches(parent):
                chosen.add(parent)
                out.append((parent, b"\\Noselect"))
    return out


def _list_pattern(ref, patterns, max_length):
    """The matcher of a LIST/LSUB reference and patterns (mUTF-7 bytes), linear in time.

    Longer than ``max_length`` characters together (the reference counted with each
    pattern): NO [LIMIT]. A pattern not valid as modified UTF-7 (but a valid string)
    matches nothing: no name, an empty OK, as Dovecot.
    """
    texts = []
    for pattern in patterns:
        try:
            texts.append(wire.decode_mailbox(ref + pattern))
        except wire.ParseError:
            pass
    try:
        return list_pattern(texts, max_length=max_length).match
    except PatternTooLong as e:
        raise No("[LIMIT] %s" % (e,))


def _stored_flags(mailbox, uid):
    try:
        return mailbox.message(uid).flags
    except KeyError:
        return frozenset()


# STATUS knows 7 items; a list of thousands only costs the server time.
MAX_STATUS_ITEMS = 32
STATUS_ITEMS = frozenset(
    (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"HIGHESTMODSEQ", b"SIZE")
)


class MailboxCommandsMixin:
    """CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS."""

    max_pattern_length = DEFAULT_MAX_PATTERN_LENGTH  # LIST/LSUB reference + pattern, characters

    def do_CREATE(self, tag, raw_name):
        name = self._mailbox_name(raw_name)
        if name == INBOX:
            raise No("[ALREADYEXISTS] INBOX always exists")
        if not name:
            raise Bad("Empty mailbox name")
        self.mail_account.create_mailbox(name, origin=self)
        self.sendPositiveResponse(tag, b"CREATE completed")

    auth_CREATE = select_CREATE = (do_CREATE, arg_finalastring)

    def do_DELETE(self, tag, raw_name):
        name = self._mailbox_name(raw_name)
        if name == INBOX:
            raise No("[CANNOT] INBOX cannot be deleted")
        self.mail_account.delete_mailbox(name, origin=self)
        self.sendPositiveResponse(tag, b"DELETE completed")

    auth_DELETE = select_DELETE = (do_DELETE, arg_finalastring)

    def do_RENAME(self, tag, raw_old, raw_new):
        old, new = self._mailbox_name(raw_old), self._mailbox_name(raw_new)
        if new == INBOX:
            raise No("[ALREADYEXISTS] INBOX always exists")
        self.mail_account.rename_mailbox(old, new, origin=self)
        self.sendPositiveResponse(tag, b"RENAME completed")

    auth_RENAME = select_RENAME = (do_RENAME, arg_astring, arg_finalastring)

    def do_SUBSCRIBE(self, tag, raw_name):
        self.mail_account.subscribe(self._mailbox_name(raw_name))
        self.sendPositiveResponse(tag, b"SUBSCRIBE completed")

    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, arg_finalastring)

    def do_UNSUBSCRIBE(self, tag, raw_name):
        self.mail_account.unsubscribe(self._mailbox_name(raw_name))
        self.sendPositiveResponse(tag, b"UNSUBSCRIBE completed")

    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, arg_finalastring)

    # -- LIST, LSUB ------------------------------------------------------------------------

    def do_LIST(self, tag, select, ref, patterns, returns):
        patterns, in_parentheses = patterns
        request = list_extended.list_request(select, returns)
        status = self._status_keys(request.status) if request.status is not None else None
        extended = select is not None or in_parentheses or returns is not None
        if patterns == [b""] and not extended:  # RFC 3501 6.3.8; extended: no name (as Dovecot)
            self.sendUntaggedResponse(b"LIST (\\Noselect) " + _DELIMITER_WIRE + b' ""')
            self.sendPositiveResponse(tag, b"LIST completed")
            return
        matches = _list_pattern(ref, patterns, self.max_pattern_length)
        account = self.mail_account
        wants_subscriptions = list_extended.SUBSCRIBED in request.select | request.returns
        entries = list_extended.list_entries(
            request,
            matches,
            account.list_mailboxes(),
            self._selectable,
            account.subscriptions() if wants_subscriptions else (),
            account.special_use,
        )
        for entry in entries:
            self.sendUntaggedResponse(list_extended.list_line(entry))
            if status and entry.status:
                try:
                    mailbox = account.mailbox(entry.name)
                except errors.MailboxNotFound:
                    continue  # deleted meanwhile; RFC 5819 lets its STATUS go
                self.sendUntaggedResponse(self._status_line(mailbox, status))
        self.sendPositiveResponse(tag, b"LIST completed")

    auth_LIST = select_LIST = (
        do_LIST,
        list_extended.opt_select,
        arg_astring,
        list_extended.arg_patterns,
        list_extended.opt_return,
    )

    def _selectable(self, name):
        selectable = getattr(self.mail_account, "is_selectable", None)
        if selectable is not None:
            return selectable(name)
        try:
            self.mail_account.mailbox(name)
            return True
        except errors.MailboxNotFound:
            return False

    def do_LSUB(self, tag, ref, pattern):
        matches = _list_pattern(ref, [pattern], self.max_pattern_length)
        existing = set(self.mail_account.list_mailboxes())
        subscribed = self.mail_account.subscriptions()
        for name, attrs in lsub_entries(subscribed, existing, matches):
            self.sendUntaggedResponse(
                b"LSUB (" + attrs + b") " + _DELIMITER_WIRE + b" " + wire.quoted_mailbox(name)
            )
        self.sendPositiveResponse(tag, b"LSUB completed")

    auth_LSUB = select_LSUB = (do_LSUB, arg_astring, arg_finalastring)

    # -- STATUS ----------------------------------------------------------------------------

    def do_STATUS(self, tag, raw_name, items):
        keys = self._status_keys(items)
        mailbox = self.mail_account.mailbox(self._mailbox_name(raw_name))
        self.sendUntaggedResponse(self._status_line(mailbox, keys))
        self.sendPositiveResponse(tag, b"STATUS completed")

    auth_STATUS = select_STATUS = (do_STATUS, arg_astring, arg_list)

    def _status_keys(self, items):
        """The upper-cased items of a client's STATUS list (STATUS, LIST-STATUS), or Bad."""
        if len(items) > MAX_STATUS_ITEMS:
            raise Bad("Too many STATUS items (more than %d)" % (MAX_STATUS_ITEMS,))
        keys = []
        for item in items:
            if not isinstance(item, bytes):
                raise Bad("Bad STATUS item")
            key = item.upper()
            if key not in STATUS_ITEMS:
                raise Bad("Unknown STATUS item %s" % (item.decode("ascii", "replace"),))
            keys.append(key)
        return keys

    def _status_line(self, mailbox, keys):
        """The ``STATUS "name" (KEY n ...)`` response (no ``* ``) of checked ``keys``."""
        uids = []  # the mailbox's UIDs, read once if an item needs them
        values = b" ".join(b"%s %d" % (key, self._status_item(mailbox, key, uids)) for key in keys)
        return b"STATUS " + wire.quoted_mailbox(mailbox.name) + b" (" + values + b")"

    def _status_item(self, mailbox, key, uids):
        """The number of one checked STATUS item (``uids``: a list filled on first use)."""

        def all_uids():
            if not uids:
                uids.append(mailbox.uids())
            return uids[0]

        if key == b"MESSAGES":
            return len(all_uids())
        if key == b"RECENT":
            return self._recent_count(mailbox)
        if key == b"UIDNEXT":
            return mailbox.uidnext
        if key == b"UIDVALIDITY":
            return mailbox.uidvalidity
        if key == b"UNSEEN":
            if callable(getattr(mailbox, "unseen", None)):
                return len(mailbox.unseen())  # store extension, from memory
            return sum(1 for u in all_uids() if "\\Seen" not in _stored_flags(mailbox, u))
        if key == b"HIGHESTMODSEQ":
            return mailbox.highestmodseq
        if key == b"SIZE":  # RFC 8438: the index's sizes, no file read
            all_uids()  # the same look for new files as MESSAGES
            return mailbox.total_size()
        raise ValueError("unknown STATUS item %r" % (key,))

    def _recent_count(self, mailbox):
        view = self.view
        if view is not None and view.name == mailbox.name:
            return len(view.recent)
        recent = getattr(mailbox, "recent", None)  # store extension: UIDs in new/, unclaimed
        return len(recent()) if callable(recent) else 0
