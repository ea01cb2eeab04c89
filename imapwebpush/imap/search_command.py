"""SEARCH and UID SEARCH, as a mixin of L{imapwebpush.imap.core.IMAPCore}.

The command reads its line (literals included), compiles the criteria with
L{imapwebpush.imap.search.compile_search} and runs the predicate over the session's
view. ESEARCH, SORT and THREAD belong next to it and reuse the same compiler.
"""

import re

from twisted.mail import imap4

from imapwebpush import wire
from imapwebpush.imap.core import Bad, No
from imapwebpush.imap.search import SearchItem, compile_search

_TRAILING_LITERAL = re.compile(rb"\{(\d{1,12})(\+?)\}\Z")


def search_arguments(server, line):
    """(charset or None, parsed criteria) of a SEARCH line."""
    charset, line = imap4.IMAP4Server.opt_charset(server, line.strip())
    return charset, wire.parse_list(line, server.max_nesting)


class SearchCommandMixin:
    """SEARCH and UID SEARCH."""

    def do_SEARCH(self, tag, line, uid=False):
        charset, tokens = search_arguments(self, line)
        if charset is not None and charset.upper() not in (b"UTF-8", b"US-ASCII"):
            raise No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
        if not tokens:
            raise Bad("Missing search criteria")
        view = self.view
        query = compile_search(tokens, view.uids, self.max_nesting)
        if query.uses_modseq:
            self._enable_condstore()
        found = []
        highest = 0
        for index, u in enumerate(list(view.uids)):
            if view.is_ghost(u):
                continue
            try:
                stored = view.mailbox.message(u)
            except KeyError:
                continue
            if query.predicate(SearchItem(index + 1, u, stored, u in view.recent)):
                found.append(u if uid else index + 1)
                highest = max(highest, stored.modseq)
        line = b"SEARCH" + b"".join(b" %d" % (n,) for n in found)
        if query.uses_modseq and found:
            line += b" (MODSEQ %d)" % (highest,)
        self.sendUntaggedResponse(line)
        self.sendPositiveResponse(tag, b"SEARCH completed")

    def arg_search(self, line):
        """The whole SEARCH line, with literals (non-ASCII criteria) read and quoted in place."""
        m = _TRAILING_LITERAL.search(line)
        if m is None:
            return line, b""
        d = self._read_literal(int(m.group(1)), not m.group(2), self.max_astring_literal)
        prefix = line[: m.start()]

        def got(result):
            data, rest = result
            if b"\r" in data or b"\n" in data:
                raise Bad("Search criteria cannot hold CR or LF")
            return self.arg_search(prefix + wire.quoted(data) + rest)

        return d.addCallback(got)

    select_SEARCH = (do_SEARCH, arg_search)
