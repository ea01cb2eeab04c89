"""One IMAP session's view of its selected mailbox: its own sequence numbers over the store's UIDs.

The store knows only UIDs. Each session keeps the list of UIDs its client has been told
about (sequence number n is ``uids[n - 1]``) and collects what the change bus says other
sessions and SMTP did. Those changes are told to the client only when the server calls
``flush`` (at the end of a command, or at once during IDLE), so sequence numbers never move
under the client between its commands, and EXPUNGE is held back while RFC 3501 forbids it.
"""

from bisect import bisect_left, bisect_right

from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush import events
from imapwebpush.constants import RECENT, SYSTEM_FLAGS
from imapwebpush.imap import qresync
from imapwebpush.interfaces import IChangeListener
from imapwebpush.wire import ranges_of, with_star


@implementer(IChangeListener)
class SessionView:
    """The selected mailbox of one session (SELECT read-write, or EXAMINE read-only)."""

    log = Logger()

    def __init__(self, account, mailbox, origin, readonly, on_change=None):
        self.account = account
        self.mailbox = mailbox
        self.name = mailbox.name
        self.origin = origin
        self.readonly = readonly
        self.on_change = on_change
        self.condstore = False
        self.qresync = False  # expunges told as VANISHED (RFC 7162 3.2.7)
        self.gone = False
        # Ascending, so a UID's place is found by bisection: a {uid: index} dict rebuilt
        # after every EXISTS or EXPUNGE was the largest cost of 10 busy sessions.
        self.uids = list(mailbox.uids())
        if readonly:
            # EXAMINE shows what is recent without claiming it (RFC 3501 6.3.2).
            peek = getattr(mailbox, "recent", None)
            self.recent = set(peek()) if callable(peek) else set()
        else:
            self.recent = set(mailbox.claim_recent())
        self._added = []
        self._expunged = set()
        self._flags = {}  # uid -> (flags, modseq) changed by others
        # Keywords in use in the mailbox, lower case -> spelling, in the order first seen:
        # FLAGS lists them, and is told again when a STORE, APPEND or COPY adds one.
        self.keywords = {}
        for uid in self.uids:
            try:
                self._note_keywords(mailbox.message(uid).flags)
            except KeyError:
                continue
        self._keywords_grew = False
        account.bus.subscribe(self)

    def close(self):
        self.account.bus.unsubscribe(self)
        self.on_change = None

    # -- change bus --------------------------------------------------------------

    def changed(self, event):
        try:
            if self._apply(event):
                callback = self.on_change
                if callback is not None:
                    callback()
        except Exception:
            self.log.failure("session view could not apply {event!r}", event=event)

    def _apply(self, event):
        if isinstance(event, events.MailboxRenamed):
            if event.old == self.name:
                self.name = event.new
                self.mailbox = self.account.mailbox(event.new)
            return False
        if isinstance(event, events.MailboxDeleted):
            if event.mailbox == self.name:
                self.gone = True
                return True
            return False
        if getattr(event, "mailbox", None) != self.name:
            return False
        if isinstance(event, events.MessageAdded):
            self._note_keywords(event.flags)
            if event.uid not in self._added and not self._has(event.uid):
                self._added.append(event.uid)
            return True
        if isinstance(event, events.MessagesExpunged):
            self._expunged.update(event.uids)
            return True
        if isinstance(event, events.FlagsChanged):
            for _, flags, _ in event.changes:
                self._note_keywords(flags)
            if event.origin is self.origin:
                return False  # the session answers its own STORE itself
            for uid, flags, modseq in event.changes:
                self._flags[uid] = (frozenset(flags), modseq)
            return True
        return False

    def _note_keywords(self, flags):
        for flag in flags:
            if flag[:1] != "\\" and flag.lower() not in self.keywords:
                self.keywords[flag.lower()] = flag
                self._keywords_grew = True

    def flags_lines(self):
        """``FLAGS (...)`` and ``OK [PERMANENTFLAGS (...)]``: the system flags and every
        keyword in use (RFC 3501 7.2.6); ``\\*``: a client may make new keywords."""
        self._keywords_grew = False
        names = " ".join(SYSTEM_FLAGS + tuple(self.keywords.values())).encode("utf-8")
        permanent = b"" if self.readonly else names + b" \\*"
        return [b"FLAGS (" + names + b")", b"OK [PERMANENTFLAGS (" + permanent + b")] Flags permitted"]

    def new_flags_lines(self):
        """L{flags_lines} when a keyword came into use since they were last told, else []."""
        return self.flags_lines() if self._keywords_grew else []

    def pending(self):
        """True when something waits to be told to the client."""
        return bool(self._added or self._expunged or self._flags or self._keywords_grew)

    def flush(self, allow_expunge=True):
        """The untagged responses (bytes, no CRLF) that bring the client up to date."""
        lines = self.new_flags_lines()  # before any FETCH that shows a new keyword
        gone = []  # QRESYNC: UIDs told in one VANISHED instead of EXPUNGE each
        for event in self.take_updates(allow_expunge):
            kind = event[0]
            if kind == "expunge" and self.qresync:
                gone.append(event[2])
                continue
            if gone:
                lines.extend(qresync.vanished_lines(ranges_of(gone)))
                gone = []
            if kind == "expunge":
                lines.append(b"%d EXPUNGE" % (event[1],))
            elif kind == "flags":
                _, seq, uid, flags, modseq = event
                lines.append(self.fetch_flags_line(uid, flags, modseq))
            elif kind == "exists":
                lines.append(b"%d EXISTS" % (event[1],))
            else:
                lines.append(b"%d RECENT" % (event[1],))
        if gone:
            lines.extend(qresync.vanished_lines(ranges_of(gone)))
        return lines

    def take_updates(self, allow_expunge=True):
        """What the client must be told, in order, and forget it was pending.

        ``("expunge", seq, uid)`` (numbers valid at the moment each is told),
        ``("flags", seq, uid, flags, modseq)``, ``("exists", n)``, ``("recent", n)``.
        """
        out = []
        if self._expunged:
            unseen_new = [u for u in self._added if u in self._expunged]
            for uid in unseen_new:
                self._added.remove(uid)
                self._expunged.discard(uid)
        if allow_expunge and self._expunged:
            positions = [self._index_of(u) for u in self._expunged]
            positions = sorted((i for i in positions if i is not None), reverse=True)
            for index in positions:
                uid = self.uids.pop(index)
                self.recent.discard(uid)
                self._flags.pop(uid, None)
                out.append(("expunge", index + 1, uid))
            self._expunged.clear()
        if self._flags:
            for uid in sorted(self._flags):
                if uid in self._expunged or not self._has(uid):
                    continue
                flags, modseq = self._flags[uid]
                out.append(("flags", self.seq(uid), uid, flags, modseq))
            self._flags.clear()
        if self._added:
            added = sorted(self._added)
            self._added = []
            if self.uids and added[0] < self.uids[-1]:
                # never with one store process; self.uids must stay ascending all the same
                added = sorted(set(added).union(self.uids))
                self.uids[:] = []
            self.uids.extend(added)
            if not self.readonly:
                self.recent.update(self.mailbox.claim_recent())
            else:
                peek = getattr(self.mailbox, "recent", None)
                if callable(peek):
                    self.recent.update(u for u in peek() if self._has(u))
            out.append(("exists", len(self.uids)))
            out.append(("recent", len(self.recent)))
        return out

    # -- sequence numbers --------------------------------------------------------

    def _index_of(self, uid):
        """The index of ``uid`` in ``self.uids``, or None."""
        uids = self.uids
        index = bisect_left(uids, uid)
        if index < len(uids) and uids[index] == uid:
            return index
        return None

    def _has(self, uid):
        return self._index_of(uid) is not None

    def seq(self, uid):
        """The sequence number of ``uid``; KeyError when the client does not know it."""
        index = self._index_of(uid)
        if index is None:
            raise KeyError(uid)
        return index + 1

    def exists(self):
        return len(self.uids)

    def resolve(self, ranges, uid):
        """[(seq, uid)] named by ``wire.parse_sequence_set`` ranges, in sequence order.

        Sequence numbers beyond EXISTS raise ValueError (the client's mistake); UIDs that do
        not exist are skipped, as RFC 3501 says for UID commands.
        """
        if not self.uids:
            if uid or all(lo is None or hi is None for lo, hi in ranges):
                return []  # "1:*" in an empty mailbox names nothing; not an error
            raise ValueError("the mailbox is empty")
        bounds = with_star(ranges, self.uids[-1] if uid else len(self.uids))
        if uid:
            # self.uids is ascending: bisect each range instead of testing every UID
            # (a UID FETCH of one message in 1,000 cost 0.7 ms that way).
            if len(bounds) == 1:  # the common case: no set of indexes to build and sort
                lo, hi = bounds[0]
                start, end = bisect_left(self.uids, lo), bisect_right(self.uids, hi)
                return [(index + 1, self.uids[index]) for index in range(start, end)]
            found = set()
            for lo, hi in bounds:
                found.update(range(bisect_left(self.uids, lo), bisect_right(self.uids, hi)))
            return [(index + 1, self.uids[index]) for index in sorted(found)]
        seqs = set()
        for (lo, hi), (raw_lo, raw_hi) in zip(bounds, ranges):
            if hi > len(self.uids):
                if raw_lo is not None and raw_hi is not None:
                    raise ValueError("no message has sequence number %d" % (hi,))
                hi = len(self.uids)  # "n:*" past the end: the messages that exist
            seqs.update(range(lo, hi + 1))
        return [(s, self.uids[s - 1]) for s in sorted(seqs)]

    def is_ghost(self, uid):
        return uid in self._expunged

    # -- what the client sees ----------------------------------------------------

    def flags_of(self, uid, stored_flags):
        flags = set(stored_flags)
        if uid in self.recent:
            flags.add(RECENT)
        return sorted(flags)

    def flags_item(self, uid, flags):
        """The ``FLAGS (...)`` item of a FETCH response: ``flags`` plus \\Recent if it is."""
        if type(flags) is not frozenset:
            return _flags_item(self.flags_of(uid, flags))
        # The store shares one frozenset per combination of flags: the item is made once
        # per combination, not sorted and encoded again for every message of every FETCH.
        key = (flags, uid in self.recent)
        item = _FLAGS_ITEMS.get(key)
        if item is None:
            if len(_FLAGS_ITEMS) >= _FLAGS_ITEMS_MAX:
                _FLAGS_ITEMS.clear()
            item = _FLAGS_ITEMS[key] = _flags_item(self.flags_of(uid, flags))
        return item

    def fetch_flags_line(self, uid, flags, modseq):
        parts = [self.flags_item(uid, flags)]
        parts.append(b"UID %d" % (uid,))
        if self.condstore:
            parts.append(b"MODSEQ (%d)" % (modseq,))
        return b"%d FETCH (%s)" % (self.seq(uid), b" ".join(parts))

    def unseen_first(self):
        """Sequence number of the first message without \\Seen, or None."""
        for index, uid in enumerate(self.uids):
            if uid in self._expunged:
                continue
            try:
                flags = self.mailbox.message(uid).flags
            except KeyError:
                continue
            if "\\Seen" not in flags:
                return index + 1
        return None


# (flags, recent) -> FLAGS item, for SessionView.flags_item; emptied when it grows past the
# limit (a mailbox with thousands of keyword combinations), never wrong.
_FLAGS_ITEMS = {}
_FLAGS_ITEMS_MAX = 4096


def _flags_item(names):
    return b"FLAGS (" + " ".join(names).encode("utf-8") + b")"
