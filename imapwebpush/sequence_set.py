"""IMAP sequence sets (RFC 3501 9, sequence-set) as ranges, and their text.

Shared by the IMAP server (COPYUID, MODIFIED, VANISHED, QRESYNC) and the push
payloads (VANISHED): one renderer of "1:3,7", one range algebra. A set is a
list of ``(first, last)`` pairs; "normalized" means sorted, merged, disjoint.
"""

from typing import List, Tuple

Ranges = List[Tuple[int, int]]


def normalize(ranges):
    """Sorted, merged, disjoint ranges of any list of ``(a, b)`` pairs."""
    out = []
    for lo, hi in sorted((min(a, b), max(a, b)) for a, b in ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def ranges_of(uids):
    """Ranges of an iterable of UIDs (any order, duplicates allowed)."""
    return normalize((u, u) for u in uids)


def expand(ranges):
    """Every number of ``ranges``, ascending (mind the size)."""
    return [n for lo, hi in ranges for n in range(lo, hi + 1)]


def count(ranges):
    return sum(hi - lo + 1 for lo, hi in ranges)


def render(ranges):
    """IMAP sequence-set text of ranges: ``1:3,7``."""
    return ",".join(str(lo) if lo == hi else "%d:%d" % (lo, hi) for lo, hi in ranges)


def intersect(a, b):
    """Ranges in both ``a`` and ``b`` (both normalized)."""
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a, b):
    """Ranges in ``a`` but not in ``b`` (both normalized)."""
    out = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] < lo:
            j += 1
        k = j
        while lo <= hi and k < len(b) and b[k][0] <= hi:
            if b[k][0] > lo:
                out.append((lo, b[k][0] - 1))
            lo = max(lo, b[k][1] + 1)
            k += 1
        if lo <= hi:
            out.append((lo, hi))
    return out


def with_star(ranges, star):
    """Parsed ``(low, high)`` pairs with ``*`` (None) taken as ``star``, each put low-high."""
    out = []
    for lo, hi in ranges:
        lo = star if lo is None else lo
        hi = star if hi is None else hi
        out.append((lo, hi) if lo <= hi else (hi, lo))
    return out


def at_least(ranges, low):
    """The part of ``ranges`` at or above ``low``."""
    return [(max(lo, low), hi) for lo, hi in ranges if hi >= low]


def runs_in_order(numbers):
    """Ranges of consecutive ascending runs, keeping the given order (COPYUID pairs rely on it)."""
    out = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def format_set(numbers):
    """Compact text of numbers in the given order: ``1:3,7`` (no sorting, no merging)."""
    return render(runs_in_order(numbers))


def format_sorted_set(numbers):
    """Compact text of numbers in any order, duplicates allowed: sorted and merged."""
    return render(ranges_of(numbers))
