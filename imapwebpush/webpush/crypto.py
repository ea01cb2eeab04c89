"""RFC 8291 message encryption (aes128gcm, RFC 8188) for Web Push, through ``http_ece``.

Every push gets a fresh ephemeral P-256 key and a fresh 16-octet salt; the
record size is 4096 and the body is always one record (SPEC 5.2), so the
plaintext is capped at ``MAX_PLAINTEXT``. The key parsers are shared with the
WEBPUSH command handlers so a client gets the same readable reason whether a
key is refused at WEBPUSH time or later.
"""

import base64
import binascii
import os
import re

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from imapwebpush.webpush.limits import (
    HEADER_LENGTH,
    KEYID_LENGTH,
    MAX_PLAINTEXT,
    RECORD_SIZE,
    SALT_LENGTH,
)

P256DH_LENGTH = 65
AUTH_LENGTH = 16

_B64URL_RE = re.compile(r"\A[A-Za-z0-9_-]*={0,2}\Z")


class PayloadTooLarge(ValueError):
    """The plaintext does not fit in one 4096-octet push body (SPEC 5.2)."""


def b64url_encode(data):
    """base64url without padding, as text (the form used on the wire and in IMAP)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text, what="value"):
    """Decode base64url with optional padding; ValueError with a readable reason."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("%s is not base64url text" % (what,))
    if not _B64URL_RE.match(text):
        raise ValueError("%s is not base64url (only A-Z a-z 0-9 - _ allowed)" % (what,))
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1:
        raise ValueError("%s has an impossible base64url length" % (what,))
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("%s is not valid base64url" % (what,))


def check_p256dh(raw):
    """Return the public key object of a 65-octet uncompressed P-256 point; ValueError if not one."""
    if not isinstance(raw, bytes):
        raise ValueError("p256dh must be bytes")
    if len(raw) != P256DH_LENGTH:
        raise ValueError(
            "p256dh must be a %d-octet uncompressed P-256 point, got %d octets"
            % (P256DH_LENGTH, len(raw))
        )
    if raw[0:1] != b"\x04":
        raise ValueError("p256dh must be an uncompressed P-256 point (first octet 0x04)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ValueError("p256dh is not a point on the P-256 curve")


def check_auth(raw):
    """ValueError unless ``raw`` is a 16-octet auth secret."""
    if not isinstance(raw, bytes) or len(raw) != AUTH_LENGTH:
        raise ValueError(
            "auth must be exactly %d octets, got %s"
            % (AUTH_LENGTH, len(raw) if isinstance(raw, bytes) else type(raw).__name__)
        )


def parse_p256dh(text):
    """The 65 octets of a base64url p256dh key (padding optional); ValueError with a reason."""
    raw = b64url_decode(text, "p256dh")
    check_p256dh(raw)
    return raw


def parse_auth(text):
    """The 16 octets of a base64url auth secret (padding optional); ValueError with a reason."""
    raw = b64url_decode(text, "auth")
    check_auth(raw)
    return raw


def encrypt(plaintext, p256dh, auth, salt=None, private_key=None):
    """Encrypt one push body (RFC 8291): salt, rs 4096, the ephemeral key as keyid, one record.

    ``salt`` and ``private_key`` are only given by tests that reproduce the RFC
    example; normally both are fresh for each message.
    """
    if not isinstance(plaintext, bytes):
        raise TypeError("the push payload must be bytes")
    if not plaintext:
        # http_ece would emit a header without any record, which RFC 8188 does not allow
        raise ValueError("the push payload is empty")
    if len(plaintext) > MAX_PLAINTEXT:
        raise PayloadTooLarge(
            "payload of %d octets exceeds the %d-octet limit of one push (SPEC 5.2)"
            % (len(plaintext), MAX_PLAINTEXT)
        )
    check_p256dh(p256dh)
    check_auth(auth)
    if salt is None:
        salt = os.urandom(SALT_LENGTH)
    if private_key is None:
        private_key = ec.generate_private_key(ec.SECP256R1())
    return http_ece.encrypt(
        plaintext,
        salt=salt,
        private_key=private_key,
        dh=p256dh,
        auth_secret=auth,
        rs=RECORD_SIZE,
        version="aes128gcm",
    )


class DecryptError(ValueError):
    """A push body that cannot be decrypted (wrong keys, corrupt, not aes128gcm)."""


def decrypt(body, private_key, auth):
    """Decrypt a push body as the user agent would (RFC 8291 section 3.4).

    ``private_key`` is the user agent's EllipticCurvePrivateKey. Used by the
    testing push service and by tests.
    """
    if len(body) < HEADER_LENGTH:
        raise DecryptError("body of %d octets is shorter than the aes128gcm header" % len(body))
    if body[SALT_LENGTH + 4] != KEYID_LENGTH:
        raise DecryptError("the keyid is not a 65-octet P-256 point")
    try:
        return http_ece.decrypt(body, private_key=private_key, auth_secret=auth, version="aes128gcm")
    except http_ece.ECEException as e:
        raise DecryptError("cannot decrypt: %s" % (e.message,))
    except ValueError as e:
        raise DecryptError("cannot decrypt: %s" % (e,))


def public_bytes(private_key):
    """The 65-octet uncompressed point of a P-256 private key."""
    return private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def private_key_from_raw(raw):
    """A P-256 private key from its 32-octet scalar (test vectors carry keys this way)."""
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
