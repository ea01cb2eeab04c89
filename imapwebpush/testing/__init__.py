"""Public helpers for testing Web Push senders and WEBPUSH clients/servers.

``PushService`` is a local push service (twisted.web on 127.0.0.1) that
verifies VAPID, decrypts every push and answers as the test scripts it;
``self_signed_tls`` and friends make throw-away certificates for loopback TLS;
``MailServer`` is a whole mail server with that push service, for testing mail
clients (docs/integrating.rst). See docs/testing.rst.
"""

from imapwebpush.testing.mailserver import MailServer
from imapwebpush.testing.pushservice import (
    Answer,
    PushService,
    ReceivedPush,
    TestSubscription,
    verify_vapid,
)
from imapwebpush.testing.tls import self_signed_pem, self_signed_tls, write_self_signed

__all__ = [
    "Answer",
    "MailServer",
    "PushService",
    "ReceivedPush",
    "TestSubscription",
    "verify_vapid",
    "self_signed_pem",
    "self_signed_tls",
    "write_self_signed",
]
