"""One mailbox: a Maildir folder plus its journal of UIDs, keywords and mod-sequences.

The journal (``journal.py``) is loaded once into memory; after that ``uids``,
``message`` and flags are answered from memory and message bytes are read from
disk on demand. Files dropped into new/ or cur/ by other tools, renamed or
removed by them, are noticed through the mtimes of new/ and cur/ (two stat
calls) and reconciled by one directory scan.

Every change is made durable in this order: message files (tmp/, fsync,
rename, directory fsync), then the journal line (fsync), then the event.
A crash between two steps is repaired by the next scan: a file without a
journal line gets a fresh UID, a journal line whose file is gone is expunged,
a renamed file is matched by its base name (the part before ':').
"""

import bisect
import errno
from collections import OrderedDict
import os
import time

from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush.interfaces import IStoredMailbox, IStoredMessage
from imapwebpush.store import flags as flagsmod
from imapwebpush.store.errors import MailboxNotFound, MessageTooLarge
from imapwebpush.store.events import FlagsChanged, MessageAdded, MessagesExpunged
from imapwebpush.store.fsutil import fsync_dir, remove_tree, unique_name, write_file
from imapwebpush.store.journal import JOURNAL_NAME, Journal

log = Logger()

MODES = ("replace", "add", "remove")

# Header blocks kept in memory per mailbox (FETCH ENVELOPE, push payloads).
HEADER_CACHE_SIZE = 2048

# Expunged UIDs remembered per mailbox (QRESYNC's VANISHED (EARLIER)); when a
# compaction drops older ones the history floor rises and clients asking from
# before it are told every missing UID instead (RFC 7162 3.2.5.1 allows that).
VANISHED_HISTORY = 10000

# A directory mtime this close to the wall clock may hide a later change made
# within the same timestamp tick; such a snapshot is checked once more by a
# scan when it has aged (as Dovecot does).
_MTIME_TRUST = 2.0

_SUBS = ("new", "cur")


def to_crlf(data):
    """``data`` with every line ending as CRLF (bare LF becomes CRLF)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    data = bytes(data)
    # Mail from SMTP and most IMAP clients is CRLF already: counting (no
    # allocation) is cheaper than two copies that would change nothing.
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def header_block(data):
    """The raw header block of a message: up to and including the blank line."""
    if data.startswith(b"\r\n"):
        return b"\r\n"
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data
    return data[: end + 4]


def _place(tmp, target, data, mtime):
    """Write ``data`` to ``tmp`` (in tmp/), fsync, rename it to ``target``; no leftover on failure."""
    try:
        write_file(tmp, data, mtime=mtime)
        os.rename(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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


@implementer(IStoredMessage)
class StoredMessage:
    """A message of a L{Mailbox}; its attributes follow the mailbox's changes."""

    __slots__ = (
        "uid",
        "flags",
        "modseq",
        "size",
        "internaldate",
        "system",
        "keywords",
        "extra",
        "filename",
        "base",
        "_mailbox",
    )

    def __init__(self, mailbox, uid, filename, modseq, size, internaldate, keywords):
        self._mailbox = mailbox
        self.uid = uid
        self.modseq = modseq
        self.size = size
        self.internaldate = internaldate
        self._set(filename, keywords)

    def _set(self, filename, keywords):
        self.filename = filename  # 'new/<base>' or 'cur/<base>:2,<letters>'
        self.base, self.system, self.extra = flagsmod.parse_name(filename[4:])
        self.keywords = frozenset(keywords)
        self.flags = self.system | self.keywords

    @property
    def recent(self):
        """True while the file is in new/ (not yet claimed by a session)."""
        return self.filename.startswith("new/")

    def path(self):
        return os.path.join(self._mailbox.path, self.filename)

    def _open(self):
        try:
            return open(self.path(), "rb")
        except FileNotFoundError:
            # Renamed by another tool since our last look? Rescan once.
            self._mailbox.refresh()
            if self._mailbox._by_uid.get(self.uid) is not self:
                raise KeyError(self.uid)
            try:
                return open(self.path(), "rb")
            except FileNotFoundError:
                raise KeyError(self.uid)

    def open(self):
        """The message as a binary file object (the caller closes it), for partial reads."""
        return self._open()

    def read(self):
        with self._open() as f:
            return f.read()

    def headers(self):
        cache = self._mailbox._header_cache
        block = cache.get(self.uid)
        if block is not None:
            cache.move_to_end(self.uid)
            return block
        with self._open() as f:
            data = bytearray()
            while True:
                start = max(0, len(data) - 3)
                chunk = f.read(16384)
                data += chunk
                if not chunk or data.find(b"\r\n\r\n", start) >= 0 or data.startswith(b"\r\n"):
                    block = header_block(bytes(data))
                    break
        self._mailbox._cache_headers(self.uid, block)
        return block

    def __repr__(self):
        return "<StoredMessage uid=%d flags=%s modseq=%d>" % (
            self.uid,
            sorted(self.flags),
            self.modseq,
        )


@implementer(IStoredMailbox)
class Mailbox:
    """An L{IStoredMailbox} over the Maildir folder ``path``.

    Made by L{imapwebpush.store.account.Account}; there is one object per
    mailbox and account, shared by every session, so all see one index.
    """

    def __init__(self, account, name, path, clock, new_uidvalidity, max_message_size=None):
        self._account = account
        self.name = name
        self.path = path
        self._clock = clock
        self._new_uidvalidity = new_uidvalidity
        self._max_size = max_message_size
        self._journal = Journal(os.path.join(path, JOURNAL_NAME))
        self._by_uid = {}
        self._by_base = {}
        self._uids = []
        self._in_new = set()
        self._records = 0
        self._deleted = False
        self._mtimes = None  # (new/, cur/) mtimes in ns at our last look
        self._mtimes_trusted = (False, False)
        self._header_cache = OrderedDict()
        self._dirty = False  # something vanished under us: scan at the next look
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = 1
        # Tombstones of expunged messages, oldest first: parallel lists of the
        # expunge's modseq and the sorted UIDs it removed.
        self._tomb_modseqs = []
        self._tomb_uids = []
        self._tomb_count = 0
        self.vanished_floor = 1

    def open(self):
        """Load the journal and reconcile it with the folder (once, by the account)."""
        self._load()
        return self

    # -- loading --------------------------------------------------------

    def _load(self):
        if self._journal.exists():
            records, bad = self._journal.load()
        else:
            records, bad = [], 0
        max_uid = 0
        for record in records:
            max_uid = max(max_uid, self._apply(record))
        self.uidnext = max(self.uidnext, max_uid + 1)
        self._records = len(records)
        if not self.uidvalidity or bad:
            # New journal (foreign Maildir) or damaged lines: UIDs may not be
            # what clients saw, so they must resynchronise.
            old = self.uidvalidity
            self.uidvalidity = self._new_uidvalidity()
            # Clients resynchronise from scratch: old tombstones mean nothing.
            self._tomb_modseqs, self._tomb_uids, self._tomb_count = [], [], 0
            self.vanished_floor = self.highestmodseq
            if old:
                log.warn(
                    "{mailbox}: damaged index, new UIDVALIDITY {new} (was {old})",
                    mailbox=self.name,
                    new=self.uidvalidity,
                    old=old,
                )
            self._compact()
        self._scan()
        self._compact_if_grown()

    def _apply(self, r):
        """Apply one journal record to memory; returns the highest UID it names."""
        kind = r.get("t")
        modseq = r.get("m", 0)
        if isinstance(modseq, int) and modseq > self.highestmodseq:
            self.highestmodseq = modseq
        try:
            if kind == "s":
                self.uidvalidity = int(r["v"])
                self.uidnext = max(self.uidnext, int(r["n"]))
                # A state line without "h" was written before tombstones were
                # kept (or by make_folder): history is complete from its modseq.
                self.vanished_floor = int(r.get("h", r.get("m", 1)))
                return 0
            if kind == "g":
                for modseq, uids in r["x"]:
                    self._bury(int(modseq), [int(u) for u in uids])
                return 0
            if kind == "v":
                self.uidvalidity = int(r["v"])
                return 0
            if kind == "a":
                uid = int(r["u"])
                old = self._by_uid.get(uid)
                if old is not None:
                    self._forget(old)
                msg = StoredMessage(
                    self, uid, r["f"], int(r["m"]), int(r["s"]), float(r["d"]), r.get("k", ())
                )
                self._remember(msg)
                return uid
            if kind == "f":
                msg = self._by_uid.get(int(r["u"]))
                if msg is not None:
                    self._rename_in_memory(msg, r["f"], r.get("k", ()))
                    msg.modseq = int(r["m"])
                return 0
            if kind == "x":
                doomed = [self._by_uid[u] for u in r["u"] if u in self._by_uid]
                if doomed:
                    self._forget_many(doomed)
                self._bury(int(r["m"]), sorted(int(u) for u in r["u"]))
                return 0
        except (KeyError, TypeError, ValueError):
            log.warn("{mailbox}: ignoring malformed index record {record!r}", mailbox=self.name, record=r)
        return 0

    def _remember(self, msg):
        self._by_uid[msg.uid] = msg
        self._by_base[msg.base] = msg
        if self._uids and msg.uid < self._uids[-1]:
            self._uids.append(msg.uid)
            self._uids.sort()
        else:
            self._uids.append(msg.uid)
        if msg.recent:
            self._in_new.add(msg.uid)

    def _cache_headers(self, uid, block):
        cache = self._header_cache
        cache[uid] = block
        if len(cache) > HEADER_CACHE_SIZE:
            cache.popitem(last=False)

    def _unindex(self, msg):
        """Drop ``msg`` from every index but the sorted ``_uids`` list."""
        self._header_cache.pop(msg.uid, None)
        self._by_uid.pop(msg.uid, None)
        if self._by_base.get(msg.base) is msg:
            del self._by_base[msg.base]
        self._in_new.discard(msg.uid)

    def _forget(self, msg):
        self._unindex(msg)
        i = bisect.bisect_left(self._uids, msg.uid)
        if i < len(self._uids) and self._uids[i] == msg.uid:
            del self._uids[i]

    def _forget_many(self, msgs):
        for msg in msgs:
            self._unindex(msg)
        self._uids = [u for u in self._uids if u in self._by_uid]

    def _rename_in_memory(self, msg, filename, keywords):
        if self._by_base.get(msg.base) is msg:
            del self._by_base[msg.base]
        msg._set(filename, keywords)
        self._by_base[msg.base] = msg
        if msg.recent:
            self._in_new.add(msg.uid)
        else:
            self._in_new.discard(msg.uid)

    def _record(self, msg, kind="a"):
        record = {"t": kind, "u": msg.uid, "f": msg.filename, "m": msg.modseq}
        if kind == "a":
            record["s"] = msg.size
            record["d"] = msg.internaldate
        if msg.keywords:
            record["k"] = sorted(msg.keywords)
        return record

    def _state(self):
        return {
            "t": "s",
            "v": self.uidvalidity,
            "n": self.uidnext,
            "m": self.highestmodseq,
            "h": self.vanished_floor,
        }

    def _bury(self, modseq, uids):
        """Remember that ``uids`` (sorted) were expunged at ``modseq``."""
        if not uids:
            return
        if self._tomb_modseqs and modseq < self._tomb_modseqs[-1]:
            # Never happens with one writer; keep the lists ordered anyway.
            i = bisect.bisect_right(self._tomb_modseqs, modseq)
            self._tomb_modseqs.insert(i, modseq)
            self._tomb_uids.insert(i, list(uids))
        else:
            self._tomb_modseqs.append(modseq)
            self._tomb_uids.append(list(uids))
        self._tomb_count += len(uids)

    def _trim_tombstones(self):
        """Forget the oldest tombstones beyond VANISHED_HISTORY, raising the floor."""
        drop = 0
        count = self._tomb_count
        while count > VANISHED_HISTORY and drop < len(self._tomb_modseqs):
            count -= len(self._tomb_uids[drop])
            drop += 1
        if drop:
            self.vanished_floor = max(self.vanished_floor, self._tomb_modseqs[drop - 1])
            del self._tomb_modseqs[:drop]
            del self._tomb_uids[:drop]
            self._tomb_count = count

    def _write(self, records):
        """Append records to the journal; memory changes only after this returns."""
        self._journal.append(records)
        self._records += len(records)

    def _compact_if_grown(self):
        """Rewrite a grown journal from memory; call it once memory holds every change
        written (a snapshot taken earlier would drop the newest lines)."""
        if self._records > 2 * len(self._uids) + 256:
            self._compact()

    def _compact(self):
        self._trim_tombstones()
        records = [self._state()]
        if self._tomb_modseqs:
            records.append(
                {"t": "g", "x": [[m, u] for m, u in zip(self._tomb_modseqs, self._tomb_uids)]}
            )
        records.extend(self._record(self._by_uid[uid]) for uid in self._uids)
        self._journal.rewrite(records)
        self._records = len(records)

    # -- noticing other tools ---------------------------------------------

    def _stat_dirs(self):
        """mtimes of new/ and cur/; MailboxNotFound when the folder is gone."""
        try:
            return (
                os.stat(os.path.join(self.path, "new")).st_mtime_ns,
                os.stat(os.path.join(self.path, "cur")).st_mtime_ns,
            )
        except FileNotFoundError:
            self._check_live()
            self._deleted = True
            raise MailboxNotFound("Mailbox %s does not exist any more" % (self.name,))

    def _take_mtimes(self, subs=_SUBS):
        """Remember the mtimes of ``subs`` (their contents are known to memory now)."""
        now = self._stat_dirs()
        if self._mtimes is None:
            subs = _SUBS
        # Wall clock on purpose: it is compared with file-system timestamps.
        wall = time.time()
        mtimes = list(self._mtimes or now)
        trusted = list(self._mtimes_trusted)
        for i, sub in enumerate(_SUBS):
            if sub in subs:
                # A snapshot once trusted stays so while the mtime stands still.
                trusted[i] = (trusted[i] and mtimes[i] == now[i]) or (
                    wall - now[i] / 1e9 > _MTIME_TRUST
                )
                mtimes[i] = now[i]
        self._mtimes = tuple(mtimes)
        self._mtimes_trusted = tuple(trusted)

    def _changed_on_disk(self):
        """The sub-folders (of new, cur) whose listing may differ from memory."""
        if self._mtimes is None or self._dirty:
            return _SUBS
        now = self._stat_dirs()
        wall = time.time()
        return tuple(
            sub
            for i, sub in enumerate(_SUBS)
            if now[i] != self._mtimes[i]
            or (not self._mtimes_trusted[i] and wall - now[i] / 1e9 > _MTIME_TRUST)
        )

    def check(self):
        """Raise MailboxNotFound if the folder was deleted or replaced behind our back."""
        self._check_live()
        if self._mtimes is not None and self._stat_dirs() != self._mtimes:
            self._check_identity()

    def _check_identity(self):
        """A folder deleted and made again by another process has another UIDVALIDITY
        (the account's counter only grows): this index would describe a gone mailbox."""
        self._account._verify()
        first = self._journal.first()
        if first is not None and first.get("v") != self.uidvalidity:
            self._deleted = True
            raise MailboxNotFound("Mailbox %s was replaced" % (self.name,))

    def refresh(self):
        """Pick up files added, renamed or removed by other tools; cheap when none were.

        Every read of the index and every change starts here: it stops if the
        mailbox was deleted, and sees other tools' changes first.
        """
        self._check_live()
        subs = self._changed_on_disk()
        if subs:
            self._scan(subs)

    def _scan(self, subs=None):
        """Reconcile memory with ``subs`` of new/ and cur/ (one listdir each; both by default).

        A sub-folder whose mtime has not moved (and is old enough to trust)
        holds what memory says, so a mailbox of thousands of messages in cur/
        costs one listing of new/ after a delivery, not of both.
        """
        if self._mtimes is not None:
            self._check_identity()
        if subs is None or len(self._by_base) != len(self._by_uid):
            subs = _SUBS
        self._dirty = False
        self._take_mtimes(subs)
        found = {}
        for sub in subs:
            folder = os.path.join(self.path, sub)
            for entry in os.listdir(folder):
                if entry.startswith("."):
                    continue
                rel = sub + "/" + entry
                base = entry.partition(":")[0]
                if base in found:
                    rel = self._rename_duplicate(sub, entry)
                    if rel is None:
                        continue
                    base = rel[4:].partition(":")[0]
                found[base] = rel
        if subs != _SUBS:
            for base in found:
                msg = self._by_base.get(base)
                if msg is not None and msg.filename[:3] not in subs:
                    # The same base name in a folder we did not list: let the
                    # full scan decide which file keeps the UID.
                    return self._scan(_SUBS)
            if subs == ("new",):
                known = [self._by_uid[u] for u in self._in_new]
            else:
                known = [m for m in self._by_uid.values() if m.filename[:3] in subs]
        else:
            known = list(self._by_base.values())
        gone = []
        moved = []
        for msg in known:
            base = msg.base
            rel = found.pop(base, None)
            if rel is None:
                gone.append(msg)
            elif rel != msg.filename:
                moved.append((msg, rel))
        if len(self._by_base) != len(self._by_uid):
            # Two UIDs named the same file (a damaged index): keep one.
            gone_ids = set(id(m) for m in gone)
            for msg in list(self._by_uid.values()):
                if self._by_base.get(msg.base) is not msg and id(msg) not in gone_ids:
                    gone.append(msg)
        if not (gone or moved or found):
            return
        # Counters and memory change only once the journal holds the lines: a
        # failed write (disk full) leaves memory as the journal says, and the
        # next look scans again.
        try:
            records, renames, expunged, expunged_at, added, uidnext, modseq = self._reconcile(
                moved, gone, found
            )
            if added:
                self._take_mtimes(subs)  # _adopt may have rewritten files
            self._write(records)
        except BaseException:
            self._dirty = True
            raise
        self.uidnext = uidnext
        self.highestmodseq = modseq
        flag_changes = []
        for msg, rel, msg_modseq, flags_changed in renames:
            self._rename_in_memory(msg, rel, msg.keywords)
            msg.modseq = msg_modseq
            if flags_changed:
                flag_changes.append((msg.uid, msg.flags, msg_modseq))
        if gone:
            self._forget_many(gone)
            self._bury(expunged_at, expunged)
        for msg in added:
            self._remember(msg)
        self._compact_if_grown()
        for msg in added:
            log.info(
                "{mailbox}: adopted {filename} as UID {uid}",
                mailbox=self.name,
                filename=msg.filename,
                uid=msg.uid,
            )
        if flag_changes:
            self._publish(FlagsChanged(self._account.address, self.name, tuple(flag_changes)))
        if expunged:
            self._publish(
                MessagesExpunged(self._account.address, self.name, tuple(expunged), self.highestmodseq)
            )
        for msg in added:
            self._announce(msg, None)

    def _reconcile(self, moved, gone, found):
        """Journal lines for what a scan found, without touching memory.

        Returns (records, renames, expunged UIDs, their modseq, adopted
        messages, the new UIDNEXT, the new HIGHESTMODSEQ); renames are
        (message, file name, modseq, whether its flags changed).
        """
        records = []
        renames = []
        expunged = []
        expunged_at = None
        added = []
        modseq = self.highestmodseq
        uidnext = self.uidnext
        flag_modseq = None
        for msg, rel in moved:
            _, system, _ = flagsmod.parse_name(rel[4:])
            msg_modseq = msg.modseq
            if system != msg.system:
                if flag_modseq is None:
                    modseq += 1
                    flag_modseq = modseq
                msg_modseq = flag_modseq
            record = {"t": "f", "u": msg.uid, "f": rel, "m": msg_modseq}
            if msg.keywords:
                record["k"] = sorted(msg.keywords)
            records.append(record)
            renames.append((msg, rel, msg_modseq, system != msg.system))
        if gone:
            modseq += 1
            expunged_at = modseq
            expunged = sorted(m.uid for m in gone)
            records.append({"t": "x", "u": expunged, "m": modseq})
        for base, rel in sorted(found.items(), key=self._age):
            msg = self._adopt(rel, uidnext, modseq + 1)
            if msg is not None:
                uidnext += 1
                modseq += 1
                added.append(msg)
                records.append(self._record(msg))
        return records, renames, expunged, expunged_at, added, uidnext, modseq

    def _age(self, item):
        try:
            return (os.stat(os.path.join(self.path, item[1])).st_mtime, item[1])
        except OSError:
            return (0, item[1])

    def _rename_duplicate(self, sub, entry):
        """Give a second file with an already seen base name a base of its own."""
        base, sep, info = entry.partition(":")
        fresh = unique_name(self._clock.seconds(), 0).rsplit(",S=", 1)[0]
        fresh += "-" + flagsmod.without_size(base)[:40].replace(":", "")
        target = fresh + sep + info
        try:
            os.rename(os.path.join(self.path, sub, entry), os.path.join(self.path, sub, target))
        except OSError:
            return None
        return sub + "/" + target

    def _adopt(self, rel, uid, modseq):
        """A message for a file found on disk, to get ``uid`` (not yet remembered);
        None if the file vanished."""
        path = os.path.join(self.path, rel)
        try:
            with open(path, "rb") as f:
                data = f.read()
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        fixed = to_crlf(data)
        if fixed != data:
            # Other tools write LF; we promise CRLF. Rewrite before the UID is given.
            sub, entry = rel.split("/", 1)
            base, sep, info = entry.partition(":")
            new_entry = "%s,S=%d%s%s" % (flagsmod.without_size(base), len(fixed), sep, info)
            tmp = os.path.join(self.path, "tmp", new_entry.partition(":")[0])
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            _place(tmp, os.path.join(self.path, sub, new_entry), fixed, stat.st_mtime)
            if new_entry != entry:
                os.unlink(path)
            fsync_dir(os.path.join(self.path, sub))
            rel = sub + "/" + new_entry
            data = fixed
        return StoredMessage(self, uid, rel, modseq, len(data), stat.st_mtime, ())

    # -- helpers ------------------------------------------------------------

    def _check_live(self):
        if self._deleted:
            raise MailboxNotFound("Mailbox %s does not exist any more" % (self.name,))

    def _publish(self, event):
        self._account._publish(event)

    def _announce(self, msg, origin, headers=None):
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
                origin=origin,
            )
        )

    # -- IStoredMailbox -------------------------------------------------------

    def uids(self):
        self.refresh()
        return list(self._uids)

    def message(self, uid):
        return self._by_uid[uid]

    def count(self):
        """Number of messages (from memory)."""
        return len(self._uids)

    def recent(self):
        """Sorted UIDs of the messages in new/, without claiming them."""
        return sorted(self._in_new)

    def unseen(self):
        """Sorted UIDs of the messages without \\Seen."""
        return [u for u in self._uids if flagsmod.SEEN not in self._by_uid[u].system]

    def changed_since(self, modseq):
        """Sorted UIDs of the messages whose modseq is greater than ``modseq`` (CHANGEDSINCE)."""
        return [u for u in self._uids if self._by_uid[u].modseq > modseq]

    def vanished_ranges(self, modseq):
        """Expunged since ``modseq`` as sorted, disjoint ``(first, last)`` UID ranges.

        Exact when ``modseq >= vanished_floor``; from before the floor (the
        history was trimmed) every UID below UIDNEXT that is not here, which
        RFC 7162 3.2.5.1 allows. Ranges keep that answer small.
        """
        if modseq < self.vanished_floor:
            out = []
            expected = 1
            for uid in self._uids:
                if uid > expected:
                    out.append((expected, uid - 1))
                expected = uid + 1
            if expected < self.uidnext:
                out.append((expected, self.uidnext - 1))
            return out
        i = bisect.bisect_right(self._tomb_modseqs, modseq)
        uids = sorted(u for group in self._tomb_uids[i:] for u in group)
        out = []
        for uid in uids:
            if out and uid <= out[-1][1] + 1:
                if uid > out[-1][1]:
                    out[-1] = (out[-1][0], uid)
            else:
                out.append((uid, uid))
        return out

    def vanished_since(self, modseq):
        """Sorted UIDs expunged with a modseq above ``modseq`` (see ``vanished_ranges``)."""
        return [u for first, last in self.vanished_ranges(modseq) for u in range(first, last + 1)]

    def add(self, data, flags=(), internaldate=None, origin=None):
        self.refresh()
        data = to_crlf(data)
        if self._max_size is not None and len(data) > self._max_size:
            raise MessageTooLarge(
                "Message of %d octets is larger than the limit of %d" % (len(data), self._max_size)
            )
        system, keywords = flagsmod.split(flags)
        now = self._clock.seconds()
        if internaldate is None:
            internaldate = now
        base = unique_name(now, len(data))
        if system:
            rel = "cur/" + base + flagsmod.info(system)
        else:
            rel = "new/" + base
        _place(os.path.join(self.path, "tmp", base), os.path.join(self.path, rel), data, internaldate)
        fsync_dir(os.path.join(self.path, rel[:3]))
        uid = self.uidnext
        msg = StoredMessage(self, uid, rel, self.highestmodseq + 1, len(data), float(internaldate), keywords)
        self._write([self._record(msg)])
        self.uidnext = uid + 1
        self.highestmodseq += 1
        self._remember(msg)
        self._compact_if_grown()
        self._take_mtimes()
        headers = header_block(data)
        self._cache_headers(uid, headers)
        self._announce(msg, origin, headers)
        return uid

    def set_flags(self, uids, flags, mode, unchangedsince=None, origin=None):
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % (", ".join(MODES),))
        self.refresh()
        system, keywords = flagsmod.split(flags)
        lowered = {k.lower() for k in keywords}
        failed = []
        todo = []
        for uid in sorted(set(uids)):
            msg = self._by_uid.get(uid)
            if msg is None:
                continue
            if unchangedsince is not None and msg.modseq > unchangedsince:
                failed.append(uid)
                continue
            if mode == "replace":
                new_system, new_keywords = system, keywords
            elif mode == "add":
                new_system = msg.system | system
                have = {k.lower() for k in msg.keywords}
                new_keywords = msg.keywords | {k for k in keywords if k.lower() not in have}
            else:
                new_system = msg.system - system
                new_keywords = frozenset(k for k in msg.keywords if k.lower() not in lowered)
            if new_system == msg.system and {k.lower() for k in new_keywords} == {
                k.lower() for k in msg.keywords
            }:
                continue
            todo.append((msg, new_system, new_keywords))
        changed = {}
        if not todo:
            return changed, failed
        modseq = self.highestmodseq + 1
        renames = []
        dirs = set()
        for msg, new_system, new_keywords in todo:
            if new_system != msg.system:
                if msg.recent and not new_system:
                    rel = msg.filename
                else:
                    rel = "cur/" + msg.base + flagsmod.info(new_system, msg.extra)
                if rel != msg.filename:
                    try:
                        os.rename(msg.path(), os.path.join(self.path, rel))
                    except FileNotFoundError:
                        log.warn("{mailbox}: UID {uid} vanished during STORE", mailbox=self.name, uid=msg.uid)
                        self._dirty = True
                        continue
                    dirs.add(msg.filename[:3])
                    dirs.add(rel[:3])
            else:
                rel = msg.filename
            renames.append((msg, rel, new_keywords))
        for sub in sorted(dirs):
            fsync_dir(os.path.join(self.path, sub))
        records = [
            {"t": "f", "u": msg.uid, "f": rel, "m": modseq, "k": sorted(kw)} for msg, rel, kw in renames
        ]
        if not records:
            return changed, failed
        self._write(records)
        self.highestmodseq = modseq
        changes = []
        for msg, rel, kw in renames:
            self._rename_in_memory(msg, rel, kw)
            msg.modseq = modseq
            changed[msg.uid] = (msg.flags, modseq)
            changes.append((msg.uid, msg.flags, modseq))
        self._compact_if_grown()
        if dirs:
            self._take_mtimes()
        self._publish(FlagsChanged(self._account.address, self.name, tuple(changes), origin=origin))
        return changed, failed

    def expunge(self, uids=None, origin=None):
        self.refresh()
        if uids is None:
            candidates = self._uids
        else:
            candidates = sorted(set(u for u in uids if u in self._by_uid))
        doomed = [
            self._by_uid[u] for u in candidates if flagsmod.DELETED in self._by_uid[u].system
        ]
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
        self._write([{"t": "x", "u": removed, "m": modseq}])
        self.highestmodseq = modseq
        self._forget_many(doomed)
        self._bury(modseq, removed)
        self._compact_if_grown()
        self._take_mtimes()
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
        sources = [self._by_uid[u] for u in sorted(set(uids)) if u in self._by_uid]
        if not isinstance(destination, Mailbox):
            # Some other IStoredMailbox: go through its public add().
            pairs = []
            for msg in sources:
                pairs.append((msg.uid, destination.add(msg.read(), msg.flags, msg.internaldate, origin)))
            if move:
                self._remove(sources, origin, unlink=True)
            return pairs
        destination.refresh()
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
                self._dirty = True
                continue
            dirs.add(rel[:3])
            placed.append((msg, rel))
        for sub in sorted(dirs):
            fsync_dir(os.path.join(destination.path, sub))
        pairs, added = destination._commit_added(placed)
        expunged = None
        if move and placed:
            for sub in sorted(set(msg.filename[:3] for msg, _ in placed)):
                fsync_dir(os.path.join(self.path, sub))
            expunged = self._remove([m for m, _ in placed], origin, unlink=False, announce=False)
        # Both sides are durable and consistent in memory: now tell the listeners.
        for msg, headers in added:
            destination._announce(msg, origin, headers)
        if expunged is not None:
            self._publish(expunged)
        return pairs

    def _commit_added(self, placed):
        """Give UIDs to files just linked into this folder; journal them (no events yet)."""
        if not placed:
            return [], []
        pairs = []
        added = []
        records = []
        uid = self.uidnext
        modseq = self.highestmodseq
        for source, rel in placed:
            modseq += 1
            msg = StoredMessage(self, uid, rel, modseq, source.size, source.internaldate, source.keywords)
            records.append(self._record(msg))
            pairs.append((source.uid, uid))
            added.append(msg)
            uid += 1
        self._write(records)
        self.uidnext = uid
        self.highestmodseq = modseq
        for msg in added:
            self._remember(msg)
        self._compact_if_grown()
        self._take_mtimes()
        return pairs, [(m, m.headers()) for m in added]

    def claim_recent(self):
        self.refresh()
        claimed = sorted(self._in_new)
        if not claimed:
            return set()
        records = []
        done = []
        for uid in claimed:
            msg = self._by_uid[uid]
            rel = "cur/" + msg.base + flagsmod.info(msg.system, msg.extra)
            try:
                os.rename(msg.path(), os.path.join(self.path, rel))
            except FileNotFoundError:
                self._dirty = True
                continue
            records.append({"t": "f", "u": uid, "f": rel, "m": msg.modseq, "k": sorted(msg.keywords)})
            done.append((msg, rel))
        fsync_dir(os.path.join(self.path, "new"))
        fsync_dir(os.path.join(self.path, "cur"))
        self._write(records)
        for msg, rel in done:
            self._rename_in_memory(msg, rel, msg.keywords)
        self._compact_if_grown()
        self._take_mtimes()
        return set(m.uid for m, _ in done)

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
    _place(tmp, target, data, msg.internaldate)


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


def remove_folder(path, trash):
    """Delete a Maildir folder: rename it out of sight (atomic), then remove the files."""
    os.rename(path, trash)
    fsync_dir(os.path.dirname(path))
    remove_tree(trash)
