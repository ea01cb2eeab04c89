"""One mailbox: a Maildir folder with its index, and the changes made to it.

``Mailbox`` composes the parts that have modules of their own: the stored
message (``message.py``), the in-memory index of UIDs, flags, modseqs and
expunges kept in step with its journal (``index.py``), and the scan that
notices files other tools add, rename or remove (``scan.py``). This module
makes the changes: add, flags, expunge, copy and move, claiming \\Recent.

Every change is made durable in this order: message files (tmp/, fsync,
rename, directory fsync), then the journal line (fsync), then memory, then
the event. A crash between two steps is repaired by the next scan. The
journal lines of flag changes and expunges are written without fsync: the
scan repairs their loss too (docs/store.rst says what is durable when).
"""

import errno
import os

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from imapwebpush.interfaces import IStoredMailbox
from imapwebpush.store import flags as flagsmod
from imapwebpush.store import scan
from imapwebpush.store.errors import MailboxNotFound, MessageTooLarge
from imapwebpush.events import BODY_START_OCTETS, FlagsChanged, MessageAdded, MessagesExpunged
from imapwebpush.store.fsutil import (
    fsync_dir,
    move_into_place,
    place_file,
    remove_tree,
    stage_file,
    unique_name,
    write_file,
)
from imapwebpush.store.index import MessageIndex, record_of
from imapwebpush.store.journal import JOURNAL_NAME, Journal
from imapwebpush.store.message import HeaderCache, crlf_pieces, header_block, to_crlf
from imapwebpush.wire import expand

log = Logger()

# Messages per mailbox whose derived FETCH answers are kept (answer_cache): a few
# hundred octets each.
ANSWER_CACHE_SIZE = 4096

# Octets from which add_staged copies and fsyncs a message in a thread: below it a
# thread costs more than the copy (measured on APPEND), above it the copy and fsync
# held every session for tens to hundreds of ms.
DEFAULT_STAGE_THRESHOLD = 1024 * 1024


def make_folder(path, uidvalidity, marker=True):
    """Create the Maildir at ``path`` (cur, new, tmp, journal) and fsync it.

    ``path`` must not exist yet; callers build under a temporary name and
    rename, so a folder is never seen half made. ``uidvalidity`` may be a
    callable, called once the folder exists.
    """
    os.mkdir(path, 0o700)
    if callable(uidvalidity):
        uidvalidity = uidvalidity()
    for sub in ("cur", "new", "tmp"):
        os.mkdir(os.path.join(path, sub), 0o700)
    if marker:
        write_file(os.path.join(path, "maildirfolder"), b"")  # Maildir++ marks sub-folders
    Journal(os.path.join(path, JOURNAL_NAME)).append(
        [{"t": "s", "v": uidvalidity, "n": 1, "m": 1}]
    )
    for sub in ("cur", "new", "tmp"):
        fsync_dir(os.path.join(path, sub))
    fsync_dir(path)


def remove_folder(path, trash):
    """Delete a Maildir folder: rename it out of sight (atomic), then remove the files."""
    os.rename(path, trash)
    fsync_dir(os.path.dirname(path))
    remove_tree(trash)


def _index_view(attribute, doc):
    return property(lambda self: getattr(self._index, attribute), doc=doc)


@implementer(IStoredMailbox)
class Mailbox:
    """An L{IStoredMailbox} over the Maildir folder ``path``.

    Made by L{imapwebpush.store.account.Account}; there is one object per
    mailbox and account, shared by every session, so all see one index.
    """

    uidvalidity = _index_view("uidvalidity", "int: UIDVALIDITY")
    uidnext = _index_view("uidnext", "int: the UID the next message gets")
    highestmodseq = _index_view("highestmodseq", "int: the modseq of the last change")
    vanished_floor = _index_view(
        "vanished_floor", "int: lowest modseq from which the expunge history is complete"
    )

    def __init__(self, account, name, path, clock, new_uidvalidity, max_message_size=None,
                 run=None, stage_threshold=None):
        self._account = account
        self.run = run or threads.deferToThread  # copies a large message into tmp/ (add_staged)
        self.stage_threshold = DEFAULT_STAGE_THRESHOLD if stage_threshold is None else stage_threshold
        self._staged_commits = defer.succeed(None)  # add_staged's commits, one after another
        self.name = name
        self.path = path
        self._clock = clock
        self._new_uidvalidity = new_uidvalidity
        self._max_size = max_message_size
        self._deleted = False
        self.header_cache = HeaderCache()
        # For the sessions: what they derive from a message's octets (FETCH ENVELOPE and
        # BODYSTRUCTURE answers), which never change, as Dovecot's index cache keeps them.
        # Each entry is (the message it was made from, {kind: value}): an entry left by a
        # UID that was expunged, or meant another message before a new UIDVALIDITY, never
        # matches a message of the index.
        self.answer_cache = HeaderCache(ANSWER_CACHE_SIZE)
        self._index = MessageIndex(self, path, self.header_cache)
        self._watch = scan.FolderWatch(path, self._vanished)

    def open(self):
        """Load the journal and reconcile it with the folder (once, by the account)."""
        self._index.load(self._new_uidvalidity)
        self._scan()
        self._index.compact_if_grown()
        return self

    # -- the account's calls ---------------------------------------------

    def moved_to(self, name, path):
        """The account renamed this mailbox to ``name``, its folder to ``path``."""
        self.name = name
        self.path = path
        self._index.moved(path)
        self._watch.path = path

    def mark_gone(self):
        """The folder was deleted: every later call raises MailboxNotFound."""
        self._deleted = True

    def check(self):
        """Raise MailboxNotFound if the folder was deleted or replaced behind our back."""
        self._check_live()
        if self._watch.moved():
            self._check_identity()

    # -- noticing other tools ---------------------------------------------

    def _check_live(self):
        if self._deleted:
            raise MailboxNotFound("Mailbox %s does not exist any more" % (self.name,))

    def _vanished(self):
        """new/ or cur/ is missing: the folder was deleted."""
        self._deleted = True
        raise MailboxNotFound("Mailbox %s does not exist any more" % (self.name,))

    def _check_identity(self):
        """A folder deleted and made again by another process has another UIDVALIDITY
        (the account's counter only grows): this index would describe a gone mailbox."""
        self._account.check()
        first = self._index.journal.first()
        if first is not None and first.get("v") != self.uidvalidity:
            self._deleted = True
            raise MailboxNotFound("Mailbox %s was replaced" % (self.name,))

    def refresh(self):
        """Pick up files added, renamed or removed by other tools; cheap when none were.

        Every read of the index and every change starts here: it stops if the
        mailbox was deleted, and sees other tools' changes first.
        """
        self._check_live()
        subs = self._watch.changed()
        if subs:
            self._scan(subs)

    def _scan(self, subs=None):
        """Reconcile memory with ``subs`` of new/ and cur/ (one listdir each; both by default).

        A sub-folder whose mtime has not moved (and is old enough to trust)
        holds what memory says, so a mailbox of thousands of messages in cur/
        costs one listing of new/ after a delivery, not of both.
        """
        if self._watch.looked:
            self._check_identity()
        if subs is None or not self._index.unique_bases():
            subs = scan.SUBS
        self._watch.dirty = False
        self._watch.take(subs)
        differences = scan.find(self._index, self.path, self._clock, subs)
        if differences is None:
            return self._scan(scan.SUBS)
        if not differences:
            return
        # Counters and memory change only once the journal holds the lines: a
        # failed write (disk full) leaves memory as the journal says, and the
        # next look scans again.
        try:
            result = scan.reconcile(self._index, self.path, differences)
            if result.added:
                self._watch.take(subs)  # adopting may have rewritten files
            self._index.write(result.records)
        except BaseException:
            self._watch.dirty = True
            raise
        self._settle_scan(result)

    def _settle_scan(self, result):
        """Memory and events of a scan whose journal lines are durable."""
        index = self._index
        index.advance(result.uidnext, result.modseq)
        flag_changes = []
        for msg, rel, modseq, flags_changed in result.renames:
            index.rename(msg, rel, msg.keywords, modseq)
            if flags_changed:
                flag_changes.append((msg.uid, msg.flags, modseq))
        if result.gone:
            index.expunged(result.gone, result.expunged, result.expunged_at)
        for msg in result.added:
            index.remember(msg)
        index.compact_if_grown()
        for msg in result.added:
            log.info(
                "{mailbox}: adopted {filename} as UID {uid}",
                mailbox=self.name,
                filename=msg.filename,
                uid=msg.uid,
            )
        address = self._account.address
        if flag_changes:
            self._publish(FlagsChanged(address, self.name, tuple(flag_changes)))
        if result.expunged:
            self._publish(MessagesExpunged(address, self.name, tuple(result.expunged), self.highestmodseq))
        for msg in result.added:
            self._announce(msg, None)

    def _after_change(self, subs=scan.SUBS):
        """Memory holds a change just written: compact a grown journal, take the mtimes."""
        self._index.compact_if_grown()
        self._watch.take(subs)

    # -- events -----------------------------------------------------------

    def _publish(self, event):
        self._account.bus.publish(event)

    def _announce(self, msg, origin, headers=None, body=b""):
        if headers is None:
            try:
                headers = msg.headers()
            except KeyError:
                headers = b""
        self._publish(
            MessageAdded(
                self._account.address,
                self.name,
                msg.uid,
                msg.flags,
                msg.modseq,
                msg.size,
                msg.internaldate,
                headers,
                body,
                origin=origin,
            )
        )

    # -- IStoredMailbox: reading --------------------------------------------

    def uids(self):
        self.refresh()
        return list(self._index.uids)

    def message(self, uid):
        return self._index.by_uid[uid]

    def count(self):
        """Number of messages (from memory)."""
        return len(self._index.uids)

    def recent(self):
        """Sorted UIDs of the unclaimed recent messages (in new/, or stored in cur/ with
        flags by APPEND or COPY), without claiming them."""
        return sorted(self._index.in_new | self._index.fresh)

    def total_size(self):
        """Octets of all the messages (the sum of their RFC822.SIZE), from memory."""
        return sum(m.size for m in self._index.by_uid.values())

    def unseen(self):
        """Sorted UIDs of the messages without \\Seen."""
        return sorted(self._index.unseen)

    def changed_since(self, modseq):
        """Sorted UIDs of the messages whose modseq is greater than ``modseq`` (CHANGEDSINCE)."""
        by_uid = self._index.by_uid
        return [u for u in self._index.uids if by_uid[u].modseq > modseq]

    def vanished_ranges(self, modseq):
        """Expunged since ``modseq`` as sorted, disjoint ``(first, last)`` UID ranges.

        Exact when ``modseq >= vanished_floor``; from before the floor (the
        history was trimmed) every UID below UIDNEXT that is not here, which
        RFC 7162 3.2.5.1 allows.
        """
        return self._index.vanished_ranges(modseq)

    # -- IStoredMailbox: changes ----------------------------------------------

    def add(self, data, flags=(), internaldate=None, origin=None, recent=False):
        """``data``: bytes, or a binary readable (``readline``) copied to disk piece by piece,
        so a large message (SMTP's spool) is never held in memory whole.

        A message without system flags goes to new/ and is \\Recent; one with them goes to
        cur/, and is \\Recent too when ``recent`` is true (IMAP APPEND, RFC 3501 6.3.11)."""
        self.refresh()
        now = self._clock.seconds()
        if internaldate is None:
            internaldate = now
        if hasattr(data, "readline"):
            # Its size, part of the final name, is known once it is written.
            staged = os.path.join(self.path, "tmp", unique_name(now, 0))
            size = stage_file(staged, self._limited(crlf_pieces(data)), internaldate)
            return self._commit_staged(staged, size, flags, internaldate, origin, recent)
        data = to_crlf(data)
        size = len(data)
        if self._max_size is not None and size > self._max_size:
            raise MessageTooLarge("Message of %d octets is larger than the limit of %d" % (size, self._max_size))
        return self._commit_staged(None, size, flags, internaldate, origin, recent, data)

    def add_staged(self, source, flags=(), internaldate=None, origin=None, recent=False):
        """L{add} of ``source`` (a L{imapwebpush.spool.Snapshot}: ``size``, and ``reader()``
        callable from any thread); a Deferred of the UID, fired once the message is durable.

        Why: copying and fsyncing a message of 50 MB took the reactor for hundreds of ms.
        From L{stage_threshold} octets on, the copy into tmp/ and its fsync run through
        ``run`` (a thread); the rest (rename, folder fsync, UID, journal, event) runs on the
        reactor as in L{add}. The adds of this method commit in the order they were called,
        so their UIDs ascend in that order. The caller keeps ``source`` open until it fires.
        """
        now = self._clock.seconds()
        if internaldate is None:
            internaldate = now
        staging = None
        if source.size >= self.stage_threshold:
            tmp = os.path.join(self.path, "tmp", unique_name(now, 0))
            staging = self.run(self._stage_source, tmp, source, internaldate)
        result = defer.Deferred()

        def turn(_):
            d = staging if staging is not None else defer.succeed(None)
            d.addCallback(self._commit_source, source, flags, internaldate, origin, recent)
            d.addBoth(_relay, result)
            return d

        self._staged_commits.addCallback(turn)
        return result

    def _stage_source(self, tmp, source, internaldate):
        """In a thread: ``source`` copied to ``tmp`` and fsynced (none left on failure); the path and size."""
        return tmp, stage_file(tmp, self._limited(crlf_pieces(source.reader())), internaldate)

    def _commit_source(self, staged, source, flags, internaldate, origin, recent):
        if staged is None:  # small: copied here, as add does
            return self.add(source.reader(), flags, internaldate, origin, recent)
        self.refresh()
        return self._commit_staged(staged[0], staged[1], flags, internaldate, origin, recent)

    def _commit_staged(self, staged, size, flags, internaldate, origin, recent, data=None):
        """Place a message (``staged`` in tmp/, or ``data``), give it its UID, journal and announce it."""
        system, keywords = flagsmod.split(flags)
        now = self._clock.seconds()
        base = unique_name(now, size)
        if system:
            rel = "cur/" + base + flagsmod.info(system)
        else:
            rel = "new/" + base
        target = os.path.join(self.path, rel)
        headers = None
        if staged is None:
            headers = header_block(data)
            place_file(os.path.join(self.path, "tmp", base), target, data, internaldate)
        else:
            move_into_place(staged, target)
        fsync_dir(os.path.join(self.path, rel[:3]))
        index = self._index
        uid = index.uidnext
        msg = index.make(uid, rel, index.highestmodseq + 1, size, float(internaldate), keywords, now)
        index.write([record_of(msg)])
        index.advance(uid + 1, msg.modseq)
        index.remember(msg)
        if system and recent:
            index.fresh.add(uid)  # in cur/ for its flags, recent all the same
        self._after_change()
        if headers is not None:
            self.header_cache.put(uid, headers)
            body = data[len(headers):len(headers) + BODY_START_OCTETS]
        else:  # streamed: read back from the file (headers cached), for the push preview
            headers, body = _message_start(msg)
        self._announce(msg, origin, headers, body)
        return uid

    def _limited(self, pieces):
        """``pieces`` unchanged, but L{MessageTooLarge} once they add up to more than the limit."""
        total = 0
        for piece in pieces:
            total += len(piece)
            if self._max_size is not None and total > self._max_size:
                raise MessageTooLarge("Message is larger than the limit of %d octets" % (self._max_size,))
            yield piece

    def set_flags(self, uids, flags, mode, unchangedsince=None, origin=None):
        if mode not in flagsmod.MODES:
            raise ValueError("mode must be one of %s" % (", ".join(flagsmod.MODES),))
        self.refresh()
        system, keywords = flagsmod.split(flags)
        todo, failed = self._flag_changes(uids, system, keywords, mode, unchangedsince)
        changed = {}
        if not todo:
            return changed, failed
        renames, dirs = self._rename_for_flags(todo)
        if not renames:
            return changed, failed
        modseq = self.highestmodseq + 1
        # Not fsynced (nor the renames): a crash may lose the last flag changes, never a
        # message; one fsync per STORE held every other session for milliseconds.
        self._index.write(
            [{"t": "f", "u": msg.uid, "f": rel, "m": modseq, "k": sorted(kw)} for msg, rel, kw in renames],
            sync=False,
        )
        self._index.advance(modseq=modseq)
        changes = []
        for msg, rel, kw in renames:
            self._index.rename(msg, rel, kw, modseq)
            changed[msg.uid] = (msg.flags, modseq)
            changes.append((msg.uid, msg.flags, modseq))
        self._index.compact_if_grown()
        if dirs:
            self._watch.take()
        self._publish(FlagsChanged(self._account.address, self.name, tuple(changes), origin=origin))
        return changed, failed

    def _flag_changes(self, uids, system, keywords, mode, unchangedsince):
        """([(message, new system flags, new keywords)] that change, UIDs refused by UNCHANGEDSINCE)."""
        failed = []
        todo = []
        for uid in sorted(set(uids)):
            msg = self._index.by_uid.get(uid)
            if msg is None:
                continue
            if unchangedsince is not None and msg.modseq > unchangedsince:
                failed.append(uid)
                continue
            new_system, new_keywords = flagsmod.change(mode, msg.system, msg.keywords, system, keywords)
            if new_system != msg.system or not flagsmod.same_keywords(new_keywords, msg.keywords):
                todo.append((msg, new_system, new_keywords))
        return todo, failed

    def _rename_for_flags(self, todo):
        """Rename the files whose system flags change; ([(message, file name, keywords)], dirs).

        A message whose file vanished meanwhile is left out (the next look expunges it).
        """
        renames = []
        dirs = set()
        for msg, new_system, new_keywords in todo:
            rel = msg.filename
            if new_system != msg.system and not (msg.recent and not new_system):
                rel = "cur/" + msg.base + flagsmod.info(new_system, msg.extra)
            if rel != msg.filename:
                try:
                    os.rename(msg.path(), os.path.join(self.path, rel))
                except FileNotFoundError:
                    log.warn("{mailbox}: UID {uid} vanished during STORE", mailbox=self.name, uid=msg.uid)
                    self._watch.dirty = True
                    continue
                dirs.add(msg.filename[:3])
                dirs.add(rel[:3])
            renames.append((msg, rel, new_keywords))
        return renames, dirs

    def expunge(self, uids=None, origin=None):
        self.refresh()
        deleted = self._index.deleted
        candidates = deleted if uids is None else deleted.intersection(uids)
        by_uid = self._index.by_uid
        doomed = [by_uid[u] for u in sorted(candidates)]
        return self._remove(doomed, origin, unlink=True)

    def _remove(self, doomed, origin, unlink, announce=True):
        """Drop messages (unlinking their files when asked); one journal line, one event.

        With ``announce`` false the event is returned instead of published,
        for callers that must finish other durable work first.
        """
        if not doomed:
            return [] if announce else None
        if unlink:
            dirs = set()
            for msg in doomed:
                try:
                    os.unlink(msg.path())
                except FileNotFoundError:
                    pass
                dirs.add(msg.filename[:3])
            for sub in sorted(dirs):
                fsync_dir(os.path.join(self.path, sub))
        removed = sorted(m.uid for m in doomed)
        modseq = self.highestmodseq + 1
        # Not fsynced: the files are gone for good (their folder is fsynced), and a crash
        # that loses this line leaves journal lines without files, which the next scan
        # expunges the same way. One fsync less per EXPUNGE held every session less long.
        self._index.write([{"t": "x", "u": removed, "m": modseq}], sync=False)
        self._index.advance(modseq=modseq)
        self._index.expunged(doomed, removed, modseq)
        self._after_change()
        event = MessagesExpunged(self._account.address, self.name, tuple(removed), modseq, origin=origin)
        if not announce:
            return event
        self._publish(event)
        return removed

    def copy(self, uids, destination, origin=None):
        return self._transfer(uids, destination, origin, move=False)

    def move(self, uids, destination, origin=None):
        return self._transfer(uids, destination, origin, move=True)

    def _transfer(self, uids, destination, origin, move):
        self.refresh()
        by_uid = self._index.by_uid
        sources = [by_uid[u] for u in sorted(set(uids)) if u in by_uid]
        if not isinstance(destination, Mailbox):
            # Some other IStoredMailbox: go through its public add().
            pairs = []
            for msg in sources:
                uid = destination.add(msg.read(), msg.flags, msg.internaldate, origin, recent=True)
                pairs.append((msg.uid, uid))
            if move:
                self._remove(sources, origin, unlink=True)
            return pairs
        destination.refresh()
        placed = self._place_in(destination, sources, move)
        pairs, added = destination._commit_added(placed)
        expunged = None
        if move and placed:
            for sub in sorted(set(msg.filename[:3] for msg, _ in placed)):
                fsync_dir(os.path.join(self.path, sub))
            expunged = self._remove([m for m, _ in placed], origin, unlink=False, announce=False)
        # Both sides are durable and consistent in memory: now tell the listeners.
        for msg, headers, body in added:
            destination._announce(msg, origin, headers, body)
        if expunged is not None:
            self._publish(expunged)
        return pairs

    def _place_in(self, destination, sources, move):
        """Link (copy) or rename (move) the files of ``sources`` into ``destination``'s
        folder; [(source message, new file name)] of those placed."""
        placed = []
        dirs = set()
        now = self._clock.seconds()
        for msg in sources:
            base = unique_name(now, msg.size)
            if msg.system:
                rel = "cur/" + base + flagsmod.info(msg.system, msg.extra)
            else:
                rel = "new/" + base
            target = os.path.join(destination.path, rel)
            try:
                if move:
                    _move_file(msg, destination, base, target)
                else:
                    _copy_file(msg, destination, base, target)
            except FileNotFoundError:
                log.warn("{mailbox}: UID {uid} vanished during COPY", mailbox=self.name, uid=msg.uid)
                self._watch.dirty = True
                continue
            dirs.add(rel[:3])
            placed.append((msg, rel))
        for sub in sorted(dirs):
            fsync_dir(os.path.join(destination.path, sub))
        return placed

    def _commit_added(self, placed):
        """Give UIDs to files just linked into this folder; journal them (no events yet).

        Returns (pairs of old and new UIDs, [(message, headers, body start)] to announce)."""
        if not placed:
            return [], []
        index = self._index
        pairs = []
        added = []
        uid = index.uidnext
        modseq = index.highestmodseq
        now = self._clock.seconds()  # the save date: INTERNALDATE stays the source's
        for source, rel in placed:
            modseq += 1
            added.append(index.make(uid, rel, modseq, source.size, source.internaldate, source.keywords, now))
            pairs.append((source.uid, uid))
            uid += 1
        index.write([record_of(msg) for msg in added])
        index.advance(uid, modseq)
        for msg in added:
            index.remember(msg)
            if not msg.recent:
                index.fresh.add(msg.uid)  # a copy is recent whatever its flags (RFC 3501 6.4.7)
        self._after_change()
        # the start of each body too: a copy pushed to a phone gets its preview like new mail
        return pairs, [(m,) + _message_start(m) for m in added]

    def claim_recent(self):
        self.refresh()
        fresh = set(self._index.fresh)
        self._index.fresh.clear()
        claimed = sorted(self._index.in_new)
        if not claimed:
            return fresh
        records = []
        done = []
        for uid in claimed:
            msg = self._index.by_uid[uid]
            rel = "cur/" + msg.base + flagsmod.info(msg.system, msg.extra)
            try:
                os.rename(msg.path(), os.path.join(self.path, rel))
            except FileNotFoundError:
                self._watch.dirty = True
                continue
            records.append({"t": "f", "u": uid, "f": rel, "m": msg.modseq, "k": sorted(msg.keywords)})
            done.append((msg, rel))
        self._index.write(records, sync=False)  # as a flag change: new/ to cur/ may be redone
        for msg, rel in done:
            self._index.rename(msg, rel, msg.keywords)
        self._after_change()
        return fresh | set(m.uid for m, _ in done)

    def __repr__(self):
        return "<Mailbox %s/%s uidvalidity=%d uidnext=%d>" % (
            self._account.address,
            self.name,
            self.uidvalidity,
            self.uidnext,
        )


def _copy_file(msg, destination, base, target):
    """Hard-link the message into the destination, or copy it (tmp, fsync, rename)."""
    source = msg.path()
    try:
        os.link(source, target)
        return
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP, errno.EACCES):
            raise
    tmp = os.path.join(destination.path, "tmp", base)
    with open(source, "rb") as f:
        data = f.read()
    place_file(tmp, target, data, msg.internaldate)


def _move_file(msg, destination, base, target):
    """Rename the message into the destination (same file system), or copy and unlink."""
    source = msg.path()
    try:
        os.rename(source, target)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    _copy_file(msg, destination, base, target)
    os.unlink(source)


def _relay(outcome, result):
    """Hand ``outcome`` (a UID or a Failure) to ``result``; the commit chain goes on either way."""
    if isinstance(outcome, Failure):
        result.errback(outcome)
    else:
        result.callback(outcome)


def _message_start(msg):
    """(header block, the first BODY_START_OCTETS of the body) of a stored message."""
    try:
        headers = msg.headers()
        with msg.open() as f:
            f.seek(len(headers))
            return headers, f.read(BODY_START_OCTETS)
    except (KeyError, OSError):
        return b"", b""
