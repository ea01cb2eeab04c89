"""The Topic header of a push (SPEC 6): one opaque value per (account, mailbox).

A push service replaces a stored, undelivered push by a newer one with the same
Topic, so flag/expunge/sync pushes about one mailbox collapse while a phone is
offline. The value is sent in clear to the push service, so it must reveal
nothing: it is a keyed HMAC-SHA256 of the account and mailbox names under a
server secret, base64url without padding, cut to ``MAX_TOPIC_LENGTH`` (32)
characters (192 bits), which is what RFC 8030 5.4 allows.
"""

import hashlib
import hmac
import os

from imapwebpush.decisions import MAX_TOPIC_LENGTH
from imapwebpush.durable import create_exclusive
from imapwebpush.webpush.crypto import b64url_encode

__all__ = ["topic", "load_or_create_topic_key", "TOPIC_KEY_BYTES"]

TOPIC_KEY_BYTES = 32


def topic(key, account, mailbox, purpose=""):
    """The Topic for ``mailbox`` of ``account`` under the server secret ``key`` (bytes).

    ``purpose`` names a second family of Topics for the same mailbox (the
    rate-limited new-mail sync uses ``"new"``) that never replaces the first.
    """
    a = account.encode("utf-8", "surrogatepass")
    m = mailbox.encode("utf-8", "surrogatepass")
    # length-prefixed so that no two (account, mailbox) pairs hash the same input;
    # a purpose starts with 0xff, which no 4-octet length of an account name does
    message = len(a).to_bytes(4, "big") + a + m
    if purpose:
        p = purpose.encode("utf-8")
        message = b"\xff" + len(p).to_bytes(4, "big") + p + message
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return b64url_encode(digest)[:MAX_TOPIC_LENGTH]


def load_or_create_topic_key(path):
    """The secret in ``path``, created (random, mode 0600, written atomically) if missing.

    Raises ValueError when the file exists but does not hold a key.
    """
    try:
        with open(path, "rb") as f:
            key = f.read()
    except FileNotFoundError:
        pass
    else:
        if len(key) != TOPIC_KEY_BYTES:
            raise ValueError(
                "%s holds %d octets, not a %d-octet topic key; remove it to make a new one"
                % (path, len(key), TOPIC_KEY_BYTES)
            )
        return key
    key = os.urandom(TOPIC_KEY_BYTES)
    if not create_exclusive(path, key):
        # another process made one meanwhile: never replace it, use it
        return load_or_create_topic_key(path)
    return key
