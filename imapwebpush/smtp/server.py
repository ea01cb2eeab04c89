"""The ESMTP protocols and factories: receiving (port 25 role) and submission (587/465 role).

Why subclasses of Twisted's ESMTP: it already speaks the protocol and its
delivery/cred seams are what we need. We add what it lacks: SIZE (advertised,
checked on ``MAIL FROM`` and on the data), enhanced status codes, a transient
``451`` when storing fails (so no mail is lost), and on submission the rule
that AUTH is only offered over TLS and that MAIL needs AUTH.
"""

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.mail.interfaces import IMessageDelivery
from twisted.mail.smtp import ESMTP, SMTPServerError
from twisted.mail.imap4 import IllegalClientResponse, PLAINCredentials
from zope.interface import implementer

from imapwebpush.connlimit import peer_key
from imapwebpush.constants import DEFAULT_MAX_MESSAGE_SIZE
from imapwebpush.smtp.delivery import LocalDelivery
from imapwebpush.store.errors import disk_full
from imapwebpush.throttle import LoginRefused, LoginThrottle, ThrottledPortal
from imapwebpush.upstream import ESMTPHooks

# Seconds a client may stay silent (RFC 5321 4.5.3.2.7: at least 5 minutes).
DEFAULT_SMTP_TIMEOUT = 300
# Seconds from the greeting (or the end of the last message) to DATA, whatever
# the client sends meanwhile: NOOP/RSET/EHLO do not keep a connection open.
DEFAULT_SMTP_DEADLINE = 120


class ReceivingESMTP(ESMTPHooks, ESMTP):
    """ESMTP for mail addressed to local users: no AUTH, SIZE enforced."""

    log = Logger()
    max_message_size = DEFAULT_MAX_MESSAGE_SIZE
    # RFC 5321 allows 1000 octets a line; mail clients send longer unwrapped
    # lines, so accept up to 1 MiB (the message size limit still applies).
    MAX_LENGTH = 1024 * 1024
    timeout = DEFAULT_SMTP_TIMEOUT  # TimeoutMixin's idle timeout
    deadline = DEFAULT_SMTP_DEADLINE
    _deadline_call = None

    def connectionMade(self):
        ESMTP.connectionMade(self)
        if ISSLTransport.providedBy(self.transport):
            self.canStartTLS = False  # implicit TLS: already encrypted
        self._arm_deadline()

    def connectionLost(self, reason):
        self._disarm_deadline()
        ESMTP.connectionLost(self, reason)

    # -- time limits ---------------------------------------------------------

    def _arm_deadline(self):
        self._disarm_deadline()
        if self.deadline:
            self._deadline_call = self.callLater(self.deadline, self._deadline_passed)

    def _disarm_deadline(self):
        if self._deadline_call is not None:
            if self._deadline_call.active():
                self._deadline_call.cancel()
            self._deadline_call = None

    def _deadline_passed(self):
        self._deadline_call = None
        self.sendCode(
            421,
            b"4.4.2 %s Too slow: no message started within %d seconds, closing connection"
            % (self.host, self.deadline),
        )
        self.transport.loseConnection()

    def timeoutConnection(self):
        self.sendCode(421, b"4.4.2 %s Idle for %d seconds, closing connection" % (self.host, self.timeout))
        self.transport.loseConnection()

    # -- commands ------------------------------------------------------------

    _greeted = False  # HELO/EHLO seen (since the last STARTTLS)

    def lineReceived(self, line):
        try:
            return ESMTP.lineReceived(self, line)
        except Exception:
            # A bug of ours, not the client's: say so once, keep the session.
            self.log.failure("SMTP command failed")
            self.mode = smtp.COMMAND
            self.sendCode(451, b"4.3.0 Local error in processing")

    def state_COMMAND(self, line):
        # Without SMTPUTF8 a command line is ASCII (RFC 5321 2.4); Twisted would
        # raise on the first other byte while looking the command up.
        if not line.isascii():
            self.sendCode(500, b"5.5.2 Syntax error: command line is not ASCII")
            return
        ESMTP.state_COMMAND(self, line)

    def _not_greeted(self):
        """True (and the 503 sent) when the client has not said HELO/EHLO yet (RFC 5321 4.1.4)."""
        if self._greeted:
            return False
        self.sendCode(503, b"5.5.1 Send HELO or EHLO first")
        return True

    def do_HELO(self, rest):
        self._greet(b"HELO", ESMTP.do_HELO, rest)

    def do_EHLO(self, rest):
        self._greet(b"EHLO", ESMTP.do_EHLO, rest)

    def _greet(self, verb, answer, rest):
        """HELO/EHLO: 501 without the client's domain, else Twisted's ``answer`` and greeted."""
        if not rest.strip():
            self.sendCode(501, b"5.5.4 " + verb + b" needs the client's domain")
            return
        answer(self, rest)
        self._greeted = True

    def ext_STARTTLS(self, rest):
        started = self.startedTLS
        ESMTP.ext_STARTTLS(self, rest)
        if self.startedTLS and not started:
            # RFC 3207 4.2: forget what the client said in the clear; it must EHLO again.
            self._greeted = False
            self.forget_transaction()

    def do_NOOP(self, rest):
        self.sendCode(250, b"2.0.0 OK")

    def do_VRFY(self, rest):
        # RFC 5321 3.5.3: 252 when the server will not say whether a user exists.
        self.sendCode(252, b"2.5.0 Cannot VRFY user, but will accept message and attempt delivery")

    def do_RCPT(self, rest):
        if self._not_greeted():
            return
        ESMTP.do_RCPT(self, rest)

    def do_DATA(self, rest):
        if self._not_greeted():
            return
        ESMTP.do_DATA(self, rest)
        if self.mode == smtp.DATA:
            self._disarm_deadline()  # the idle timeout still applies to every line

    def state_DATA(self, line):
        ESMTP.state_DATA(self, line)
        if self.mode != smtp.DATA:  # the final dot: the next message has its deadline
            self._arm_deadline()

    def lineLengthExceeded(self, line):
        # Twisted would go back to command mode in the middle of a message and
        # read the rest of it as commands: answer, then hang up instead.
        self.sendCode(500, b"5.5.2 Line too long")
        self.transport.loseConnection()

    def extensions(self):
        ext = ESMTP.extensions(self)
        ext[b"SIZE"] = [b"%d" % self.max_message_size]
        ext[b"8BITMIME"] = None
        ext[b"ENHANCEDSTATUSCODES"] = None
        return ext

    def do_MAIL(self, rest):
        if self._not_greeted():
            return
        if not self.sender_given():
            m = self.mail_re.match(rest)
            opts = (m.group("opts") or b"") if m else b""
            for opt in opts.split():
                key, _, value = opt.partition(b"=")
                if key.upper() != b"SIZE":
                    continue
                if not value.isdigit():
                    self.sendCode(501, b"5.5.4 Bad SIZE parameter")
                    return
                if int(value) > self.max_message_size:
                    self.sendCode(
                        552,
                        b"5.3.4 Message size exceeds fixed maximum message size (%d octets)"
                        % self.max_message_size,
                    )
                    return
        ESMTP.do_MAIL(self, rest)

    def message_handled(self, resultList):
        failures = [result for ok, result in resultList if not ok]
        if failures and all(disk_full(f.value) for f in failures):
            self.sendCode(
                452,
                b"4.3.1 Insufficient system storage: message not stored for %d of %d recipients, "
                b"try again later" % (len(failures), len(resultList)),
            )
        elif failures:
            # Some copies may already be stored; a retry duplicates them, which
            # is better than acknowledging mail that a recipient never gets.
            self.sendCode(
                451,
                b"4.3.0 Local error: message not stored for %d of %d recipients, try again later"
                % (len(failures), len(resultList)),
            )
        else:
            self.sendCode(250, b"2.0.0 Message accepted for delivery")


class SubmissionESMTP(ReceivingESMTP):
    """ESMTP for the users' own mail: AUTH PLAIN/LOGIN over TLS, then local delivery only."""

    allow_plaintext_auth = False

    def _secure(self):
        return bool(self.startedTLS) or ISSLTransport.providedBy(self.transport)

    def _auth_allowed(self):
        return self.allow_plaintext_auth or self._secure()

    def extensions(self):
        ext = ReceivingESMTP.extensions(self)
        if not self._auth_allowed() or self.authenticated:
            ext.pop(b"AUTH", None)
        return ext

    def ext_AUTH(self, rest):
        if self._not_greeted():
            return
        if not self._auth_allowed():
            self.sendCode(538, b"5.7.11 Encryption required: use STARTTLS first")
            return
        if not rest.strip():
            self.sendCode(501, b"5.5.4 AUTH needs a mechanism")
            return
        if getattr(self.portal, "busy", False):
            self.sendCode(503, b"5.5.1 Authentication already in progress")
            return
        ESMTP.ext_AUTH(self, rest)

    def state_AUTH(self, response):
        try:
            ESMTP.state_AUTH(self, response)
        except IllegalClientResponse:
            self.challenger = None
            self.mode = smtp.COMMAND
            self.sendCode(501, b"5.5.2 Malformed authentication response")

    def authentication_failed(self, reason):
        self.challenger = None
        if reason.check(UnauthorizedLogin):
            self.sendCode(535, b"5.7.8 Authentication credentials invalid")
        elif reason.check(LoginRefused):
            self.sendCode(454, b"4.7.0 Too many failed logins, try again later")
        else:
            self.log.failure("SMTP authentication failed", reason)
            self.sendCode(454, b"4.7.0 Temporary authentication failure")

    def validateFrom(self, helo, origin):
        if not self.authenticated:
            if not self._auth_allowed():
                raise SMTPServerError(530, "5.7.0 Must issue a STARTTLS command first")
            raise SMTPServerError(530, "5.7.0 Authentication required")
        return ReceivingESMTP.validateFrom(self, helo, origin)


class ReceivingFactory(smtp.SMTPFactory):
    """Builds L{ReceivingESMTP} connections, each with its own L{LocalDelivery}.

    @param mail_store: L{imapwebpush.interfaces.IMailStore}.
    @param users: L{imapwebpush.interfaces.IUserDatabase}.
    @param domains: iterable of local domains.
    @param clock: L{twisted.internet.interfaces.IReactorTime}.
    @param tls: a TLS context factory offered with STARTTLS, or None.
    @param hostname: this server's name in the greeting and ``Received:``.
    @param spool_dir: where DATA beyond 64 KiB waits for the final dot (None: the
        system's temp folder; tap.py gives a folder of the data folder).
    @param timeout: seconds a client may stay silent (0: forever).
    @param deadline: seconds from the greeting, or the end of the previous
        message, to DATA, whatever the client sends meanwhile (0: no deadline).
    """

    protocol = ReceivingESMTP
    noisy = False
    # Submission connections get their delivery object at AUTH (SubmissionRealm).
    delivery_at_auth = False

    def __init__(
        self,
        mail_store,
        users,
        domains,
        clock,
        tls=None,
        hostname=None,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
        spool_dir=None,
        timeout=DEFAULT_SMTP_TIMEOUT,
        deadline=DEFAULT_SMTP_DEADLINE,
        outbound=None,
        senders=None,
        authenticator=None,
    ):
        smtp.SMTPFactory.__init__(self)
        self.authenticator = authenticator  # Authentication-Results of mail from other servers
        self.outbound = outbound  # IMailSubmitter for authenticated mail to other domains
        self.senders = senders  # SenderPolicy of submission
        self.mail_store = mail_store
        self.users = users
        self.domains = [d.lower() for d in domains]
        self.clock = clock
        self.tls = tls
        self.hostname = hostname or smtp.DNSNAME
        if isinstance(self.hostname, bytes):
            self.hostname = self.hostname.decode("ascii")
        self.domain = self.hostname.encode("ascii")
        self.max_message_size = max_message_size
        self.spool_dir = spool_dir
        self.timeout = timeout
        self.deadline = deadline

    def delivery(self, authenticated=None):
        return LocalDelivery(
            self.mail_store,
            self.users,
            self.domains,
            self.hostname,
            self.clock,
            max_message_size=self.max_message_size,
            authenticated=authenticated,
            spool_dir=self.spool_dir,
            outbound=self.outbound if authenticated is not None else None,
            senders=self.senders,
            authenticator=self.authenticator,
        )

    def refusal(self, text):
        """What a client refused by a connection limit reads before the close (RFC 5321 3.8)."""
        return b"421 4.7.0 " + self.domain + b" " + text.encode("ascii") + b"\r\n"

    def buildProtocol(self, addr):
        p = self.protocol(contextFactory=self.tls)
        p.factory = self
        p.portal = self.portal
        p.host = self.domain
        p.max_message_size = self.max_message_size
        p.timeout = self.timeout
        p.deadline = self.deadline
        p.callLater = self.clock.callLater
        p.delivery = None if self.delivery_at_auth else self.delivery()
        return p


@implementer(IRealm)
class SubmissionRealm:
    """Gives an authenticated user the delivery object of their connection."""

    def __init__(self, factory):
        self.factory = factory

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IMessageDelivery in interfaces:
            address = avatarId.decode("ascii") if isinstance(avatarId, bytes) else avatarId
            return IMessageDelivery, self.factory.delivery(authenticated=address), lambda: None
        raise NotImplementedError("submission only serves IMessageDelivery")


class SubmissionFactory(ReceivingFactory):
    """Builds L{SubmissionESMTP} connections: AUTH with ``checker``, then local delivery.

    @param checker: an L{twisted.cred.checkers.ICredentialsChecker} of
        L{twisted.cred.credentials.IUsernamePassword} (L{imapwebpush.store.users.UserChecker}).
    @param allow_plaintext_auth: offer AUTH without TLS (tests, loopback-only setups).
    @param throttle: the L{imapwebpush.throttle.LoginThrottle} AUTH goes through
        (tap.py shares one with IMAP); None: one of its own.
    """

    protocol = SubmissionESMTP
    delivery_at_auth = True

    def __init__(
        self, mail_store, users, domains, clock, checker, allow_plaintext_auth=False, throttle=None, **kw
    ):
        ReceivingFactory.__init__(self, mail_store, users, domains, clock, **kw)
        self.portal = Portal(SubmissionRealm(self), [checker])
        self.allow_plaintext_auth = allow_plaintext_auth
        self.throttle = throttle if throttle is not None else LoginThrottle(clock)

    def buildProtocol(self, addr):
        p = ReceivingFactory.buildProtocol(self, addr)
        p.portal = ThrottledPortal(self.portal, self.throttle, peer_key(addr))
        p.challengers = {b"PLAIN": PLAINCredentials, b"LOGIN": smtp.LOGINCredentials}
        p.allow_plaintext_auth = self.allow_plaintext_auth
        return p
