"""The concurrent workload of imap_vs_dovecot.py: mail clients sharing one mailbox.

``SESSIONS`` persistent sessions, each in its own process (so the client side is never
what limits the server), all LOGIN and SELECT INBOX once, then issue commands as mail
clients do on a shared mailbox until the time is up: FETCH of flags and bodies, STORE,
APPEND, EXPUNGE (STORE \\Deleted then EXPUNGE), LIST, STATUS and NOOP. Each session keeps
its own count of messages from what the server tells it (EXISTS, EXPUNGE), so the
sequence numbers it sends are the ones a correct client would send, while the others
change the mailbox under it.

Counted per server: commands answered per second (all sessions together) and protocol
errors (every tagged NO or BAD), with the first few of them for the report.
"""

import multiprocessing
import random
import re
import time

import _harness

SESSIONS = 10

_EXISTS = re.compile(rb"^\* (\d+) EXISTS\r\n")
_EXPUNGE = re.compile(rb"^\* (\d+) EXPUNGE\r\n")


class _Session:
    """One client: its connection and the number of messages it knows of."""

    def __init__(self, port, user, password):
        self.conn = _harness.IMAPConn("127.0.0.1", port)
        self.conn.login(user, password)
        self.exists = 0
        self.commands = 0
        self.errors = []
        self.run(b"SELECT INBOX")

    def run(self, text, literal=None):
        """Send one command (``literal``: APPEND's message, sent as a LITERAL+); track EXISTS."""
        conn = self.conn
        conn.n += 1
        tag = b"c%d" % conn.n
        if literal is None:
            conn.send(tag + b" " + text + b"\r\n")
        else:
            conn.send(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        prefix = tag + b" "
        while True:
            r = conn.read()
            if r.startswith(prefix):
                break
            m = _EXISTS.match(r)
            if m:
                self.exists = int(m.group(1))
                continue
            if _EXPUNGE.match(r):
                self.exists -= 1
        self.commands += 1
        if not r[len(prefix):].startswith(b"OK"):
            self.errors.append((text[:40] + b" -> " + r.strip()[:100]).decode("ascii", "replace"))
        return r

    def seq(self, rnd):
        return rnd.randint(1, self.exists) if self.exists else None


def _one_step(s, rnd, message):
    """One client action (one or two commands), chosen as a mail client's mix."""
    roll = rnd.random()
    n = s.seq(rnd)
    if n is None or roll < 0.08:
        s.run(b"APPEND INBOX (\\Seen)", literal=message)
    elif roll < 0.30:
        lo = max(1, n - 9)
        s.run(b"FETCH %d:%d (UID FLAGS RFC822.SIZE)" % (lo, n))
    elif roll < 0.42:
        s.run(b"FETCH %d BODY.PEEK[]" % n)
    elif roll < 0.52:
        s.run(b"FETCH %d (ENVELOPE BODYSTRUCTURE)" % n)
    elif roll < 0.70:
        s.run(b"STORE %d %sFLAGS (\\Seen)" % (n, rnd.choice((b"+", b"-"))))
    elif roll < 0.76:
        s.run(b"STORE %d +FLAGS.SILENT (\\Deleted)" % n)
        s.run(b"EXPUNGE")
    elif roll < 0.82:
        s.run(b'LIST "" "*"')
    elif roll < 0.90:
        s.run(b"STATUS INBOX (MESSAGES UNSEEN UIDNEXT)")
    else:
        s.run(b"NOOP")


def _session_main(args):
    port, user, password, seconds, seed, start_at, message = args
    rnd = random.Random(seed)
    s = _Session(port, user, password)
    while time.time() < start_at:  # every session starts at once
        time.sleep(0.001)
    end = start_at + seconds
    while time.time() < end:
        _one_step(s, rnd, message)
    try:
        s.conn.logout()
    except _harness.ProtocolError:
        pass
    return s.commands, s.errors


def run(port, user, password, seconds, seed, message, sessions=SESSIONS):
    """``{"n": commands, "elapsed": seconds, "errors": count, "samples": [first errors]}``."""
    ctx = multiprocessing.get_context("fork")
    start_at = time.time() + 1.0 + 0.05 * sessions  # time for every session to log in
    jobs = [(port, user, password, seconds, seed * 100 + i, start_at, message) for i in range(sessions)]
    with ctx.Pool(sessions) as pool:
        results = pool.map(_session_main, jobs)
    errors = [e for _, errs in results for e in errs]
    return {
        "n": sum(n for n, _ in results),
        "elapsed": seconds,
        "errors": len(errors),
        "samples": errors[:5],
    }
