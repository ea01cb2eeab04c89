"""Running a compiled SEARCH over a session's messages without holding the reactor.

A predicate that reads headers or bodies costs tens of microseconds per message: 20,000
messages would hold every session of the server for a second or more. ``scan`` matches
the first messages at once (for at most 10 ms: a small mailbox answers in the same turn,
as before) and the rest in slices of a L{twisted.internet.task.Cooperator} (about 10 ms each), over a
snapshot of the session's UIDs: the view only changes when the command's answer is
sent, and a message another session expunges meanwhile is simply not found.

``finish`` runs what follows the match (SORT's ordering, THREAD's threading and the
answer line, each a generator that yields between steps of a few milliseconds) the
same way: at once for a small answer, in slices for a large one.
"""

import time

from twisted.internet import defer, task

from imapwebpush.constants import DEFAULT_MAX_MIME_PARTS
from imapwebpush.imap.search import NeedsScan, SearchItem

# what is matched in the command's own turn before the rest go to the cooperator: at most
# this many messages, and no longer than this (200 address matches took 120 ms)
INLINE_MESSAGES = 200
INLINE_SECONDS = 0.01
# messages matched between two looks at the cooperator's clock
_SLICE = 10


# A message a SEARCH found is the plain tuple (seq, uid, modseq, key), ``key`` what
# ``keep`` gave: with numbers and a key of strings and numbers in it, the garbage
# collector stops tracking it (never so for a class instance, a namedtuple's included):
# 20,000 matches kept made its full collections, which hold every session, more frequent.


def cooperator(clock):
    """A Cooperator that schedules its slices on ``clock`` (the session's reactor)."""
    return task.Cooperator(scheduler=lambda work: clock.callLater(0, work))


def _matching(view, predicate, found, keep, max_parts=DEFAULT_MAX_MIME_PARTS):
    uids = list(view.uids)
    recent = view.recent
    mailbox = view.mailbox
    for index, u in enumerate(uids):
        if index % _SLICE == 0:
            yield index
        if view.is_ghost(u):
            continue
        try:
            stored = mailbox.message(u)
            item = SearchItem(index + 1, u, stored, u in recent, max_parts)
            item.scans = True
            while True:
                try:
                    matched = predicate(item)
                    break
                except NeedsScan as scan:  # a large message's BODY/TEXT: read a piece per step
                    for _ in scan.steps:
                        yield index
            if not matched:
                continue
            key = None if keep is None else keep(item)  # SORT's keys, read while the message is at hand
        except (KeyError, FileNotFoundError):
            continue  # expunged by another session while the search ran
        found.append((index + 1, u, stored.modseq, key))


def scan(view, predicate, coop, keep=None, max_parts=DEFAULT_MAX_MIME_PARTS):
    """Deferred [(seq, uid, modseq, key)] of the view's messages that ``predicate`` accepts,
    in sequence order.

    ``keep(item)``, when given, is called on each match while it is read; its answer is
    the match's ``key``. ``max_parts``: the session's --max-mime-parts, for the MIME map
    a large message's BODY/TEXT reads its decoded parts through.
    """
    found = []
    work = _matching(view, predicate, found, keep, max_parts)
    return _drive(work, coop, lambda index: index >= INLINE_MESSAGES).addCallback(lambda _: found)


def finish(steps, coop):
    """Deferred of the value the generator ``steps`` returns, run like ``scan``'s matching:
    at once for up to INLINE_SECONDS, the rest in ``coop``'s slices (a slice ends only at a ``yield``)."""
    result = []

    def work():
        result.append((yield from steps))

    return _drive(work(), coop, lambda _: False).addCallback(lambda _: result[0])


def _drive(work, coop, enough_inline):
    """Deferred fired when the generator ``work`` is exhausted: in this turn until
    ``enough_inline(what it yielded)`` or INLINE_SECONDS, then in the cooperator's slices."""
    deadline = time.monotonic() + INLINE_SECONDS
    for step in work:
        if enough_inline(step) or time.monotonic() > deadline:
            return coop.cooperate(work).whenDone()
    return defer.succeed(None)
