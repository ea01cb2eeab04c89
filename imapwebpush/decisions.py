"""Every [decision] of SPEC.md, in one place, so it can change when the draft does.

Each constant names the SPEC section it comes from. Code imports the constant;
it never repeats the number.
"""

import re

# SPEC 3.2: subscription ids are 1..64 characters of A-Z a-z 0-9 . _ -, case-sensitive.
SUBSCRIPTION_ID_RE = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")

# SPEC 3.2: an endpoint is an absolute https URL of at most this many octets.
MAX_ENDPOINT_OCTETS = 1024

# SPEC 3.3: ACK tokens.
TOKEN_BYTES = 16  # 128 bits from a CSPRNG
TOKEN_LIFETIME = 10 * 60  # seconds
ACK_FAILURES_PER_HOUR = 10  # more than this locks ACKWEBPUSH for the rest of the hour
PENDING_LIFETIME = 24 * 60 * 60  # a pending subscription never acknowledged is deleted

# SPEC 3.5: silence.
MAX_SILENCE = 86400  # seconds
SILENCE_CONNECTION = "CONNECTION"  # third field of "* WEBPUSH" while silenced until a connection ends

# SPEC 4.
VERIFICATIONS_PER_HOUR = 10  # verification pushes per account per hour
DEFAULT_MAX_SUBSCRIPTIONS = 20  # per account, configurable (--max-subscriptions)

# SPEC 5.3 / 5.4.
DEFAULT_COALESCE_WINDOW = 2.0  # seconds that flag/expunge events may wait to be merged
MAX_PUSHES_PER_BURST = 3

# SPEC 6: TTL per kind of push, in seconds.
TTL_VERIFICATION = 600
TTL_NEW_MAIL = 86400
TTL_OTHER = 86400

# SPEC 6: Urgency per kind of push.
URGENCY_VERIFICATION = "high"
URGENCY_NEW_MAIL_INBOX = "high"
URGENCY_NEW_MAIL_OTHER = "normal"
URGENCY_OTHER = "low"  # flags, expunges, mailbox changes, generic syncs

# SPEC 6: Topic: none on new mail; elsewhere a keyed hash of (account, mailbox).
MAX_TOPIC_LENGTH = 32

# SPEC 6: VAPID.
VAPID_TOKEN_LIFETIME = 12 * 60 * 60  # exp is this far ahead (RFC 8292 allows 24 h)
VAPID_TOKEN_RENEW_BEFORE = 60 * 60  # renew a cached token this long before it expires

# SPEC 6.1: push-service answers.
DEFAULT_RETRY_AFTER = 60  # seconds, when 429/503/507 carry no usable Retry-After
REJECTIONS_BEFORE_PENDING = 3  # 400/401/403 in a row make the subscription pending again
FAILING_SUBSCRIPTION_LIFETIME = 7 * 24 * 60 * 60  # failed this long without a success: deleted

# SPEC 7: outbound HTTP limits.
CONNECT_TIMEOUT = 10
REQUEST_TIMEOUT = 30
MAX_RESPONSE_BODY = 64 * 1024
