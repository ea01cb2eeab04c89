"""SEARCH and UID SEARCH with ESEARCH (RFC 4731) and SEARCHRES (RFC 5182), as a mixin of
L{imapwebpush.imap.core.IMAPCore}.

The command reads its line (literals included), takes its RETURN options
(imap/esearch.py), compiles the criteria with L{imapwebpush.imap.search.compile_search}
and matches them in slices (imap/search_scan.py), so a large mailbox does not hold the
reactor. SORT and THREAD reuse the same steps.
"""

import codecs
import re

from twisted.mail import imap4

from imapwebpush import wire
from imapwebpush.imap import esearch, search_scan
from imapwebpush.imap.core import Bad, No
from imapwebpush.imap.search import compile_search
from imapwebpush.imap.text_parts import NOT_CHARSETS

_TRAILING_LITERAL = re.compile(rb"\{(\d{1,12})(\+?)\}\Z")


def search_arguments(server, line):
    """(charset or None, parsed criteria) of a SEARCH line."""
    charset, line = imap4.IMAP4Server.opt_charset(server, line.strip())
    return charset, wire.parse_list(line, server.max_nesting)


def check_charset(charset):
    """The Python codec of a SEARCH CHARSET (UTF-8 when none): any text encoding Python
    knows (ISO-8859-1, KOI8-R, ...), as Dovecot; NO [BADCHARSET] for others (RFC 3501 6.4.4)."""
    if charset is None:
        return "utf-8"
    try:
        info = codecs.lookup(charset.decode("ascii"))
    except (LookupError, UnicodeDecodeError):
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True) or info.name in NOT_CHARSETS:
        raise No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
    return info.name


class SearchCommandMixin:
    """SEARCH and UID SEARCH; the ``$`` of RETURN (SAVE) for every sequence set."""

    # UIDs the last SEARCH RETURN (SAVE) kept for "$" (RFC 5182); empty on each selection
    saved_search = ()
    _cooperator = None

    def search_cooperator(self):
        if self._cooperator is None:
            self._cooperator = search_scan.cooperator(self.clock)
        return self._cooperator

    def connectionLost(self, reason):
        if self._cooperator is not None:
            self._cooperator.stop()  # the slices of a search nobody waits for any more
        super().connectionLost(reason)

    def _close_view(self):
        self.saved_search = ()
        super()._close_view()

    def _resolve(self, text, uid):
        if text.strip() == b"$":  # RFC 5182 2.1: the saved result, by UID whatever the command
            view = self.view
            live = set(view.uids)
            return sorted((view.seq(u), u) for u in self.saved_search if u in live)
        return super()._resolve(text, uid)

    def compile_criteria(self, line):
        """The L{SearchQuery} of a SEARCH/SORT criteria line (charset checked)."""
        charset, tokens = search_arguments(self, line)
        codec = check_charset(charset)
        if not tokens:
            raise Bad("Missing search criteria")
        query = compile_search(tokens, self.view.uids, self.max_nesting, saved=self.saved_search, charset=codec)
        if query.uses_modseq:
            self._enable_condstore()
        return query

    def do_SEARCH(self, tag, line, uid=False):
        options, line = esearch.split_return(line)
        if options is not None and b"SAVE" in options:
            self.saved_search = ()  # RFC 5182 2.1: a failed SEARCH (SAVE) leaves "$" empty
        query = self.compile_criteria(line)
        view = self.view
        d = search_scan.scan(view, query.predicate, self.search_cooperator(),
                             max_parts=self.max_mime_parts)
        d.addCallback(self._searched, tag, view, options, query.uses_modseq, uid)
        d.addErrback(self._search_failed, tag)

    def _searched(self, found, tag, view, options, modseq, uid):
        if self.view is not view:
            return  # the connection went while the search ran
        if options is None:
            line = b"SEARCH" + b"".join(b" %d" % (u if uid else seq,) for seq, u, _, _ in found)
            if modseq and found:
                line += b" (MODSEQ %d)" % (max(m for _, _, m, _ in found),)
        else:
            entries = [(u if uid else seq, u, m) for seq, u, m, _ in found]
            if b"SAVE" in options:
                self.saved_search = esearch.saved_uids(options, entries)
            line = esearch.esearch_line(tag, options, entries, uid, modseq)
        if line is not None:
            self.sendUntaggedResponse(line)
        self.sendPositiveResponse(tag, b"SEARCH completed")

    def _search_failed(self, failure, tag):
        failure.trap(Exception)
        if self.transport is not None and self._current == tag:
            self._fail(tag, failure)

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
