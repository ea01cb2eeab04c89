"""IMAP mailbox names <-> Maildir++ folder names, reversibly.

IMAP names use '/' as hierarchy separator; 'INBOX' (any case, also as the first
part of a longer name) is spelled 'INBOX'. INBOX is the account folder itself;
every other mailbox is a folder of the account folder named '.' followed by its
parts joined with '.' (Maildir++): 'Archive/2024' -> '.Archive.2024'.

Each part is encoded so it can never contain the '.' separator or anything a
file name cannot hold: ASCII letters, digits and `` -_+,=@!#&'()~`` stay as they
are, printable non-ASCII characters stay as they are (UTF-8 on disk), and every
other character ('.', '%', '/', '\\\\', ':', control characters...) becomes
'%XX' for each octet of its UTF-8 form: 'v1.2' -> 'v1%2E2'. Decoding reads
'%XX' runs back as UTF-8, so encode/decode is a bijection.
"""

from imapwebpush.constants import DELIMITER, INBOX
from imapwebpush.events import canonical_mailbox
from imapwebpush.store.errors import InvalidMailboxName

MAX_FOLDER_OCTETS = 255  # a folder is one directory entry

_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -_+,=@!#&'()~"
)


def normalise(name):
    """The canonical form of an IMAP mailbox name; InvalidMailboxName if it cannot be one."""
    if not isinstance(name, str):
        raise InvalidMailboxName("Mailbox names are text")
    if not name:
        raise InvalidMailboxName("Mailbox name is empty")
    if "\0" in name or "\r" in name or "\n" in name:
        raise InvalidMailboxName("Mailbox name contains NUL, CR or LF")
    if name.startswith(DELIMITER) or name.endswith(DELIMITER):
        raise InvalidMailboxName("Mailbox name starts or ends with '/'")
    if DELIMITER * 2 in name:
        raise InvalidMailboxName("Mailbox name contains an empty level ('//')")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMailboxName("Mailbox name is not valid Unicode")
    return canonical_mailbox(name)


def _encode_part(part):
    out = []
    for ch in part:
        if ch in _SAFE or (ord(ch) > 127 and ch.isprintable()):
            out.append(ch)
        else:
            out.extend("%%%02X" % b for b in ch.encode("utf-8"))
    return "".join(out)


def _decode_part(text):
    out = []
    raw = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%":
            hexpair = text[i + 1 : i + 3]
            if len(hexpair) != 2 or not all(c in "0123456789ABCDEFabcdef" for c in hexpair):
                return None
            raw.append(int(hexpair, 16))
            i += 3
            continue
        if raw:
            out.append(bytes(raw).decode("utf-8"))
            raw.clear()
        if ch == ".":
            return None
        out.append(ch)
        i += 1
    if raw:
        out.append(bytes(raw).decode("utf-8"))
    return "".join(out)


def folder_for(name):
    """The folder (directory entry) of a normalised name; '' for INBOX."""
    if name == INBOX:
        return ""
    folder = "." + ".".join(_encode_part(p) for p in name.split(DELIMITER))
    if len(folder.encode("utf-8")) > MAX_FOLDER_OCTETS:
        raise InvalidMailboxName("Mailbox name is too long")
    return folder


def name_for_folder(folder):
    """The mailbox name of a Maildir++ folder entry, or None if it is not one of ours."""
    if not folder.startswith(".") or folder in (".", ".."):
        return None
    parts = folder[1:].split(".")
    try:
        decoded = [_decode_part(p) for p in parts]
    except UnicodeDecodeError:
        return None
    if any(not p for p in decoded):
        return None
    name = DELIMITER.join(decoded)
    try:
        canonical = normalise(name)
    except InvalidMailboxName:
        return None
    if canonical == INBOX or folder_for(canonical) != folder:
        return None  # '.INBOX' or a spelling we would not produce
    return canonical


def parents(name):
    """The ancestors of a normalised name, outermost first: 'a/b/c' -> ['a', 'a/b']."""
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]


def is_inside(name, ancestor):
    """True when ``name`` is ``ancestor`` or below it."""
    return name == ancestor or name.startswith(ancestor + DELIMITER)
