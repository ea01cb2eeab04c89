"""The typed change events of one account: what the store announces and the pusher reads.

Every change to an account, whichever protocol made it (SMTP, IMAP, the admin
command), is announced exactly once, *after* it is durable on disk. IMAP
sessions, the push dispatcher and anything else read these same objects; nothing
polls the disk. They live outside store/ and webpush/ because both rooms speak
them, and so does a foreign mail store that feeds the push side through
L{imapwebpush.interfaces.IWebPushNotifier}.

``account`` is the account id the WEBPUSH subscriptions belong to: the
L{IWebPushAccount.account} of the logged-in user. ``mailbox`` names use ``/`` as
delimiter and spell INBOX ``INBOX`` (see L{canonical_mailbox}).

``origin`` is an opaque token of whoever made the change (an IMAP session
passes itself); listeners use it to tell their own changes from others'. It is
excluded from equality so tests can compare events by content.
"""

from dataclasses import dataclass, field
from typing import Any, FrozenSet, Optional, Tuple

from imapwebpush.constants import DELIMITER, INBOX

# How much of a new message's body an event carries, for the push preview
# (RFC 8970 PREVIEW is at most 256 characters; this leaves room for MIME
# headers of the first parts and for base64).
BODY_START_OCTETS = 8192


def canonical_mailbox(name):
    """``name`` with INBOX spelled ``INBOX`` (RFC 3501 5.1: any case), also as first level.

    ``Inbox`` -> ``INBOX``, ``inbox/Drafts`` -> ``INBOX/Drafts``; other names
    are case-sensitive and stay as they are.
    """
    first, sep, rest = name.partition(DELIMITER)
    if first.upper() == INBOX:
        return INBOX + sep + rest
    return name


@dataclass(frozen=True)
class MessageAdded:
    """A message was stored in ``mailbox`` (SMTP delivery, APPEND, COPY, MOVE).

    The push side reads ``uid``, ``flags``, ``headers`` and ``body`` (at most
    the first L{BODY_START_OCTETS} of the body, for the preview; empty when
    the store does not have it at hand); a store that does not keep
    ``modseq``, ``size`` or ``internaldate`` may leave them 0.
    """

    account: str
    mailbox: str
    uid: int
    flags: FrozenSet[str] = frozenset()
    modseq: int = 0
    size: int = 0
    internaldate: float = 0.0  # seconds since the epoch
    headers: bytes = b""  # the raw header block, up to and including the blank line
    body: bytes = field(default=b"", repr=False)  # the start of the body (see BODY_START_OCTETS)
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
