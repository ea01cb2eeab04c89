"""The value objects shared by the Web Push rooms: subscriptions, push targets, outcomes.

A subscription record belongs to the subscription store; the delivery service
only ever sees a ``PushTarget`` (what it needs to encrypt, sign and POST), and
reports back a ``PushOutcome``. Both are plain data so they can be persisted
(pending deliveries survive restarts) and compared in tests.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from imapwebpush.decisions import SILENCE_CONNECTION

PENDING = "pending"
ACTIVE = "active"


@dataclass(frozen=True)
class PushTarget:
    """Where and how to send one push: enough to encrypt, sign and POST it."""

    account: str
    subscription_id: str
    endpoint: str
    p256dh: bytes  # 65-byte uncompressed P-256 point of the user agent
    auth: bytes  # 16-byte auth secret
    vapid_key: str  # the VAPID key to sign with, named by its public key text (87 chars)


@dataclass(frozen=True)
class Subscription:
    """One WEBPUSH subscription of one account, as the subscription store holds it."""

    account: str
    id: str
    endpoint: str
    p256dh: bytes
    auth: bytes
    state: str  # PENDING or ACTIVE
    vapid_key: Optional[str]  # the key it was acknowledged under (None until acknowledged)
    created: float
    silenced_until: Optional[float] = None  # epoch seconds while silenced for a duration
    silenced_connection: Optional[str] = None  # connection id while silenced until it ends

    def is_silenced(self, now: float) -> bool:
        if self.silenced_connection is not None:
            return True
        return self.silenced_until is not None and now < self.silenced_until

    def silence_field(self, now: float) -> str:
        """The third field of ``* WEBPUSH``: NIL, seconds left, or CONNECTION (SPEC 3.2)."""
        if self.silenced_connection is not None:
            return SILENCE_CONNECTION
        if self.silenced_until is not None and now < self.silenced_until:
            return str(max(1, int(self.silenced_until - now + 0.999)))
        return "NIL"

    def target(self, vapid_key: Optional[str] = None) -> PushTarget:
        """The push target, signed with ``vapid_key`` or the key it is bound to."""
        key = vapid_key if vapid_key is not None else self.vapid_key
        if key is None:
            raise ValueError("subscription %r is bound to no VAPID key" % (self.id,))
        return PushTarget(self.account, self.id, self.endpoint, self.p256dh, self.auth, key)


# PushOutcome kinds (SPEC 6.1).
DELIVERED = "delivered"  # 200, 201, 202
GONE = "gone"  # 404, 410: the owner deletes the subscription
TOO_LARGE = "too_large"  # 413: re-render smaller, never the same body again
REJECTED = "rejected"  # 400, 401, 403: not retried; 3 in a row make it pending
EXPIRED = "expired"  # retried until its TTL passed
FAILED = "failed"  # 3xx, refused by policy, or another final failure
CANCELLED = "cancelled"  # its subscription was deleted or replaced before it was sent


@dataclass(frozen=True)
class PushOutcome:
    """The final fate of one push request, reported once."""

    kind: str
    account: str
    subscription_id: str
    status: Optional[int] = None  # the HTTP status, when there was one
    reason: str = ""  # a sentence a person can act on
    context: Dict[str, Any] = field(default_factory=dict)  # given to send(), returned as is

    def describe(self) -> str:
        """The push service's answer as one line a person can act on: ``201 delivered``."""
        line = "%s %s" % (self.status if self.status is not None else "-", self.kind)
        if self.reason:
            line += ": " + self.reason
        return line
