"""APPEND, with MULTIAPPEND (RFC 3502) and literal8 (RFC 3516), as a mixin of
L{imapwebpush.imap.core.IMAPCore}.

``APPEND mailbox [flags] [date] literal [flags] [date] literal ...``: every message of
the command is written, as it arrives, into one L{Spool} (its first 64 KiB in memory,
the rest in one unnamed file under the spool folder, however many messages), then all
are added to the mailbox; if one cannot be, those already added are removed again and
the answer is NO: all or nothing. A refused command (no such mailbox, a message over
the size limit, too many messages, a bad flag or date) is answered once the client
has finished sending it: the non-synchronizing literals it announced are read and
dropped, so their octets are never taken for commands.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure

from imapwebpush import wire
from imapwebpush.constants import DEFAULT_MAX_MESSAGE_SIZE
from imapwebpush.imap.core import No, _Literal
from imapwebpush.spool import Spool, closed_after
from imapwebpush.store import errors

# Messages in one APPEND (MULTIAPPEND): each costs a few hundred octets of memory while
# the command runs and its size on disk in the spool (up to --max-message-size each).
DEFAULT_MAX_APPEND_MESSAGES = 1000

# Octets of all the messages of one APPEND together: the spool holds them all until the
# last has come, so without it one command could fill the disk with 1000 x the message
# size limit. Four messages of the largest size.
DEFAULT_MAX_APPEND_SIZE = 4 * DEFAULT_MAX_MESSAGE_SIZE

# Seconds of adds to the store per reactor turn while a MULTIAPPEND is committed: other
# sessions get the reactor between slices (each add syncs a file and a folder).
_COMMIT_SLICE = 0.02

_BINARY_LOST = (
    "[UNKNOWN-CTE] Binary content with a bare LF cannot be stored unchanged "
    "(this store ends lines with CRLF); send it base64-encoded"
)

log = Logger()


class _Batch:
    """The messages of one APPEND command, staged in one spool until the last has come."""

    def __init__(self, spool_dir):
        self.spool = Spool(spool_dir)
        self.messages = []

    def close(self):
        self.spool.close()

    @property
    def closed(self):
        return self.spool.closed


class _Staged:
    """One message of a batch: where its octets lie in the spool, its flags and date.

    It is the sink its literal writes to; a literal8 (``binary``) is watched for a bare
    LF, which the store would turn into CRLF (RFC 3516 4.4: no transformation may lose
    data, so such a message is refused with UNKNOWN-CTE).
    """

    def __init__(self, batch, size, flags, internaldate, binary):
        self.batch = batch
        self.start = batch.spool.size
        self.size = size
        self.flags = flags
        self.internaldate = internaldate
        self.binary = binary
        self.bare_lf = False
        self._last = b""

    def write(self, data):
        self.batch.spool.write(data)
        if self.binary and not self.bare_lf and b"\n" in data:
            chunk = self._last + data
            lfs = chunk.count(b"\n") - (self._last == b"\n")
            self.bare_lf = lfs != chunk.count(b"\r\n")
        self._last = data[-1:]

    def reader(self):
        return self.batch.spool.range_reader(self.start, self.size)


class _Discard:
    """The sink of a literal read only to be dropped (a refused APPEND's messages)."""

    def write(self, data):
        pass


_DISCARD = _Discard()


class AppendCommandMixin:
    """APPEND, one message or many (MULTIAPPEND), literal or literal8."""

    max_append_messages = DEFAULT_MAX_APPEND_MESSAGES
    max_append_size = DEFAULT_MAX_APPEND_SIZE
    _append_batch = None

    def connectionLost(self, reason):
        self._drop_batch()  # an unfinished or uncommitted APPEND: its spool goes
        super().connectionLost(reason)

    def _drop_batch(self):
        batch, self._append_batch = self._append_batch, None
        if batch is not None:
            batch.close()

    # -- reading the command ---------------------------------------------------------

    def arg_append(self, line):
        """((mailbox, batch), b""), or a Deferred of it: the mailbox and every message."""
        result = self.arg_astring(line)
        if type(result) is tuple:
            return self._append_messages(*result)
        return result.addCallback(lambda name_rest: self._append_messages(*name_rest))

    def _append_messages(self, raw_name, line):
        """A Deferred of ((mailbox, batch), b""), fired once the last message has come.

        One Deferred for the whole command, fired by the last literal's callback: a
        chain of one Deferred per literal would let a client that sends endless
        non-synchronizing literals after a refusal grow the server's memory.
        """
        self._drop_batch()
        batch = self._append_batch = _Batch(self.spool_dir)
        done = defer.Deferred()
        try:
            name = self._mailbox_name(raw_name)
            try:
                mailbox = self.mail_account.mailbox(name)
            except errors.MailboxNotFound:
                raise No("[TRYCREATE] No such mailbox")
        except Exception:
            self._skip_command(line, Failure(), done)
        else:
            self._next_message(mailbox, batch, line, done)
        return done

    def _next_message(self, mailbox, batch, line, done):
        """Read the message ``line`` announces, or end the command when it announces none."""
        if batch.messages and not line.strip():
            done.callback(((mailbox, batch), b""))
            return
        try:
            staged, header = self._stage(batch, line)
        except Exception:
            self._skip_command(line, Failure(), done)
            return
        d = self._start_literal(_Literal(header.size, defer.Deferred(), sink=staged), header.sync)
        d.addCallback(self._message_read, mailbox, batch, done)

    def _stage(self, batch, line):
        """(L{_Staged}, literal header) of ``[flags] [date] literal``, checked before its
        octets come; Bad or No (whose text the client reads) when it is refused."""
        if len(batch.messages) >= self.max_append_messages:
            raise No("[LIMIT] At most %d messages in one APPEND" % (self.max_append_messages,))
        flags, line = self.opt_list(line)
        date, line = imap4.IMAP4Server.opt_datetime(self, line.lstrip(b" "))
        header, binary = wire.append_literal_header(line.strip())
        flag_names = self._flag_names(flags or [])
        internaldate = wire.parse_datetime(date) if date else None
        if header.size > self.max_message_size:
            raise No(
                "[TOOBIG] Literal of %d octets is over the limit of %d" % (header.size, self.max_message_size)
            )
        total = max(self.max_append_size, self.max_message_size)  # one message always fits
        if batch.spool.size + header.size > total:
            raise No("[LIMIT] At most %d octets in one APPEND" % (total,))
        return _Staged(batch, header.size, flag_names, internaldate, binary), header

    def _message_read(self, result, mailbox, batch, done):
        staged, line = result
        try:
            batch.messages.append(staged)
            if staged.bare_lf:
                self._skip_command(line, Failure(No(_BINARY_LOST)), done)
            else:
                self._next_message(mailbox, batch, line, done)
        except Exception:
            if not done.called:
                done.errback(Failure())

    def _skip_command(self, line, failure, done):
        """Fail ``done`` with ``failure`` once the client has sent all of the command.

        A non-synchronizing literal ending ``line`` is on its way: read it, drop it and
        look at the line after it. A synchronizing one waits for a "+" that never comes:
        the tagged answer tells the client the command is over (RFC 3501 7.5).
        """
        self._drop_batch()
        header = wire.trailing_literal(line)
        if header is None or header.sync:
            done.errback(failure)
            return
        d = self._start_literal(_Literal(header.size, defer.Deferred(), sink=_DISCARD), False)
        d.addCallback(lambda result: self._skip_command(result[1], failure, done))

    # -- storing ---------------------------------------------------------------------

    def do_APPEND(self, tag, appended):
        mailbox, batch = appended
        # The commit owns the batch now: a connection lost meanwhile does not close the
        # spool under a message being copied; the commit finishes, then closes it.
        self._append_batch = None
        self._commit(tag, mailbox, batch, [], 0)

    auth_APPEND = select_APPEND = (do_APPEND, arg_append)

    def _commit(self, tag, mailbox, batch, uids, index):
        """Add the staged messages from ``index`` on, in order; OK with APPENDUID, or none
        kept and NO. A small message is added at once, for about L{_COMMIT_SLICE} seconds
        per reactor turn; a large one is copied off the reactor and the commit goes on
        when it is durable."""
        started = self.clock.seconds()
        messages = batch.messages
        while index < len(messages):
            d = self._add_one(mailbox, messages[index])
            if not d.called:
                d.addBoth(self._added, tag, mailbox, batch, uids, index)
                return
            outcome = []
            d.addBoth(outcome.append)
            if isinstance(outcome[0], Failure):
                self._append_failed(tag, mailbox, batch, uids, outcome[0])
                return
            uids.append(outcome[0])
            index += 1
            if index < len(messages) and self.clock.seconds() - started >= _COMMIT_SLICE:
                self.clock.callLater(0, self._commit, tag, mailbox, batch, uids, index)
                return
        batch.close()
        self.sendPositiveResponse(
            tag,
            b"[APPENDUID %d %s] APPEND completed" % (mailbox.uidvalidity, wire.format_set(uids).encode("ascii")),
        )

    def _add_one(self, mailbox, staged):
        """Deferred[uid]: one message copied from the spool; \\Recent whatever its flags
        (RFC 3501 6.3.11)."""
        try:
            snapshot = staged.batch.spool.range_snapshot(staged.start, staged.size)
        except Exception:
            return defer.fail()
        d = defer.maybeDeferred(
            mailbox.add_staged, snapshot, staged.flags, staged.internaldate, origin=self, recent=True
        )
        return d.addBoth(closed_after, snapshot)

    def _added(self, outcome, tag, mailbox, batch, uids, index):
        if isinstance(outcome, Failure):
            self._append_failed(tag, mailbox, batch, uids, outcome)
        else:
            uids.append(outcome)
            self._commit(tag, mailbox, batch, uids, index + 1)

    def _append_failed(self, tag, mailbox, batch, uids, failure):
        batch.close()
        self._undo_append(mailbox, uids)
        if self.transport is not None and not getattr(self.transport, "disconnected", False):
            self._fail(tag, failure)

    def _undo_append(self, mailbox, uids):
        """Remove the messages of a MULTIAPPEND that failed half-way (RFC 3502: none is kept)."""
        if not uids:
            return
        try:
            mailbox.set_flags(uids, ["\\Deleted"], "add", origin=self)
            mailbox.expunge(uids, origin=self)
        except Exception as e:
            log.error(
                "APPEND to {mailbox} failed and UIDs {uids} could not be removed: {error}",
                mailbox=mailbox.name,
                uids=wire.format_set(uids),
                error=e,
            )
