"""Push payloads: IMAP untagged responses that fit one Web Push body (SPEC 5.1-5.4).

Pure functions, no I/O: ``render`` takes what happened, grouped by mailbox
(``Section``s of items), and a byte budget, and returns the ``Push`` bodies.

The rules it keeps:

* every body is UTF-8, at most ``budget`` octets counted with every CRLF
  (``limits.MAX_PLAINTEXT`` by default; a 413 retries with a smaller one);
* a response is never split across bodies, and a body is self-contained: it
  repeats ``* SELECT "mbox"`` before the responses about that mailbox;
* a string is never cut inside a UTF-8 sequence or an escape: an ENVELOPE too
  big for a body on its own gets its strings capped before quoting;
* when everything does not fit, in this order (SPEC 5.4): drop the ENVELOPE
  of the oldest new-message responses (keep UID and FLAGS), split into at most
  ``max_pushes`` bodies (restoring envelopes of the newest messages as room
  allows), and finally replace the biggest mailboxes by the generic sync
  ``* SELECT "mbox"`` alone, until it fits.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

from imapwebpush.constants import DELIMITER, RECENT, SYSTEM_FLAGS
from imapwebpush.decisions import MAX_PUSHES_PER_BURST
from imapwebpush.envelope import parse_envelope, render_envelope
from imapwebpush.webpush.limits import MAX_PLAINTEXT
from imapwebpush.webpush.preview import DEFAULT_PREVIEW_CHARS, preview_text
from imapwebpush.wire import format_sorted_set, is_flag, push_quoted

__all__ = [
    "NewMessage",
    "FlagUpdate",
    "Vanished",
    "ListUpdate",
    "Section",
    "Push",
    "render",
    "uid_set",
    "select_line",
    "sync_payload",
]

CRLF = b"\r\n"
_LAZY = object()  # "not made yet" for values made on first use
_VANISHED_RANGES_PER_RESPONSE = 100  # keeps one VANISHED response well under any budget


# ---------------------------------------------------------------------------
# What happened: items, grouped into sections
# ---------------------------------------------------------------------------


class NewMessage:
    """A new message: ``* uid UIDFETCH (FLAGS (...) ENVELOPE (...) [PREVIEW "..."])``.

    ``order`` says how recent it is across the whole burst (higher is newer):
    the previews, then the envelopes of the oldest go first when room is short.
    The envelope and the RFC 8970 preview (from ``body``, the start of the
    body; empty: no preview) are made once, and only if some body has room.
    """

    __slots__ = ("uid", "flags", "headers", "order", "body", "preview_chars", "_envelope",
                 "_preview")

    def __init__(self, uid, flags, headers, order=0, body=b"",
                 preview_chars=DEFAULT_PREVIEW_CHARS):
        self.uid = uid
        self.flags = frozenset(flags)
        self.headers = headers
        self.order = order
        self.body = body
        self.preview_chars = preview_chars
        self._envelope = None
        self._preview = _LAZY

    @property
    def envelope(self):
        if self._envelope is None:
            self._envelope = parse_envelope(self.headers)
        return self._envelope

    @property
    def preview(self):
        """The PREVIEW text (str), or None when there is none to give."""
        if self._preview is _LAZY:
            self._preview = preview_text(self.headers, self.body, self.preview_chars)
        return self._preview

    def __repr__(self):
        return "NewMessage(uid=%r, flags=%r, order=%r)" % (self.uid, sorted(self.flags), self.order)


@dataclass(frozen=True)
class FlagUpdate:
    """Flags of a message changed: ``* uid UIDFETCH (FLAGS (...))``."""

    uid: int
    flags: frozenset


@dataclass(frozen=True)
class Vanished:
    """Messages were expunged: ``* VANISHED uid-set`` (``uids`` sorted)."""

    uids: Tuple[int, ...]


@dataclass(frozen=True)
class ListUpdate:
    """A mailbox appeared or went away: ``* LIST (...) "/" name``."""

    name: str
    nonexistent: bool = False


@dataclass(frozen=True)
class Section:
    """Items about one mailbox (``mailbox`` None: LIST responses, no ``* SELECT``)."""

    mailbox: Optional[str]
    items: tuple = ()


@dataclass(frozen=True)
class Push:
    """One body, and what it says (to re-render it smaller after a 413)."""

    payload: bytes
    sections: Tuple[Section, ...] = ()  # the items it carries, by section
    synced: Tuple[str, ...] = ()  # mailboxes that got the generic sync
    envelopes_dropped: int = 0  # new-message responses sent without their ENVELOPE

    @property
    def mailboxes(self):
        """Every mailbox this body talks about."""
        names = [s.mailbox for s in self.sections if s.mailbox is not None]
        return tuple(names) + tuple(m for m in self.synced if m not in names)


# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------

_SYSTEM_ORDER = {flag: i for i, flag in enumerate(SYSTEM_FLAGS)}


def _flag_key(flag):
    return (_SYSTEM_ORDER.get(flag, 5 if flag.startswith("\\") else 6), flag)


def _flags(flags):
    """``(\\Seen $Junk)``: valid flag atoms only, system flags first; never \\Recent."""
    valid = [f for f in flags if f != RECENT and is_flag(f)]
    return "(" + " ".join(sorted(valid, key=_flag_key)) + ")"


def select_line(mailbox):
    """``* SELECT "mbox"`` with its CRLF (the generic sync on its own)."""
    return b"* SELECT " + push_quoted(mailbox).encode("utf-8") + CRLF


def sync_payload(mailboxes):
    """One body made of generic syncs only."""
    return b"".join(select_line(m) for m in mailboxes)


def uid_set(uids):
    """Compact RFC 3501 sequence-set of UIDs, sorted and merged: ``3:7,9``."""
    return format_sorted_set(uids)


def _short_line(uid, flags):
    return ("* %d UIDFETCH (FLAGS %s)" % (uid, _flags(flags))).encode("utf-8") + CRLF


def _full_line(item, limit):
    """The new-message response with its ENVELOPE in at most ``limit`` octets, or None."""
    head = "* %d UIDFETCH (FLAGS %s ENVELOPE " % (item.uid, _flags(item.flags))
    envelope = item.envelope

    def build(cap):
        return (head + render_envelope(envelope, cap) + ")").encode("utf-8") + CRLF

    line = build(None)
    if len(line) <= limit:
        return line
    # Too big on its own (a 10,000-character subject...): cap every string at
    # the largest number of octets that fits, cut before quoting.
    if len(build(0)) > limit:
        return None
    low, high = 0, limit  # build(low) fits, build(high + 1)... does not
    while low < high:
        mid = (low + high + 1) // 2
        if len(build(mid)) <= limit:
            low = mid
        else:
            high = mid - 1
    return build(low)


def _list_line(item):
    attrs = "(\\NonExistent)" if item.nonexistent else "()"
    line = "* LIST %s %s %s" % (attrs, push_quoted(DELIMITER), push_quoted(item.name))
    return line.encode("utf-8") + CRLF


def _lines(item):
    """Responses for an item that has no envelope variant."""
    if isinstance(item, FlagUpdate):
        return [_short_line(item.uid, item.flags)]
    if isinstance(item, Vanished):
        return [("* VANISHED %s" % uid_set(item.uids)).encode("ascii") + CRLF]
    if isinstance(item, ListUpdate):
        return [_list_line(item)]
    raise TypeError("not a payload item: %r" % (item,))


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


class _Entry:
    """One response of a section: its short form, its full form and its form with PREVIEW."""

    __slots__ = ("item", "short", "full", "fuller", "order", "use_full", "use_preview")

    def __init__(self, item, short, full=None, order=None, fuller=None):
        self.item = item
        self.short = short
        self.full = full
        self.fuller = fuller
        self.order = order
        self.use_full = False
        self.use_preview = False

    def line(self):
        if self.use_preview:
            return self.fuller
        return self.full if self.use_full else self.short


class _Sec:
    __slots__ = ("section", "select", "entries", "synced")

    def __init__(self, section, select, entries):
        self.section = section
        self.select = select
        self.entries = entries
        self.synced = False

    def weight(self):
        return sum(len(e.short) for e in self.entries)


def _prepare(section, budget):
    select = select_line(section.mailbox) if section.mailbox is not None else b""
    entries = []
    for item in section.items:
        if isinstance(item, NewMessage):
            short = _short_line(item.uid, item.flags)
            # the full form is only built when some body could hold it
            entries.append(_Entry(item, short, full=_LAZY, order=item.order,
                                  fuller=_LAZY if item.body else None))
        elif isinstance(item, Vanished):
            for part in _split_vanished(item):
                entries.append(_Entry(part, _lines(part)[0]))
        else:
            for line in _lines(item):
                entries.append(_Entry(item, line))
    sec = _Sec(section, select, entries)
    if section.mailbox is not None and any(len(select) + len(e.short) > budget for e in entries):
        sec.synced = True  # one response cannot fit even alone (thousands of flags)
    return sec


def _split_vanished(item):
    """A long VANISHED as several responses, each whole and of bounded size."""
    uids = sorted(set(item.uids))
    parts = []
    run_start = 0
    runs = 0
    for i in range(1, len(uids) + 1):
        if i == len(uids) or uids[i] != uids[i - 1] + 1:
            runs += 1
            if runs == _VANISHED_RANGES_PER_RESPONSE or i == len(uids):
                parts.append(Vanished(tuple(uids[run_start:i])))
                run_start = i
                runs = 0
    return parts or [item]


def _pack(secs, budget):
    """Greedy contiguous packing: a list of bodies, each a list of (sec, [entries])."""
    bodies = []
    current = None
    size = 0
    for sec in secs:
        if sec.synced:
            units = [None]
        else:
            units = sec.entries
        for entry in units:
            line_len = len(sec.select) if entry is None else len(entry.line())
            opened = current is not None and current[-1][0] is sec
            need = line_len + (0 if opened or entry is None else len(sec.select))
            if current is None or size + need > budget:
                current = []
                bodies.append(current)
                size = 0
                opened = False
                need = line_len + (0 if entry is None else len(sec.select))
            if opened:
                current[-1][1].append(entry)
            else:
                current.append((sec, [] if entry is None else [entry]))
            size += need
    return bodies


def _count(secs, budget):
    return len(_pack(secs, budget))


def _assign(new_entries, keep, budget_of):
    """Give the ``keep`` newest new-message entries their full form (when they have one)."""
    cut = len(new_entries) - keep
    for i, (entry, sec) in enumerate(new_entries):
        want = i >= cut
        if want and entry.full is _LAZY:
            entry.full = _full_line(entry.item, budget_of(sec))
        entry.use_full = want and entry.full is not None
        entry.use_preview = False


def _assign_previews(entries, keep, budget_of):
    """Give the ``keep`` newest of ``entries`` (which have their envelope) their PREVIEW."""
    cut = len(entries) - keep
    for i, (entry, sec) in enumerate(entries):
        want = i >= cut
        if want and entry.fuller is _LAZY:
            entry.fuller = _preview_line(entry.item, entry.full, budget_of(sec))
        entry.use_preview = want and entry.fuller is not None


_PREVIEW_ITEM = b" PREVIEW "


def _preview_line(item, full, limit):
    """``full`` with ``PREVIEW "..."`` added, in at most ``limit`` octets; or None.

    The text is cut at a character boundary before quoting, as much of it as
    fits; no room for any of it gives None.
    """
    text = item.preview
    if not text:
        return None
    head = full[: -len(b")" + CRLF)]
    room = limit - len(head) - len(_PREVIEW_ITEM) - len(b'"")') - len(CRLF)
    cap = room
    while cap > 0:
        quoted = push_quoted(text, cap).encode("utf-8")
        over = len(quoted) - 2 - room
        if over <= 0:
            if len(quoted) <= 2:
                return None
            return head + _PREVIEW_ITEM + quoted + b")" + CRLF
        cap -= over
    return None


def render(sections, budget=MAX_PLAINTEXT, max_pushes=MAX_PUSHES_PER_BURST):
    """The bodies for ``sections`` (list of L{Section}), each at most ``budget`` octets.

    A L{Section} with a mailbox and no items asks for the generic sync of
    that mailbox.

    At most ``max_pushes`` bodies, unless even the generic syncs of every
    mailbox need more. LIST items that do not fit in ``max_pushes`` bodies
    are left out (compare the items of the result with the input).
    """
    secs = _sections(sections, budget)
    if not secs:
        return []

    def budget_of(sec):
        return budget - len(sec.select)

    new_entries, least = _fit(secs, budget, max_pushes, budget_of)
    if new_entries:
        _restore_envelopes(new_entries, max(1, least), secs, budget, budget_of)
        _add_previews(new_entries, max(1, least), secs, budget, budget_of)
    return [_body(b) for b in _pack(secs, budget)]


def _sections(sections, budget):
    """The L{_Sec} of each section that can be sent at all within ``budget``."""
    secs = []
    for section in sections:
        sec = _prepare(section, budget)
        if section.mailbox is not None and not section.items:
            sec.synced = True  # an empty section asks for the generic sync
        if section.mailbox is None:
            # a LIST response that cannot fit in any body is left out
            sec.entries = [e for e in sec.entries if len(e.short) <= budget]
            if not sec.entries:
                continue
        elif sec.synced and len(sec.select) > budget:
            continue  # not even the generic sync fits this budget
        secs.append(sec)
    return secs


def _fit(secs, budget, max_pushes, budget_of):
    """Without envelopes, sync the biggest mailboxes until ``max_pushes`` bodies do.

    Answers the new-message entries that may get their envelope back (oldest first)
    and the number of bodies they must stay within.
    """
    while True:
        live = [s for s in secs if not s.synced]
        new_entries = sorted(
            ((e, s) for s in live for e in s.entries if e.full is not None),
            key=lambda pair: pair[0].order,
        )
        _assign(new_entries, 0, budget_of)
        least = _count(secs, budget)
        if least <= max_pushes:
            return new_entries, least
        candidates = [s for s in live if s.section.mailbox is not None]
        if candidates:
            max(candidates, key=_Sec.weight).synced = True
            continue
        if not live:
            return new_entries, least  # nothing left but generic syncs: send them all
        # Only LIST responses remain and they do not fit: keep what fits.
        _trim_lists(live, secs, budget, max_pushes)
        return [], _count(secs, budget)


def _restore_envelopes(new_entries, target, secs, budget, budget_of):
    """Give envelopes back to the newest messages, as many as ``target`` bodies hold."""
    _keep_most(lambda keep: _assign(new_entries, keep, budget_of), len(new_entries),
               lambda: _count(secs, budget) <= target)


def _add_previews(new_entries, target, secs, budget, budget_of):
    """Previews for the newest messages, only while no envelope was dropped (they go first)."""
    if not all(entry.use_full or entry.full is None for entry, _ in new_entries):
        return
    previewed = [(e, s) for e, s in new_entries if e.use_full and e.fuller is not None]
    if previewed:
        _keep_most(lambda keep: _assign_previews(previewed, keep, budget_of), len(previewed),
                   lambda: _count(secs, budget) <= target)


def _keep_most(assign, n, fits):
    """``assign(k)`` with the largest k <= n for which ``fits()`` (k = 0 is taken to fit)."""
    assign(n)
    if fits():
        return
    low, high = 0, n - 1  # assign(low) fits
    while low < high:
        mid = (low + high + 1) // 2
        assign(mid)
        if fits():
            low = mid
        else:
            high = mid - 1
    assign(low)


def _trim_lists(live, secs, budget, max_pushes):
    for sec in reversed(live):
        while sec.entries and _count(secs, budget) > max_pushes:
            sec.entries.pop()


def _body(parts):
    chunks = []
    sections = []
    synced = []
    dropped = 0
    for sec, entries in parts:
        chunks.append(sec.select)
        if sec.synced:
            synced.append(sec.section.mailbox)
            continue
        items = []
        for entry in entries:
            chunks.append(entry.line())
            if not items or items[-1] is not entry.item:
                items.append(entry.item)
            if isinstance(entry.item, NewMessage) and not entry.use_full:
                dropped += 1
        sections.append(Section(sec.section.mailbox, tuple(items)))
    return Push(b"".join(chunks), tuple(sections), tuple(synced), dropped)
