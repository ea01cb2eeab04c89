"""A token bucket per subscription for new-mail pushes, the only pushes without a Topic.

Why: push services keep un-Topic'd (non-collapsible) messages for an offline
device one by one, and punish too many. FCM stores at most 100 of them per
device and then drops them all (the app only learns "messages were deleted");
it also caps a device at 240 messages a minute. Apple and ntfy answer 429.
A push with a Topic replaces the stored one of the same Topic, so it never
piles up.

So each subscription may get ``burst`` new-mail pushes at once, and the
bucket refills at ``per_hour`` pushes an hour. A flush whose new-mail pushes
do not all fit in the bucket is sent instead as one generic sync per mailbox
(``* SELECT "mbox"``), each with a Topic of its own (see the dispatcher): the
device still learns at once that mail arrived and where, and an offline device
holds at most one such push per mailbox.

The defaults keep an offline device under FCM's 100 for the whole TTL of a
new-mail push (86400 s): at most 20 + 3 x 24 = 92 un-Topic'd pushes can be
waiting for it. ``burst`` 0 turns the limit off.
"""

DEFAULT_NEW_MAIL_BURST = 20
DEFAULT_NEW_MAIL_PER_HOUR = 3.0

_HOUR = 3600.0


class TokenBuckets:
    """Token buckets by key (``(account, subscription id)``), full when first seen.

    Only buckets that are not full are kept, so memory grows with the
    subscriptions that were recently busy, not with all of them.
    """

    def __init__(self, clock, burst=DEFAULT_NEW_MAIL_BURST, per_hour=DEFAULT_NEW_MAIL_PER_HOUR):
        if burst < 0 or per_hour < 0:
            raise ValueError("burst and per_hour must not be negative")
        self._clock = clock
        self.burst = burst
        self.per_hour = per_hour
        self._buckets = {}  # key -> (tokens, time they were counted)

    @property
    def enabled(self):
        return self.burst > 0

    def tokens(self, key):
        """Tokens in the bucket of ``key`` now (``burst`` when unknown or full)."""
        tokens, stamp = self._buckets.get(key, (self.burst, None))
        if stamp is None:
            return float(self.burst)
        refill = (self._clock.seconds() - stamp) * self.per_hour / _HOUR
        return min(float(self.burst), tokens + max(0.0, refill))

    def take(self, key, n=1):
        """Spend ``n`` tokens of ``key``'s bucket if it holds them: True; else False, nothing spent."""
        if not self.enabled:
            return True
        tokens = self.tokens(key)
        if tokens < n:
            self._buckets[key] = (tokens, self._clock.seconds())
            return False
        self._buckets[key] = (tokens - n, self._clock.seconds())
        return True

    def forget(self, key):
        self._buckets.pop(key, None)

    def state(self):
        """``{key: (tokens, stamp)}`` of the buckets that are not full, to persist."""
        now_full = [k for k in self._buckets if self.tokens(k) >= self.burst]
        for key in now_full:
            del self._buckets[key]
        return dict(self._buckets)

    def restore(self, state):
        """Take back what L{state} gave (after a restart)."""
        for key, (tokens, stamp) in state.items():
            self._buckets[key] = (min(float(self.burst), float(tokens)), float(stamp))
