"""The Topic header of a push (SPEC 6): one opaque value per (account, mailbox).

A push service replaces a stored, undelivered push by a newer one with the same
Topic, so flag/expunge/sync pushes about one mailbox collapse while a phone is
offline. The value is sent in clear to the push service, so it must reveal
nothing: it is a keyed HMAC-SHA256 of the account and mailbox names under a
server secret, base64url without padding, cut to ``MAX_TOPIC_LENGTH`` (32)
characters (192 bits), which is what RFC 8030 5.4 allows.
"""

import base64
import hashlib
import hmac
import os

from imapwebpush.decisions import MAX_TOPIC_LENGTH

__all__ = ["topic", "load_or_create_topic_key", "TOPIC_KEY_BYTES"]

TOPIC_KEY_BYTES = 32


def topic(key, account, mailbox):
    """The Topic for ``mailbox`` of ``account`` under the server secret ``key`` (bytes)."""
    a = account.encode("utf-8", "surrogatepass")
    m = mailbox.encode("utf-8", "surrogatepass")
    # length-prefixed so that no two (account, mailbox) pairs hash the same input
    message = len(a).to_bytes(4, "big") + a + m
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")[:MAX_TOPIC_LENGTH]


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
    directory = os.path.dirname(os.path.abspath(path))
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link, not rename: never replaces a key another process made meanwhile
        os.link(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        return load_or_create_topic_key(path)
    os.unlink(tmp)
    dirfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return key
