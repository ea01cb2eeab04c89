"""QRESYNC (RFC 7162 3.2) without the wire: parsing its parameters, UID ranges, and
which UIDs a resynchronising client must be told are gone.

Pure functions over bytes and lists, so the server only glues them to a session.
UID sets are lists of disjoint, ascending ``(first, last)`` ranges ("ranges"), the
form ``Mailbox.vanished_ranges`` answers in, so "every UID but these" over a
mailbox with a large UIDNEXT stays small.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

from imapwebpush import wire
from imapwebpush.wire import Ranges, at_least, count, intersect, normalize, render

# UIDs are 32-bit (RFC 3501 nz-number, wire.MAX_NUMBER); mod-sequences 63-bit (RFC 7162 7).
_MAX_MODSEQ = 2**63 - 1

# Ranges per VANISHED response: keeps each line a few KiB at most.
RANGES_PER_LINE = 500


class QresyncError(ValueError):
    """The client's QRESYNC syntax is wrong: the answer is BAD with this text."""


@dataclass(frozen=True)
class QresyncParams:
    """``QRESYNC (uidvalidity modseq [known-uids] [(seq-set uid-set)])`` of SELECT."""

    uidvalidity: int
    modseq: int
    known_uids: Optional[Ranges] = None
    seq_match: Optional[Tuple[Ranges, Ranges]] = None


# -- ranges ------------------------------------------------------------------
# The range algebra lives in imapwebpush.wire (the push payloads use it too).


def chunks(ranges, size=RANGES_PER_LINE):
    """``ranges`` cut into lists of at most ``size`` ranges (one VANISHED each)."""
    return [ranges[i : i + size] for i in range(0, len(ranges), size)]


# -- parsing ---------------------------------------------------------------------


def _number(token, what, limit=wire.MAX_NUMBER, zero=False):
    if not token.isdigit() or (token.startswith(b"0") and token != b"0"):
        raise QresyncError("%s must be a number" % (what,))
    value = int(token)
    if value > limit or (value == 0 and not zero):
        raise QresyncError("%s out of range" % (what,))
    return value


def parse_set(token, what="UID set"):
    """The ranges of a sequence-set as written (``*`` refused), or QresyncError."""
    if isinstance(token, str):
        token = token.encode("ascii", "replace")
    if not token:
        raise QresyncError("empty %s" % (what,))
    try:
        pairs = wire.parse_sequence_set(token)
    except wire.ParseError:
        raise QresyncError("bad %s" % (what,))
    if any(lo is None or hi is None for lo, hi in pairs):
        raise QresyncError("* is not allowed in a %s" % (what,))
    return pairs


def _tokens(text):
    """Atoms and nested lists of a parenthesised parameter list (no strings in QRESYNC)."""
    stack = [[]]
    atom = b""
    for ch in text:
        c = bytes((ch,))
        if c in b"() ":
            if atom:
                stack[-1].append(atom)
                atom = b""
            if c == b"(":
                stack.append([])
            elif c == b")":
                if len(stack) == 1:
                    raise QresyncError("unbalanced parentheses")
                inner = stack.pop()
                stack[-1].append(inner)
        elif c in b'"{\\\r\n' or ch < 0x20 or ch > 0x7E:
            raise QresyncError("unexpected %r in parameters" % (c.decode("latin-1"),))
        else:
            atom += c
    if atom:
        stack[-1].append(atom)
    if len(stack) != 1:
        raise QresyncError("unbalanced parentheses")
    return stack[0]


def _parenthesised(text, not_a_list, malformed):
    """The items of one non-empty parenthesised list, None for empty text, else QresyncError."""
    text = text.strip()
    if not text:
        return None
    if not (text.startswith(b"(") and text.endswith(b")")):
        raise QresyncError(not_a_list)
    tokens = _tokens(text)
    if len(tokens) != 1 or not isinstance(tokens[0], list) or not tokens[0]:
        raise QresyncError(malformed)
    return tokens[0]


def parse_select_params(text):
    """``(condstore, qresync)`` of the optional parameter list of SELECT/EXAMINE.

    ``text`` is what follows the mailbox name, e.g. ``(CONDSTORE)`` or
    ``(QRESYNC (67890007 90060115194045000 41:211,214:541))``; empty gives
    ``(False, None)``. ``qresync`` is a L{QresyncParams} or None. Raises
    L{QresyncError} for anything else.
    """
    items = _parenthesised(text, "SELECT parameters must be a parenthesised list",
                           "malformed SELECT parameters")
    if items is None:
        return False, None
    condstore = False
    qresync = None
    i = 0
    while i < len(items):
        item = items[i]
        name = item.upper() if isinstance(item, bytes) else None
        if name == b"CONDSTORE" and not condstore:
            condstore = True
            i += 1
        elif name == b"QRESYNC" and qresync is None:
            if i + 1 >= len(items) or not isinstance(items[i + 1], list):
                raise QresyncError("QRESYNC needs a parenthesised list")
            qresync = _qresync_params(items[i + 1])
            i += 2
        else:
            raise QresyncError("Unknown SELECT parameter")
    return condstore, qresync


def _qresync_params(values):
    if len(values) < 2 or len(values) > 4:
        raise QresyncError("QRESYNC takes uidvalidity, modseq, known UIDs and match data")
    if not all(isinstance(v, bytes) for v in values[:2]):
        raise QresyncError("QRESYNC uidvalidity and modseq must be numbers")
    uidvalidity = _number(values[0], "UIDVALIDITY")
    modseq = _number(values[1], "mod-sequence", limit=_MAX_MODSEQ)
    known = None
    match = None
    rest = values[2:]
    if rest and isinstance(rest[0], bytes):
        known = normalize(parse_set(rest[0], "known-uids"))
        rest = rest[1:]
    if rest:
        pair = rest[0]
        if len(rest) != 1 or not isinstance(pair, list) or len(pair) != 2:
            raise QresyncError("sequence match data must be (known-sequence-set known-uid-set)")
        if not all(isinstance(v, bytes) for v in pair):
            raise QresyncError("sequence match data must be two sets")
        seqs = parse_set(pair[0], "known-sequence-set")
        uids = parse_set(pair[1], "known-uid-set")
        if count(seqs) != count(uids):
            raise QresyncError("known-sequence-set and known-uid-set differ in size")
        if not (_ascending(seqs) and _ascending(uids)):
            raise QresyncError("sequence match data must be in ascending order")
        match = (seqs, uids)
    return QresyncParams(uidvalidity, modseq, known, match)


def _ascending(pairs):
    last = 0
    for lo, hi in pairs:
        if lo <= last or hi < lo:
            return False
        last = hi
    return True


def parse_fetch_modifiers(text):
    """``(changedsince, vanished)`` of FETCH modifiers like ``(CHANGEDSINCE 12 VANISHED)``.

    ``text`` is the modifier list with its parentheses (or empty: ``(None, False)``).
    VANISHED without CHANGEDSINCE is refused (RFC 7162 3.2.6).
    """
    items = _parenthesised(text, "Malformed FETCH modifiers", "Malformed FETCH modifiers")
    if items is None:
        return None, False
    changedsince = None
    vanished = False
    i = 0
    while i < len(items):
        item = items[i]
        name = item.upper() if isinstance(item, bytes) else None
        if name == b"CHANGEDSINCE" and changedsince is None:
            if i + 1 >= len(items) or not isinstance(items[i + 1], bytes):
                raise QresyncError("CHANGEDSINCE needs a mod-sequence")
            changedsince = _number(items[i + 1], "mod-sequence", limit=_MAX_MODSEQ, zero=True)
            i += 2
        elif name == b"VANISHED" and not vanished:
            vanished = True
            i += 1
        else:
            raise QresyncError("Unknown FETCH modifier")
    if vanished and changedsince is None:
        raise QresyncError("VANISHED needs CHANGEDSINCE")
    return changedsince, vanished


# -- what to tell ------------------------------------------------------------------


def seq_match_floor(seq_match, uids):
    """Lowest UID whose expunge the client may not know, from its sample of
    (sequence number, UID) pairs and the mailbox's sorted ``uids`` now.

    A pair that still matches means the client's messages below that UID are
    still all there (new messages only get higher UIDs), so nothing below or at
    it needs reporting (RFC 7162 3.2.5.2). Pairs are checked in order and the
    walk stops at the first sequence number beyond the mailbox or first mismatch.
    """
    if not seq_match:
        return 1
    seqs, known = seq_match
    floor = 1
    seq_iter = (s for lo, hi in seqs for s in range(lo, hi + 1))
    uid_iter = (u for lo, hi in known for u in range(lo, hi + 1))
    for seq, uid in zip(seq_iter, uid_iter):
        if seq > len(uids) or uids[seq - 1] != uid:
            break
        floor = uid + 1
    return floor


def select_vanished(params, mailbox, uids):
    """Ranges for ``* VANISHED (EARLIER)`` after SELECT/EXAMINE with QRESYNC.

    ``mailbox`` answers ``vanished_ranges``/``vanished_floor``; ``uids`` are its
    sorted UIDs now. Only UIDs of ``known_uids`` are told when the client gave them.
    """
    gone = mailbox.vanished_ranges(params.modseq)
    if params.modseq < mailbox.vanished_floor:
        # No exact history: every missing UID, cut down by the client's sample.
        gone = at_least(gone, seq_match_floor(params.seq_match, uids))
    if params.known_uids is not None:
        gone = intersect(gone, params.known_uids)
    return gone


def changed_uids(params, mailbox):
    """UIDs (sorted) whose modseq is above ``params.modseq``, within ``known_uids``."""
    changed = mailbox.changed_since(params.modseq)
    known = params.known_uids
    if known is None:
        return changed
    return [u for u in changed if wire.contains(known, u)]


def vanished_lines(ranges, earlier=False):
    """The ``VANISHED`` responses (bytes, no ``* `` and no CRLF) telling ``ranges``."""
    head = b"VANISHED (EARLIER) " if earlier else b"VANISHED "
    return [head + render(part).encode("ascii") for part in chunks(ranges)]
