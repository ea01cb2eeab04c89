"""The change events moved to L{imapwebpush.events}; this name stays for old imports."""

from imapwebpush.events import (  # noqa: F401
    ChangeEvent,
    FlagsChanged,
    MailboxCreated,
    MailboxDeleted,
    MailboxRenamed,
    MessageAdded,
    MessagesExpunged,
)
