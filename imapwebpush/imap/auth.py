"""Session commands around authentication: STARTTLS, LOGIN, AUTHENTICATE PLAIN, ID,
NAMESPACE, ENABLE and IDLE, as a mixin of L{imapwebpush.imap.core.IMAPCore}.

A login goes through the twisted.cred portal (``portal.login`` with
``imap4.IAccount``); the avatar becomes ``self.account``. A new SASL mechanism is a
branch of ``do_AUTHENTICATE`` plus its name in ``IMAPServer.capabilities``.
"""

import base64
import binascii

from twisted.cred import credentials
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.mail import imap4

from imapwebpush.imap.core import Bad, No, arg_astring, arg_finalastring, arg_rest
from imapwebpush.throttle import LoginRefused

# Seconds from the greeting to a successful login, whatever the client sends
# meanwhile: NOOP and CAPABILITY reset the idle timeout, not this.
DEFAULT_LOGIN_DEADLINE = 60


class AuthCommandsMixin:
    """STARTTLS, LOGIN, AUTHENTICATE, ID, NAMESPACE, ENABLE, IDLE; the login deadline.

    LOGIN and AUTHENTICATE go through ``self.portal``, which the factory makes a
    L{imapwebpush.throttle.ThrottledPortal} for the client's address.
    """

    _idle_tag = None
    login_deadline = DEFAULT_LOGIN_DEADLINE  # 0: none
    _login_deadline_call = None

    # -- the login deadline ----------------------------------------------------------------

    def connectionMade(self):
        super().connectionMade()
        if self.login_deadline and self.state == "unauth":
            self._login_deadline_call = self.callLater(self.login_deadline, self._login_deadline_passed)

    def connectionLost(self, reason):
        self._cancel_login_deadline()
        super().connectionLost(reason)

    def _cancel_login_deadline(self):
        call, self._login_deadline_call = self._login_deadline_call, None
        if call is not None and call.active():
            call.cancel()

    def _login_deadline_passed(self):
        self._login_deadline_call = None
        if self.state != "unauth":
            return
        self.sendLine(b"* BYE Autologout; no login within %d seconds" % (self.login_deadline,))
        self._flush_output()
        self.transport.loseConnection()
        self.state = "timeout"

    # -- any state -------------------------------------------------------------------------

    def do_ID(self, tag, args):
        self.sendUntaggedResponse(b'ID ("name" "imapwebpush" "vendor" "imapwebpush")')
        self.sendPositiveResponse(tag, b"ID completed")

    unauth_ID = auth_ID = select_ID = (do_ID, arg_rest)

    # -- not authenticated -----------------------------------------------------------------

    def do_STARTTLS(self, tag):
        if self.is_secure():
            raise Bad("TLS is already active")
        if not (self.ctx and self.canStartTLS):
            raise Bad("STARTTLS is not available")
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        # Anything the client sent after STARTTLS in plaintext is dropped (RFC 3501 11.1).
        self.clearLineBuffer()
        self._flush_output()  # the OK goes in the clear, before the handshake
        self.transport.startTLS(self.ctx)
        self.startedTLS = True

    unauth_STARTTLS = (do_STARTTLS,)

    def do_LOGIN(self, tag, user, password):
        if not self.auth_allowed():
            raise No("[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS")
        self._login(tag, credentials.UsernamePassword(user, password), b"LOGIN")

    unauth_LOGIN = (do_LOGIN, arg_astring, arg_finalastring)

    def do_AUTHENTICATE(self, tag, args):
        parts = args.split()
        if not parts:
            raise Bad("Missing mechanism")
        if parts[0].upper() != b"PLAIN" or len(parts) > 2:
            raise No("Unsupported authentication mechanism")
        if not self.auth_allowed():
            raise No("[PRIVACYREQUIRED] Authentication is disabled before STARTTLS")
        if len(parts) == 2:
            self._auth_plain(tag, parts[1])
            return
        d = self._await_line(lambda line: self._auth_plain(tag, line.strip(), initial=False))
        d.addErrback(lambda f: self._fail(tag, f))
        self.sendContinuationRequest(None)

    unauth_AUTHENTICATE = (do_AUTHENTICATE, arg_rest)

    def _auth_plain(self, tag, response, initial=True):
        if response == b"*":
            raise Bad("AUTHENTICATE cancelled")
        if response == b"=" and initial:
            response = b""
        try:
            decoded = base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            raise Bad("Response is not valid base64")
        fields = decoded.split(b"\0")
        if len(fields) != 3 or not fields[1]:
            raise Bad("Malformed PLAIN response")
        authzid, authcid, password = fields
        if authzid and authzid != authcid:
            raise No("[AUTHORIZATIONFAILED] Authorization identity not allowed")
        self._login(tag, credentials.UsernamePassword(authcid, password), b"AUTHENTICATE")

    def _login(self, tag, creds, command):
        if self.portal is None:
            raise No("[UNAVAILABLE] Authentication is not configured")
        d = self.portal.login(creds, None, imap4.IAccount)
        d.addCallbacks(self._logged_in, self._login_failed, (tag, command), None, (tag, creds), None)

    def _logged_in(self, result, tag, command):
        iface, avatar, logout = result
        self.account = avatar
        self._avatar_logout = logout
        self.state = "auth"
        self._cancel_login_deadline()
        self.log.info(
            "IMAP login of {account} from {peer} ({command})",
            account=getattr(avatar, "address", None),
            peer=self._peer(),
            command=command.decode("ascii"),
        )
        self.setTimeout(self.POSTAUTH_TIMEOUT)
        caps = b" ".join(self.listCapabilities())
        self.sendPositiveResponse(tag, b"[CAPABILITY " + caps + b"] " + command + b" completed")

    def _peer(self):
        try:
            peer = self.transport.getPeer()
            return "%s:%s" % (peer.host, peer.port)
        except Exception:
            return None

    def _login_failed(self, failure, tag, creds):
        if failure.check(UnauthorizedLogin):
            self.log.info(
                "IMAP login refused for {user} from {peer}",
                user=creds.username.decode("utf-8", "replace")[:100],
                peer=self._peer(),
            )
            self.sendNegativeResponse(tag, b"[AUTHENTICATIONFAILED] Authentication failed")
        elif failure.check(LoginRefused):
            self.sendNegativeResponse(tag, b"[UNAVAILABLE] Too many failed logins, try again later")
        elif failure.check(UnhandledCredentials):
            self.sendNegativeResponse(tag, b"[UNAVAILABLE] Authentication is not configured")
        else:
            self._fail(tag, failure)

    # -- authenticated ---------------------------------------------------------------------

    def do_NAMESPACE(self, tag):
        self.sendUntaggedResponse(b'NAMESPACE (("" "/")) NIL NIL')
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = select_NAMESPACE = (do_NAMESPACE,)

    def do_ENABLE(self, tag, args):
        enabled = []
        for word in args.split():
            name = word.upper()
            if name == b"CONDSTORE" and not self.condstore_enabled:
                self.condstore_enabled = True
                enabled.append(b"CONDSTORE")
            elif name == b"QRESYNC" and not self.qresync_enabled:
                # QRESYNC implies CONDSTORE (RFC 7162 3.2.3).
                self.qresync_enabled = True
                self.condstore_enabled = True
                enabled.append(b"QRESYNC")
        self.sendUntaggedResponse(b" ".join([b"ENABLED"] + enabled))
        self.sendPositiveResponse(tag, b"ENABLE completed")

    auth_ENABLE = (do_ENABLE, arg_rest)

    def do_IDLE(self, tag):
        self._idle_tag = tag
        self.parseState = "idle"
        self.setTimeout(self.POSTAUTH_TIMEOUT)
        self.sendContinuationRequest(b"idling")
        self._send_updates()

    auth_IDLE = select_IDLE = (do_IDLE,)

    def parse_idle(self, line):
        if line.strip().upper() == b"DONE":
            self.parseState = "command"
            tag, self._idle_tag = self._idle_tag, None
            self.sendPositiveResponse(tag, b"IDLE terminated")
        else:
            self.sendBadResponse(None, b"Expected DONE; still idling")
