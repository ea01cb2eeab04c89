"""A store mailbox as twisted's imap4.IMailbox, for a stock twisted IMAP4Server.

Our IMAPServer does not use this: it talks to the store and to SessionView directly.
It is here so that the Avatar keeps the promise of imap4.IAccount (``select`` returns an
IMailbox) and an existing Twisted IMAP stack can serve our Maildir store.

The session's view (sequence numbers, other sessions' changes) is made only when the
mailbox is really opened (the first call that needs sequence numbers), so STATUS,
APPEND and COPY, which twisted's server never closes, leave nothing subscribed.
"""

from twisted.internet import defer
from twisted.mail import imap4
from zope.interface import implementer

from imapwebpush import wire
from imapwebpush.constants import DELIMITER, SYSTEM_FLAGS
from imapwebpush.imap.message import StoredMessage
from imapwebpush.imap.view import SessionView

_MODES = {1: "add", -1: "remove", 0: "replace"}


@implementer(imap4.IMailbox, imap4.ICloseableMailbox)
class TwistedMailbox:
    """``TwistedMailbox(mail_account, stored_mailbox, writeable, open_set=None)``.

    ``open_set`` (a set) holds the mailboxes whose view is open, so their owner can
    close them when the session ends.
    """

    def __init__(self, mail_account, stored, writeable=True, open_set=None):
        self.mail_account = mail_account
        self.stored = stored
        self.writeable = writeable
        self.open_set = open_set
        self.listeners = []
        self._view = None

    @property
    def view(self):
        if self._view is None:
            self._view = SessionView(
                self.mail_account, self.stored, self, not self.writeable, self._changed
            )
            if self.open_set is not None:
                self.open_set.add(self)
        return self._view

    def _changed(self):
        """Tell listeners what twisted can hear of: new messages and flag changes."""
        for event in self.view.take_updates(allow_expunge=False):
            if event[0] == "flags":
                _, seq, uid, flags, _ = event
                for listener in self.listeners:
                    listener.flagsChanged({seq: self.view.flags_of(uid, flags)})
            elif event[0] == "exists":
                for listener in self.listeners:
                    listener.newMessages(event[1], None)
            elif event[0] == "recent":
                for listener in self.listeners:
                    listener.newMessages(None, event[1])

    # -- IMailboxInfo ----------------------------------------------------------

    def getFlags(self):
        return list(SYSTEM_FLAGS)

    def getHierarchicalDelimiter(self):
        return DELIMITER

    # -- IMailbox ----------------------------------------------------------------

    def getUIDValidity(self):
        return self.stored.uidvalidity

    def getUIDNext(self):
        return self.stored.uidnext

    def getUID(self, message):
        return self.view.uids[message - 1]

    def getMessageCount(self):
        return self.view.exists()

    def getRecentCount(self):
        return len(self.view.recent)

    def getUnseenCount(self):
        return sum(
            1
            for uid in self.view.uids
            if not self.view.is_ghost(uid) and "\\Seen" not in self.stored.message(uid).flags
        )

    def isWriteable(self):
        return self.writeable

    def destroy(self):
        """The account deletes the folder; nothing is kept here."""

    def requestStatus(self, names):
        uids = self.stored.uids()
        values = {
            "MESSAGES": lambda: len(uids),
            "RECENT": lambda: len(self.stored.recent()) if hasattr(self.stored, "recent") else 0,
            "UIDNEXT": lambda: self.stored.uidnext,
            "UIDVALIDITY": lambda: self.stored.uidvalidity,
            "UNSEEN": lambda: sum(1 for u in uids if "\\Seen" not in self.stored.message(u).flags),
        }
        return {name: values[name.upper()]() for name in names if name.upper() in values}

    def addListener(self, listener):
        self.view  # opened for real: start hearing the bus
        self.listeners.append(listener)

    def removeListener(self, listener):
        if listener not in self.listeners:
            raise ValueError("not a listener of this mailbox")
        self.listeners.remove(listener)

    def addMessage(self, message, flags=(), date=None):
        data = message.read() if hasattr(message, "read") else message
        internaldate = None
        if date:
            try:
                internaldate = wire.parse_datetime(date if isinstance(date, bytes) else date.encode())
            except wire.ParseError as e:
                return defer.fail(imap4.IllegalClientResponse(str(e)))
        flags = [f.decode() if isinstance(f, bytes) else f for f in flags]
        flags = [f for f in flags if f.lower() != "\\recent"]
        return defer.maybeDeferred(self.stored.add, data, flags, internaldate, origin=self)

    def expunge(self):
        self.stored.expunge(origin=self)
        removed = []
        for event in self.view.take_updates(allow_expunge=True):
            if event[0] == "expunge":
                removed.append(event[1])
        return removed

    def fetch(self, messages, uid):
        ranges = list(messages.ranges)
        out = []
        for seq, u in self.view.resolve(ranges, bool(uid)):
            if self.view.is_ghost(u):
                continue
            try:
                stored = self.stored.message(u)
            except KeyError:
                continue
            out.append((seq, StoredMessage(stored, self.view.flags_of(u, stored.flags))))
        return out

    def store(self, messages, flags, mode, uid):
        if not self.writeable:
            raise imap4.ReadOnlyMailbox()
        targets = [
            (s, u) for s, u in self.view.resolve(list(messages.ranges), bool(uid))
            if not self.view.is_ghost(u)
        ]
        flags = [f.decode() if isinstance(f, bytes) else f for f in flags]
        flags = [f for f in flags if f.lower() != "\\recent"]
        changed, _ = self.stored.set_flags([u for _, u in targets], flags, _MODES[mode], origin=self)
        result = {}
        for seq, u in targets:
            new = changed[u][0] if u in changed else self.stored.message(u).flags
            result[seq] = self.view.flags_of(u, new)
        return result

    # -- ICloseableMailbox -----------------------------------------------------

    def close(self):
        if self._view is not None:
            self._view.close()
            self._view = None
        self.listeners = []
        if self.open_set is not None:
            self.open_set.discard(self)
