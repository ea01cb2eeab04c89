"""IMAPServer: twisted's IMAP4Server with the commands real clients need, over our mail store.

twisted.mail.imap4 gives the line/literal machinery, the FETCH attribute parser and the
BODYSTRUCTURE/ENVELOPE builders; the command handlers are ours, because they work on
per-session views (imapwebpush.imap.view) of the store's UID-addressed mailboxes and must
tell each client about other sessions' changes only when RFC 3501 allows it.

Commands are run one at a time: while a command waits on a Deferred the protocol stops
reading lines (pipelined commands wait in the line buffer), so answers come in order
(twisted#9282). Subclasses (the WEBPUSH mixin) add commands the twisted way
(``auth_NAME = (handler, arg_parser, ...)``) and capabilities through ``capabilities()``.
"""

import base64
import binascii
import calendar
import collections
import email.header
import email.utils
import re
import time

from twisted.cred import credentials
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet import defer, interfaces, tcp
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer

from imapwebpush.imap import qresync
from imapwebpush.imap.message import (
    StoredMessage,
    body_structure,
    message_envelope,
    parse_headers,
    split_header,
    wire_safe,
)
from imapwebpush.imap.view import (
    SYSTEM_FLAGS,
    SessionView,
    format_uid_set,
    parse_sequence_set,
)
from imapwebpush.sequence_set import with_star
from imapwebpush.store import errors

DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024
MAX_ASTRING_LITERAL = 64 * 1024
MAX_LINE = 64 * 1024
DELIMITER = "/"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# a tag: printable ASCII but not (){%*"\+ (RFC 3501 tag = 1*<any ASTRING-CHAR except "+">)
_OUT_LIMIT = 256 * 1024  # answers held per batch of input before they go to the transport
_TAG_RE = re.compile(rb'\A[^\x00-\x20\x7f-\xff(){%*"\\+]+\Z')


class No(Exception):
    """Answer the command with a tagged NO and this text (may start with a [CODE])."""


class Bad(Exception):
    """Answer the command with a tagged BAD and this text."""


class _DiscardLiteral(imap4.LiteralString):
    """Swallows a non-synchronizing literal that is too large, then refuses the command."""

    def __init__(self, size, deferred, reason):
        super().__init__(size, deferred)
        self.reason = reason

    def write(self, data):
        passon = super().write(data)
        self.data = []
        return passon

    def callback(self, line):
        self.defer.errback(No(self.reason))


def _text(value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _quote_name(name):
    return imap4._quote(name.encode("imap4-utf-7"))


# RFC 5530: FETCH, STORE or COPY by sequence number named a message another session expunged
_EXPUNGEISSUED = "[EXPUNGEISSUED] Some messages were expunged"


def _literal(data):
    return b"{%d}\r\n%b" % (len(data), data)


def _internaldate(ts):
    t = time.gmtime(ts)
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode("ascii"),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def _parse_date(text):
    """An IMAP date (1-Feb-1994) as a (y, m, d) tuple; Bad otherwise."""
    try:
        day, month, year = text.decode("ascii").split("-")
        return (int(year), _MONTHS.index(month.title()) + 1, int(day))
    except (ValueError, UnicodeDecodeError):
        raise Bad("Bad date: %s" % (text.decode("ascii", "replace"),))


def _parse_datetime(text):
    """An IMAP date-time ("17-Jul-1996 02:44:25 -0700") as seconds since the epoch."""
    try:
        date, clock, zone = text.decode("ascii").strip().split(" ")
        y, m, d = _parse_date(date.encode("ascii"))
        hh, mm, ss = (int(x) for x in clock.split(":"))
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        return calendar.timegm((y, m, d, hh, mm, ss, 0, 0, 0)) - offset
    except (ValueError, IndexError, UnicodeDecodeError):
        raise Bad("Bad date-time: %s" % (text.decode("ascii", "replace"),))


def _matching_paren(line, start=0):
    """Index just after the parenthesis group that opens at ``start``."""
    depth = 0
    i = start
    in_quote = False
    in_bracket = 0
    while i < len(line):
        c = line[i : i + 1]
        if in_quote:
            if c == b"\\":
                i += 1
            elif c == b'"':
                in_quote = False
        elif c == b'"':
            in_quote = True
        elif c == b"[":
            in_bracket += 1
        elif c == b"]":
            in_bracket -= 1
        elif c == b"(" and not in_bracket:
            depth += 1
        elif c == b")" and not in_bracket:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise Bad("unbalanced parentheses")


def _header_section(header):
    """HEADER, HEADER.FIELDS (names) or HEADER.FIELDS.NOT (names), names as the client sent them."""
    if not header.fields:
        return b"HEADER"
    names = getattr(header, "raw_fields", None) or header.fields
    return b"HEADER.FIELDS%s (%s)" % (b".NOT" if header.negate else b"", b" ".join(names))


def _decoded_header(value):
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:
        return value



def _no_delay(transport):
    """Turn Nagle off on the TCP connection under ``transport`` (through TLS too).

    Why: with Nagle on, a line written while the previous small write is not yet
    acknowledged waits for the client's delayed ACK (about 40 ms on Linux); the
    first ``* n EXISTS`` after ``+ idling`` reached the client 30-40 ms late.
    Answers are already coalesced per reactor turn, so this adds no packets.
    """
    while transport is not None:
        if interfaces.ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
            return
        transport = getattr(transport, "transport", None)

class IMAPServer(imap4.IMAP4Server):
    """An IMAP4rev1 session over an IMailStore account (see factory.IMAPFactory)."""

    log = Logger()
    IDENT = b"imapwebpush IMAP4rev1 ready"
    MAX_LENGTH = MAX_LINE
    allow_plaintext_auth = False
    max_message_size = DEFAULT_MAX_MESSAGE_SIZE
    clock = None
    view = None
    condstore_enabled = False
    qresync_enabled = False
    _current = None
    _current_cmd = None
    _current_uid = False
    _idle_tag = None
    _out = None  # answers held while a batch of input is handled (see dataReceived)
    _out_size = 0

    def __init__(self, chal=None, contextFactory=None, scheduler=None):
        super().__init__(chal, contextFactory, scheduler)
        self._literalStringLimit = MAX_ASTRING_LITERAL

    # -- state and capabilities -----------------------------------------------

    @property
    def mail_account(self):
        return self.account.mail_account

    def is_secure(self):
        """True on a TLS connection (implicit TLS or after STARTTLS)."""
        return self.startedTLS or interfaces.ISSLTransport(self.transport, None) is not None

    def auth_allowed(self):
        return self.allow_plaintext_auth or self.is_secure()

    def capabilities(self):
        caps = {}
        if self.state == "unauth":
            if self.ctx and self.canStartTLS and not self.is_secure():
                caps[b"STARTTLS"] = None
            if self.auth_allowed():
                caps[b"AUTH"] = [b"PLAIN"]
                caps[b"SASL-IR"] = None
            else:
                caps[b"LOGINDISABLED"] = None
        for name in (
            b"LITERAL+",
            b"ID",
            b"ENABLE",
            b"IDLE",
            b"NAMESPACE",
            b"CHILDREN",
            b"SPECIAL-USE",
            b"UIDPLUS",
            b"MOVE",
            b"UNSELECT",
            b"CONDSTORE",
            b"QRESYNC",
        ):
            caps[name] = None
        caps[b"APPENDLIMIT=%d" % (self.max_message_size,)] = None  # RFC 7889
        return caps

    # -- connection ---------------------------------------------------------------

    def connectionMade(self):
        if self.clock is None:
            from twisted.internet import reactor

            self.clock = reactor
            self.callLater = reactor.callLater
        _no_delay(self.transport)
        super().connectionMade()

    def connectionLost(self, reason):
        self._close_view()
        self.state = "logout"
        super().connectionLost(reason)

    def timeoutConnection(self):
        self._close_view()
        self.sendLine(b"* BYE Autologout; connection idle too long")
        self._flush_output()
        self.transport.loseConnection()
        self.state = "timeout"

    def lineLengthExceeded(self, line):
        self.sendLine(b"* BAD [TOOBIG] Line too long")
        self.sendLine(b"* BYE Line too long")
        self._flush_output()
        self.transport.loseConnection()

    # -- writing: one write and one send per batch of input ----------------------------

    def dataReceived(self, data):
        """Read lines as twisted does, but hold what they answer and write it at once.

        Why: every ``transport.write`` costs a few Python calls, and a TCP transport sends
        only on the reactor's next turn (a second ``epoll`` wake-up per command). Answers
        are collected while the input is handled, written as one buffer, and sent before
        returning to the reactor (``_send_now``): the same octets in the same order, one
        reactor turn less per command (benchmarks/imap_session_profile.py measures it).
        """
        if self._out is not None:  # nested (setLineMode after a literal): the outer call writes
            super().dataReceived(data)
            return
        self._out = []
        self._out_size = 0
        try:
            super().dataReceived(data)
        finally:
            wrote = self._flush_output()
        if wrote:
            self._send_now()

    def sendLine(self, line):
        self._write(line + b"\r\n")

    def _write(self, data):
        out = self._out
        if out is None:
            if self.transport is not None:
                self.transport.write(data)
            return
        out.append(data)
        self._out_size += len(data)
        if self._out_size >= _OUT_LIMIT:
            # Many pipelined commands in one read, or a large answer: hand over what is
            # held (the transport holds it just as before; this list need not grow past it).
            self._hand_over(out)
            del out[:]
            self._out_size = 0

    def _hand_over(self, out):
        if out and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            return True
        return False

    def _flush_output(self):
        """Write what the current batch of input answered (before STARTTLS or a close too)."""
        out, self._out = self._out, None
        return self._hand_over(out)

    def _send_now(self):
        """Send what is buffered now instead of on the reactor's next turn (plain TCP only).

        ``doWrite`` is what the reactor would call on that turn; when the socket cannot take
        everything (or fails), the transport stays registered for writing and the reactor
        goes on (and reports a failure) exactly as it would have.
        """
        transport = self.transport
        if (
            type(transport) is tcp.Server
            and not transport.TLS
            and transport.connected
            and not transport.disconnecting
            and transport.producer is None
        ):
            transport.doWrite()

    # -- reading commands, one at a time -------------------------------------------

    def lineReceived(self, line):
        self.resetTimeout()
        try:
            getattr(self, "parse_" + self.parseState)(line)
        except Exception:
            self._fail(self._current, Failure())
        if self._current is not None and self.parseState == "command" and not self.paused:
            # A command is still running: keep the next lines in the buffer until it ends,
            # and stop reading the socket meanwhile so a flood cannot fill memory.
            self.paused = True
            self._transport_call("pauseProducing")

    def _resume(self):
        if self._current is None and self.paused and self.transport is not None:
            self.paused = False
            self._transport_call("resumeProducing")
            self.dataReceived(b"")

    def _transport_call(self, name):
        method = getattr(self.transport, name, None)
        if method is not None and not getattr(self.transport, "disconnecting", False):
            try:
                method()
            except Exception:
                self.log.failure("transport.{name} failed", name=name)

    def parse_command(self, line):
        if line.strip().upper() == b"DONE":
            self.sendBadResponse(None, b"DONE without IDLE")
            return
        parts = line.split(b" ", 2)
        if not _TAG_RE.match(parts[0]):
            self.sendBadResponse(None, b"Missing or invalid tag")
            return
        tag = parts[0]
        if len(parts) < 2 or not parts[1]:
            self.sendBadResponse(tag, b"Missing command")
            return
        cmd = parts[1].upper()
        rest = parts[2] if len(parts) == 3 else b""
        self._current = tag
        self._current_cmd = cmd
        self._current_uid = False
        self.dispatchCommand(tag, cmd, rest)

    def dispatchCommand(self, tag, cmd, rest, uid=None):
        if not cmd.isalpha():
            raise Bad("Unknown command")
        spec = self.lookupCommand(cmd)
        if spec is None:
            known = any(
                getattr(self, "%s_%s" % (s, cmd.decode("ascii")), None)
                for s in ("unauth", "auth", "select")
            )
            if known:
                raise Bad("%s is not allowed in this state" % (cmd.decode("ascii"),))
            raise Bad("Unknown command")
        self._run(tag, spec[0], [], list(spec[1:]), rest, uid)

    def lookupCommand(self, cmd):
        return getattr(self, "%s_%s" % (self.state, cmd.decode("ascii").upper()), None)

    def _run(self, tag, handler, args, parsers, line, uid):
        while parsers:
            parser = parsers.pop(0)
            if not callable(parser):
                args.append(parser)
                continue
            result = parser(self, line)
            # (value, rest) or a Deferred; the tuple test first: isinstance on Deferred
            # (an ABC) was a tenth of a UID FETCH's Python time
            if type(result) is not tuple and isinstance(result, defer.Deferred):
                result.addCallback(self._parsed, tag, handler, args, parsers, uid)
                result.addErrback(lambda f: self._fail(tag, f))
                return
            value, line = result
            args.append(value)
        if line and line.strip():
            raise Bad("Too many arguments")
        if uid is not None:
            handler(self, tag, *args, uid=uid)
        else:
            handler(self, tag, *args)

    def _parsed(self, result, tag, handler, args, parsers, uid):
        value, line = result
        args.append(value)
        self._run(tag, handler, args, parsers, line, uid)

    def _fail(self, tag, failure):
        """Turn an exception into the answer a client can act on; never a traceback."""
        e = failure.value
        if isinstance(e, No):
            self.sendNegativeResponse(tag, _text(str(e)))
        elif isinstance(e, (Bad, imap4.IllegalClientResponse, imap4.IllegalQueryError)):
            self.sendBadResponse(tag, _text(str(e)))
        elif isinstance(e, imap4.IllegalMailboxEncoding):
            self.sendBadResponse(tag, b"Mailbox name is not valid modified UTF-7")
        elif isinstance(e, imap4.IllegalOperation):
            self.sendNegativeResponse(tag, _text(str(e)))
        elif isinstance(e, errors.MailboxNotFound):
            self.sendNegativeResponse(tag, b"[NONEXISTENT] " + _text(str(e) or "No such mailbox"))
        elif isinstance(e, errors.MailboxExists):
            self.sendNegativeResponse(tag, b"[ALREADYEXISTS] " + _text(str(e) or "Mailbox exists"))
        elif isinstance(e, errors.InvalidMailboxName):
            self.sendNegativeResponse(tag, b"[CANNOT] " + _text(str(e) or "Invalid mailbox name"))
        elif isinstance(e, errors.MessageTooLarge):
            self.sendNegativeResponse(tag, b"[TOOBIG] " + _text(str(e) or "Message too large"))
        elif isinstance(e, errors.StoreError):
            self.sendNegativeResponse(tag, _text(str(e)))
        else:
            self.log.failure("IMAP command failed", failure, tag=tag)
            self.sendBadResponse(tag, b"Internal server error")

    # -- responses -------------------------------------------------------------------

    def _respond(self, state, tag, message):
        final = tag is not None and tag == self._current and state in (b"OK", b"NO", b"BAD")
        if final:
            self._send_updates()
        if not tag:
            tag = b"*"
        if message:
            self.sendLine(b" ".join((tag, state, message)))
        else:
            self.sendLine(b" ".join((tag, state)))
        if final:
            self._current = None
            self._current_cmd = None
            if self.paused:
                self.clock.callLater(0, self._resume)

    def sendContinuationRequest(self, msg=b"Ready for additional command text"):
        # RFC 3501 continue-req is "+" SP ...: keep the space even with no text (SASL).
        self.sendLine(b"+ " + (msg or b""))

    def _send_updates(self):
        view = self.view
        if view is not None and view.gone and self.state == "select":
            # Another session (or this one) deleted the selected mailbox: nothing the
            # client knows by sequence number is valid any more (what Dovecot does too).
            self._close_view()
            self.state = "logout"
            self.sendLine(b"* BYE Selected mailbox was deleted, have to disconnect")
            self.clock.callLater(0, self.transport.loseConnection)
            return
        if view is None or self.state != "select" or not view.pending():
            return
        allow_expunge = self._current_uid or self._current_cmd not in (b"FETCH", b"STORE", b"SEARCH")
        for line in view.flush(allow_expunge):
            self.sendLine(b"* " + line)

    def _view_changed(self):
        """The bus told the view something: tell an idle client now, others later."""
        view = self.view
        if self.parseState == "idle" or (view is not None and view.gone and self._current is None):
            self._send_updates()

    # -- argument parsers ------------------------------------------------------------

    def arg_astring(self, line):
        line = line.lstrip(b" ")
        if not line:
            raise Bad("Missing argument")
        if line[:1] == b'"':
            out = bytearray()
            i = 1
            while i < len(line):
                c = line[i]
                if c == 0x5C and i + 1 < len(line):
                    out.append(line[i + 1])
                    i += 2
                    continue
                if c == 0x22:
                    rest = line[i + 1 :]
                    return bytes(out), rest[1:] if rest[:1] == b" " else rest
                out.append(c)
                i += 1
            raise Bad("Unmatched quotes")
        if line[:1] == b"{":
            size, sync = self._literal_header(line)
            return self._read_literal(size, sync, self._literalStringLimit, imap4.LiteralString)
        if line[:1] == b"(":
            raise Bad("Expected a string, found a list")
        arg, _, rest = line.partition(b" ")
        return arg, rest

    def arg_finalastring(self, line):
        return self.arg_astring(line)

    def arg_literal(self, line):
        line = line.strip()
        if line[:1] != b"{":
            raise Bad("Expected a literal")
        size, sync = self._literal_header(line)
        return self._read_literal(size, sync, self.max_message_size, imap4.LiteralFile)

    def arg_word(self, line):
        """A sequence set or other space-free token (atoms cannot hold "*")."""
        word, _, rest = (line or b"").lstrip(b" ").partition(b" ")
        if not word:
            raise Bad("Missing argument")
        return word, rest

    def arg_rest(self, line):
        return (line or b"").strip(), b""

    def arg_list(self, line):
        """A parenthesised (possibly nested) list, parsed into lists of bytes."""
        line = line.lstrip(b" ")
        if line[:1] != b"(":
            raise Bad("Expected a parenthesised list")
        end = _matching_paren(line)
        return imap4.parseNestedParens(line[:end])[0], line[end:]

    def _literal_header(self, line):
        m = re.match(rb"\A\{(\d{1,12})(\+?)\}\Z", line)
        if m is None:
            raise Bad("Malformed literal")
        return int(m.group(1)), not m.group(2)

    def _read_literal(self, size, sync, limit, kind):
        d = defer.Deferred()
        if size > limit:
            reason = "[TOOBIG] Literal of %d octets is over the limit of %d" % (size, limit)
            if sync:
                raise No(reason)
            self._pendingLiteral = _DiscardLiteral(size, d, reason)
        else:
            self._pendingLiteral = kind(size, d)
            if sync:
                self.sendContinuationRequest(b"Ready for literal data")
        self.parseState = "pending"
        self.setRawMode()
        return d

    def parse_pending(self, line):
        d = self._pendingLiteral
        self._pendingLiteral = None
        self.parseState = "command"
        d.callback(line)

    def _mailbox_name(self, raw):
        try:
            name = raw.decode("imap4-utf-7") if isinstance(raw, bytes) else raw
        except Exception:
            raise Bad("Mailbox name is not valid modified UTF-7")
        name = name.rstrip(DELIMITER)
        if name.upper() == "INBOX":
            return "INBOX"
        if name.upper().startswith("INBOX" + DELIMITER):
            return "INBOX" + name[5:]
        return name

    # -- any state -----------------------------------------------------------------

    def do_LOGOUT(self, tag):
        self._close_view()
        self.sendUntaggedResponse(b"BYE imapwebpush logging out")
        self.sendPositiveResponse(tag, b"LOGOUT completed")
        self.state = "logout"
        self._flush_output()
        self.transport.loseConnection()

    unauth_LOGOUT = auth_LOGOUT = select_LOGOUT = (do_LOGOUT,)

    def do_NOOP(self, tag):
        self.sendPositiveResponse(tag, b"NOOP completed")

    unauth_NOOP = auth_NOOP = select_NOOP = (do_NOOP,)

    def do_ID(self, tag, args):
        self.sendUntaggedResponse(b'ID ("name" "imapwebpush" "vendor" "imapwebpush")')
        self.sendPositiveResponse(tag, b"ID completed")

    unauth_ID = auth_ID = select_ID = (do_ID, arg_rest)

    # -- not authenticated ---------------------------------------------------------

    def do_STARTTLS(self, tag):
        if self.is_secure():
            raise Bad("TLS is already active")
        if not (self.ctx and self.canStartTLS):
            raise Bad("STARTTLS is not available")
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        # Anything the client sent after STARTTLS in plaintext is dropped (RFC 3501 11.1).
        self._buffer = b""
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
        d = defer.Deferred()
        self._pendingLiteral = d
        self.parseState = "pending"
        d.addCallback(lambda line: self._auth_plain(tag, line.strip(), initial=False))
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
        self._onLogout = logout
        self.state = "auth"
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
        elif failure.check(UnhandledCredentials):
            self.sendNegativeResponse(tag, b"[UNAVAILABLE] Authentication is not configured")
        else:
            self._fail(tag, failure)

    # -- authenticated ----------------------------------------------------------------

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

    def _select(self, tag, raw_name, params, readonly, command):
        try:
            condstore, resync = qresync.parse_select_params(params)
        except qresync.QresyncError as e:
            raise Bad(str(e))
        if resync is not None and not self.qresync_enabled:
            raise Bad("QRESYNC is not enabled")  # RFC 7162 3.2.5
        if self.view is not None:
            # RFC 7162 3.2.11: everything after this line is about the new mailbox.
            self._close_view()
            self.sendUntaggedResponse(b"OK [CLOSED] Previous mailbox closed")
        self.state = "auth"
        name = self._mailbox_name(raw_name)
        mailbox = self.mail_account.mailbox(name)
        if getattr(mailbox, "noselect", False):
            raise No("[CANNOT] Mailbox cannot be selected")
        view = SessionView(self.mail_account, mailbox, self, readonly, self._view_changed)
        try:
            self._announce(view, readonly, condstore, resync)
        except BaseException:
            view.close()  # a selection that failed half-way must not stay on the change bus
            raise
        self.view = view
        self.state = "select"
        mode = b"[READ-ONLY]" if readonly else b"[READ-WRITE]"
        self.sendPositiveResponse(tag, mode + b" " + command + b" completed")

    auth_SELECT = select_SELECT = (_select, arg_astring, arg_rest, False, b"SELECT")
    auth_EXAMINE = select_EXAMINE = (_select, arg_astring, arg_rest, True, b"EXAMINE")

    def _announce(self, view, readonly, condstore, resync):
        """The untagged answers of SELECT/EXAMINE for a new ``view`` (RFC 3501 6.3.1)."""
        mailbox = view.mailbox
        if condstore:
            self.condstore_enabled = True
        view.condstore = self.condstore_enabled
        view.qresync = self.qresync_enabled
        permanent = b"" if readonly else b" ".join(s.encode() for s in SYSTEM_FLAGS) + b" \\*"
        self.sendUntaggedResponse(
            b"FLAGS (" + b" ".join(s.encode() for s in SYSTEM_FLAGS) + b")"
        )
        self.sendUntaggedResponse(b"OK [PERMANENTFLAGS (" + permanent + b")] Flags permitted")
        self.sendUntaggedResponse(b"%d EXISTS" % (view.exists(),))
        self.sendUntaggedResponse(b"%d RECENT" % (len(view.recent),))
        unseen = view.unseen_first()
        if unseen is not None:
            self.sendUntaggedResponse(b"OK [UNSEEN %d] First unseen" % (unseen,))
        self.sendUntaggedResponse(b"OK [UIDVALIDITY %d] UIDs valid" % (mailbox.uidvalidity,))
        self.sendUntaggedResponse(b"OK [UIDNEXT %d] Predicted next UID" % (mailbox.uidnext,))
        self.sendUntaggedResponse(
            b"OK [HIGHESTMODSEQ %d] Highest mod-sequence" % (mailbox.highestmodseq,)
        )
        if resync is not None and resync.uidvalidity == mailbox.uidvalidity:
            self._resync(view, resync)

    def _resync(self, view, params):
        """What a QRESYNC client missed since its last look (RFC 7162 3.2.5.1):
        ``VANISHED (EARLIER)`` then the messages whose flags changed."""
        mailbox = view.mailbox
        gone = qresync.select_vanished(params, mailbox, view.uids)
        for line in qresync.vanished_lines(gone, earlier=True):
            self.sendUntaggedResponse(line)
        for uid in qresync.changed_uids(params, mailbox):
            try:
                stored = mailbox.message(uid)
                seq = view.seq(uid)
            except KeyError:
                continue
            self.sendUntaggedResponse(
                b"%d FETCH (UID %d %s MODSEQ (%d))"
                % (seq, uid, view.flags_item(uid, stored.flags), stored.modseq)
            )

    def _enable_condstore(self):
        """A CONDSTORE-enabling action (RFC 7162 3.1): MODSEQ from now on, for the session."""
        self.condstore_enabled = True
        if self.view is not None:
            self.view.condstore = True

    def _close_view(self):
        view, self.view = self.view, None
        if view is not None:
            view.close()

    def do_CREATE(self, tag, raw_name):
        name = self._mailbox_name(raw_name)
        if name == "INBOX":
            raise No("[ALREADYEXISTS] INBOX always exists")
        if not name:
            raise Bad("Empty mailbox name")
        self.mail_account.create_mailbox(name, origin=self)
        self.sendPositiveResponse(tag, b"CREATE completed")

    auth_CREATE = select_CREATE = (do_CREATE, arg_finalastring)

    def do_DELETE(self, tag, raw_name):
        name = self._mailbox_name(raw_name)
        if name == "INBOX":
            raise No("[CANNOT] INBOX cannot be deleted")
        self.mail_account.delete_mailbox(name, origin=self)
        self.sendPositiveResponse(tag, b"DELETE completed")

    auth_DELETE = select_DELETE = (do_DELETE, arg_finalastring)

    def do_RENAME(self, tag, raw_old, raw_new):
        old, new = self._mailbox_name(raw_old), self._mailbox_name(raw_new)
        if new == "INBOX":
            raise No("[ALREADYEXISTS] INBOX always exists")
        self.mail_account.rename_mailbox(old, new, origin=self)
        self.sendPositiveResponse(tag, b"RENAME completed")

    auth_RENAME = select_RENAME = (do_RENAME, arg_astring, arg_finalastring)

    def do_SUBSCRIBE(self, tag, raw_name):
        self.mail_account.subscribe(self._mailbox_name(raw_name))
        self.sendPositiveResponse(tag, b"SUBSCRIBE completed")

    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, arg_finalastring)

    def do_UNSUBSCRIBE(self, tag, raw_name):
        self.mail_account.unsubscribe(self._mailbox_name(raw_name))
        self.sendPositiveResponse(tag, b"UNSUBSCRIBE completed")

    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, arg_finalastring)

    def _pattern(self, ref, pattern):
        try:
            text = (ref + pattern).decode("imap4-utf-7")
        except Exception:
            raise Bad("Mailbox pattern is not valid modified UTF-7")
        if text[:5].upper() == "INBOX" and (len(text) == 5 or text[5] in "/%*"):
            text = "INBOX" + text[5:]
        # twisted's wildcardToRegexp is unanchored at the end and case-blind; names are not.
        pieces = []
        for piece in re.split(r"([*%])", text):
            if piece == "*":
                pieces.append(".*")
            elif piece == "%":
                pieces.append("[^" + re.escape(DELIMITER) + "]*")
            else:
                pieces.append(re.escape(piece))
        return re.compile("".join(pieces) + r"\Z", re.DOTALL)

    def _mailbox_attributes(self, name, parents):
        """LIST attributes of ``name``; ``parents`` is ``_parent_names`` of the listing."""
        attrs = []
        selectable = getattr(self.mail_account, "is_selectable", None)
        if selectable is None:
            try:
                self.mail_account.mailbox(name)
                selectable = True
            except errors.MailboxNotFound:
                selectable = False
        else:
            selectable = selectable(name)
        if not selectable:
            attrs.append("\\Noselect")
        attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        special = self.mail_account.special_use(name)
        if special:
            attrs.append(special)
        return attrs

    def do_LIST(self, tag, ref, pattern):
        if not pattern:
            self.sendUntaggedResponse(b'LIST (\\Noselect) "/" ""')
            self.sendPositiveResponse(tag, b"LIST completed")
            return
        regexp = self._pattern(ref, pattern)
        names = self.mail_account.list_mailboxes()
        parents = _parent_names(names)
        for name in names:
            if regexp.match(name):
                attrs = self._mailbox_attributes(name, parents)
                self.sendUntaggedResponse(
                    b"LIST (" + " ".join(attrs).encode() + b') "/" ' + _quote_name(name)
                )
        self.sendPositiveResponse(tag, b"LIST completed")

    auth_LIST = select_LIST = (do_LIST, arg_astring, arg_finalastring)

    def do_LSUB(self, tag, ref, pattern):
        regexp = self._pattern(ref, pattern)
        existing = set(self.mail_account.list_mailboxes())
        for name in self.mail_account.subscriptions():
            if regexp.match(name):
                attrs = b"" if name in existing else b"\\Noselect"
                self.sendUntaggedResponse(b"LSUB (" + attrs + b') "/" ' + _quote_name(name))
        self.sendPositiveResponse(tag, b"LSUB completed")

    auth_LSUB = select_LSUB = (do_LSUB, arg_astring, arg_finalastring)

    def do_STATUS(self, tag, raw_name, items):
        name = self._mailbox_name(raw_name)
        mailbox = self.mail_account.mailbox(name)
        out = []
        uids = None
        for item in items:
            if not isinstance(item, bytes):
                raise Bad("Bad STATUS item")
            key = item.upper()
            if key == b"MESSAGES":
                uids = mailbox.uids() if uids is None else uids
                out.append(b"MESSAGES %d" % (len(uids),))
            elif key == b"RECENT":
                out.append(b"RECENT %d" % (self._recent_count(mailbox),))
            elif key == b"UIDNEXT":
                out.append(b"UIDNEXT %d" % (mailbox.uidnext,))
            elif key == b"UIDVALIDITY":
                out.append(b"UIDVALIDITY %d" % (mailbox.uidvalidity,))
            elif key == b"UNSEEN":
                if callable(getattr(mailbox, "unseen", None)):
                    unseen = len(mailbox.unseen())  # store extension, from memory
                else:
                    uids = mailbox.uids() if uids is None else uids
                    unseen = sum(1 for u in uids if "\\Seen" not in self._flags(mailbox, u))
                out.append(b"UNSEEN %d" % (unseen,))
            elif key == b"HIGHESTMODSEQ":
                out.append(b"HIGHESTMODSEQ %d" % (mailbox.highestmodseq,))
            else:
                raise Bad("Unknown STATUS item %s" % (item.decode("ascii", "replace"),))
        self.sendUntaggedResponse(b"STATUS " + _quote_name(mailbox.name) + b" (" + b" ".join(out) + b")")
        self.sendPositiveResponse(tag, b"STATUS completed")

    auth_STATUS = select_STATUS = (do_STATUS, arg_astring, arg_list)

    def _recent_count(self, mailbox):
        view = self.view
        if view is not None and view.name == mailbox.name:
            return len(view.recent)
        recent = getattr(mailbox, "recent", None)  # store extension: UIDs in new/, unclaimed
        return len(recent()) if callable(recent) else 0

    @staticmethod
    def _flags(mailbox, uid):
        try:
            return mailbox.message(uid).flags
        except KeyError:
            return frozenset()

    def do_APPEND(self, tag, raw_name, flags, date, message):
        name = self._mailbox_name(raw_name)
        try:
            mailbox = self.mail_account.mailbox(name)
        except errors.MailboxNotFound:
            raise No("[TRYCREATE] No such mailbox")
        data = message.read()
        flag_names = self._flag_names(flags or [])
        internaldate = _parse_datetime(date) if date else None
        uid = mailbox.add(data, flag_names, internaldate, origin=self)
        self.sendPositiveResponse(
            tag, b"[APPENDUID %d %d] APPEND completed" % (mailbox.uidvalidity, uid)
        )

    auth_APPEND = select_APPEND = (
        do_APPEND,
        arg_astring,
        imap4.IMAP4Server.opt_plist,
        imap4.IMAP4Server.opt_datetime,
        arg_literal,
    )

    def _flag_names(self, flags):
        names = []
        for flag in flags:
            if not isinstance(flag, bytes):
                raise Bad("Bad flag list")
            text = flag.decode("utf-8", "replace")
            if text.startswith("\\"):
                match = [s for s in SYSTEM_FLAGS if s.lower() == text.lower()]
                if text.lower() == "\\recent":
                    continue
                if not match:
                    raise Bad("Unknown system flag %s" % (text,))
                text = match[0]
            elif not re.match(r"\A[!#$&'+-Z^-z|~]+\Z", text):
                raise Bad("Bad keyword %s" % (text,))
            names.append(text)
        return names

    # -- selected ------------------------------------------------------------------

    def do_CHECK(self, tag):
        self.sendPositiveResponse(tag, b"CHECK completed")

    select_CHECK = (do_CHECK,)

    def do_CLOSE(self, tag):
        view = self.view
        self._close_view()
        self.state = "auth"
        if not view.readonly:
            view.mailbox.expunge(origin=self)
        self.sendPositiveResponse(tag, b"CLOSE completed")

    select_CLOSE = (do_CLOSE,)

    def do_UNSELECT(self, tag):
        self._close_view()
        self.state = "auth"
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    def _writable(self):
        if self.view.readonly:
            raise No("[READ-ONLY] The mailbox was opened with EXAMINE")

    def do_EXPUNGE(self, tag, rest, uid=False):
        self._writable()
        if uid:
            uids = [u for _, u in self._resolve(rest, True)]
            self.view.mailbox.expunge(uids=uids, origin=self)
        elif rest:
            raise Bad("Too many arguments")
        else:
            self.view.mailbox.expunge(origin=self)
        code = b""
        if self.qresync_enabled:
            # The tagged answer follows every pending EXPUNGE (_respond tells them first),
            # so the value is safe (RFC 7162 3.2).
            code = b"[HIGHESTMODSEQ %d] " % (self.view.mailbox.highestmodseq,)
        self.sendPositiveResponse(tag, code + b"EXPUNGE completed")

    select_EXPUNGE = (do_EXPUNGE, arg_rest)

    def _resolve(self, text, uid):
        try:
            return self.view.resolve(parse_sequence_set(text), uid)
        except ValueError as e:
            raise Bad(str(e))

    def do_UID(self, tag, command, line):
        command = command.upper()
        if command not in (b"FETCH", b"STORE", b"SEARCH", b"COPY", b"MOVE", b"EXPUNGE"):
            raise Bad("Unknown UID command")
        self._current_uid = True
        self._current_cmd = command
        self.dispatchCommand(tag, command, line, uid=True)

    select_UID = (do_UID, imap4.IMAP4Server.arg_atom, arg_rest)

    def do_COPY(self, tag, seqset, raw_name, uid=False, move=False):
        if move:
            self._writable()  # first: no [TRYCREATE] or [EXPUNGEISSUED] that retrying cannot mend
        name = self._mailbox_name(raw_name)
        pairs_of = self._resolve(seqset, uid)
        try:
            destination = self.mail_account.mailbox(name)
        except errors.MailboxNotFound:
            raise No("[TRYCREATE] No such mailbox")
        uids = [u for _, u in pairs_of if not self.view.is_ghost(u)]
        if not uid and len(uids) < len(pairs_of):
            # RFC 2180 4.4: copying only part of what the client named would mislead it;
            # copy nothing (a UID command just skips it: its EXPUNGE is told before the OK).
            raise No(_EXPUNGEISSUED)
        if move:
            pairs = self.view.mailbox.move(uids, destination, origin=self) if uids else []
        else:
            pairs = self.view.mailbox.copy(uids, destination, origin=self) if uids else []
        code = b""
        if pairs:
            code = b"[COPYUID %d %s %s] " % (
                destination.uidvalidity,
                format_uid_set([s for s, _ in pairs]).encode(),
                format_uid_set([d for _, d in pairs]).encode(),
            )
        if move:
            if code:
                self.sendUntaggedResponse(b"OK " + code + b"Moved")
            self.sendPositiveResponse(tag, b"MOVE completed")
        else:
            self.sendPositiveResponse(tag, code + b"COPY completed")

    select_COPY = (do_COPY, arg_word, arg_finalastring)

    def do_MOVE(self, tag, seqset, raw_name, uid=False):
        self.do_COPY(tag, seqset, raw_name, uid=uid, move=True)

    select_MOVE = (do_MOVE, arg_word, arg_finalastring)

    def do_STORE(self, tag, seqset, rest, uid=False):
        view = self.view
        self._writable()
        unchangedsince = None
        if rest[:1] == b"(":
            end = _matching_paren(rest)
            modifier = rest[1 : end - 1].split()
            rest = rest[end:].lstrip()
            if len(modifier) != 2 or modifier[0].upper() != b"UNCHANGEDSINCE" or not modifier[1].isdigit():
                raise Bad("Unknown STORE modifier")
            unchangedsince = int(modifier[1])
            self._enable_condstore()
        item, _, flag_text = rest.partition(b" ")
        item = item.upper()
        modes = {b"FLAGS": "replace", b"+FLAGS": "add", b"-FLAGS": "remove"}
        silent = item.endswith(b".SILENT")
        mode = modes.get(item[:-7] if silent else item)
        if mode is None:
            raise Bad("Expected FLAGS, +FLAGS or -FLAGS")
        flags = self._flag_names(imap4.IMAP4Server.arg_flaglist(self, flag_text.strip())[0])
        named = self._resolve(seqset, uid)
        targets = [(s, u) for s, u in named if not view.is_ghost(u)]
        if not uid and len(targets) < len(named):
            # RFC 2180 4.2: a number the client still sees names an expunged message;
            # change nothing (by UID it is skipped and its EXPUNGE told before the OK).
            raise No(_EXPUNGEISSUED)
        changed, failed = view.mailbox.set_flags(
            [u for _, u in targets], flags, mode, unchangedsince=unchangedsince, origin=self
        )
        failed = set(failed)
        for seq, u in targets:
            if u in failed:
                continue
            if silent and not (view.condstore and u in changed):
                continue
            if u in changed:
                new_flags, modseq = changed[u]
            else:
                try:
                    stored = view.mailbox.message(u)
                except KeyError:
                    continue
                new_flags, modseq = stored.flags, stored.modseq
            items = []
            if not silent:
                items.append(view.flags_item(u, new_flags))
            if uid:
                items.append(b"UID %d" % (u,))
            if view.condstore:
                items.append(b"MODSEQ (%d)" % (modseq,))
            self.sendUntaggedResponse(b"%d FETCH (%s)" % (seq, b" ".join(items)))
        if failed:
            numbers = sorted(u if uid else view.seq(u) for u in failed)
            self.sendPositiveResponse(
                tag, b"[MODIFIED " + format_uid_set(numbers).encode() + b"] Conditional STORE failed"
            )
        else:
            self.sendPositiveResponse(tag, b"STORE completed")

    select_STORE = (do_STORE, arg_word, arg_rest)

    # -- FETCH -------------------------------------------------------------------------

    def do_FETCH(self, tag, seqset, rest, uid=False):
        view = self.view
        if rest[:1] == b"(":
            end = _matching_paren(rest)
        else:
            # one attribute; a section (BODY[HEADER.FIELDS (A B)]) may hold spaces up to its "]"
            first = rest.find(b" ")
            if first != -1 and b"[" in rest[:first]:
                close = rest.find(b"]")
                first = -1 if close == -1 else rest.find(b" ", close)
            end = len(rest) if first == -1 else first
        attr_text, modifiers = rest[:end], rest[end:].strip()
        try:
            changedsince, vanished = qresync.parse_fetch_modifiers(modifiers)
        except qresync.QresyncError as e:
            raise Bad(str(e))
        if vanished:
            if not uid:
                raise Bad("VANISHED is only allowed in UID FETCH")  # RFC 7162 3.2.6
            if not self.qresync_enabled:
                raise Bad("QRESYNC is not enabled")
        attrs, names_modseq, any_sets_seen = _fetch_attributes(attr_text)
        want_modseq = changedsince is not None or names_modseq
        if want_modseq:
            self._enable_condstore()
        expunged = []  # named by the client, expunged by another session
        messages = []
        for seq, u in self._resolve(seqset, uid):
            if view.is_ghost(u):
                expunged.append(u)
                continue
            try:
                stored = view.mailbox.message(u)
            except KeyError:
                expunged.append(u)
                continue
            if changedsince is not None and stored.modseq <= changedsince:
                continue
            messages.append((seq, u, stored))
        if vanished:
            self._fetch_vanished(seqset, changedsince)
        sets_seen = any_sets_seen and not view.readonly
        seen_changes = {}
        if sets_seen:
            unseen = [u for _, u, m in messages if "\\Seen" not in m.flags]
            if unseen:
                seen_changes, _ = view.mailbox.set_flags(unseen, ["\\Seen"], "add", origin=self)
        def render(item):
            seq, u, stored = item
            try:
                return self._fetch_response(seq, u, stored, attrs, uid, want_modseq, seen_changes)
            except (KeyError, OSError):
                if view.is_ghost(u) or u not in view.mailbox.uids():
                    expunged.append(u)  # expunged by another session while streaming
                    return b""
                raise

        def finish():
            # By UID, a message that is gone is simply not there (its EXPUNGE follows).
            if expunged and not uid:
                self.sendNegativeResponse(tag, _EXPUNGEISSUED.encode("ascii"))
            else:
                self.sendPositiveResponse(tag, b"FETCH completed")

        _FetchStreamer(self, messages, render, finish).start()

    select_FETCH = (do_FETCH, arg_word, arg_rest)

    def _fetch_vanished(self, seqset, changedsince):
        """``VANISHED (EARLIER)`` of UID FETCH ... (CHANGEDSINCE n VANISHED) (RFC 7162 3.2.6):
        the UIDs of the set expunged after ``n``. A message this client still numbers
        (another session expunged it, not yet told) is left to the plain VANISHED that
        ends the command."""
        view = self.view
        mailbox = view.mailbox
        star = max(mailbox.uidnext - 1, view.uids[-1] if view.uids else 0)
        if star < 1:
            return
        asked = qresync.normalize(with_star(parse_sequence_set(seqset), star))
        gone = qresync.intersect(mailbox.vanished_ranges(changedsince), asked)
        gone = qresync.subtract(gone, qresync.ranges_of(view.uids))
        for line in qresync.vanished_lines(gone, earlier=True):
            self.sendUntaggedResponse(line)

    @staticmethod
    def _sets_seen(attr):
        if attr.type == "body":
            return not attr.peek and IMAPServer._is_section(attr)
        return attr.type in ("rfc822", "rfc822text")

    def _fetch_response(self, seq, uid, stored, attrs, by_uid, want_modseq, seen_changes):
        view = self.view
        flags, modseq = stored.flags, stored.modseq
        if uid in seen_changes:
            flags, modseq = seen_changes[uid]
        items = []
        if by_uid:
            items.append(b"UID %d" % (uid,))
        message = None
        has_flags = False
        for attr in attrs:
            kind = attr.type
            if kind == "uid":
                if not by_uid:
                    items.append(b"UID %d" % (uid,))
            elif kind == "flags":
                has_flags = True
                items.append(view.flags_item(uid, flags))
            elif kind == "internaldate":
                items.append(b"INTERNALDATE " + _internaldate(stored.internaldate))
            elif kind == "rfc822size":
                items.append(b"RFC822.SIZE %d" % (stored.size,))
            elif kind == "body" and attr.empty and not attr.part and attr.partialBegin is None:
                # BODY[] / BODY.PEEK[]: the stored octets as they are, nothing parsed
                if message is None:
                    message = StoredMessage(stored, flags)
                items.append(b"BODY[] " + _literal(message.raw))
            else:
                if message is None:
                    message = StoredMessage(stored, flags)
                items.append(self._fetch_content(attr, message))
        if uid in seen_changes and not has_flags:
            items.append(view.flags_item(uid, flags))
        if want_modseq or (view.condstore and (has_flags or uid in seen_changes)):
            items.append(b"MODSEQ (%d)" % (modseq,))
        return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items))

    def _fetch_content(self, attr, message):
        kind = attr.type
        if kind == "envelope":
            try:
                return b"ENVELOPE " + message_envelope(message.header)
            except Exception:
                self.log.failure("ENVELOPE of uid {uid}", uid=message.getUID())
                return b"ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
        if kind == "bodystructure" or (kind == "body" and not self._is_section(attr)):
            name = b"BODYSTRUCTURE" if kind == "bodystructure" else b"BODY"
            try:
                structure = body_structure(message, kind == "bodystructure")
                return name + b" " + imap4.collapseNestedLists([wire_safe(structure)])
            except Exception:
                self.log.failure("BODYSTRUCTURE of uid {uid}", uid=message.getUID())
                return name + b' ("TEXT" "PLAIN" NIL NIL NIL "7BIT" %d %d)' % (
                    len(message.body),
                    message.body.count(b"\n"),
                )
        if kind == "rfc822":
            return b"RFC822 " + _literal(message.raw)
        if kind == "rfc822header":
            return b"RFC822.HEADER " + _literal(message.header)
        if kind == "rfc822text":
            return b"RFC822.TEXT " + _literal(message.body)
        return self._fetch_section(attr, message)

    @staticmethod
    def _is_section(attr):
        return bool(attr.empty or attr.header or attr.text or attr.mime or attr.part)

    def _fetch_section(self, attr, message):
        path = tuple(attr.part or ())
        section = [str(p + 1).encode() for p in path]
        try:
            part = message.section(path) if path else message
        except (KeyError, IndexError):
            part = None
        if attr.header or attr.text:
            if part is not None and path and part.content_type().lower().startswith(b"message/rfc822"):
                part = part.subparts()[0]
        if attr.header:
            header = attr.header
            section.append(_header_section(header))
            if part is None:
                data = b""
            elif header.fields:
                fields = [f.decode("ascii", "replace") if isinstance(f, bytes) else f for f in header.fields]
                data = part.header_fields(fields, header.negate)
            else:
                data = part.header
        elif attr.text:
            section.append(b"TEXT")
            data = b"" if part is None else part.body
        elif attr.mime:
            section.append(b"MIME")
            data = b"" if part is None else part.header
        else:
            data = b"" if part is None else (part.body if path else part.raw)
        name = b"BODY[" + b".".join(section) + b"]"
        if attr.partialBegin is not None:
            data = data[attr.partialBegin : attr.partialBegin + attr.partialLength]
            name += b"<%d>" % (attr.partialBegin,)
        return name + b" " + _literal(data)

    # -- SEARCH -----------------------------------------------------------------------

    def do_SEARCH(self, tag, line, uid=False):
        charset, query = self._search_arguments(line)
        if charset is not None and charset.upper() not in (b"UTF-8", b"US-ASCII"):
            raise No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
        view = self.view
        if not query:
            raise Bad("Missing search criteria")
        self._search_modseq = False
        predicate = self._compile_search(list(query))
        found = []
        highest = 0
        for index, u in enumerate(list(view.uids)):
            if view.is_ghost(u):
                continue
            try:
                stored = view.mailbox.message(u)
            except KeyError:
                continue
            if predicate(_SearchItem(index + 1, u, stored, view)):
                found.append(u if uid else index + 1)
                highest = max(highest, stored.modseq)
        line = b"SEARCH" + b"".join(b" %d" % (n,) for n in found)
        if self._search_modseq and found:
            line += b" (MODSEQ %d)" % (highest,)
        self.sendUntaggedResponse(line)
        self.sendPositiveResponse(tag, b"SEARCH completed")

    def arg_search(self, line):
        """The whole SEARCH line, with literals (non-ASCII criteria) read and quoted in place."""
        m = re.search(rb"\{(\d{1,12})(\+?)\}\Z", line)
        if m is None:
            return line, b""
        d = self._read_literal(int(m.group(1)), not m.group(2), self._literalStringLimit, imap4.LiteralString)
        prefix = line[: m.start()]

        def got(result):
            data, rest = result
            if b"\r" in data or b"\n" in data:
                raise Bad("Search criteria cannot hold CR or LF")
            return self.arg_search(prefix + imap4._quote(data) + rest)

        return d.addCallback(got)

    def _search_arguments(self, line):
        """(charset or None, parsed criteria) of a SEARCH line."""
        charset, line = imap4.IMAP4Server.opt_charset(self, line.strip())
        try:
            query = imap4.parseNestedParens(line)
        except Exception:
            raise Bad("Malformed search criteria")
        return charset, query

    select_SEARCH = (do_SEARCH, arg_search)

    def _compile_search(self, tokens):
        preds = []
        while tokens:
            preds.append(self._search_key(tokens))
        return lambda m: all(p(m) for p in preds)

    def _search_key(self, tokens):
        token = tokens.pop(0)
        if isinstance(token, list):
            return self._compile_search(list(token))
        key = token.upper()

        def arg():
            if not tokens or isinstance(tokens[0], list):
                raise Bad("Missing argument for %s" % (key.decode("ascii", "replace"),))
            return tokens.pop(0)

        def number():
            value = arg()
            if not value.isdigit():
                raise Bad("Expected a number after %s" % (key.decode("ascii", "replace"),))
            return int(value)

        if key == b"ALL":
            return lambda m: True
        if key in _SEARCH_FLAGS:
            flag = _SEARCH_FLAGS[key]
            return lambda m: flag in m.flags
        if key[:2] == b"UN" and key[2:] in _SEARCH_FLAGS:
            flag = _SEARCH_FLAGS[key[2:]]
            return lambda m: flag not in m.flags
        if key == b"RECENT":
            return lambda m: m.recent
        if key == b"OLD":
            return lambda m: not m.recent
        if key == b"NEW":
            return lambda m: m.recent and "\\Seen" not in m.flags
        if key in (b"KEYWORD", b"UNKEYWORD"):
            word = arg().decode("utf-8", "replace").lower()
            has = key == b"KEYWORD"
            return lambda m: (word in {f.lower() for f in m.flags}) == has
        if key == b"LARGER":
            n = number()
            return lambda m: m.stored.size > n
        if key == b"SMALLER":
            n = number()
            return lambda m: m.stored.size < n
        if key in (b"BEFORE", b"ON", b"SINCE", b"SENTBEFORE", b"SENTON", b"SENTSINCE"):
            day = _parse_date(arg())
            compare = {b"BEFORE": lambda d: d < day, b"ON": lambda d: d == day, b"SINCE": lambda d: d >= day}
            test = compare[key.replace(b"SENT", b"")]
            if key.startswith(b"SENT"):
                return lambda m: m.sent_date() is not None and test(m.sent_date())
            return lambda m: test(m.internal_date())
        if key in (b"FROM", b"TO", b"CC", b"BCC", b"SUBJECT"):
            name = key.decode("ascii").lower()
            needle = arg().decode("utf-8", "replace").casefold()
            return lambda m: needle in m.header(name).casefold()
        if key == b"HEADER":
            name = arg().decode("ascii", "replace").lower()
            needle = arg().decode("utf-8", "replace").casefold()
            return lambda m: m.has_header(name) and needle in m.header(name).casefold()
        if key in (b"BODY", b"TEXT"):
            needle = arg().decode("utf-8", "replace").casefold()
            whole = key == b"TEXT"
            return lambda m: needle in m.text(whole)
        if key == b"NOT":
            inner = self._search_key(tokens)
            return lambda m: not inner(m)
        if key == b"OR":
            left = self._search_key(tokens)
            right = self._search_key(tokens)
            return lambda m: left(m) or right(m)
        if key == b"UID":
            try:
                ranges = parse_sequence_set(arg())
            except ValueError as e:
                raise Bad(str(e))
            return self._in_set(ranges, True)
        if key == b"MODSEQ":
            value = arg()
            if not value.isdigit():
                # entry-name and entry-type-req (RFC 7162): only the number matters here
                arg()
                value = arg()
            if not value.isdigit():
                raise Bad("Expected a mod-sequence")
            self._search_modseq = True
            self._enable_condstore()
            n = int(value)
            return lambda m: m.stored.modseq >= n
        if key[:1].isdigit() or key[:1] == b"*":
            try:
                ranges = parse_sequence_set(key)
            except ValueError as e:
                raise Bad(str(e))
            return self._in_set(ranges, False)
        raise Bad("Unknown search key %s" % (key.decode("ascii", "replace"),))

    def _in_set(self, ranges, by_uid):
        """SEARCH predicate of a sequence set (by UID or number); ``*`` is the last message."""
        uids = self.view.uids
        bounds = with_star(ranges, (uids[-1] if uids else 0) if by_uid else len(uids))
        if by_uid:
            return lambda m: any(lo <= m.uid <= hi for lo, hi in bounds)
        return lambda m: any(lo <= m.seq <= hi for lo, hi in bounds)


# SEARCH keys that test a system flag (UN<key> tests its absence)
_SEARCH_FLAGS = {
    b"ANSWERED": "\\Answered",
    b"DELETED": "\\Deleted",
    b"DRAFT": "\\Draft",
    b"FLAGGED": "\\Flagged",
    b"SEEN": "\\Seen",
}

_MODSEQ_ATTR = re.compile(rb"(?i)(?<![\w.\[])MODSEQ(?![\w.\]])")


class _FetchParser(imap4._FetchParser):
    """twisted's FETCH attribute parser, keeping HEADER.FIELDS names as the client wrote them.

    twisted upper-cases the names and its section text title-cases them
    (``(SUBJECT X-TUID)`` came back as ``(Subject X-Tuid)``); the answer must name the
    section the client asked for, as Dovecot does. ``Header.raw_fields`` holds the names
    as sent, ``fields`` the names to match (a quoted name without its quotes).
    """

    def state_header_list(self, s):
        used = super().state_header_list(s)
        header = self.pending_body.header
        header.raw_fields = s[1 : used - 1].split()
        header.fields = [_unquote_field(f).upper() for f in header.raw_fields]
        return used


def _unquote_field(name):
    if len(name) >= 2 and name[:1] == name[-1:] == b'"':
        return name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return name


_FETCH_CACHE = collections.OrderedDict()
_FETCH_CACHE_SIZE = 64
_FETCH_CACHE_KEY_LIMIT = 1024


def _parent_names(names):
    """Every name that some name in ``names`` lies under (``a`` and ``a/b`` for ``a/b/c``).

    Built once per LIST: asking "does any name start with ``name/``?" of each name
    compared every mailbox with every other (2,000 mailboxes: half a second a LIST).
    """
    parents = set()
    for n in names:
        at = n.find(DELIMITER)
        while at != -1:
            parents.add(n[:at])
            at = n.find(DELIMITER, at + 1)
    return parents


def _fetch_attributes(attr_text):
    """(attributes, MODSEQ named?, sets \\Seen?) of a FETCH attribute list, or Bad.

    Clients repeat the same few attribute lists (``BODY.PEEK[]``, ``(FLAGS UID)``...), and
    twisted's parser took a fifth of a one-message FETCH: results are kept for the 64 most
    recently used texts (tuples of parser objects nothing changes afterwards).
    """
    cached = _FETCH_CACHE.get(attr_text)
    if cached is not None:
        _FETCH_CACHE.move_to_end(attr_text)
        return cached
    stripped = _MODSEQ_ATTR.sub(b"", attr_text)
    names_modseq = stripped != attr_text
    if names_modseq:
        # "(FLAGS MODSEQ)" leaves "(FLAGS )", which twisted's parser refused (BAD)
        stripped = b" ".join(stripped.split()).replace(b"( ", b"(").replace(b" )", b")")
    attrs = ()
    if stripped.strip(b"() "):
        parser = _FetchParser()
        try:
            parser.parseString(stripped)
        except Exception as e:
            raise Bad("Bad FETCH attribute: %s" % (e,))
        attrs = tuple(parser.result)
        if any(p < 0 for a in attrs for p in (getattr(a, "part", None) or ())):
            # twisted reads BODY[0] as 0-based part -1 (the last part); RFC 3501 9:
            # section-part = nz-number *("." nz-number)
            raise Bad("section part numbers start at 1")
    elif not names_modseq:
        raise Bad("Missing FETCH attributes")
    result = (attrs, names_modseq, any(IMAPServer._sets_seen(a) for a in attrs))
    if len(attr_text) <= _FETCH_CACHE_KEY_LIMIT:
        _FETCH_CACHE[attr_text] = result
        if len(_FETCH_CACHE) > _FETCH_CACHE_SIZE:
            _FETCH_CACHE.popitem(last=False)  # the least recently used
    return result


@implementer(interfaces.IPushProducer)
class _FetchStreamer:
    """Writes FETCH responses without holding the reactor or filling memory.

    Small answers go out at once. Large ones are written a slice per reactor turn,
    registered as a streaming producer so a slow client pauses the work (backpressure).
    """

    SLICE = 256 * 1024

    def __init__(self, server, items, render, finish):
        self.server = server
        self.items = items
        self.index = 0
        self.render = render
        self.finish = finish
        self.paused = False
        self.stopped = False
        self.registered = False
        self.call = None

    def start(self):
        if not self._slice():
            return
        self.server.transport.registerProducer(self, True)
        self.registered = True
        self._schedule()

    def _slice(self):
        """Write up to SLICE octets; False when everything (and the tagged answer) went out."""
        written = 0
        write = self.server._write  # held with the rest of the answer while input is handled
        while self.index < len(self.items) and written < self.SLICE:
            if self.paused or self.stopped:
                return True
            data = self.render(self.items[self.index])
            self.index += 1
            write(data)
            written += len(data)
        if self.index < len(self.items):
            return True
        if self.registered:
            self.server.transport.unregisterProducer()
            self.registered = False
        if not self.stopped:
            self.finish()
        return False

    def _schedule(self):
        if self.call is None and not self.paused and not self.stopped:
            self.call = self.server.clock.callLater(0, self._run)

    def _run(self):
        self.call = None
        self.server.resetTimeout()  # a long download is activity, not an idle client
        try:
            more = self._slice()
        except Exception:
            self.stopProducing()
            self.server.log.failure("FETCH stopped half-way")
            self.server.transport.loseConnection()  # the client cannot resynchronise
            return
        if more:
            self._schedule()

    def pauseProducing(self):
        self.paused = True
        if self.call is not None:
            self.call.cancel()
            self.call = None

    def resumeProducing(self):
        self.paused = False
        self._schedule()

    def stopProducing(self):
        self.stopped = True
        if self.call is not None:
            self.call.cancel()
            self.call = None


class _SearchItem:
    """One message as SEARCH predicates see it; parses the message only when asked."""

    def __init__(self, seq, uid, stored, view):
        self.seq = seq
        self.uid = uid
        self.stored = stored
        self.flags = stored.flags
        self.recent = uid in view.recent
        self._headers = None
        self._raw = None

    def _fields(self):
        if self._headers is None:
            self._headers = {}
            for name, value, _ in parse_headers(self.stored.headers()):
                try:
                    text = value.decode("utf-8")  # raw UTF-8 headers (RFC 6532)
                except UnicodeDecodeError:
                    text = value.decode("latin-1")
                self._headers.setdefault(name, []).append(_decoded_header(text))
        return self._headers

    def has_header(self, name):
        return name in self._fields()

    def header(self, name):
        return " ".join(self._fields().get(name, []))

    def text(self, whole):
        if self._raw is None:
            self._raw = self.stored.read()
        data = self._raw
        if not whole:
            data = split_header(data)[1]
        return data.decode("utf-8", "replace").casefold()

    def internal_date(self):
        t = time.gmtime(self.stored.internaldate)
        return (t.tm_year, t.tm_mon, t.tm_mday)

    def sent_date(self):
        value = self.header("date")
        if not value:
            return None
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return parsed[:3]

