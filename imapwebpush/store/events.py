"""The typed change events of one account, announced on its change bus.

Every change to an account, whichever protocol made it (SMTP, IMAP, the admin
command), is announced exactly once, *after* it is durable on disk. IMAP
sessions, the push dispatcher and anything else read these same objects; nothing
polls the disk.

``origin`` is an opaque token of whoever made the change (an IMAP session
passes itself); listeners use it to tell their own changes from others'. It is
excluded from equality so tests can compare events by content.
"""

from dataclasses import dataclass, field
from typing import Any, FrozenSet, Optional, Tuple


@dataclass(frozen=True)
class MessageAdded:
    """A message was stored in ``mailbox`` (SMTP delivery, APPEND, COPY, MOVE)."""

    account: str
    mailbox: str
    uid: int
    flags: FrozenSet[str]
    modseq: int
    size: int
    internaldate: float  # seconds since the epoch
    headers: bytes  # the raw header block, up to and including the blank line
    origin: Optional[Any] = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FlagsChanged:
    """Flags of messages in ``mailbox`` changed: one entry per message.

    ``changes`` holds ``(uid, new_flags, modseq)`` tuples.
    """

    account: str
    mailbox: str
    changes: Tuple[Tuple[int, FrozenSet[str], int], ...]
    origin: Optional[Any] = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class MessagesExpunged:
    """Messages were removed from ``mailbox`` (EXPUNGE, MOVE out, delete)."""

    account: str
    mailbox: str
    uids: Tuple[int, ...]
    modseq: int
    origin: Optional[Any] = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class MailboxCreated:
    account: str
    mailbox: str
    origin: Optional[Any] = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class MailboxRenamed:
    """``old`` is now ``new``; children move with it and get one event each."""

    account: str
    old: str
    new: str
    origin: Optional[Any] = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class MailboxDeleted:
    account: str
    mailbox: str
    origin: Optional[Any] = field(default=None, compare=False, repr=False)


ChangeEvent = (
    MessageAdded,
    FlagsChanged,
    MessagesExpunged,
    MailboxCreated,
    MailboxRenamed,
    MailboxDeleted,
)
