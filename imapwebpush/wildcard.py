"""IMAP list wildcards (``*`` and ``%``) matched in linear time, for LIST, LSUB and LWEBPUSH.

Why not a regular expression: ``re`` backtracks, so ``*%*%*%*%*%x`` against a
40-character mailbox name takes tens of seconds on the reactor thread. Here the
pattern is a small NFA (one state per pattern token) simulated over the name
with every live state at once, held as the bits of one integer: the cost is
O(len(pattern) * len(name) / word size) whatever the pattern, and a pattern is
compiled once per command, not once per name.

Semantics (RFC 3501 6.3.8): ``*`` matches any run of characters; ``%`` matches
any run without the hierarchy ``delimiter``; everything else matches itself,
case-sensitively. With ``delimiter=None`` (LWEBPUSH, SPEC 3.4) ``%`` matches
anything too. The whole name must match.

Patterns longer than a limit (the server's ``--max-pattern-length``) are refused
with L{PatternTooLong} before any matching: the limit bounds the work a client
can ask for with one command.
"""

from imapwebpush.constants import DELIMITER, INBOX

# The longest LIST/LSUB (reference + pattern) or LWEBPUSH pattern accepted, in characters.
DEFAULT_MAX_PATTERN_LENGTH = 1024

_LITERAL, _STAR, _PERCENT = 0, 1, 2


class PatternTooLong(ValueError):
    """The pattern is longer than the limit; the message says both lengths."""

    def __init__(self, length, limit):
        ValueError.__init__(self, "pattern is %d characters, more than %d" % (length, limit))
        self.length = length
        self.limit = limit


def _tokens(pattern):
    """(kind, char) per token; a run of wildcards becomes one (``*`` if it holds a ``*``)."""
    out = []
    for ch in pattern:
        if ch in "*%":
            kind = _STAR if ch == "*" else _PERCENT
            if out and out[-1][0] != _LITERAL:
                if kind == _STAR:
                    out[-1] = (_STAR, "*")
                continue
            out.append((kind, ch))
        else:
            out.append((_LITERAL, ch))
    return out


class Pattern:
    """A compiled pattern, or several: ``match(name)`` is True when the whole ``name``
    matches (one of them: LIST-EXTENDED's ``("a" "b/%")``).

    State ``i`` means "the first ``i`` tokens of a pattern have matched"; bit ``i``
    of the state set is set when state ``i`` is live. Several patterns lie side by
    side in one state set, each followed by its accepting state (which no token
    leaves), so a name is read once however many patterns there are. Patterns
    without wildcards are kept in a set instead.
    """

    def __init__(self, pattern, delimiter=DELIMITER, max_length=DEFAULT_MAX_PATTERN_LENGTH):
        texts = [pattern] if isinstance(pattern, str) else list(pattern)
        length = sum(len(t) for t in texts)
        if max_length is not None and length > max_length:
            raise PatternTooLong(length, max_length)
        self.pattern = pattern
        self.delimiter = delimiter
        self._literal = {}  # char -> states whose token is that literal char
        self._star = 0  # states whose token is '*'
        self._percent = 0  # states whose token is '%'
        self._accept = 0  # the accepting state of each pattern
        self._everything = False  # a pattern matches every name (a common shape)
        exact = set()
        start = 0
        offset = 0
        for text in texts:
            tokens = _tokens(text)
            if all(kind == _LITERAL for kind, _ in tokens):
                exact.add(text)
                continue
            if tokens == [(_STAR, "*")] or (delimiter is None and tokens == [(_PERCENT, "%")]):
                self._everything = True
            start |= 1 << offset
            for i, (kind, ch) in enumerate(tokens):
                bit = 1 << (offset + i)
                if kind == _LITERAL:
                    self._literal[ch] = self._literal.get(ch, 0) | bit
                elif kind == _STAR or delimiter is None:
                    self._star |= bit
                else:
                    self._percent |= bit
            self._accept |= 1 << (offset + len(tokens))
            offset += len(tokens) + 1
        self._wild = self._star | self._percent
        self._start = self._closure(start)
        self._exact = frozenset(exact)

    def _closure(self, states):
        # A wildcard may match nothing: its state also stands for the next one.
        # Runs of wildcards were merged, so one step reaches every such state.
        return states | ((states & self._wild) << 1)

    def match(self, name):
        if self._everything or name in self._exact:
            return True
        states = self._start
        if not states:
            return False
        literal = self._literal
        star, percent, delimiter = self._star, self._percent, self.delimiter
        wild = self._wild
        for ch in name:
            following = (states & literal.get(ch, 0)) << 1
            stay = states & (star if ch == delimiter else star | percent)
            states = following | stay
            if not states:
                return False
            states |= (states & wild) << 1
        return bool(states & self._accept)

    __call__ = match

    def __repr__(self):
        return "<Pattern %r delimiter=%r>" % (self.pattern, self.delimiter)


def compile_pattern(pattern, delimiter=DELIMITER, max_length=DEFAULT_MAX_PATTERN_LENGTH):
    """A L{Pattern} for ``pattern`` (str, or a list of them: any may match);
    L{PatternTooLong} when they are longer together than ``max_length`` (None: no cap)."""
    return Pattern(pattern, delimiter, max_length)


def list_pattern(text, max_length=DEFAULT_MAX_PATTERN_LENGTH):
    """The L{Pattern} of LIST/LSUB for ``text`` (reference + pattern, decoded), or for
    a list of them (LIST-EXTENDED's several patterns, ``max_length`` for all together).

    INBOX is case-insensitive (RFC 3501 5.1), other names are not: a leading
    ``inbox`` that is the whole first level (or ends in a wildcard) is spelled
    the way the store spells it, so ``inbox``, ``Inbox/%`` and ``inbox*`` work.
    """
    if isinstance(text, str):
        return compile_pattern(_inbox_spelled(text), DELIMITER, max_length)
    return compile_pattern([_inbox_spelled(t) for t in text], DELIMITER, max_length)


def _inbox_spelled(text):
    n = len(INBOX)
    if text[:n].upper() == INBOX and (len(text) == n or text[n] in DELIMITER + "%*"):
        return INBOX + text[n:]
    return text
