"""The WEBPUSH commands (SPEC 3) as a mixin for any twisted IMAP4Server subclass.

    class MyServer(WebPushCommandsMixin, imap4.IMAP4Server): ...

The handlers only parse, call the server-wide L{WebPushService} found through
``IWebPushAccount(self.account)``, and format its answers; they never touch
storage. An avatar that is not ours gains WEBPUSH by being adaptable to
L{IWebPushAccount} (``registerAdapter``, or ``@implementer`` on a wrapper).

Argument parsing is IMAP's astring as L{imapwebpush.wire} reads it (atom, quoted
string, literal); ``NIL`` is recognised only as an atom, so ``"NIL"`` stays a string.
"""

import re
import secrets

from twisted.logger import Logger
from twisted.mail.imap4 import IllegalClientResponse
from zope.interface import alsoProvides, implementer

from imapwebpush import decisions, wire
from imapwebpush.interfaces import IWebPushAccount
from imapwebpush.webpush.service import BadArguments, ClientError

log = Logger()

_ABSENT = object()  # an optional argument that was not given

_NUMBER_RE = re.compile(r"\A[0-9]{1,20}\Z")
_TOKEN_RE = re.compile(r"\A[A-Za-z0-9_-]{1,256}={0,2}\Z")


def _astring(self, line, nil_ok=False):
    """Parse one astring (or NIL atom when ``nil_ok``): (value, rest) or a Deferred of it.

    The syntax is L{imapwebpush.wire}'s (the server's own); its errors become
    IllegalClientResponse, which any twisted IMAP4Server answers with BAD.
    """
    if line is None:
        raise IllegalClientResponse("Missing argument")
    try:
        value, rest = wire.read_nstring(line) if nil_ok else wire.read_astring(line)
    except wire.ParseError as e:
        raise IllegalClientResponse(str(e))
    if isinstance(value, wire.LiteralHeader):
        # The server's own literal reader: it knows its limits and LITERAL+ (if it has it).
        return self.arg_astring(line)
    return value, rest


def _arg_astring(self, line):
    return _astring(self, line)


def _arg_nstring(self, line):
    """An astring or the atom NIL (None)."""
    return _astring(self, line, nil_ok=True)


def _opt_nstring(self, line):
    """Like _arg_nstring, but absent (``_ABSENT``) when the line has ended."""
    if not line:
        return _ABSENT, b""
    return _astring(self, line, nil_ok=True)


def _arg_rest(self, line):
    return line, b""


def _text(value, what):
    """Decode an argument as UTF-8, or BadArguments."""
    if value is None or value is _ABSENT:
        raise BadArguments("%s is required" % what)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadArguments("%s is not UTF-8" % what)


class WebPushCommandsMixin:
    """GETVAPID, WEBPUSH, ACKWEBPUSH, LWEBPUSH, SILWEBPUSH for an IMAP4Server subclass.

    Put it before IMAP4Server in the bases. It adds the WEBPUSH capability once
    the user is authenticated and the avatar adapts to IWebPushAccount.
    """

    _webpush_connection = None
    _webpush_silenced_with = None  # the service holding silences of this connection

    # -- plumbing ----------------------------------------------------------------------

    def webpush_connection_id(self):
        """An id for this connection, for "silenced until this connection ends"."""
        if self._webpush_connection is None:
            self._webpush_connection = secrets.token_hex(12)
        return self._webpush_connection

    def _webpush_account(self):
        if self.account is None:
            return None
        return IWebPushAccount(self.account, None)

    def capabilities(self):
        caps = super().capabilities()
        if self.state in ("auth", "select") and self._webpush_account() is not None:
            caps[b"WEBPUSH"] = None
        return caps

    def connectionLost(self, reason):
        super().connectionLost(reason)
        svc, self._webpush_silenced_with = self._webpush_silenced_with, None
        if svc is not None:
            try:
                svc.connection_ended(self.webpush_connection_id())
            except Exception:
                log.failure("ending the silences of an IMAP connection failed")

    def _webpush_run(self, tag, name, work):
        """Run ``work(account_id, service)``; turn its errors into tagged BAD/NO."""
        wp = self._webpush_account()
        if wp is None:
            self.sendNegativeResponse(tag, b"WEBPUSH is not available for this account")
            return
        try:
            work(wp.account, wp.webpush)
        except ClientError as e:
            message = e.message.encode("utf-8", "replace")
            if e.code:
                message = b"[" + e.code + b"] " + message
            if e.answer == b"BAD":
                self.sendBadResponse(tag, message)
            else:
                self.sendNegativeResponse(tag, message)
            return
        except Exception:
            log.failure("{command} failed", command=name)
            self.sendNegativeResponse(tag, b"[SERVERBUG] " + name + b" failed; see the server log")
            return
        self.sendPositiveResponse(tag, name + b" completed")

    def _webpush_line(self, sub, now):
        self.sendUntaggedResponse(
            b"WEBPUSH " + sub.id.encode("ascii") + b" " + wire.atom_or_quoted(sub.endpoint) + b" "
            + sub.silence_field(now).encode("ascii"))

    def _webpush_needs_auth(self, tag, rest):
        self.sendBadResponse(tag, b"WEBPUSH commands are valid only after authentication")

    # -- GETVAPID ------------------------------------------------------------------------

    def do_GETVAPID(self, tag):
        def work(account, svc):
            self.sendUntaggedResponse(b"VAPID " + svc.vapid_key().encode("ascii"))
        self._webpush_run(tag, b"GETVAPID", work)

    # -- WEBPUSH ---------------------------------------------------------------------------

    def do_WEBPUSH(self, tag, sid, endpoint, p256dh, auth):
        def work(account, svc):
            subscription_id = _text(sid, "subscription id")
            if endpoint is None:
                if p256dh is not _ABSENT or auth is not _ABSENT:
                    raise BadArguments("WEBPUSH <id> NIL takes no further arguments")
                svc.unsubscribe(account, subscription_id)
                return
            if p256dh is _ABSENT or auth is _ABSENT:
                raise BadArguments("WEBPUSH needs an id, an endpoint, p256dh and auth")
            if p256dh is None or auth is None:
                raise BadArguments("p256dh and auth are required (NIL is not allowed)")
            sub, key = svc.subscribe(account, subscription_id, _text(endpoint, "endpoint"),
                                     _text(p256dh, "p256dh"), _text(auth, "auth"))
            self.sendUntaggedResponse(b"VAPID " + key.encode("ascii"))
            self._webpush_line(sub, svc.now())
        self._webpush_run(tag, b"WEBPUSH", work)

    # -- ACKWEBPUSH ----------------------------------------------------------------------

    def do_ACKWEBPUSH(self, tag, token):
        def work(account, svc):
            text = _text(token, "token")
            if not _TOKEN_RE.match(text):
                raise BadArguments("a token is base64url text")
            sub = svc.acknowledge(account, text)
            self._webpush_line(sub, svc.now())
        self._webpush_run(tag, b"ACKWEBPUSH", work)

    # -- LWEBPUSH --------------------------------------------------------------------------

    def do_LWEBPUSH(self, tag, pattern):
        def work(account, svc):
            now = svc.now()
            for sub in svc.list(account, _text(pattern, "pattern")):
                self._webpush_line(sub, now)
        self._webpush_run(tag, b"LWEBPUSH", work)

    # -- SILWEBPUSH --------------------------------------------------------------------------

    def do_SILWEBPUSH(self, tag, sid, duration):
        def work(account, svc):
            subscription_id = _text(sid, "subscription id")
            if duration is None:
                seconds = None
            else:
                text = _text(duration, "duration")
                if not _NUMBER_RE.match(text):
                    raise BadArguments("duration must be a number of seconds (at most %d),"
                                       " 0 or NIL" % decisions.MAX_SILENCE)
                seconds = int(text)
            connection = self.webpush_connection_id()
            sub = svc.silence(account, subscription_id, seconds, connection)
            if seconds is None:
                self._webpush_silenced_with = svc
            self._webpush_line(sub, svc.now())
        self._webpush_run(tag, b"SILWEBPUSH", work)

    # -- dispatch tables (twisted looks up "<state>_<COMMAND>") -----------------------------

    auth_GETVAPID = (do_GETVAPID,)
    auth_WEBPUSH = (do_WEBPUSH, _arg_astring, _arg_nstring, _opt_nstring, _opt_nstring)
    auth_ACKWEBPUSH = (do_ACKWEBPUSH, _arg_astring)
    auth_LWEBPUSH = (do_LWEBPUSH, _arg_astring)
    auth_SILWEBPUSH = (do_SILWEBPUSH, _arg_astring, _arg_nstring)

    select_GETVAPID = auth_GETVAPID
    select_WEBPUSH = auth_WEBPUSH
    select_ACKWEBPUSH = auth_ACKWEBPUSH
    select_LWEBPUSH = auth_LWEBPUSH
    select_SILWEBPUSH = auth_SILWEBPUSH

    unauth_GETVAPID = (_webpush_needs_auth, _arg_rest)
    unauth_WEBPUSH = unauth_GETVAPID
    unauth_ACKWEBPUSH = unauth_GETVAPID
    unauth_LWEBPUSH = unauth_GETVAPID
    unauth_SILWEBPUSH = unauth_GETVAPID


@implementer(IWebPushAccount)
class WebPushAccount:
    """A plain IWebPushAccount: an account id and the server-wide service.

    Handy as the target of ``registerAdapter(lambda avatar: WebPushAccount(...),
    AvatarClass, IWebPushAccount)`` for an avatar class that is not ours.
    """

    def __init__(self, account, webpush):
        self.account = account
        self.webpush = webpush


class WebPushAvatarFactory:
    """Wraps an avatar factory so that every avatar it makes provides IWebPushAccount.

    ``IMAPRealm(mail_store, avatar_factory=WebPushAvatarFactory(service, Avatar))``:
    each avatar gets ``account`` (``account_of(avatar)``, by default its
    ``address``) and ``webpush`` (the service), and directly provides
    IWebPushAccount, so no global adapter registry is involved.
    """

    def __init__(self, service, avatar_factory, account_of=None):
        self.service = service
        self.avatar_factory = avatar_factory
        self.account_of = account_of or (lambda avatar: avatar.address)

    def __call__(self, *args, **kwargs):
        avatar = self.avatar_factory(*args, **kwargs)
        avatar.account = self.account_of(avatar)
        avatar.webpush = self.service
        alsoProvides(avatar, IWebPushAccount)
        return avatar


def webpush_server_class(base):
    """``class X(WebPushCommandsMixin, base)``: the IMAP server class ``base`` with WEBPUSH."""
    return type(base.__name__ + "WithWebPush", (WebPushCommandsMixin, base), {})
