"""The outbound queue: one message file and one state file per accepted message.

Why two files: the message never changes once written, the recipients' state
changes at each attempt. ``ID.msg`` is written and fsynced first, then
``ID.json`` is put in place atomically (and the folder fsynced), so the JSON
file is the commit: a message without its JSON was never acknowledged and is
removed at start; a JSON file always has its message. A recipient is marked
delivered only after the remote ``250``, so a crash in between sends it again,
which SMTP allows (RFC 5321 6.1: a duplicate, never a loss).
"""

import itertools
import json
import os
import time

from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush.durable import atomic_write, fsync_dir, write_pieces
from imapwebpush.interfaces import IOutboundQueue
from imapwebpush.private import make_folders

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

log = Logger()


class QueueFileError(Exception):
    """A state file that cannot be read; the message says which and why."""


class Recipient:
    """One recipient's progress: state, attempts, next try, last answer."""

    __slots__ = ("address", "state", "attempts", "next_attempt", "answer", "remote", "status")

    def __init__(self, address, state=PENDING, attempts=0, next_attempt=0.0, answer="", remote="",
                 status=""):
        self.address = address
        self.status = status  # enhanced status code (RFC 3463) of the last answer
        self.state = state
        self.attempts = attempts
        self.next_attempt = next_attempt
        self.answer = answer  # last SMTP answer or local reason, one line
        self.remote = remote  # the host that gave it

    @property
    def domain(self):
        return self.address.rsplit("@", 1)[1].lower()

    def to_json(self):
        return {
            "address": self.address,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt,
            "answer": self.answer,
            "remote": self.remote,
            "status": self.status,
        }


class QueueEntry:
    """One queued message: its envelope and its recipients' progress."""

    def __init__(self, queue_id, sender, recipients, created, size, delay_notified=False):
        self.id = queue_id
        self.sender = sender
        self.recipients = recipients
        self.created = created
        self.size = size
        self.delay_notified = delay_notified

    def pending(self):
        return [r for r in self.recipients if r.state == PENDING]

    def to_json(self):
        return {
            "id": self.id,
            "sender": self.sender,
            "created": self.created,
            "size": self.size,
            "delay_notified": self.delay_notified,
            "recipients": [r.to_json() for r in self.recipients],
        }

    @classmethod
    def from_json(cls, data):
        recipients = [
            Recipient(
                r["address"], r["state"], int(r["attempts"]), float(r["next_attempt"]),
                r.get("answer", ""), r.get("remote", ""), r.get("status", ""),
            )
            for r in data["recipients"]
        ]
        return cls(
            data["id"], data["sender"], recipients, float(data["created"]), int(data["size"]),
            bool(data.get("delay_notified", False)),
        )


_counter = itertools.count()
COPY_PIECE = 64 * 1024  # octets copied at a time into a message file
DSN_HEADERS = 256 * 1024  # octets of a message's header block a DSN quotes at most


class MessageFile:
    """A queued message on disk: ``size`` and ``open()`` (a new binary file each call)."""

    def __init__(self, path):
        self.path = path
        self.size = os.stat(path).st_size  # OSError when it cannot be read

    def open(self):
        return open(self.path, "rb")


def new_queue_id(now):
    """Sortable by arrival: hex seconds, a counter of this process, then random."""
    return "%09x%04x%s" % (int(now), next(_counter) % 0x10000, os.urandom(3).hex())


@implementer(IOutboundQueue)
class DiskQueue:
    """The queue under one folder (created 0700); loads every entry at start."""

    def __init__(self, path):
        self.path = path
        make_folders(path)
        self._entries = {}
        self._mtimes = {}  # id -> mtime of its state file as we last wrote or read it
        self._load()

    def _file(self, queue_id, ext):
        return os.path.join(self.path, queue_id + ext)

    def _load(self):
        names = set(os.listdir(self.path))
        changed = False
        for name in sorted(names):
            base, ext = os.path.splitext(name)
            full = os.path.join(self.path, name)
            if ".tmp-" in name:
                os.unlink(full)  # an atomic write that did not finish
                changed = True
            elif ext == ".json":
                try:
                    with open(full, "rb") as f:
                        entry = QueueEntry.from_json(json.loads(f.read()))
                except (OSError, ValueError, KeyError, TypeError) as e:
                    raise QueueFileError("unreadable queue file %s: %s" % (full, e))
                if base + ".msg" not in names:
                    raise QueueFileError("queue file %s has no message %s.msg" % (full, base))
                self._entries[entry.id] = entry
                self._mtimes[entry.id] = os.stat(full).st_mtime_ns
            elif ext == ".msg" and base + ".json" not in names:
                # Written before a crash, never acknowledged: the client retries.
                log.info("outbound: removing unacknowledged message {name}", name=name)
                os.unlink(full)
                changed = True
        if changed:
            fsync_dir(self.path)

    def add(self, sender, recipients, data, now=None):
        now = time.time() if now is None else now
        queue_id, size = self.write_message([data], now)
        return self.commit(queue_id, sender, recipients, size, now)

    def write_message(self, parts, now):
        """Write a new message file from ``parts`` (bytes or binary readables, in order), fsynced.

        Touches nothing but that file, so it may run in a thread; returns
        ``(queue_id, size)``. Until L{commit} the message is not queued: a
        restart removes it, as one the client never got a 250 for.
        """
        queue_id = new_queue_id(now)
        path = self._file(queue_id, ".msg")

        def pieces():
            for part in parts:
                if isinstance(part, bytes):
                    yield part
                else:
                    yield from iter(lambda: part.read(COPY_PIECE), b"")

        try:
            size = write_pieces(path, pieces())
        except BaseException:
            if os.path.exists(path):
                os.unlink(path)
            raise
        return queue_id, size

    def commit(self, queue_id, sender, recipients, size, now):
        """Queue the message L{write_message} wrote: its state file (the commit point); the L{QueueEntry}."""
        entry = QueueEntry(queue_id, sender, [Recipient(a, next_attempt=now) for a in recipients], now, size)
        try:
            atomic_write(self._file(queue_id, ".json"), self._encode(entry))
        except BaseException:
            os.unlink(self._file(queue_id, ".msg"))
            raise
        self._entries[queue_id] = entry
        self._mtimes[queue_id] = os.stat(self._file(queue_id, ".json")).st_mtime_ns
        return entry

    @staticmethod
    def _encode(entry):
        return json.dumps(entry.to_json(), sort_keys=True).encode("utf-8")

    def entries(self):
        return sorted(self._entries.values(), key=lambda e: (e.created, e.id))

    def get(self, queue_id):
        return self._entries[queue_id]

    def save(self, entry):
        if entry.id not in self._entries:
            raise KeyError(entry.id)
        atomic_write(self._file(entry.id, ".json"), self._encode(entry))
        self._mtimes[entry.id] = os.stat(self._file(entry.id, ".json")).st_mtime_ns

    def refresh(self, busy=()):
        """Take in what the admin command changed: entries retried or deleted meanwhile.

        Entries whose id is in ``busy`` (being delivered) are left as they are.
        Returns True when something changed.
        """
        changed = False
        for queue_id in list(self._entries):
            if queue_id in busy:
                continue
            path = self._file(queue_id, ".json")
            try:
                mtime = os.stat(path).st_mtime_ns
                if mtime == self._mtimes.get(queue_id):
                    continue
                with open(path, "rb") as f:
                    self._entries[queue_id] = QueueEntry.from_json(json.loads(f.read()))
                self._mtimes[queue_id] = mtime
            except FileNotFoundError:
                del self._entries[queue_id]  # deleted with 'imapwebpush queue delete'
                self._mtimes.pop(queue_id, None)
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.error("outbound: cannot reread {path}: {error}", path=path, error=e)
                continue
            changed = True
        return changed

    def read_message(self, queue_id):
        with open(self._file(queue_id, ".msg"), "rb") as f:
            return f.read()

    def message_file(self, queue_id):
        """The L{MessageFile} of the message, to send it as a stream; OSError when unreadable."""
        return MessageFile(self._file(queue_id, ".msg"))

    def read_headers(self, queue_id, limit=DSN_HEADERS):
        """The message's header block (whole lines, at most ``limit`` octets), for a DSN."""
        lines, size = [], 0
        with open(self._file(queue_id, ".msg"), "rb") as f:
            for line in iter(lambda: f.readline(limit), b""):
                if size + len(line) > limit:
                    break
                lines.append(line)
                size += len(line)
                if line in (b"\r\n", b"\n"):
                    break
        return b"".join(lines)

    def remove(self, queue_id):
        del self._entries[queue_id]
        self._mtimes.pop(queue_id, None)
        os.unlink(self._file(queue_id, ".json"))  # the commit point first
        os.unlink(self._file(queue_id, ".msg"))
        fsync_dir(self.path)
