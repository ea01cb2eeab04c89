"""Public helpers for testing Web Push senders and WEBPUSH clients/servers.

``PushService`` is a local push service (twisted.web on 127.0.0.1) that
verifies VAPID, decrypts every push and answers as the test scripts it. See
docs/testing.rst.
"""

from imapwebpush.testing.pushservice import (
    Answer,
    PushService,
    ReceivedPush,
    TestSubscription,
    verify_vapid,
)

__all__ = ["Answer", "PushService", "ReceivedPush", "TestSubscription", "verify_vapid"]
