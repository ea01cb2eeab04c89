"""Errors of the mail store, raised to the protocol rooms, which turn them into answers."""


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
