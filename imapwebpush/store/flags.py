"""IMAP flags <-> the ':2,' info of Maildir file names.

System flags live in the file name (D=Draft F=Flagged R=Answered S=Seen
T=Deleted, sorted); keywords live in the mailbox index. ``\\Recent`` is never
stored: a message is recent while its file is in new/, or (memory only) when this
process put it in cur/ with flags (APPEND, COPY) and no session has claimed it yet.
"""

import re

from imapwebpush.constants import RECENT, SYSTEM_FLAGS

DELETED = "\\Deleted"
SEEN = "\\Seen"

# The modes of set_flags (IMAP STORE FLAGS, +FLAGS, -FLAGS).
MODES = ("replace", "add", "remove")

_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
_BY_LETTER = {v: k for k, v in _LETTERS.items()}
_CANONICAL = {k.lower(): k for k in SYSTEM_FLAGS}
_RECENT = RECENT.lower()

_SIZE = re.compile(r",S=\d+")


def split(flags):
    """(system flags, keywords) of an iterable of flag names; drops \\Recent.

    System flags are matched case-insensitively and spelled canonically;
    keywords keep their spelling, duplicates (ignoring case) are dropped.
    """
    system = set()
    keywords = {}
    for flag in flags:
        if isinstance(flag, bytes):
            flag = flag.decode("utf-8", "replace")
        lowered = flag.lower()
        if lowered == _RECENT:
            continue
        canonical = _CANONICAL.get(lowered)
        if canonical is not None:
            system.add(canonical)
        elif flag:
            keywords.setdefault(lowered, flag)
    return frozenset(system), frozenset(keywords.values())


def parse_name(filename):
    """(base, system flags, other info letters) of a Maildir file name."""
    base, sep, info = filename.partition(":")
    system = set()
    extra = ""
    if sep and info.startswith("2,"):
        for letter in info[2:]:
            flag = _BY_LETTER.get(letter)
            if flag is None:
                if letter not in extra:
                    extra += letter
            else:
                system.add(flag)
    return base, frozenset(system), extra


def info(system, extra=""):
    """The ':2,...' suffix for a file in cur/."""
    letters = set(_LETTERS[f] for f in system) | set(extra)
    return ":2," + "".join(sorted(letters))


def without_size(base):
    """A Maildir base name without its ',S=<size>'."""
    return _SIZE.sub("", base)


def change(mode, system, keywords, given_system, given_keywords):
    """(system flags, keywords) of a message after a STORE of ``mode`` with the given ones.

    Keywords are compared ignoring case; one the message has keeps its spelling.
    """
    if mode == "replace":
        return given_system, given_keywords
    if mode == "add":
        have = {k.lower() for k in keywords}
        return system | given_system, keywords | {k for k in given_keywords if k.lower() not in have}
    lowered = {k.lower() for k in given_keywords}
    return system - given_system, frozenset(k for k in keywords if k.lower() not in lowered)


def same_keywords(one, other):
    """True when two keyword sets are equal ignoring case."""
    return {k.lower() for k in one} == {k.lower() for k in other}
