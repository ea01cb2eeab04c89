"""Noticing what other tools do to a Maildir folder: files they drop into new/
or cur/, rename (their flags changed) or remove.

``FolderWatch`` remembers the mtimes of new/ and cur/, so a look costs two
``stat`` calls, and tells which of them must be listed again: the ones whose
mtime moved, and once more one changed less than ``MTIME_TRUST`` seconds
before our look (a timestamp tick may hide a second change, as Dovecot knows).
``find`` lists those directories and compares them with the index;
``reconcile`` turns the differences into journal lines and adopted messages
without touching memory, so the mailbox makes them durable before it applies
them. A file without a journal line gets a fresh UID (after its bare LF line
ends became CRLF), a journal line whose file is gone is expunged, a renamed
file is matched by its base name (the part before ':').
"""

import os
import time
from dataclasses import dataclass, field

from imapwebpush.store import flags as flagsmod
from imapwebpush.store.fsutil import fsync_dir, place_file, unique_name
from imapwebpush.store.index import record_of
from imapwebpush.store.message import to_crlf

# A directory mtime this close to the wall clock may hide a later change made
# within the same timestamp tick; such a snapshot is checked once more by a
# scan when it has aged.
MTIME_TRUST = 2.0

SUBS = ("new", "cur")


class FolderWatch:
    """The mtimes of new/ and cur/ of the folder ``path`` at our last look.

    ``gone`` is called when they are missing (the folder was deleted); it raises.
    """

    def __init__(self, path, gone):
        self.path = path
        self._gone = gone
        self._mtimes = None  # (new/, cur/) mtimes in ns at our last look
        self._trusted = (False, False)
        self.dirty = False  # something vanished under us: list both at the next look

    @property
    def looked(self):
        """True once the mtimes were taken (the folder was listed)."""
        return self._mtimes is not None

    @property
    def path(self):
        return self._path

    @path.setter
    def path(self, path):
        # joined once: every command that reads the mailbox looks at both (a rename sets it)
        self._path = path
        self._subdirs = (os.path.join(path, "new"), os.path.join(path, "cur"))

    def _stat(self):
        new, cur = self._subdirs
        try:
            return (os.stat(new).st_mtime_ns, os.stat(cur).st_mtime_ns)
        except FileNotFoundError:
            self._gone()
            raise

    def take(self, subs=SUBS):
        """Remember the mtimes of ``subs`` (their contents are known to memory now)."""
        now = self._stat()
        if self._mtimes is None:
            subs = SUBS
        # Wall clock on purpose: it is compared with file-system timestamps.
        wall = time.time()
        mtimes = list(self._mtimes or now)
        trusted = list(self._trusted)
        for i, sub in enumerate(SUBS):
            if sub in subs:
                # A snapshot once trusted stays so while the mtime stands still.
                trusted[i] = (trusted[i] and mtimes[i] == now[i]) or (
                    wall - now[i] / 1e9 > MTIME_TRUST
                )
                mtimes[i] = now[i]
        self._mtimes = tuple(mtimes)
        self._trusted = tuple(trusted)

    def changed(self):
        """The sub-folders (of new, cur) whose listing may differ from memory."""
        if self._mtimes is None or self.dirty:
            return SUBS
        now = self._stat()
        wall = time.time()
        return tuple(
            sub
            for i, sub in enumerate(SUBS)
            if now[i] != self._mtimes[i]
            or (not self._trusted[i] and wall - now[i] / 1e9 > MTIME_TRUST)
        )

    def moved(self):
        """True when new/ or cur/ changed since our last look."""
        return self._mtimes is not None and self._stat() != self._mtimes


@dataclass
class Differences:
    """What a listing found that the index does not say."""

    gone: list  # messages whose file is gone
    moved: list  # (message, its file's new name)
    found: dict  # base name -> 'new/...' or 'cur/...' of files without a message

    def __bool__(self):
        return bool(self.gone or self.moved or self.found)


@dataclass
class Reconciliation:
    """The journal lines of a scan and what memory becomes once they are written."""

    uidnext: int
    modseq: int  # the new HIGHESTMODSEQ
    gone: list
    records: list = field(default_factory=list)
    renames: list = field(default_factory=list)  # (message, file name, modseq, flags changed)
    expunged: list = field(default_factory=list)  # sorted UIDs of ``gone``
    expunged_at: int = None
    added: list = field(default_factory=list)  # adopted messages, not yet remembered


def find(index, path, clock, subs):
    """The L{Differences} between ``subs`` of the folder ``path`` and ``index``.

    None when a file of a listed sub-folder has the base name of a message in
    one not listed: the caller lists both instead, which decides who keeps the UID.
    """
    found = _listing(path, clock, subs)
    if subs != SUBS:
        for base in found:
            msg = index.by_base.get(base)
            if msg is not None and msg.filename[:3] not in subs:
                return None
        if subs == ("new",):
            known = [index.by_uid[u] for u in index.in_new]
        else:
            known = [m for m in index.by_uid.values() if m.filename[:3] in subs]
    else:
        known = list(index.by_base.values())
    gone = []
    moved = []
    for msg in known:
        rel = found.pop(msg.base, None)
        if rel is None:
            gone.append(msg)
        elif rel != msg.filename:
            moved.append((msg, rel))
    if not index.unique_bases():
        # Two UIDs named the same file (a damaged index): keep one.
        gone_ids = set(id(m) for m in gone)
        for msg in list(index.by_uid.values()):
            if index.by_base.get(msg.base) is not msg and id(msg) not in gone_ids:
                gone.append(msg)
    return Differences(gone, moved, found)


def _listing(path, clock, subs):
    """{base name: 'new/<entry>' or 'cur/<entry>'} of the files in ``subs``."""
    found = {}
    for sub in subs:
        for entry in os.listdir(os.path.join(path, sub)):
            if entry.startswith("."):
                continue
            rel = sub + "/" + entry
            base = entry.partition(":")[0]
            if base in found:
                rel = _rename_duplicate(path, clock, sub, entry)
                if rel is None:
                    continue
                base = rel[4:].partition(":")[0]
            found[base] = rel
    return found


def _rename_duplicate(path, clock, sub, entry):
    """Give a second file with an already seen base name a base of its own."""
    base, sep, info = entry.partition(":")
    fresh = unique_name(clock.seconds(), 0).rsplit(",S=", 1)[0]
    fresh += "-" + flagsmod.without_size(base)[:40].replace(":", "")
    target = fresh + sep + info
    try:
        os.rename(os.path.join(path, sub, entry), os.path.join(path, sub, target))
    except OSError:
        return None
    return sub + "/" + target


def reconcile(index, path, differences):
    """The L{Reconciliation} of ``differences``; files found are adopted
    (rewritten with CRLF when needed) but memory is not touched."""
    out = Reconciliation(index.uidnext, index.highestmodseq, differences.gone)
    _renamed(out, differences.moved)
    if out.gone:
        out.modseq += 1
        out.expunged_at = out.modseq
        out.expunged = sorted(m.uid for m in out.gone)
        out.records.append({"t": "x", "u": out.expunged, "m": out.modseq})
    for _, rel in sorted(differences.found.items(), key=lambda item: _age(path, item[1])):
        msg = _adopt(index, path, rel, out.uidnext, out.modseq + 1)
        if msg is not None:
            out.uidnext += 1
            out.modseq += 1
            out.added.append(msg)
            out.records.append(record_of(msg))
    return out


def _renamed(out, moved):
    """Journal lines for renamed files; one new modseq for those whose flags changed."""
    flag_modseq = None
    for msg, rel in moved:
        _, system, _ = flagsmod.parse_name(rel[4:])
        msg_modseq = msg.modseq
        if system != msg.system:
            if flag_modseq is None:
                out.modseq += 1
                flag_modseq = out.modseq
            msg_modseq = flag_modseq
        record = {"t": "f", "u": msg.uid, "f": rel, "m": msg_modseq}
        if msg.keywords:
            record["k"] = sorted(msg.keywords)
        out.records.append(record)
        out.renames.append((msg, rel, msg_modseq, system != msg.system))


def _age(path, rel):
    try:
        return (os.stat(os.path.join(path, rel)).st_mtime, rel)
    except OSError:
        return (0, rel)


def _adopt(index, path, rel, uid, modseq):
    """A message for a file found on disk, to get ``uid`` (not yet remembered);
    None if the file vanished."""
    full = os.path.join(path, rel)
    try:
        with open(full, "rb") as f:
            data = f.read()
        stat = os.stat(full)
    except FileNotFoundError:
        return None
    fixed = to_crlf(data)
    if fixed != data:
        # Other tools write LF; we promise CRLF. Rewrite before the UID is given.
        rel = _rewrite(path, rel, fixed, stat.st_mtime)
        data = fixed
    # saved into the folder when it was last renamed or written (a delivery agent's
    # rename, or an "mv" from another folder): its ctime
    return index.make(uid, rel, modseq, len(data), stat.st_mtime, (), stat.st_ctime)


def _rewrite(path, rel, data, mtime):
    """Replace the file ``rel`` with ``data`` (its ',S=' size corrected); its new name."""
    sub, entry = rel.split("/", 1)
    base, sep, info = entry.partition(":")
    new_entry = "%s,S=%d%s%s" % (flagsmod.without_size(base), len(data), sep, info)
    tmp = os.path.join(path, "tmp", new_entry.partition(":")[0])
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    place_file(tmp, os.path.join(path, sub, new_entry), data, mtime)
    if new_entry != entry:
        os.unlink(os.path.join(path, rel))
    fsync_dir(os.path.join(path, sub))
    return sub + "/" + new_entry
