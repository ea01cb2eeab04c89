"""The door for mail stores that are not ours: plain calls in, change events out.

Our own store announces typed events on its bus and the dispatcher listens
there. Somebody else's store (a Twisted ``MemoryAccount``, a database, an
existing Maildir server) calls L{Notifier} instead::

    webpush.notifier.message_added("alice", "INBOX", uid=7, headers=raw_headers)

The notifier builds the same events (L{imapwebpush.events}), spells INBOX
``INBOX`` whatever case the store uses, checks the account, and hands them to
the dispatcher. It never raises into the caller's code: a bad argument is one
log line and the event is dropped.

The account rule: ``account`` is the L{IWebPushAccount.account} of the
logged-in user, the name the WEBPUSH subscriptions are stored under. An event
for an account that has no subscription and that ``WebPush.account()`` never
handed out is logged once per account, because nothing will ever be pushed
for it; that is how a store that says ``Alice`` while the IMAP side says
``alice@example.org`` finds out.
"""

from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush.events import (
    BODY_START_OCTETS,
    ChangeEvent,
    FlagsChanged,
    MailboxCreated,
    MailboxDeleted,
    MailboxRenamed,
    MessageAdded,
    MessagesExpunged,
    canonical_mailbox,
)
from imapwebpush.interfaces import IWebPushNotifier


def _flag_set(flags):
    """IMAP flags as a frozenset of str; bytes (as twisted hands them out) are decoded."""
    return frozenset(f.decode("utf-8") if isinstance(f, bytes) else str(f) for f in flags)


def _text(value, what):
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str) or not value:
        raise ValueError("%s must be a non-empty string, not %r" % (what, value))
    return value


def _uid(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("a UID is a positive int, not %r" % (value,))
    return value


@implementer(IWebPushNotifier)
class Notifier:
    """Turns calls from a foreign store into events for ``listener`` (the dispatcher).

    @param listener: an L{IChangeListener}.
    @param subscriptions: the L{ISubscriptionStore}, to tell known accounts.
    """

    log = Logger()

    def __init__(self, listener, subscriptions):
        self._listener = listener
        self._subscriptions = subscriptions
        self._known = set()  # accounts handed out by WebPush.account() or seen subscribed
        self._warned = set()

    def account_in_use(self, account):
        """``account`` is the IWebPushAccount.account of a user: events for it are expected."""
        self._known.add(account)

    # -- IWebPushNotifier ----------------------------------------------------------

    def message_added(self, account, mailbox, uid, flags=(), headers=b"", body=b""):
        self._build(lambda: MessageAdded(
            _text(account, "account"), canonical_mailbox(_text(mailbox, "mailbox")),
            _uid(uid), _flag_set(flags), headers=bytes(headers),
            body=bytes(body[:BODY_START_OCTETS])))

    def flags_changed(self, account, mailbox, changes):
        self._build(lambda: FlagsChanged(
            _text(account, "account"), canonical_mailbox(_text(mailbox, "mailbox")),
            tuple((_uid(uid), _flag_set(flags), 0) for uid, flags in sorted(changes.items()))))

    def expunged(self, account, mailbox, uids):
        self._build(lambda: MessagesExpunged(
            _text(account, "account"), canonical_mailbox(_text(mailbox, "mailbox")),
            tuple(sorted(_uid(u) for u in uids)), 0))

    def mailbox_created(self, account, mailbox):
        self._build(lambda: MailboxCreated(
            _text(account, "account"), canonical_mailbox(_text(mailbox, "mailbox"))))

    def mailbox_renamed(self, account, old, new):
        self._build(lambda: MailboxRenamed(
            _text(account, "account"), canonical_mailbox(_text(old, "old name")),
            canonical_mailbox(_text(new, "new name"))))

    def mailbox_deleted(self, account, mailbox):
        self._build(lambda: MailboxDeleted(
            _text(account, "account"), canonical_mailbox(_text(mailbox, "mailbox"))))

    def publish(self, event):
        if not isinstance(event, ChangeEvent):
            self.log.warn("push notifier: not a change event, dropped: {event!r}", event=event)
            return
        self._check_account(event.account)
        self._listener.changed(event)

    # -- inside ------------------------------------------------------------------

    def _build(self, make):
        try:
            event = make()
        except (ValueError, TypeError, AttributeError) as e:
            self.log.warn("push notifier: event dropped: {reason}", reason=str(e))
            return
        self.publish(event)

    def _check_account(self, account):
        if account in self._known or account in self._warned:
            return
        try:
            subscribed = self._subscriptions.count(account) > 0
        except Exception:
            self.log.failure("push notifier: could not read the subscriptions of {account}",
                             account=account)
            return
        if subscribed:
            self._known.add(account)
            return
        self._warned.add(account)
        self.log.warn(
            "push notifier: account {account!r} has no WEBPUSH subscription and was never"
            " logged in through WebPush.account(): nothing is pushed for it (an event's"
            " account must be the IWebPushAccount.account of the logged-in user)",
            account=account)
