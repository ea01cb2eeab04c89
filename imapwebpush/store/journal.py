"""The append-only index journal of one mailbox.

One record per line: ``<crc32 of the JSON, 8 hex digits> <compact JSON>\\n``,
appended and fsynced before the change it describes is announced. Loading
skips any line whose checksum does not match (a line torn by a crash) and
truncates a torn last line, so the next append starts on a fresh line.
``rewrite`` replaces the whole journal atomically (compaction).
"""

import json
import os
import zlib

from twisted.logger import Logger

from imapwebpush.store.fsutil import atomic_write

log = Logger()

JOURNAL_NAME = "imapwebpush-index"


# One encoder for every line: json.dumps with options makes a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(record):
    payload = _JSON.encode(record).encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _payload(line):
    """The JSON of one line (no newline) if its checksum matches, else None."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    payload = line[9:]
    try:
        if int(line[:8], 16) == zlib.crc32(payload):
            return payload
    except ValueError:
        pass
    return None


def _decode(line):
    payload = _payload(line)
    if payload is None:
        return None
    try:
        record = json.loads(payload)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class Journal:
    """The journal file at ``path``."""

    def __init__(self, path):
        self.path = path

    def exists(self):
        return os.path.exists(self.path)

    def load(self):
        """(records, bad) where ``bad`` counts the lines skipped as damaged.

        A torn last line (no newline) is cut off the file; it counts as bad only
        if it was not the tail of an interrupted append.
        """
        with open(self.path, "rb") as f:
            data = f.read()
        records = []
        bad = 0
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warn(
                "cutting a torn last line ({octets} octets) off {path}",
                octets=len(data) - end,
                path=self.path,
            )
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        lines = data[:end].split(b"\n")[:-1]
        payloads = []
        for number, line in enumerate(lines):
            payload = _payload(line)
            if payload is not None:
                payloads.append(payload)
                continue
            log.warn("skipping damaged line {number} of {path}", number=number + 1, path=self.path)
            bad += 1
        try:
            # One parse for the whole file: much faster than one per line.
            decoded = json.loads(b"[" + b",".join(payloads) + b"]")
        except ValueError:
            decoded = []
            for payload in payloads:
                try:
                    decoded.append(json.loads(payload))
                except ValueError:
                    bad += 1
        for record in decoded:
            if isinstance(record, dict):
                records.append(record)
            else:
                bad += 1
        return records, bad

    def first(self):
        """The first record (the state record), or None if unreadable."""
        try:
            with open(self.path, "rb") as f:
                line = f.readline(65536)
        except FileNotFoundError:
            return None
        return _decode(line.rstrip(b"\n"))

    def append(self, records, sync=True):
        """Append records (one write), durably with ``sync`` (one fsync).

        Without it the lines reach the disk with the next synced append or the
        kernel's own writeback: for flag changes, as Dovecot's fsync_mode=optimized.
        """
        if not records:
            return
        blob = b"".join(encode(r) for r in records)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view):]
                if sync:
                    os.fsync(fd)
            except OSError:
                # Disk full or I/O error: never leave half a line for the next
                # append to be glued to.
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise
        finally:
            os.close(fd)

    def rewrite(self, records):
        """Replace the journal with ``records`` atomically."""
        atomic_write(self.path, b"".join(encode(r) for r in records))
