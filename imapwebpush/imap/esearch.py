"""ESEARCH (RFC 4731), SEARCHRES (RFC 5182) and ESORT (RFC 5267): SEARCH's and SORT's RETURN
options and their answer.

Pure: ``split_return(line)`` reads ``RETURN (...)`` off the front of a SEARCH line,
``esearch_line`` formats the ``* ESEARCH`` answer and ``saved_uids`` what RETURN (SAVE)
keeps for ``$`` (RFC 5182 2.4: only the MIN and/or MAX when those alone are asked).
"""

from imapwebpush import wire
from imapwebpush.imap.core import Bad

RETURN_OPTIONS = (b"MIN", b"MAX", b"ALL", b"COUNT", b"SAVE")


def split_return(line):
    """(return options or None for a plain SEARCH, rest of the line) of a SEARCH line."""
    line = line.lstrip()
    if line[:7].upper() != b"RETURN ":
        return None, line
    rest = line[7:].lstrip()
    if rest[:1] != b"(":
        raise Bad("RETURN needs a list of options")
    end = wire.matching_paren(rest)
    if end <= 0 or rest[end - 1 : end] != b")":
        raise Bad("Unterminated RETURN options")
    options = []
    for option in rest[1 : end - 1].split():
        option = option.upper()
        if option not in RETURN_OPTIONS:
            raise Bad("Unknown RETURN option %s" % (option.decode("ascii", "replace"),))
        if option not in options:
            options.append(option)
    if not options:
        options = [b"ALL"]  # RFC 4731 3.1: RETURN () is RETURN (ALL)
    return options, rest[end:].lstrip()


def _answered(options, found):
    """The (number, uid, modseq) entries of ``found`` the options hand back (MIN/MAX only, or all)."""
    if not found or b"ALL" in options or b"COUNT" in options:
        return found
    picked = []
    if b"MIN" in options:
        picked.append(found[0])
    if b"MAX" in options and found[-1] not in picked:
        picked.append(found[-1])
    return picked


def saved_uids(options, found):
    """The UIDs RETURN (SAVE) keeps for ``$`` (RFC 5182 2.4)."""
    if b"ALL" in options or b"COUNT" in options or (b"MIN" not in options and b"MAX" not in options):
        return [u for _, u, _ in found]
    return [u for _, u, _ in _answered(options, found)]


def ordered_set(numbers):
    """A sequence set keeping the order of ``numbers``: runs going up by one become ``a:b``,
    anything else stays a number of its own (ESORT's ALL, RFC 5267 3.1)."""
    parts = []
    start = prev = None
    for n in numbers:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append("%d" % start if start == prev else "%d:%d" % (start, prev))
        start = prev = n
    if start is not None:
        parts.append("%d" % start if start == prev else "%d:%d" % (start, prev))
    return ",".join(parts)


def esearch_line(tag, options, found, uid, modseq, ordered=False):
    """``ESEARCH (TAG "t") [UID] MIN n MAX n ALL set COUNT n [MODSEQ n]`` (RFC 4731 3.1, RFC 7162 3.1.5).

    ``found`` is [(number, uid, modseq)] in ascending order, the number being what the
    client asked for (UIDs for UID SEARCH); None when the answer is not sent (SAVE alone).
    ``ordered`` (ESORT, RFC 5267 3.1): ``found`` is in sort order, MIN and MAX are its first
    and last, ALL keeps its order.
    """
    if options == [b"SAVE"]:
        return None  # RFC 5182 2.1: the result is kept, not told
    line = b"ESEARCH (TAG " + wire.quoted(tag) + b")"
    if uid:
        line += b" UID"
    if found:
        if b"MIN" in options:
            line += b" MIN %d" % (found[0][0],)
        if b"MAX" in options:
            line += b" MAX %d" % (found[-1][0],)
        if b"ALL" in options:
            numbers = [n for n, _, _ in found]
            line += b" ALL " + (ordered_set(numbers) if ordered else wire.format_sorted_set(numbers)).encode()
    if b"COUNT" in options:
        line += b" COUNT %d" % (len(found),)
    if modseq and found:
        line += b" MODSEQ %d" % (max(m for _, _, m in _answered(options, found)),)
    return line
