"""Users and their scrypt-hashed passwords, in one JSON file of the data folder.

Why one file: the admin command and the running server share it. The admin
command rewrites it atomically (tmp + fsync + rename, mode 0600) under an
advisory lock; the server notices the new file (its inode, size and mtime
change) and reloads it, so users added while the server runs can log in at once.

Why scrypt with the parameters stored per user: hashes made with older
parameters keep verifying after the defaults change. Checking costs tens of
milliseconds on purpose, so the cred checker runs it in a thread.
"""

import base64
import fcntl
import hashlib
import hmac
import json
import os
import re
import threading

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush import datadir
from imapwebpush.durable import atomic_write
from imapwebpush.interfaces import IUserDatabase
from imapwebpush.store.account import check_address

FORMAT_VERSION = 1

# scrypt cost: N=2**14, r=8, p=1 needs 16 MiB and takes tens of ms (the
# parameters RFC 7914 and OWASP suggest for interactive logins).
DEFAULT_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SALT_BYTES = 16
HASH_BYTES = 32
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
# Password checks computed at once by a UserChecker (16 MiB each at DEFAULT_SCRYPT).
DEFAULT_MAX_PASSWORD_CHECKS = 4

# local@domain: a dot-atom local part (RFC 5322 atext) and a DNS-ish domain.
_LOCAL_RE = re.compile(r"\A[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_LABEL_RE = re.compile(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
MAX_ADDRESS_LENGTH = 254


class InvalidAddress(ValueError):
    """The text is not an address of the form local@domain."""


class UserExists(ValueError):
    """``add`` was asked for an address that already has an account."""


class UnknownUser(KeyError):
    """No user has that address."""

    def __str__(self):
        return "no such user: %s" % (self.args[0],)


class UsersFileError(Exception):
    """The users file cannot be read or parsed; the message says which and why."""


def normalize_address(address):
    """Lower-case and validate ``address`` (str or bytes); return it as str.

    Raises L{InvalidAddress} with a sentence a person can act on.
    """
    if isinstance(address, bytes):
        try:
            address = address.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidAddress("not a valid address (non-ASCII): %r" % (address,))
    text = address.strip().lower()
    if len(text) > MAX_ADDRESS_LENGTH or text.count("@") != 1:
        raise InvalidAddress("not a valid address (expected local@domain): %r" % (address,))
    local, domain = text.split("@")
    if not local or len(local) > 64 or not _LOCAL_RE.match(local):
        raise InvalidAddress("not a valid address (bad local part): %r" % (address,))
    labels = domain.split(".")
    if not domain or not all(_LABEL_RE.match(label) for label in labels):
        raise InvalidAddress("not a valid address (bad domain): %r" % (address,))
    # The address names the account's folder (mail/<address>/): RFC 5322 lets
    # '/' into a local part, a folder name cannot hold it.
    if "/" in local:
        raise InvalidAddress("not a valid address ('/' cannot be in an account folder name): %r" % (address,))
    try:
        check_address(text)
    except ValueError:
        raise InvalidAddress("not a valid address (cannot name an account folder): %r" % (address,))
    return text


def is_valid_address(address):
    """True when L{normalize_address} accepts ``address``."""
    try:
        normalize_address(address)
    except InvalidAddress:
        return False
    return True


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _password_bytes(password):
    if isinstance(password, str):
        return password.encode("utf-8")
    return bytes(password)


def hash_password(password, params=None, salt=None):
    """A new record ``{"scrypt": {n, r, p, salt, hash}}`` for ``password``."""
    params = dict(params or DEFAULT_SCRYPT)
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _scrypt(_password_bytes(password), salt, params["n"], params["r"], params["p"])
    return {
        "scrypt": {
            "n": params["n"],
            "r": params["r"],
            "p": params["p"],
            "salt": _b64(salt),
            "hash": _b64(digest),
        }
    }


def _scrypt(password, salt, n, r, p, dklen=HASH_BYTES):
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=MAX_SCRYPT_MEMORY, dklen=dklen)


class Verifier:
    """What checking one password needs; ``verify`` is the slow part, safe in a thread."""

    def __init__(self, record):
        s = record["scrypt"]
        self.n, self.r, self.p = int(s["n"]), int(s["r"]), int(s["p"])
        self.salt = base64.b64decode(s["salt"])
        self.expected = base64.b64decode(s["hash"])

    def verify(self, password):
        digest = _scrypt(
            _password_bytes(password), self.salt, self.n, self.r, self.p, dklen=len(self.expected)
        )
        return hmac.compare_digest(digest, self.expected)


def read_users_file(path):
    """The ``users`` object of the users file at ``path``, every record checked.

    Raises L{UsersFileError} saying which file and why.
    """
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
        users = doc["users"]
        if not isinstance(users, dict):
            raise ValueError("'users' is not an object")
        for record in users.values():
            Verifier(record)
    except OSError as e:
        raise UsersFileError("cannot read %s: %s" % (path, e.strerror or e))
    except (ValueError, KeyError, TypeError) as e:
        raise UsersFileError("cannot parse %s: %s" % (path, e))
    return users


@implementer(IUserDatabase)
class UserDatabase:
    """The users of one data folder.

    @param data_dir: the data folder; the users live in L{datadir.users}.
    @param mail_store: an L{imapwebpush.interfaces.IMailStore} or None. When
        given, ``add`` creates the account's mailboxes and ``delete`` removes them.
    @param scrypt_params: dict with ``n``, ``r``, ``p`` for new hashes (tests
        use cheaper ones; verification always uses the stored ones).
    """

    log = Logger()

    def __init__(self, data_dir, mail_store=None, scrypt_params=None):
        self.data_dir = data_dir
        self.path = datadir.users(data_dir)
        self.mail_store = mail_store
        self.scrypt_params = dict(scrypt_params or DEFAULT_SCRYPT)
        self._users = {}
        self._stamp = None
        self._lock = threading.Lock()
        # Checked against when the user is unknown, so both cases cost one scrypt.
        # A random hash never matches and, unlike hashing a random password,
        # costs no scrypt at start-up (every admin command makes one of these).
        self._dummy = Verifier(
            {
                "scrypt": dict(
                    self.scrypt_params,
                    salt=_b64(os.urandom(SALT_BYTES)),
                    hash=_b64(os.urandom(HASH_BYTES)),
                )
            }
        )
        self._reload()

    # -- reading -----------------------------------------------------------

    def _file_stamp(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload(self):
        """Read the file again if it changed since we last read it."""
        with self._lock:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            if stamp is None:
                self._users, self._stamp = {}, None
                return
            self._users, self._stamp = read_users_file(self.path), stamp

    def entry(self, address):
        """The key of ``address`` in the users file, or None when it has no entry.

        Normally the normalised address. An older version saved some addresses
        that cannot name an account folder (``a/b@example.org``) before failing
        to create it; such a leftover entry is found by its stored spelling
        (lower-cased), so it can be deleted. Nothing can log in with it.
        """
        self._reload()
        try:
            key = normalize_address(address)
        except InvalidAddress:
            if isinstance(address, bytes):
                address = address.decode("ascii", "replace")
            key = address.strip().lower() if isinstance(address, str) else None
        return key if key in self._users else None

    def _record(self, address):
        """The users-file record of ``address``, or None (unknown or invalid address)."""
        try:
            address = normalize_address(address)
        except InvalidAddress:
            return None
        self._reload()
        return self._users.get(address)

    def exists(self, address):
        return self._record(address) is not None

    def users(self):
        self._reload()
        return sorted(self._users)

    def verifier(self, address):
        """The L{Verifier} for ``address``, or None (unknown or invalid address)."""
        record = self._record(address)
        return Verifier(record) if record is not None else None

    def check(self, address, password):
        """True when ``password`` is right. Slow (scrypt): not on the reactor thread."""
        verifier = self.verifier(address)
        if verifier is None:
            self._dummy.verify(password)
            return False
        return verifier.verify(password)

    # -- writing -----------------------------------------------------------

    def _locked_update(self, change):
        """Run ``change(users)`` on a fresh copy under the lock file, then save atomically."""
        lock_path = datadir.users_lock(self.data_dir)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._stamp = None  # force a re-read under the lock
            self._reload()
            users = dict(self._users)
            result = change(users)
            self._save(users)
            return result
        finally:
            os.close(fd)

    def _save(self, users):
        doc = {"version": FORMAT_VERSION, "users": {k: users[k] for k in sorted(users)}}
        data = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        atomic_write(self.path, data)
        with self._lock:
            self._users, self._stamp = users, self._file_stamp()

    def add(self, address, password):
        """Create a user (and its mailboxes when a mail store was given).

        Raises L{InvalidAddress} or L{UserExists} (both ValueError).
        """
        address = normalize_address(address)
        if not password:
            raise ValueError("the password must not be empty")
        record = hash_password(password, self.scrypt_params)
        if self.exists(address):
            raise UserExists("user already exists: %s" % (address,))
        # Mailboxes first: if they cannot be made, no user is saved that could
        # log in to nothing (an unused account folder is harmless; add reuses it).
        if self.mail_store is not None:
            self.mail_store.account(address)

        def change(users):
            if address in users:
                raise UserExists("user already exists: %s" % (address,))
            users[address] = record

        self._locked_update(change)
        self.log.info("user {account} added", account=address)

    def delete(self, address):
        """Remove a user (and its mailboxes when a mail store was given); L{UnknownUser}.

        Any entry goes, even one an older version saved under an address that
        cannot name an account folder (it has no mailboxes to remove).
        """
        key = self.entry(address)
        if key is None:
            key = self._known(address)

        def change(users):
            if key not in users:
                raise UnknownUser(key)
            del users[key]

        self._locked_update(change)
        if self.mail_store is not None and is_valid_address(key):
            self.mail_store.delete_account(key)
        self.log.info("user {account} deleted", account=key)

    def set_password(self, address, password):
        """Change a password; L{UnknownUser} if there is no such user."""
        address = self._known(address)
        if not password:
            raise ValueError("the password must not be empty")
        record = hash_password(password, self.scrypt_params)

        def change(users):
            if address not in users:
                raise UnknownUser(address)
            users[address] = record

        self._locked_update(change)

    def _known(self, address):
        try:
            return normalize_address(address)
        except InvalidAddress:
            raise UnknownUser(address if isinstance(address, str) else repr(address))


@implementer(ICredentialsChecker)
class UserChecker:
    """A twisted.cred checker of L{IUsernamePassword} against a L{UserDatabase}.

    The avatar id is the lower-cased address (str). The file lookup runs on the
    reactor thread (a stat, rarely a read); scrypt runs in the reactor's thread
    pool. Nothing is cached but the file contents: no verdicts, no passwords.

    At most ``max_concurrent`` scrypt computations run at once (each needs
    16 MiB: 200 parallel logins added 160 MB); the others wait their turn.

    @param defer_to_thread: ``deferToThread``-like callable (injected by tests).
    @param max_concurrent: password checks computed at once.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, users, defer_to_thread=None, max_concurrent=DEFAULT_MAX_PASSWORD_CHECKS):
        self.users = users
        self._defer_to_thread = defer_to_thread or threads.deferToThread
        self._hashing = defer.DeferredSemaphore(max_concurrent)

    def requestAvatarId(self, credentials):
        username, password = credentials.username, credentials.password
        try:
            address = normalize_address(username)
            verifier = self.users.verifier(address)
        except InvalidAddress:
            address, verifier = None, None
        except UsersFileError as e:
            # Refuse every login until the file is fixed; say why in the log.
            self.log.error("login refused: {error}", error=str(e))
            address, verifier = None, None
        if verifier is None:
            verifier = self.users._dummy
        d = self._hashing.run(self._defer_to_thread, verifier.verify, password)

        def verdict(ok):
            if ok and address is not None and verifier is not self.users._dummy:
                return address
            raise UnauthorizedLogin("bad user name or password")

        d.addCallback(verdict)
        return d
