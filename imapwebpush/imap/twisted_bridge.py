"""Pushes from Twisted's own mailbox classes: what a stock twisted.mail stack adds to push.

A Twisted IMAP server keeps mail in its own ``imap4.IMailbox`` objects, usually
under an ``imap4.MemoryAccount``. Three pieces turn what happens there into the
events of L{imapwebpush.interfaces.IWebPushNotifier}:

* L{PushingMemoryAccount} (or L{PushingAccountMixin} before your own
  ``MemoryAccount`` subclass): the avatar. It provides L{IWebPushAccount} for
  the WEBPUSH commands, announces CREATE, DELETE and RENAME, and gives each of
  its mailboxes a L{MailboxPushListener}.
* L{PushingMailboxMixin}, put before your mailbox class: after ``addMessage``
  (delivery, APPEND, COPY), ``store`` (STORE) and ``expunge`` it tells the push
  listener, and only it (the IMAP sessions hear what they heard before).
* L{MailboxPushListener}: an ``imap4.IMailboxListener``. A mailbox that already
  calls ``newMessages``/``flagsChanged`` on its listeners needs no mixin: the
  account adds this listener with ``addListener`` and new mail and flag
  changes are pushed (expunges are not, since Twisted's listener interface has
  no word for them; the mixin or ``notifier.expunged`` covers those).

Nothing is registered globally: every avatar carries its own WebPush, so two
servers (or two WebPush objects) in one process do not see each other.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import imap4
from zope.interface import implementer

from imapwebpush.interfaces import IWebPushAccount

log = Logger()


def _header_block(message):
    """The raw header block of a Twisted IMessage, as the push payload wants it."""
    headers = message.getHeaders(True)  # negate=True and no names: every header
    lines = []
    for name, value in headers.items():
        name = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        lines.append("%s: %s\r\n" % (name, value))
    return ("".join(lines) + "\r\n").encode("utf-8")


@implementer(imap4.IMailboxListener)
class MailboxPushListener:
    """Hears one mailbox of one account and tells the notifier.

    New messages are those with a UID at or above the mailbox's UIDNEXT when
    the listener was made (or after the last one pushed), fetched by UID.
    """

    def __init__(self, notifier, account, name, mailbox):
        self.notifier = notifier
        self.account = account
        self.name = name
        self.mailbox = mailbox
        self._next_uid = mailbox.getUIDNext()

    # -- imap4.IMailboxListener ------------------------------------------------

    def newMessages(self, exists, recent):
        d = defer.maybeDeferred(self._fetch_new)
        d.addErrback(lambda f: log.failure(
            "push bridge: could not read the new messages of {mailbox}", f, mailbox=self.name))
        return d

    def flagsChanged(self, newFlags):
        try:
            changes = {self.mailbox.getUID(seq): flags for seq, flags in newFlags.items()}
        except Exception:
            log.failure("push bridge: flag change in {mailbox} not pushed", mailbox=self.name)
            return
        if changes:
            self.notifier.flags_changed(self.account, self.name, changes)

    def modeChanged(self, writeable):
        """Read-only or read-write makes no push."""

    # -- what the mixin adds -----------------------------------------------------

    def expunged(self, uids):
        if uids:
            self.notifier.expunged(self.account, self.name, uids)

    # -- inside ----------------------------------------------------------------

    def _fetch_new(self):
        start = self._next_uid
        last = self.mailbox.getUIDNext() - 1
        if last < start:
            return None
        wanted = imap4.MessageSet(start, last)
        return defer.maybeDeferred(self.mailbox.fetch, wanted, True).addCallback(self._announce)

    def _announce(self, fetched):
        for _seq, message in sorted(fetched, key=lambda pair: pair[1].getUID()):
            uid = message.getUID()
            if uid < self._next_uid:
                continue
            self._next_uid = uid + 1
            self.notifier.message_added(self.account, self.name, uid,
                                        flags=message.getFlags(),
                                        headers=_header_block(message))


class PushingMailboxMixin:
    """Before an ``imap4.IMailbox`` class in the bases: its changes reach the push side.

    Only the push listeners the account attached (``push_listeners``) are told;
    the mailbox's own listeners (IMAP sessions) are left as they were.
    """

    push_listeners = ()

    def add_push_listener(self, listener):
        if not self.push_listeners:
            self.push_listeners = []
        self.push_listeners.append(listener)

    def addMessage(self, message, flags=(), date=None):
        d = defer.maybeDeferred(super().addMessage, message, flags, date)
        d.addCallback(self._pushed, lambda listener: listener.newMessages(None, None))
        return d

    def store(self, messages, flags, mode, uid):
        d = defer.maybeDeferred(super().store, messages, flags, mode, uid)
        d.addCallback(lambda result: self._pushed(
            result, lambda listener: listener.flagsChanged(result or {})))
        return d

    def expunge(self):
        before = self._push_uids()
        d = defer.maybeDeferred(super().expunge)

        def announce(result):
            gone = sorted(set(before) - set(self._push_uids()))
            return self._pushed(result, lambda listener: listener.expunged(gone))

        return d.addCallback(announce)

    def _push_uids(self):
        return [self.getUID(seq) for seq in range(1, self.getMessageCount() + 1)]

    def _pushed(self, result, tell):
        for listener in list(self.push_listeners):
            try:
                tell(listener)
            except Exception:
                log.failure("push bridge: a push listener failed")
        return result


@implementer(IWebPushAccount)
class PushingAccountMixin:
    """Before ``imap4.MemoryAccount`` (or a subclass) in the bases: an avatar that pushes.

    ``Account(name, webpush, account=None)``: ``webpush`` is the L{WebPush}
    object; ``account`` the name the subscriptions and events use (default
    ``name``). Mailboxes get a push listener when they are added; CREATE,
    DELETE and RENAME are announced.
    """

    def __init__(self, name, webpush, account=None):
        super().__init__(name)
        self.account = account if account is not None else name
        self.webpush = webpush.service  # IWebPushAccount.webpush: what the commands use
        self.push_notifier = webpush.notifier
        self.push_notifier.account_in_use(self.account)
        self._push_listeners = {}  # mailbox name -> MailboxPushListener
        for mailbox_name, mailbox in list(self.mailboxes.items()):
            self._attach(mailbox_name, mailbox)

    def addMailbox(self, name, mbox=None):
        result = super().addMailbox(name, mbox)
        for mailbox_name, mailbox in self.mailboxes.items():
            if mailbox_name not in self._push_listeners:
                self._attach(mailbox_name, mailbox)
        return result

    def create(self, pathspec):
        before = set(self.mailboxes)
        result = super().create(pathspec)
        for name in sorted(set(self.mailboxes) - before):
            self.push_notifier.mailbox_created(self.account, name)
        return result

    def delete(self, name):
        before = set(self.mailboxes)
        result = super().delete(name)
        for gone in sorted(before - set(self.mailboxes)):
            self._push_listeners.pop(gone, None)
            self.push_notifier.mailbox_deleted(self.account, gone)
        return result

    def rename(self, oldname, newname):
        before = {id(box): name for name, box in self.mailboxes.items()}
        result = super().rename(oldname, newname)
        for name, box in sorted(self.mailboxes.items()):
            old = before.get(id(box))
            if old is not None and old != name:
                listener = self._push_listeners.pop(old, None)
                if listener is not None:
                    listener.name = name
                    self._push_listeners[name] = listener
                self.push_notifier.mailbox_renamed(self.account, old, name)
        return result

    def _attach(self, name, mailbox):
        listener = MailboxPushListener(self.push_notifier, self.account, name, mailbox)
        self._push_listeners[name] = listener
        if isinstance(mailbox, PushingMailboxMixin):
            mailbox.add_push_listener(listener)
        else:
            mailbox.addListener(listener)


class PushingMemoryAccount(PushingAccountMixin, imap4.MemoryAccount):
    """A Twisted ``MemoryAccount`` that pushes; define ``_emptyMailbox`` as usual."""
