"""The IMAP service's protocol factory: one IMAPServer per connection, TLS optional."""

from twisted.internet import protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

from imapwebpush.connlimit import peer_key
from imapwebpush.constants import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_MIME_PARTS, DEFAULT_MAX_NESTING
from imapwebpush.imap.append import DEFAULT_MAX_APPEND_MESSAGES, DEFAULT_MAX_APPEND_SIZE
from imapwebpush.imap.auth import DEFAULT_LOGIN_DEADLINE
from imapwebpush.imap.server import IMAPServer
from imapwebpush.throttle import LoginThrottle, ThrottledPortal
from imapwebpush.wildcard import DEFAULT_MAX_PATTERN_LENGTH


class IMAPFactory(protocol.ServerFactory):
    """Builds IMAP sessions.

    ``portal``: a twisted.cred Portal whose realm gives imap4.IAccount avatars (IMAPRealm).
    ``mail_store``: the IMailStore the realm serves (kept as ``factory.mail_store`` for
    subclasses and protocols that need it; sessions reach accounts through their avatar).
    ``tls``: a TLS context factory (e.g. ``PrivateCertificate.options()``) for STARTTLS and
    for ``implicit_tls_factory()``; None means no TLS.
    ``allow_plaintext_auth``: allow LOGIN/AUTHENTICATE on a connection without TLS.
    ``protocol``: the IMAPServer (sub)class, e.g. one mixing in WEBPUSH commands.
    ``clock``: IReactorTime for the autologout timers (the reactor by default).
    ``max_message_size``: largest literal (APPEND) accepted, in octets.
    ``max_append_messages``: most messages in one APPEND (MULTIAPPEND, RFC 3502).
    ``max_append_size``: most octets of all the messages of one APPEND together.
    ``max_pattern_length``: longest LIST/LSUB reference + pattern (all of one LIST together), in characters.
    ``max_nesting``: deepest nesting of parentheses, NOT and OR in a command (SEARCH, STATUS).
    ``max_mime_parts``: most MIME parts of a large message FETCH describes and serves.
    ``spool_dir``: where APPEND literals beyond 64 KiB wait until stored (the data
    folder's ``spool/``; None: the system's temp folder).
    ``throttle``: the L{imapwebpush.throttle.LoginThrottle} LOGIN and AUTHENTICATE go
    through (tap.py shares one with submission); None: one of its own.
    ``login_deadline``: seconds from the greeting to a successful login (0: none).
    """

    def __init__(
        self,
        portal,
        mail_store=None,
        tls=None,
        allow_plaintext_auth=False,
        protocol=IMAPServer,
        clock=None,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
        max_append_messages=DEFAULT_MAX_APPEND_MESSAGES,
        max_append_size=DEFAULT_MAX_APPEND_SIZE,
        max_pattern_length=DEFAULT_MAX_PATTERN_LENGTH,
        max_nesting=DEFAULT_MAX_NESTING,
        max_mime_parts=DEFAULT_MAX_MIME_PARTS,
        spool_dir=None,
        throttle=None,
        login_deadline=DEFAULT_LOGIN_DEADLINE,
    ):
        self.portal = portal
        self.mail_store = mail_store
        self.tls = tls
        self.allow_plaintext_auth = allow_plaintext_auth
        self.protocol = protocol
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.max_message_size = max_message_size
        self.max_append_messages = max_append_messages
        self.max_append_size = max_append_size
        self.max_pattern_length = max_pattern_length
        self.max_nesting = max_nesting
        self.max_mime_parts = max_mime_parts
        self.spool_dir = spool_dir
        self.throttle = throttle if throttle is not None else LoginThrottle(clock)
        self.login_deadline = login_deadline

    def buildProtocol(self, addr):
        p = self.protocol(contextFactory=self.tls)
        p.factory = self
        p.portal = None if self.portal is None else ThrottledPortal(self.portal, self.throttle, peer_key(addr))
        p.login_deadline = self.login_deadline
        p.allow_plaintext_auth = self.allow_plaintext_auth
        p.clock = self.clock
        p.callLater = self.clock.callLater
        p.max_message_size = self.max_message_size
        p.max_append_messages = self.max_append_messages
        p.max_append_size = self.max_append_size
        p.max_pattern_length = self.max_pattern_length
        p.max_nesting = self.max_nesting
        p.max_mime_parts = self.max_mime_parts
        p.spool_dir = self.spool_dir
        return p

    def refusal(self, text):
        """What a client refused by a connection limit reads before the close (RFC 5530 code)."""
        return b"* BYE [UNAVAILABLE] " + text.encode("ascii") + b"\r\n"

    def implicit_tls_factory(self):
        """A factory for a port where TLS starts at once (IMAPS, port 993)."""
        if self.tls is None:
            raise ValueError("implicit TLS needs the factory's tls context factory")
        return TLSMemoryBIOFactory(self.tls, False, self)
