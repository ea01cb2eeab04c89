"""SORT and THREAD, UID SORT and UID THREAD (RFC 5256), with ESORT's ``SORT RETURN (...)``
(RFC 5267), as a mixin of L{imapwebpush.imap.core.IMAPCore}.

The search criteria go through the SEARCH steps (imap/search_command.py): compiled by
``compile_criteria``, matched in slices by L{imapwebpush.imap.search_scan.scan}, which
also reads each match's sort key (or what threading needs) while the message is at hand;
imap/sort.py orders them, imap/thread.py threads them, and the answer line is written,
in slices too (``search_scan.finish``): 20,000 messages are sorted or threaded without
holding the other sessions for more than a few milliseconds at a time.
"""

from imapwebpush import wire
from imapwebpush.imap import esearch, search_scan, sort, thread
from imapwebpush.imap.core import Bad

# numbers written into the answer line between two chances for the reactor
_NUMBERS_PER_STEP = 2000


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


def sort_response(criteria, found, modseq, uid):
    """Generator returning the ``SORT ...`` line of the matches ``found`` (L{search_scan.scan}'s)."""
    entries = [key + (u if uid else seq,) for seq, u, _, key in found]
    yield from sort.ordering(criteria, entries)
    last = len(criteria)
    parts = [b"SORT"]
    for start in range(0, len(entries), _NUMBERS_PER_STEP):
        parts.append(b"".join(b" %d" % (e[last],) for e in entries[start : start + _NUMBERS_PER_STEP]))
        yield
    if modseq and found:
        parts.append(b" (MODSEQ %d)" % (max(m for _, _, m, _ in found),))
    return b"".join(parts)


def esort_response(tag, options, criteria, found, modseq, uid):
    """Generator returning ``(ESEARCH line or None, [(number, uid, modseq)] in sort order)``
    of ``SORT RETURN (...)`` (ESORT, RFC 5267 3.1)."""
    entries = [key + (u if uid else seq, u, m) for seq, u, m, key in found]
    yield from sort.ordering(criteria, entries)
    last = len(criteria)
    ordered = [e[last:] for e in entries]
    yield
    return esearch.esearch_line(tag, options, ordered, uid, modseq, ordered=True), ordered


def thread_response(algorithm, found, uid):
    """Generator returning the ``THREAD ...`` line of the matches ``found`` (L{search_scan.scan}'s)."""
    entries = [(u if uid else seq, key) for seq, u, _, key in found]
    if algorithm == b"ORDEREDSUBJECT":
        roots = yield from thread.ordered_subject_steps(entries)
    else:
        roots = yield from thread.references_steps(entries)
    text = yield from thread.thread_list_steps(roots)
    return b"THREAD " + text if text else b"THREAD"


class SortCommandMixin:
    """SORT, THREAD and their UID forms."""

    def do_SORT(self, tag, line, uid=False):
        options, line = esearch.split_return(line)
        if options is not None and b"SAVE" in options:
            self.saved_search = ()  # RFC 5182 2.1: a failed SORT (SAVE) leaves "$" empty
        criteria, search_line = split_sort_line(line, self.max_nesting)
        query = self.compile_criteria(search_line)
        view = self.view
        coop = self.search_cooperator()
        d = search_scan.scan(view, query.predicate, coop, keep=sort.sort_key(criteria),
                             max_parts=self.max_mime_parts)
        if options is None:
            d.addCallback(
                lambda found: search_scan.finish(sort_response(criteria, found, query.uses_modseq, uid), coop)
            )
        else:
            d.addCallback(
                lambda found: search_scan.finish(
                    esort_response(tag, options, criteria, found, query.uses_modseq, uid), coop
                )
            )
            d.addCallback(self._esorted, view, options)
        d.addCallback(self._answered, tag, view, b"SORT completed")
        d.addErrback(self._search_failed, tag)

    select_SORT = (do_SORT, lambda self, line: self.arg_search(line))

    def do_THREAD(self, tag, line, uid=False):
        algorithm, search_line = split_thread_line(line)
        query = self.compile_criteria(search_line)
        view = self.view
        coop = self.search_cooperator()
        d = search_scan.scan(view, query.predicate, coop, keep=thread.thread_info,
                             max_parts=self.max_mime_parts)
        d.addCallback(lambda found: search_scan.finish(thread_response(algorithm, found, uid), coop))
        d.addCallback(self._answered, tag, view, b"THREAD completed")
        d.addErrback(self._search_failed, tag)

    select_THREAD = (do_THREAD, lambda self, line: self.arg_search(line))

    def _esorted(self, result, view, options):
        """The ESEARCH line of an ESORT; RETURN (SAVE) keeps its messages for ``$`` first."""
        line, ordered = result
        if self.view is view and b"SAVE" in options:
            self.saved_search = esearch.saved_uids(options, ordered)
        return line

    def _answered(self, line, tag, view, completed):
        if self.view is not view:
            return  # the connection went while the search ran
        if line is not None:  # None: RETURN (SAVE) alone tells nothing
            self.sendUntaggedResponse(line)
        self.sendPositiveResponse(tag, completed)
