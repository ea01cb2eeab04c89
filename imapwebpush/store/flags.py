"""IMAP flags <-> the ':2,' info of Maildir file names.

System flags live in the file name (D=Draft F=Flagged R=Answered S=Seen
T=Deleted, sorted); keywords live in the mailbox index. ``\\Recent`` is never
stored: a message is recent while its file is in new/.
"""

import re

RECENT = "\\Recent"
DELETED = "\\Deleted"
SEEN = "\\Seen"

_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
_BY_LETTER = {v: k for k, v in _LETTERS.items()}
_CANONICAL = {k.lower(): k for k in _LETTERS}
SYSTEM_FLAGS = frozenset(_LETTERS)

_SIZE = re.compile(r",S=(\d+)")


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
        if lowered == "\\recent":
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


def size_from_name(base):
    """The ',S=' size of a Maildir base name, or None."""
    match = _SIZE.search(base)
    return int(match.group(1)) if match else None


def without_size(base):
    return _SIZE.sub("", base)
