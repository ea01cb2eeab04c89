"""Errors of the mail store, raised to the protocol rooms, which turn them into answers."""

import errno


def disk_full(error):
    """True for an OSError of a full disk or quota (ENOSPC, EDQUOT): SMTP 452, IMAP NO [OVERQUOTA]."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


class StoreError(Exception):
    """Base class: the message is a sentence a client can be shown."""


class MailboxNotFound(StoreError):
    pass


class MailboxExists(StoreError):
    pass


class InvalidMailboxName(StoreError):
    pass


class MessageTooLarge(StoreError):
    pass


class NotAllowed(StoreError):
    """The operation is refused for this mailbox: deleting INBOX, deleting a
    \\Noselect mailbox that has children, renaming a mailbox inside itself."""
