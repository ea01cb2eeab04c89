"""The logged-in user as twisted sees it: imap4.IAccount and INamespacePresenter over our IAccount.

IMAPServer talks to ``mail_account`` (our store API) directly; the twisted interfaces are
here so code written for twisted's IMAP stack (and its adapters) can use the avatar too.
"""

from twisted.mail import imap4
from zope.interface import implementer

from imapwebpush.constants import DELIMITER
from imapwebpush.imap.twisted_mailbox import TwistedMailbox
from imapwebpush.store.errors import InvalidMailboxName, MailboxExists, MailboxNotFound, StoreError
from imapwebpush.wildcard import list_pattern


@implementer(imap4.IAccount, imap4.INamespacePresenter)
class Avatar:
    """One authenticated user.

    ``mail_account`` is the L{imapwebpush.interfaces.IAccount}; ``address`` its address.
    Subclass or adapt it (e.g. to IWebPushAccount) to give sessions more per-user services.
    """

    def __init__(self, mail_account):
        self.mail_account = mail_account
        self.address = mail_account.address
        self._opened = set()

    def logout(self):
        """The session ended: close the twisted mailboxes it left open (stock servers do)."""
        for mailbox in list(self._opened):
            mailbox.close()

    # -- INamespacePresenter ---------------------------------------------------

    def getPersonalNamespaces(self):
        return [[b"", DELIMITER.encode("ascii")]]

    def getSharedNamespaces(self):
        return None

    def getOtherNamespaces(self):
        return None

    def getUserNamespaces(self):
        return None

    # -- imap4.IAccount (for twisted-style callers) ------------------------------

    def addMailbox(self, name, mbox=None):
        if mbox is not None:
            raise imap4.MailboxException("adding foreign mailbox objects is not supported")
        return self.create(name)

    def create(self, pathspec):
        try:
            self.mail_account.create_mailbox(pathspec.rstrip(DELIMITER))
        except MailboxExists:
            return False
        except StoreError as e:
            raise imap4.MailboxException(str(e))
        return True

    def select(self, name, rw=True):
        """A twisted imap4.IMailbox over the store's mailbox, or None."""
        try:
            stored = self.mail_account.mailbox(name)
        except (MailboxNotFound, InvalidMailboxName):
            return None
        return TwistedMailbox(self.mail_account, stored, bool(rw), self._opened)

    def delete(self, name):
        try:
            self.mail_account.delete_mailbox(name)
        except StoreError as e:
            raise imap4.MailboxException(str(e))

    def rename(self, oldname, newname):
        try:
            self.mail_account.rename_mailbox(oldname, newname)
        except StoreError as e:
            raise imap4.MailboxException(str(e))

    def isSubscribed(self, name):
        return name in self.mail_account.subscriptions()

    def subscribe(self, name):
        self.mail_account.subscribe(name)

    def unsubscribe(self, name):
        self.mail_account.unsubscribe(name)

    def listMailboxes(self, ref, wildcard):
        """[(name, mailbox)] matching ``ref + wildcard``, \\Noselect parents included.

        A selectable name comes with its TwistedMailbox (an imap4.IMailbox); a name
        that only has children (``a`` of ``a/b``) cannot be selected, so it comes
        with a L{NoselectName}, whose flags twisted's LIST shows as ``(\\Noselect)``.
        """
        pattern = list_pattern(ref + wildcard, max_length=None)  # linear time: no cap needed here
        is_selectable = getattr(self.mail_account, "is_selectable", None)
        out = []
        for name in self.mail_account.list_mailboxes():
            if not pattern.match(name):
                continue
            if is_selectable is not None and not is_selectable(name):
                out.append((name, NoselectName()))
                continue
            mailbox = self.select(name, False)
            out.append((name, mailbox if mailbox is not None else NoselectName()))
        return out


@implementer(imap4.IMailboxInfo)
class NoselectName:
    """What LIST needs of a name that cannot be selected: its attributes and delimiter."""

    def getFlags(self):
        return ["\\Noselect"]

    def getHierarchicalDelimiter(self):
        return DELIMITER
