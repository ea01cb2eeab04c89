"""SORT and THREAD, UID SORT and UID THREAD (RFC 5256), as a mixin of L{imapwebpush.imap.core.IMAPCore}.

The search criteria go through the SEARCH steps (imap/search_command.py): compiled by
``compile_criteria``, matched in slices by L{imapwebpush.imap.search_scan.scan}, which
also reads each match's sort key (or what threading needs) while the message is at hand;
imap/sort.py orders them, imap/thread.py threads them.
"""

from imapwebpush import wire
from imapwebpush.imap import search_scan, sort, thread
from imapwebpush.imap.core import Bad


def split_sort_line(line, max_nesting):
    """(criteria, search line with its CHARSET) of ``(criteria) charset search-key...``."""
    line = line.lstrip()
    if line[:1] != b"(":
        raise Bad("Expected a list of sort criteria")
    end = wire.matching_paren(line)
    if end <= 0 or line[end - 1 : end] != b")":
        raise Bad("Unterminated sort criteria")
    criteria = sort.parse_criteria(wire.parse_list(line[1 : end - 1], max_nesting))
    rest = line[end:].lstrip()
    charset, _, search = rest.partition(b" ")
    if not charset or not search.strip():
        raise Bad("Expected a charset and search criteria")
    return criteria, b"CHARSET " + charset + b" " + search


def split_thread_line(line):
    """(algorithm, search line with its CHARSET) of ``algorithm charset search-key...``."""
    algorithm, _, rest = line.strip().partition(b" ")
    algorithm = algorithm.upper()
    if algorithm not in thread.ALGORITHMS:
        raise Bad("Unknown threading algorithm")
    charset, _, search = rest.strip().partition(b" ")
    if not charset or not search.strip():
        raise Bad("Expected a charset and search criteria")
    return algorithm, b"CHARSET " + charset + b" " + search


class SortCommandMixin:
    """SORT, THREAD and their UID forms."""

    def do_SORT(self, tag, line, uid=False):
        criteria, search_line = split_sort_line(line, self.max_nesting)
        query = self.compile_criteria(search_line)
        view = self.view
        d = search_scan.scan(view, query.predicate, self.search_cooperator(), keep=sort.sort_key(criteria))
        d.addCallback(self._sorted, tag, view, criteria, query.uses_modseq, uid)
        d.addErrback(self._search_failed, tag)

    def _sorted(self, found, tag, view, criteria, modseq, uid):
        if self.view is not view:
            return  # the connection went while the search ran
        entries = sort.ordered(criteria, [(m.seq, m.key, m) for m in found])
        line = b"SORT" + b"".join(b" %d" % (m.uid if uid else m.seq,) for _, _, m in entries)
        if modseq and found:
            line += b" (MODSEQ %d)" % (max(m.modseq for m in found),)
        self.sendUntaggedResponse(line)
        self.sendPositiveResponse(tag, b"SORT completed")

    select_SORT = (do_SORT, lambda self, line: self.arg_search(line))

    def do_THREAD(self, tag, line, uid=False):
        algorithm, search_line = split_thread_line(line)
        query = self.compile_criteria(search_line)
        view = self.view
        d = search_scan.scan(view, query.predicate, self.search_cooperator(), keep=thread.thread_info)
        d.addCallback(self._threaded, tag, view, algorithm, uid)
        d.addErrback(self._search_failed, tag)

    def _threaded(self, found, tag, view, algorithm, uid):
        if self.view is not view:
            return
        entries = [(m.uid if uid else m.seq, m.key) for m in found]
        if algorithm == b"ORDEREDSUBJECT":
            roots = thread.ordered_subject(entries)
        else:
            roots = thread.references(entries)
        text = thread.format_threads(roots)
        self.sendUntaggedResponse(b"THREAD " + text if text else b"THREAD")
        self.sendPositiveResponse(tag, b"THREAD completed")

    select_THREAD = (do_THREAD, lambda self, line: self.arg_search(line))
