"""The IMAP session's machinery: reading commands one at a time, literals, answers, output.

L{IMAPCore} is twisted's IMAP4Server with the parts every command relies on, and no
command beyond LOGOUT, NOOP and CAPABILITY; the command mixins (auth, mailboxes,
selected, fetch, search_command, webpush_commands) add the rest and
L{imapwebpush.imap.server.IMAPServer} composes them.

Commands are run one at a time: while a command waits on a Deferred the protocol stops
reading lines (pipelined commands wait in the line buffer), so answers come in order
(twisted#9282). Answers to one batch of input are written at once (see
L{IMAPCore.dataReceived}). A command is a class attribute
``<state>_<NAME> = (handler, parser, ...)``: each parser is called as
``parser(server, rest_of_line)`` and answers ``(value, rest)`` or a Deferred of it (a
literal), and the handler gets ``(server, tag, *values)`` (``uid=True`` under UID).
Handlers raise L{No} or L{Bad} (or a store error) to refuse; L{IMAPCore._fail} turns
any exception into a tagged answer, never a traceback on the wire.
"""

from twisted.internet import defer, interfaces
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure

from imapwebpush import upstream, wire
from imapwebpush.constants import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_NESTING, DELIMITER, INBOX, SYSTEM_FLAGS
from imapwebpush.store import errors

MAX_ASTRING_LITERAL = 64 * 1024
MAX_LINE = 64 * 1024
MAX_FLAGS = 256  # flags in one STORE or APPEND list (20,000 keywords took 650 ms of reactor)
_OUT_LIMIT = 256 * 1024  # answers held per batch of input before they go to the transport

# RFC 5530: FETCH (OK) or COPY (NO) by sequence number named a message another session expunged
EXPUNGEISSUED = "[EXPUNGEISSUED] Some messages were expunged"


_BAD_NAME = "[CANNOT] Mailbox name is not valid modified UTF-7"


class No(Exception):
    """Answer the command with a tagged NO and this text (may start with a [CODE])."""


class Bad(wire.ParseError):
    """Answer the command with a tagged BAD and this text."""


class _Literal:
    """Collects the octets of one literal, then hands ``(value, rest of line)`` to a Deferred.

    ``sink``: an object whose ``write`` takes the octets as they arrive, the value is
    then the sink itself (APPEND writes its messages into a L{imapwebpush.spool.Spool}:
    20 clients holding unfinished 9 MiB literals cost 179 MB of RAM before); else (an
    astring, at most 64 KiB) bytes. ``refuse``: a non-synchronizing literal over the
    limit, swallowed and then refused with this text.
    """

    def __init__(self, size, deferred, refuse=None, sink=None):
        self.remaining = size
        self.deferred = deferred
        self.refuse = refuse
        self.sink = sink
        self.chunks = []

    def write(self, data):
        """Take octets; answers what follows the literal once it is complete, else None."""
        take = data[: self.remaining]
        self.remaining -= len(take)
        if self.refuse is not None:
            pass
        elif self.sink is not None:
            self.sink.write(take)
        else:
            self.chunks.append(take)
        if self.remaining > 0:
            return None
        return data[len(take) :]

    def callback(self, line):
        """The line after the literal has come: the command goes on (or is refused)."""
        if self.refuse is not None:
            self.deferred.errback(No(self.refuse))
        elif self.sink is not None:
            self.deferred.callback((self.sink, line))
        else:
            self.deferred.callback((b"".join(self.chunks), line))


def _text(value):
    """Response text: 7-bit (RFC 3501 TEXT-CHAR). A text with non-ASCII characters
    (a store error naming a mailbox) goes out in modified UTF-7, so the name reads
    as the client spells it."""
    if isinstance(value, bytes):
        return value
    text = str(value)
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        return text.encode("imap4-utf-7")


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


# store errors -> (prefix, default text) of the tagged NO that tells the client
_STORE_ERRORS = (
    (errors.MailboxNotFound, b"[NONEXISTENT] ", "No such mailbox"),
    (errors.MailboxExists, b"[ALREADYEXISTS] ", "Mailbox exists"),
    (errors.InvalidMailboxName, b"[CANNOT] ", "Invalid mailbox name"),
    (errors.MessageTooLarge, b"[TOOBIG] ", "Message too large"),
    (errors.StoreError, b"", ""),
)


class IMAPCore(imap4.IMAP4Server):
    """An IMAP4rev1 session over an IMailStore account: the machinery, no commands."""

    log = Logger()
    IDENT = b"imapwebpush IMAP4rev1 ready"
    MAX_LENGTH = MAX_LINE
    max_astring_literal = MAX_ASTRING_LITERAL
    allow_plaintext_auth = False
    max_message_size = DEFAULT_MAX_MESSAGE_SIZE
    max_nesting = DEFAULT_MAX_NESTING
    spool_dir = None  # where APPEND literals wait (the data folder's spool/; None: the temp folder)
    clock = None
    view = None
    condstore_enabled = False
    qresync_enabled = False
    _current = None
    _current_cmd = None
    _current_uid = False
    _continuation = None  # what the next raw octets or line belong to (a literal, SASL)
    _avatar_logout = None
    _out = None  # answers held while a batch of input is handled (see dataReceived)
    _out_size = 0

    # -- state --------------------------------------------------------------------------

    @property
    def mail_account(self):
        return self.account.mail_account

    def is_secure(self):
        """True on a TLS connection (implicit TLS or after STARTTLS)."""
        return self.startedTLS or interfaces.ISSLTransport(self.transport, None) is not None

    def auth_allowed(self):
        return self.allow_plaintext_auth or self.is_secure()

    # -- connection -----------------------------------------------------------------------

    def connectionMade(self):
        if self.clock is None:
            from twisted.internet import reactor  # here: importing it installs the default reactor

            self.clock = reactor
            self.callLater = reactor.callLater
        _no_delay(self.transport)
        super().connectionMade()

    def connectionLost(self, reason):
        self._close_view()
        self._continuation = None
        self.state = "logout"
        super().connectionLost(reason)
        logout, self._avatar_logout = self._avatar_logout, None
        if logout is not None:
            logout()

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

    # -- writing: one write and one send per batch of input --------------------------------

    def dataReceived(self, data):
        """Read lines as twisted does, but hold what they answer and write it at once.

        Why: every ``transport.write`` costs a few Python calls, and a TCP transport sends
        only on the reactor's next turn (a second ``epoll`` wake-up per command). Answers
        are collected while the input is handled, written as one buffer, and sent before
        returning to the reactor (``upstream.send_now``): the same octets in the same
        order, one reactor turn less per command (benchmarks/imap_session_profile.py).
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
            upstream.send_now(self.transport)

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

    # -- reading commands, one at a time ---------------------------------------------------

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

    def rawDataReceived(self, data):
        """Octets of a literal (``setRawMode`` by L{_read_literal})."""
        self.resetTimeout()
        passon = self._continuation.write(data)
        if passon is not None:
            self.setLineMode(passon)

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
        if not wire.is_tag(parts[0]):
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

    def parse_pending(self, line):
        """The rest of the line after a literal, or the client's line during AUTHENTICATE."""
        continuation, self._continuation = self._continuation, None
        self.parseState = "command"
        continuation.callback(line)

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
        elif isinstance(e, (wire.ParseError, imap4.IllegalClientResponse, imap4.IllegalQueryError)):
            self.sendBadResponse(tag, _text(str(e)))
        elif isinstance(e, imap4.IllegalMailboxEncoding):
            self.sendNegativeResponse(tag, _BAD_NAME.encode("ascii"))
        elif isinstance(e, imap4.IllegalOperation):
            self.sendNegativeResponse(tag, _text(str(e)))
        elif isinstance(e, errors.StoreError):
            for kind, code, default in _STORE_ERRORS:
                if isinstance(e, kind):
                    self.sendNegativeResponse(tag, code + _text(str(e) or default))
                    break
        elif errors.disk_full(e):  # as Dovecot answers it
            self.sendNegativeResponse(tag, b"[OVERQUOTA] Not enough disk space")
        elif isinstance(e, RecursionError):  # nested input a parser recursed on
            self.sendBadResponse(tag, _text(wire.too_deep(self.max_nesting)))
        else:
            self._log_unexpected(failure)
            self.sendBadResponse(tag, b"Internal server error")

    def _log_unexpected(self, failure):
        """A bug met by a command: its traceback once per exception type and session, then one line.

        Why: a client repeating the command that hits it would otherwise write a long
        traceback per command (100 KB each for a RecursionError) into the log.
        """
        kind = failure.type
        seen = self.__dict__.setdefault("_logged_failures", set())
        command = (self._current_cmd or b"?").decode("ascii", "replace")
        if kind not in seen:
            seen.add(kind)
            self.log.failure("IMAP {command} failed", failure, command=command)
            return
        self.log.error(
            "IMAP {command} failed again: {kind}: {error}",
            command=command,
            kind=kind.__name__,
            error=str(failure.value)[:100],
        )

    # -- answers ----------------------------------------------------------------------------

    def sendPositiveResponse(self, tag=None, message=b""):
        self._answer(b"OK", tag, message)

    def sendNegativeResponse(self, tag=None, message=b""):
        self._answer(b"NO", tag, message)

    def sendBadResponse(self, tag=None, message=b""):
        self._answer(b"BAD", tag, message)

    def sendUntaggedResponse(self, message, isAsync=None):
        self._answer(message, None, None)

    def _answer(self, state, tag, message):
        """Write one response; a tagged OK/NO/BAD ends the command (updates go first)."""
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

    def _close_view(self):
        view, self.view = self.view, None
        if view is not None:
            view.close()

    # -- argument parsers (module-level aliases below, for the command tables) ---------------

    def arg_astring(self, line):
        value, rest = wire.read_astring(line)
        if isinstance(value, wire.LiteralHeader):
            return self._read_literal(value.size, value.sync, self.max_astring_literal)
        return value, rest

    def arg_finalastring(self, line):
        return self.arg_astring(line)

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
        end = wire.matching_paren(line)
        return wire.parse_list(line[:end], self.max_nesting)[0], line[end:]

    def opt_list(self, line):
        """An optional parenthesised list (APPEND's flags): (list or None, rest)."""
        stripped = (line or b"").lstrip(b" ")
        if stripped[:1] != b"(":
            return None, line
        value, rest = self.arg_list(stripped)
        return value, rest[1:] if rest[:1] == b" " else rest

    def _read_literal(self, size, sync, limit):
        """A Deferred of (octets, rest of line) of the literal announced at the end of a line."""
        d = defer.Deferred()
        if size > limit:
            reason = "[TOOBIG] Literal of %d octets is over the limit of %d" % (size, limit)
            if sync:
                raise No(reason)
            return self._start_literal(_Literal(size, d, refuse=reason), False)
        return self._start_literal(_Literal(size, d), sync)

    def _start_literal(self, literal, sync):
        """Read the octets of ``literal`` (a L{_Literal}) next; its Deferred, with the
        "+" a synchronizing literal waits for."""
        self._continuation = literal
        if sync:
            self.sendContinuationRequest(b"Ready for literal data")
        self.parseState = "pending"
        self.setRawMode()
        return literal.deferred

    def _await_line(self, on_line):
        """Hand the client's next line (not a command) to ``on_line`` (AUTHENTICATE)."""
        d = defer.Deferred()
        self._continuation = d
        self.parseState = "pending"
        return d.addCallback(on_line)

    # -- what the command mixins share -------------------------------------------------------

    def _mailbox_name(self, raw):
        """The store's name of a mailbox the client named (mUTF-7; INBOX in any case)."""
        try:
            name = wire.decode_mailbox(raw) if isinstance(raw, bytes) else raw
        except wire.ParseError:
            # a valid string that names no mailbox we could have: NO, as Dovecot (not BAD)
            raise No(_BAD_NAME)
        name = name.rstrip(DELIMITER)
        if name.upper() == INBOX:
            return INBOX
        if name.upper().startswith(INBOX + DELIMITER):
            return INBOX + name[len(INBOX) :]
        return name

    def _flag_names(self, flags):
        """Store flag names of a client's flag list (\\Recent dropped), or Bad."""
        if len(flags) > MAX_FLAGS:
            raise Bad("Too many flags (more than %d)" % (MAX_FLAGS,))
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
            elif not wire.is_atom(flag):
                raise Bad("Bad keyword %s" % (text,))
            names.append(text)
        return names

    def _resolve(self, text, uid):
        """[(seq, uid)] of the selected mailbox named by a sequence set (by UID or number)."""
        try:
            return self.view.resolve(wire.parse_sequence_set(text), uid)
        except ValueError as e:
            raise Bad(str(e))

    def _enable_condstore(self):
        """A CONDSTORE-enabling action (RFC 7162 3.1): MODSEQ from now on, for the session.

        The first one in a selected mailbox also tells the mailbox's HIGHESTMODSEQ (RFC 7162
        3.1), before the command's own answers, as Dovecot does.
        """
        first = not self.condstore_enabled
        self.condstore_enabled = True
        if self.view is not None:
            self.view.condstore = True
            if first:
                self.sendUntaggedResponse(
                    b"OK [HIGHESTMODSEQ %d] Highest mod-sequence" % (self.view.mailbox.highestmodseq,)
                )

    # -- any state ---------------------------------------------------------------------------

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


def flag_words(text):
    """The flags of STORE's ``(flag ...)`` or single flag, unchecked (L{IMAPCore._flag_names} checks).

    Why not twisted's arg_flaglist: it copied the rest of the line once per flag
    (20,000 flags held the reactor for 650 ms).
    """
    if text[:1] == b"(":
        if text[-1:] != b")":
            raise Bad("Mismatched parenthesis")
        text = text[1:-1]
    words = text.split()
    if len(words) > MAX_FLAGS:
        raise Bad("Too many flags (more than %d)" % (MAX_FLAGS,))
    return words


# The argument parsers as plain functions, for the command tables of the mixins:
# ``auth_CREATE = (do_CREATE, arg_finalastring)`` calls ``arg_finalastring(server, line)``.
arg_astring = IMAPCore.arg_astring
arg_finalastring = IMAPCore.arg_finalastring
arg_word = IMAPCore.arg_word
arg_rest = IMAPCore.arg_rest
arg_list = IMAPCore.arg_list
opt_list = IMAPCore.opt_list
