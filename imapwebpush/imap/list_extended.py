"""What LIST answers: its arguments and which names it lists, with which attributes.

The extended syntax of RFC 5258 (LIST-EXTENDED), with LIST-STATUS (RFC 5819) and the
SPECIAL-USE options (RFC 6154)::

    LIST [(selection options)] reference (pattern | (pattern ...)) [RETURN (return options)]

Selection: SUBSCRIBED (subscribed names, existing or not: ``\\NonExistent``), REMOTE (we
have no remote mailboxes: nothing changes), RECURSIVEMATCH (with SUBSCRIBED: a matching
name with a subscribed descendant that the patterns do not match gets ``("CHILDINFO"
("SUBSCRIBED"))``, and is listed for it even when not itself subscribed, as Dovecot),
SPECIAL-USE (only mailboxes with a special use). Return: SUBSCRIBED (``\\Subscribed``),
CHILDREN and SPECIAL-USE (both always given), STATUS (a ``* STATUS`` after each listed
selectable mailbox; the session checks and reads the items). Unknown options are BAD.
An empty pattern matches nothing; only ``LIST ref ""`` in the RFC 3501 form asks for
the delimiter.

The argument parsers are the command table's (``parser(server, line)``, see
L{imapwebpush.imap.core}); L{list_entries} needs no server.
"""

from typing import List, NamedTuple, Optional

from imapwebpush import wire
from imapwebpush.constants import DELIMITER, INBOX
from imapwebpush.imap.core import Bad, No

SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL_USE = b"SUBSCRIBED", b"REMOTE", b"RECURSIVEMATCH", b"SPECIAL-USE"
CHILDREN, STATUS = b"CHILDREN", b"STATUS"

_SELECT_OPTIONS = frozenset((SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL_USE))
_RETURN_OPTIONS = frozenset((SUBSCRIBED, CHILDREN, SPECIAL_USE))

CHILDINFO = b' ("CHILDINFO" ("SUBSCRIBED"))'  # RFC 5258 3.5, spelled as its examples


class ListRequest(NamedTuple):
    """The options of one LIST (empty sets for the RFC 3501 form)."""

    select: frozenset = frozenset()
    returns: frozenset = frozenset()  # SUBSCRIBED when asked for or implied by the selection
    status: Optional[list] = None  # the items of RETURN (STATUS (...)), unchecked


class ListEntry(NamedTuple):
    name: str
    attributes: List[str]
    childinfo: bool  # RECURSIVEMATCH found an unmatched descendant that meets the selection
    status: bool  # met the selection and can be selected: LIST-STATUS answers for it


def parent_names(names):
    """Every name that some name in ``names`` lies under (``a`` and ``a/b`` for ``a/b/c``).

    Built once per LIST: asking "does any name start with ``name/``?" of each name
    compared every mailbox with every other (2,000 mailboxes: half a second a LIST).
    """
    parents = set()
    for n in names:
        at = n.find(DELIMITER)
        while at != -1:
            parents.add(n[:at])
            at = n.find(DELIMITER, at + 1)
    return parents


# -- arguments --------------------------------------------------------------------------


def _option_name(item, known, kind):
    if not isinstance(item, bytes):
        raise Bad("Bad LIST %s option" % (kind,))
    word = item.upper()
    if word not in known:
        if wire.is_atom(item):
            raise Bad("Unknown LIST %s option %s" % (kind, item[:40].decode("ascii")))
        raise Bad("Unknown LIST %s option" % (kind,))
    return word


def opt_select(server, line):
    """The selection options before the reference, if any: (frozenset or None, rest)."""
    stripped = (line or b"").lstrip(b" ")
    if stripped[:1] != b"(":
        return None, line
    items, rest = server.arg_list(stripped)
    select = frozenset(_option_name(item, _SELECT_OPTIONS, "selection") for item in items)
    if RECURSIVEMATCH in select and SUBSCRIBED not in select:
        # RFC 5258 3.1: it only modifies a base option, and SUBSCRIBED is our only one
        raise Bad("RECURSIVEMATCH needs the SUBSCRIBED selection option")
    return select, rest


def arg_patterns(server, line):
    """One pattern, or several in parentheses: ((patterns, in parentheses), rest).

    Each is an astring or list-mailbox (literals too). Several count together against
    the server's ``max_pattern_length``, an empty one as one character, so a client
    cannot pile up patterns (or literals of them) without bound.
    """
    stripped = (line or b"").lstrip(b" ")
    if stripped[:1] != b"(":
        return _then(server.arg_astring(stripped), lambda value, rest: (([value], False), rest))
    return _more_patterns(server, [], stripped[1:])


def _then(result, step):
    """``step(value, rest)`` of a parser's (value, rest), now or when its literal came."""
    if type(result) is tuple:
        return step(*result)
    return result.addCallback(lambda got: step(*got))


def _more_patterns(server, patterns, line, used=0):
    limit = server.max_pattern_length
    while True:
        if used > limit:
            raise No("[LIMIT] patterns are more than %d characters" % (limit,))
        line = line.lstrip(b" ")
        if line[:1] == b")":
            if not patterns:
                raise Bad("Empty list of patterns")
            return (patterns, True), line[1:]
        value, line = wire.read_list_item(line)
        if isinstance(value, wire.LiteralHeader):
            budget = max(0, min(server.max_astring_literal, limit - used))
            d = server._read_literal(value.size, value.sync, budget)
            return d.addCallback(
                lambda got: _more_patterns(server, patterns + [got[0]], got[1], used + max(1, len(got[0])))
            )
        patterns.append(value)
        used += max(1, len(value))


def opt_return(server, line):
    """``RETURN (options)`` after the patterns, if any: ((frozenset, STATUS items or None), rest)."""
    stripped = (line or b"").strip(b" ")
    if not stripped:
        return None, b""
    word, _, rest = stripped.partition(b" ")
    if word.upper() != b"RETURN":
        raise Bad("Expected RETURN after the patterns")
    items, rest = server.arg_list(rest)
    returns = set()
    status = None
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, bytes) and item.upper() == STATUS:
            if status is not None:
                raise Bad("STATUS given twice")
            status = items[i + 1] if i + 1 < len(items) else None
            if not isinstance(status, list) or not status:
                raise Bad("STATUS needs a list of STATUS items")
            i += 2
            continue
        returns.add(_option_name(item, _RETURN_OPTIONS, "return"))
        i += 1
    return (frozenset(returns), status), rest


def list_request(select, returns):
    """The L{ListRequest} of the parsed options (None: not given)."""
    select = select or frozenset()
    returns, status = returns or (frozenset(), None)
    if SUBSCRIBED in select:
        returns = returns | {SUBSCRIBED}  # RFC 5258 3.1: the selection option implies it
    return ListRequest(select, returns, status)


# -- the answer -------------------------------------------------------------------------


def _ordered(names):
    rest = sorted(n for n in names if n != INBOX)
    return [INBOX] + rest if INBOX in names else rest


def list_entries(request, matches, existing, selectable, subscribed, special_use):
    """The L{ListEntry}s of a LIST, INBOX first, then by name.

    ``matches(name)``: the patterns; ``existing``: every mailbox name (``\\Noselect``
    parents too); ``selectable(name)``, ``special_use(name)`` (attribute or None) and
    ``subscribed`` (names) from the account.
    """
    every = set(existing)
    parents = parent_names(every)
    subscribed = set(subscribed)
    by_subscription = SUBSCRIBED in request.select
    by_use = SPECIAL_USE in request.select

    def chosen(name):  # meets the selection criteria
        if not (name in subscribed if by_subscription else name in every):
            return False
        return not by_use or (name in every and special_use(name) is not None)

    names = every | subscribed if by_subscription else set(every)
    with_chosen_child = set()
    if RECURSIVEMATCH in request.select:
        # only descendants the patterns leave out, as Dovecot: with "*" the child is listed itself
        with_chosen_child = parent_names(n for n in names if chosen(n) and not matches(n))
        names |= with_chosen_child
    tell_subscribed = SUBSCRIBED in request.returns
    out = []
    for name in _ordered(names):
        if not matches(name):
            continue
        meets = chosen(name)
        childinfo = name in with_chosen_child
        if not (meets or childinfo):
            continue
        attributes = []
        if tell_subscribed and name in subscribed:
            attributes.append("\\Subscribed")
        exists = name in every
        can_select = exists and selectable(name)
        if not exists:
            attributes.append("\\NonExistent")  # implies \Noselect (RFC 5258 3.4)
        elif not can_select:
            attributes.append("\\Noselect")
        attributes.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        use = special_use(name) if exists else None
        if use:
            attributes.append(use)
        out.append(ListEntry(name, attributes, childinfo, meets and can_select))
    return out


def list_line(entry):
    """The ``LIST (...) "/" "name"`` response (no ``* ``) of a L{ListEntry}."""
    line = b"LIST (%s) %s %s" % (
        " ".join(entry.attributes).encode("ascii"),
        wire.quoted(DELIMITER.encode("ascii")),
        wire.quoted_mailbox(entry.name),
    )
    return line + CHILDINFO if entry.childinfo else line
