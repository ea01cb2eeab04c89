"""Selecting a mailbox and changing it: SELECT/EXAMINE (with CONDSTORE/QRESYNC), CHECK,
CLOSE, UNSELECT, EXPUNGE, UID, COPY, MOVE and STORE, as a mixin of
L{imapwebpush.imap.core.IMAPCore}.

The selected mailbox is ``self.view``, a L{imapwebpush.imap.view.SessionView}: the
session's sequence numbers over the store's UIDs. FETCH and SEARCH live in their
own modules; ``do_UID`` dispatches to them.
"""

from twisted.mail import imap4

from imapwebpush import wire
from imapwebpush.imap import qresync
from imapwebpush.imap.core import (
    EXPUNGEISSUED,
    Bad,
    No,
    arg_astring,
    arg_finalastring,
    arg_rest,
    arg_word,
    flag_words,
)
from imapwebpush.imap.view import SessionView
from imapwebpush.store import errors

_STORE_MODES = {b"FLAGS": "replace", b"+FLAGS": "add", b"-FLAGS": "remove"}
# commands UID can prefix (UID EXPUNGE: RFC 4315)
_UID_COMMANDS = (b"FETCH", b"STORE", b"SEARCH", b"COPY", b"MOVE", b"EXPUNGE", b"SORT", b"THREAD")


def parse_store(rest):
    """(unchangedsince or None, mode, silent, flag list text) of STORE's arguments, or Bad."""
    unchangedsince = None
    if rest[:1] == b"(":
        end = wire.matching_paren(rest)
        modifier = rest[1 : end - 1].split()
        rest = rest[end:].lstrip()
        if len(modifier) != 2 or modifier[0].upper() != b"UNCHANGEDSINCE" or not modifier[1].isdigit():
            raise Bad("Unknown STORE modifier")
        unchangedsince = int(modifier[1])
    item, _, flag_text = rest.partition(b" ")
    item = item.upper()
    silent = item.endswith(b".SILENT")
    mode = _STORE_MODES.get(item[:-7] if silent else item)
    if mode is None:
        raise Bad("Expected FLAGS, +FLAGS or -FLAGS")
    return unchangedsince, mode, silent, flag_text.strip()


class SelectedCommandsMixin:
    """SELECT, EXAMINE, CHECK, CLOSE, UNSELECT, EXPUNGE, UID, COPY, MOVE, STORE."""

    # -- SELECT, EXAMINE -------------------------------------------------------------------

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
        mailbox = self.mail_account.mailbox(self._mailbox_name(raw_name))
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
        for line in view.flags_lines():
            self.sendUntaggedResponse(line)
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

    # -- CHECK, CLOSE, UNSELECT, EXPUNGE ---------------------------------------------------

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
            # The tagged answer follows every pending EXPUNGE (_answer tells them first),
            # so the value is safe (RFC 7162 3.2).
            code = b"[HIGHESTMODSEQ %d] " % (self.view.mailbox.highestmodseq,)
        self.sendPositiveResponse(tag, code + b"EXPUNGE completed")

    select_EXPUNGE = (do_EXPUNGE, arg_rest)

    def do_UID(self, tag, command, line):
        command = command.upper()
        if command not in _UID_COMMANDS:
            raise Bad("Unknown UID command")
        self._current_uid = True
        self._current_cmd = command
        self.dispatchCommand(tag, command, line, uid=True)

    select_UID = (do_UID, imap4.IMAP4Server.arg_atom, arg_rest)

    # -- COPY, MOVE --------------------------------------------------------------------------

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
            raise No(EXPUNGEISSUED)
        if move:
            pairs = self.view.mailbox.move(uids, destination, origin=self) if uids else []
        else:
            pairs = self.view.mailbox.copy(uids, destination, origin=self) if uids else []
        code = b""
        if pairs:
            code = b"[COPYUID %d %s %s] " % (
                destination.uidvalidity,
                wire.format_set([s for s, _ in pairs]).encode(),
                wire.format_set([d for _, d in pairs]).encode(),
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

    # -- STORE -------------------------------------------------------------------------------

    def do_STORE(self, tag, seqset, rest, uid=False):
        view = self.view
        self._writable()
        unchangedsince, mode, silent, flag_text = parse_store(rest)
        if unchangedsince is not None:
            self._enable_condstore()
        flags = self._flag_names(flag_words(flag_text))
        # RFC 2180 4.2.1, as Dovecot does: a message another session expunged is skipped
        # (by number it keeps its number until its EXPUNGE may be told; by UID the EXPUNGE
        # comes before the OK) and the live ones change, so no change is lost.
        targets = [(s, u) for s, u in self._resolve(seqset, uid) if not view.is_ghost(u)]
        changed, failed = view.mailbox.set_flags(
            [u for _, u in targets], flags, mode, unchangedsince=unchangedsince, origin=self
        )
        failed = set(failed)
        for line in view.new_flags_lines():  # a keyword this STORE brought into use
            self.sendUntaggedResponse(line)
        for seq, u in targets:
            if u not in failed and (not silent or (view.condstore and u in changed)):
                self._store_answer(seq, u, changed, silent, uid)
        if failed:
            numbers = sorted(u if uid else view.seq(u) for u in failed)
            self.sendPositiveResponse(
                tag, b"[MODIFIED " + wire.format_set(numbers).encode() + b"] Conditional STORE failed"
            )
        else:
            self.sendPositiveResponse(tag, b"STORE completed")

    select_STORE = (do_STORE, arg_word, arg_rest)

    def _store_answer(self, seq, u, changed, silent, by_uid):
        """The untagged FETCH telling the client what its STORE made of message ``u``."""
        view = self.view
        if u in changed:
            new_flags, modseq = changed[u]
        else:
            try:
                stored = view.mailbox.message(u)
            except KeyError:
                return
            new_flags, modseq = stored.flags, stored.modseq
        items = []
        if not silent:
            items.append(view.flags_item(u, new_flags))
        if by_uid:
            items.append(b"UID %d" % (u,))
        if view.condstore:
            items.append(b"MODSEQ (%d)" % (modseq,))
        self.sendUntaggedResponse(b"%d FETCH (%s)" % (seq, b" ".join(items)))
