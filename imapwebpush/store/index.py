"""The in-memory index of one mailbox, kept in step with its journal.

It holds what IMAP asks of a mailbox without touching the disk: the messages
by UID (and by Maildir base name, to match renamed files), which of them are in
new/, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, and the expunge history (tombstones)
that QRESYNC's VANISHED is told from. It is loaded once from the journal
(``journal.py``); afterwards every change appends its lines first (``write``)
and only then changes memory, so memory never holds what a restart would not
find. A journal grown to twice the messages is rewritten from memory.
"""

import bisect
import os

from twisted.logger import Logger

from imapwebpush.store import flags as flagsmod
from imapwebpush.store.fsutil import name_time
from imapwebpush.store.journal import JOURNAL_NAME, Journal
from imapwebpush.store.message import StoredMessage
from imapwebpush.wire import ranges_of

log = Logger()

# Expunged UIDs remembered per mailbox (QRESYNC's VANISHED (EARLIER)); when a
# compaction drops older ones the history floor rises and clients asking from
# before it are told every missing UID instead (RFC 7162 3.2.5.1 allows that).
VANISHED_HISTORY = 10000


def record_of(msg, kind="a"):
    """The journal line of ``msg``: 'a' (added, with size, date and save date) or 'f' (file changed)."""
    record = {"t": kind, "u": msg.uid, "f": msg.filename, "m": msg.modseq}
    if kind == "a":
        record["s"] = msg.size
        record["d"] = msg.internaldate
        if msg.saved is not None:
            record["w"] = msg.saved
    if msg.keywords:
        record["k"] = sorted(msg.keywords)
    return record


class MessageIndex:
    """The messages, counters and tombstones of the mailbox ``mailbox`` (folder ``path``).

    ``by_uid``, ``by_base``, ``uids`` (sorted), ``in_new``, ``fresh``, ``unseen`` and
    ``deleted`` are read by the mailbox and the scan; they change only through the methods below.
    """

    def __init__(self, mailbox, path, header_cache):
        self._mailbox = mailbox
        self._headers = header_cache
        self.journal = Journal(os.path.join(path, JOURNAL_NAME))
        self.by_uid = {}
        self.by_base = {}
        self.uids = []
        self.in_new = set()
        # Messages this process stored in cur/ (APPEND or COPY with flags) that no session
        # has claimed yet: \Recent as much as those in new/ (RFC 3501 6.4.7), memory only.
        self.fresh = set()
        # UIDs without \Seen and with \Deleted, kept as flags change: STATUS UNSEEN and
        # EXPUNGE read them instead of looking at every message.
        self.unseen = set()
        self.deleted = set()
        self._records = 0  # lines in the journal
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = 1
        # Tombstones of expunged messages, oldest first: parallel lists of the
        # expunge's modseq and the sorted UIDs it removed.
        self._tomb_modseqs = []
        self._tomb_uids = []
        self._tomb_count = 0
        self.vanished_floor = 1

    def moved(self, path):
        """The folder was renamed to ``path``."""
        self.journal.path = os.path.join(path, JOURNAL_NAME)

    # -- loading --------------------------------------------------------

    def load(self, new_uidvalidity):
        """Read the journal into memory; a new or damaged one gets a new UIDVALIDITY."""
        if self.journal.exists():
            records, bad = self.journal.load()
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
            self.uidvalidity = new_uidvalidity()
            # Clients resynchronise from scratch: old tombstones mean nothing.
            self._tomb_modseqs, self._tomb_uids, self._tomb_count = [], [], 0
            self.vanished_floor = self.highestmodseq
            if old:
                log.warn(
                    "{mailbox}: damaged index, new UIDVALIDITY {new} (was {old})",
                    mailbox=self._mailbox.name,
                    new=self.uidvalidity,
                    old=old,
                )
            self._compact()

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
            elif kind == "g":
                for modseq, uids in r["x"]:
                    self._bury(int(modseq), [int(u) for u in uids])
            elif kind == "v":
                self.uidvalidity = int(r["v"])
            elif kind == "a":
                return self._apply_added(r)
            elif kind == "f":
                msg = self.by_uid.get(int(r["u"]))
                if msg is not None:
                    self.rename(msg, r["f"], r.get("k", ()))
                    msg.modseq = int(r["m"])
            elif kind == "x":
                self.forget([self.by_uid[u] for u in r["u"] if u in self.by_uid])
                self._bury(int(r["m"]), sorted(int(u) for u in r["u"]))
        except (KeyError, TypeError, ValueError):
            log.warn(
                "{mailbox}: ignoring malformed index record {record!r}",
                mailbox=self._mailbox.name,
                record=r,
            )
        return 0

    def _apply_added(self, r):
        uid = int(r["u"])
        old = self.by_uid.get(uid)
        if old is not None:
            self.forget([old])
        saved = r.get("w")
        # a line written before save dates: the time our own file names begin with, if it has one
        saved = float(saved) if saved is not None else name_time(r["f"])
        self.remember(self.make(uid, r["f"], int(r["m"]), int(r["s"]), float(r["d"]), r.get("k", ()), saved))
        return uid

    # -- messages -------------------------------------------------------

    def make(self, uid, filename, modseq, size, internaldate, keywords, saved=None):
        """A message of this mailbox, not yet remembered; ``saved``: when it was saved here."""
        return StoredMessage(self._mailbox, uid, filename, modseq, size, internaldate, keywords, saved)

    def remember(self, msg):
        self.by_uid[msg.uid] = msg
        self.by_base[msg.base] = msg
        if self.uids and msg.uid < self.uids[-1]:
            self.uids.append(msg.uid)
            self.uids.sort()
        else:
            self.uids.append(msg.uid)
        if msg.recent:
            self.in_new.add(msg.uid)
        self._note_flags(msg)

    def _note_flags(self, msg):
        """Keep ``unseen`` and ``deleted`` in step with ``msg``'s system flags."""
        if flagsmod.SEEN in msg.system:
            self.unseen.discard(msg.uid)
        else:
            self.unseen.add(msg.uid)
        if flagsmod.DELETED in msg.system:
            self.deleted.add(msg.uid)
        else:
            self.deleted.discard(msg.uid)

    def _unindex(self, msg):
        """Drop ``msg`` from every index but the sorted ``uids`` list."""
        self._headers.drop(msg.uid)
        self.by_uid.pop(msg.uid, None)
        if self.by_base.get(msg.base) is msg:
            del self.by_base[msg.base]
        self.in_new.discard(msg.uid)
        self.fresh.discard(msg.uid)
        self.unseen.discard(msg.uid)
        self.deleted.discard(msg.uid)

    def forget(self, msgs):
        """Drop expunged messages from memory."""
        if not msgs:
            return
        for msg in msgs:
            self._unindex(msg)
        uids = self.uids
        if len(msgs) > 16:
            self.uids = [u for u in uids if u in self.by_uid]
            return
        for msg in msgs:  # a few: found by bisection, not by a pass over every UID
            i = bisect.bisect_left(uids, msg.uid)
            if i < len(uids) and uids[i] == msg.uid and msg.uid not in self.by_uid:
                del uids[i]

    def rename(self, msg, filename, keywords, modseq=None):
        """``msg`` now has file ``filename`` and ``keywords`` (and ``modseq`` when given)."""
        if self.by_base.get(msg.base) is msg:
            del self.by_base[msg.base]
        msg.set_file(filename, keywords)
        if modseq is not None:
            msg.modseq = modseq
        self.by_base[msg.base] = msg
        if msg.recent:
            self.in_new.add(msg.uid)
        else:
            self.in_new.discard(msg.uid)
        self._note_flags(msg)

    def unique_bases(self):
        """False when two UIDs name one file (a damaged index)."""
        return len(self.by_base) == len(self.by_uid)

    # -- counters and tombstones -----------------------------------------

    def advance(self, uidnext=None, modseq=None):
        """Move UIDNEXT and HIGHESTMODSEQ, once the journal holds the change."""
        if uidnext is not None:
            self.uidnext = uidnext
        if modseq is not None:
            self.highestmodseq = modseq

    def expunged(self, msgs, uids, modseq):
        """``msgs`` (their sorted ``uids``) were expunged at ``modseq``: forget them, keep a tombstone."""
        self.forget(msgs)
        self._bury(modseq, uids)

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

    def vanished_ranges(self, modseq):
        """Expunged since ``modseq`` as sorted, disjoint ``(first, last)`` UID ranges.

        Exact when ``modseq >= vanished_floor``; from before the floor (the
        history was trimmed) every UID below UIDNEXT that is not here, which
        RFC 7162 3.2.5.1 allows. Ranges keep that answer small.
        """
        if modseq < self.vanished_floor:
            return self._gaps()
        i = bisect.bisect_right(self._tomb_modseqs, modseq)
        return ranges_of(u for group in self._tomb_uids[i:] for u in group)

    def _gaps(self):
        """Every UID below UIDNEXT that is not here, as ranges."""
        out = []
        expected = 1
        for uid in self.uids:
            if uid > expected:
                out.append((expected, uid - 1))
            expected = uid + 1
        if expected < self.uidnext:
            out.append((expected, self.uidnext - 1))
        return out

    # -- the journal ------------------------------------------------------

    def write(self, records, sync=True):
        """Append records to the journal (``sync``: fsynced); memory changes only after this returns."""
        self.journal.append(records, sync)
        self._records += len(records)

    def compact_if_grown(self):
        """Rewrite a grown journal from memory; call it once memory holds every change
        written (a snapshot taken earlier would drop the newest lines)."""
        if self._records > 2 * len(self.uids) + 256:
            self._compact()

    def _compact(self):
        self._trim_tombstones()
        records = [
            {
                "t": "s",
                "v": self.uidvalidity,
                "n": self.uidnext,
                "m": self.highestmodseq,
                "h": self.vanished_floor,
            }
        ]
        if self._tomb_modseqs:
            records.append(
                {"t": "g", "x": [[m, u] for m, u in zip(self._tomb_modseqs, self._tomb_uids)]}
            )
        records.extend(record_of(self.by_uid[uid]) for uid in self.uids)
        self.journal.rewrite(records)
        self._records = len(records)
