"""The server's VAPID keys (RFC 8292) and the ``Authorization`` header they sign.

Keys live as PEM files in one folder, named by their public key text (the
87-character base64url of the 65-octet point, the ``k=`` of RFC 8292), plus a
``current`` file naming the key new subscriptions are bound to. Old keys are
kept so pushes to subscriptions acknowledged under them still verify
(SPEC 6: a push is signed with the key its subscription was acknowledged
under). Signed tokens are cached per (key, origin) because ECDSA signing per
push would cost more than the encryption.
"""

import functools
import json
import os
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush.durable import atomic_write
from imapwebpush.decisions import VAPID_TOKEN_LIFETIME, VAPID_TOKEN_RENEW_BEFORE
from imapwebpush.interfaces import IVapidKeyring
from imapwebpush.webpush.contact import check_subject  # noqa: F401 - also imported from here
from imapwebpush.webpush.crypto import b64url_encode, public_bytes

CURRENT_FILE = "current"
PEM_SUFFIX = ".pem"
_JWT_HEADER = b64url_encode(b'{"typ":"JWT","alg":"ES256"}')
_DEFAULT_PORTS = {"https": 443, "http": 80}


@functools.lru_cache(maxsize=4096)
def origin_of(url):
    """The RFC 6454 ASCII origin of a URL: scheme://host, with the port only when not default.

    Cached: every push asks it of its endpoint, and the endpoints repeat.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not scheme or not host:
        raise ValueError("%r is not an absolute URL" % (url,))
    if ":" in host:
        host = "[%s]" % (host,)
    port = parts.port  # ValueError for a bad port
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return "%s://%s" % (scheme, host)
    return "%s://%s:%d" % (scheme, host, port)


def key_name(private_key):
    """The name of a key: base64url (no padding) of its 65-octet public point, 87 chars."""
    return b64url_encode(public_bytes(private_key))


def sign_jwt(private_key, claims):
    """An ES256 JWT (RFC 7515 compact form) over ``claims``."""
    payload = b64url_encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = ("%s.%s" % (_JWT_HEADER, payload)).encode("ascii")
    der = private_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return "%s.%s" % (signing_input.decode("ascii"), b64url_encode(signature))


@implementer(IVapidKeyring)
class VapidKeyring:
    """VAPID keys kept in the folder ``path`` (created, mode 0700, with a first key if empty).

    ``subject`` is the contact put in ``sub``; ``clock`` an IReactorTime.
    """

    log = Logger()

    def __init__(self, path, subject, clock):
        self.path = path
        self.subject = check_subject(subject)
        self.clock = clock
        self._keys = {}  # name -> private key
        self._current = None
        self._tokens = {}  # (name, origin) -> (header value, exp)
        self._seen = None  # stat signature of the 'current' file when last read
        os.makedirs(path, mode=0o700, exist_ok=True)
        self._load()
        if self._current is None:
            if self._keys:
                # keys but no valid 'current' file: pick one deterministically
                self._set_current(sorted(self._keys)[0])
            else:
                self.rotate()

    # -- persistence -------------------------------------------------------

    def _signature(self):
        """What tells that the 'current' file was replaced (by rotate here or in another process)."""
        try:
            st = os.stat(os.path.join(self.path, CURRENT_FILE))
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self):
        """Pick up a rotation made by another process (``imapwebpush vapid rotate``).

        One stat per call; the folder is read again only when 'current' changed.
        """
        if self._signature() != self._seen:
            try:
                self._load()
            except (OSError, ValueError) as e:
                self.log.error("VAPID keys not reloaded, keeping the ones in use: {error}", error=e)

    def _load(self):
        self._seen = self._signature()
        for filename in sorted(os.listdir(self.path)):
            if not filename.endswith(PEM_SUFFIX):
                continue
            full = os.path.join(self.path, filename)
            with open(full, "rb") as f:
                try:
                    key = serialization.load_pem_private_key(f.read(), password=None)
                except ValueError as e:
                    raise ValueError("VAPID key file %s cannot be read: %s" % (full, e))
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ValueError("VAPID key file %s does not hold a P-256 key" % (full,))
            name = key_name(key)
            if filename != name + PEM_SUFFIX:
                raise ValueError("VAPID key file %s is named for another key (%s)" % (full, name))
            self._keys[name] = key
        current_path = os.path.join(self.path, CURRENT_FILE)
        if os.path.exists(current_path):
            with open(current_path) as f:
                name = f.read().strip()
            if name in self._keys:
                self._current = name
            else:
                self.log.warn(
                    "VAPID 'current' names a key without a file: {name}", name=name
                )

    def _set_current(self, name):
        atomic_write(os.path.join(self.path, CURRENT_FILE), name.encode("ascii") + b"\n")
        self._current = name
        self._seen = self._signature()

    # -- IVapidKeyring -----------------------------------------------------

    def current(self):
        self._refresh()
        return self._current

    def keys(self):
        """Current key first, then the older ones sorted by name."""
        self._refresh()
        return [self._current] + sorted(n for n in self._keys if n != self._current)

    def rotate(self):
        key = ec.generate_private_key(ec.SECP256R1())
        name = key_name(key)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write(os.path.join(self.path, name + PEM_SUFFIX), pem)
        self._keys[name] = key
        self._set_current(name)
        self.log.info("new current VAPID key {key}", key=name)
        return name

    def retire(self, name):
        if name == self._current:
            raise ValueError("the current VAPID key cannot be retired; rotate first")
        if name not in self._keys:
            raise KeyError("no VAPID key named %r" % (name,))
        os.remove(os.path.join(self.path, name + PEM_SUFFIX))
        del self._keys[name]
        for cached in [k for k in self._tokens if k[0] == name]:
            del self._tokens[cached]
        self.log.info("retired VAPID key {key}", key=name)

    def authorization(self, name, endpoint):
        """``vapid t=<jwt>, k=<name>``; KeyError for an unknown key, ValueError for a bad URL."""
        origin = origin_of(endpoint)
        now = self.clock.seconds()
        cached = self._tokens.get((name, origin))
        if cached is not None and now < cached[1] - VAPID_TOKEN_RENEW_BEFORE:
            return cached[0]
        key = self._keys.get(name)
        if key is None:
            self._refresh()  # a key made by another process since we last looked
            key = self._keys.get(name)
        if key is None:
            raise KeyError("no VAPID key named %r (retired?)" % (name,))
        exp = int(now) + VAPID_TOKEN_LIFETIME
        token = sign_jwt(key, {"aud": origin, "exp": exp, "sub": self.subject})
        value = "vapid t=%s, k=%s" % (token, name)
        self._tokens[(name, origin)] = (value, exp)
        return value

    # -- additions ---------------------------------------------------------

    def public_key(self, name):
        """The 65-octet public point of a kept key; KeyError if unknown."""
        return public_bytes(self._keys[name])
