"""RFC 8291 message encryption (aes128gcm, RFC 8188) for Web Push.

Every push gets a fresh ephemeral P-256 key and a fresh 16-octet salt; the
record size is 4096 and the body is always one record (SPEC 5.2), so the
plaintext is capped at ``MAX_PLAINTEXT``. The key parsers are shared with the
WEBPUSH command handlers so a client gets the same readable reason whether a
key is refused at WEBPUSH time or later.

``encrypt`` is written out with ``cryptography`` (ECDH, HKDF as HMAC-SHA256,
AES-128-GCM) because it runs once per push: one record and fixed lengths
need none of http_ece's generality, and a subscription's public key is loaded
once (an LRU cache) instead of twice per push. ``decrypt`` (tests and the
testing push service) stays on ``http_ece``, so every push our tests and
benchmarks deliver is checked by an independent implementation.
"""

import base64
import binascii
import functools
import hmac
import os
import re
import struct

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
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
PUBLIC_KEY_CACHE = 4096  # subscriptions' loaded public keys kept (about 1 KB each)

# RFC 8291 3.3 and 3.4: the HKDF info strings, each with HKDF-Expand's counter octet 0x01
_KEY_INFO = b"WebPush: info\x00"
_CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
_NONCE_INFO = b"Content-Encoding: nonce\x00\x01"
_RS_AND_KEYID_LENGTH = struct.pack("!LB", RECORD_SIZE, KEYID_LENGTH)
_LAST_RECORD = b"\x02"  # RFC 8188 2: the padding delimiter of the last record

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
        return _load_point(raw)
    except ValueError:
        raise ValueError("p256dh is not a point on the P-256 curve")


@functools.lru_cache(maxsize=PUBLIC_KEY_CACHE)
def _load_point(raw):
    """The (immutable) public key object of a point; cached, as each subscription gets many pushes."""
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


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
    ua_public = check_p256dh(p256dh)
    check_auth(auth)
    if salt is None:
        salt = os.urandom(SALT_LENGTH)
    elif not isinstance(salt, bytes) or len(salt) != SALT_LENGTH:
        raise ValueError("the salt must be %d octets" % (SALT_LENGTH,))
    if private_key is None:
        private_key = ec.generate_private_key(ec.SECP256R1())
    as_public = public_bytes(private_key)
    ecdh_secret = private_key.exchange(ec.ECDH(), ua_public)
    # RFC 8291 3.4: IKM = HKDF(salt=auth, ikm=ecdh_secret, info="WebPush: info" 0 ua as, L=32)
    ikm = _hmac(_hmac(auth, ecdh_secret), _KEY_INFO + p256dh + as_public + b"\x01")
    # RFC 8188 2.2 and 2.3: CEK and NONCE from HKDF(salt, IKM), one record so the nonce is unmixed
    prk = _hmac(salt, ikm)
    cek = _hmac(prk, _CEK_INFO)[:16]
    nonce = _hmac(prk, _NONCE_INFO)[:12]
    ciphertext = AESGCM(cek).encrypt(nonce, plaintext + _LAST_RECORD, None)
    return salt + _RS_AND_KEYID_LENGTH + as_public + ciphertext


def _hmac(key, data):
    return hmac.digest(key, data, "sha256")


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
