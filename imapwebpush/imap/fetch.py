"""FETCH (and UID FETCH, with CONDSTORE/QRESYNC modifiers), as a mixin of
L{imapwebpush.imap.core.IMAPCore}, and the streamer that writes its answers.

The attribute list is parsed by L{imapwebpush.imap.fetch_attributes} (its result
cached per text); each message's answer is rendered when the streamer asks for it, so
a FETCH of many large messages never holds them all in memory. BINARY[...] and
BINARY.SIZE[...] (RFC 3516) are answered here, over the decoding of imap/binary.py.
"""

import collections
import os

from twisted.internet import interfaces
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer

from imapwebpush import wire
from imapwebpush.imap import binary, mime_map, qresync
from imapwebpush.imap.core import EXPUNGEISSUED, Bad, No, arg_rest, arg_word
from imapwebpush.imap.fetch_attributes import fetch_attributes, is_section
from imapwebpush.imap.message import RawPart, StoredMessage, body_structure, message_envelope, wire_safe
from imapwebpush.imap.mime_map import MappedPart


def split_fetch_arguments(rest):
    """(attribute text, modifier text) of what follows FETCH's sequence set."""
    if rest[:1] == b"(":
        end = wire.matching_paren(rest)
    else:
        # one attribute; a section (BODY[HEADER.FIELDS (A B)]) may hold spaces up to its "]"
        first = rest.find(b" ")
        if first != -1 and b"[" in rest[:first]:
            close = rest.find(b"]")
            first = -1 if close == -1 else rest.find(b" ", close)
        end = len(rest) if first == -1 else first
    return rest[:end], rest[end:].strip()


def _header_section(header):
    """HEADER, HEADER.FIELDS (names) or HEADER.FIELDS.NOT (names), names as the client sent them."""
    if not header.fields:
        return b"HEADER"
    return b"HEADER.FIELDS%s (%s)" % (b".NOT" if header.negate else b"", b" ".join(header.raw_fields))


class _Request:
    """One FETCH command: what was asked, and what the answers need along the way."""

    def __init__(self, attrs, by_uid, want_modseq, seen_changes):
        self.attrs = attrs
        self.by_uid = by_uid
        self.want_modseq = want_modseq
        self.seen_changes = seen_changes  # uid -> (flags, modseq) this FETCH set \Seen on
        self.expunged = []  # named by the client, expunged by another session
        # of a large message, what needs its MIME map: a section item; the kinds whose
        # answers the answer cache may hold (BODYSTRUCTURE, BODY)
        self.map_sections = any(_needs_map(a) for a in attrs)
        self.map_kinds = {a.type for a in attrs if _is_structure(a)}


class FetchCommandMixin:
    """FETCH and UID FETCH."""

    # parts of a large message described and served from its file's map (--max-mime-parts)
    max_mime_parts = mime_map.DEFAULT_MAX_PARTS

    def do_FETCH(self, tag, seqset, rest, uid=False):
        attr_text, modifiers = split_fetch_arguments(rest)
        try:
            changedsince, vanished = qresync.parse_fetch_modifiers(modifiers)
        except qresync.QresyncError as e:
            raise Bad(str(e))
        if vanished:
            if not uid:
                raise Bad("VANISHED is only allowed in UID FETCH")  # RFC 7162 3.2.6
            if not self.qresync_enabled:
                raise Bad("QRESYNC is not enabled")
        attrs, names_modseq, any_sets_seen = fetch_attributes(attr_text)
        want_modseq = changedsince is not None or names_modseq
        if want_modseq:
            self._enable_condstore()
        request = _Request(attrs, uid, want_modseq, {})
        messages = self._fetch_targets(seqset, uid, changedsince, request)
        for line in self.view.new_flags_lines():
            # a keyword another session brought into use is announced before a FETCH shows it
            self.sendUntaggedResponse(line)
        if vanished:
            self._fetch_vanished(seqset, changedsince)
        if any_sets_seen and not self.view.readonly:
            unseen = [u for _, u, m in messages if m is not None and "\\Seen" not in m.flags]
            if unseen:
                request.seen_changes, _ = self.view.mailbox.set_flags(unseen, ["\\Seen"], "add", origin=self)

        def render(item):
            return self._fetch_render(item, request)

        def finish():
            # RFC 2180 4.1.2, as Dovecot does: the live messages are answered, one another
            # session expunged is not, and the command succeeds; by UID a message that is
            # gone is simply not there (its EXPUNGE follows).
            if request.expunged and not uid:
                self.sendPositiveResponse(tag, EXPUNGEISSUED.encode("ascii"))
            else:
                self.sendPositiveResponse(tag, b"FETCH completed")

        def fail(failure):
            self._fail(tag, failure)

        _FetchStreamer(self, messages, render, finish, fail).start()

    select_FETCH = (do_FETCH, arg_word, arg_rest)

    def _fetch_targets(self, seqset, uid, changedsince, request):
        """[(seq, uid, stored message)] to answer; UIDs gone meanwhile go to ``request.expunged``.

        A message another session expunged that this client still numbers (a ghost) keeps
        what the view knows, its UID: FETCH by number answers ``UID n`` when asked (stored
        None), as Dovecot does, and only the other items count as not answered.
        """
        view = self.view
        expunged = request.expunged
        wants_uid = not uid and any(a.type == "uid" for a in request.attrs)
        only_uid = wants_uid and not request.want_modseq and all(a.type == "uid" for a in request.attrs)
        messages = []
        for seq, u in self._resolve(seqset, uid):
            if view.is_ghost(u):
                if wants_uid:
                    messages.append((seq, u, None))
                if not only_uid:
                    expunged.append(u)
                continue
            try:
                stored = view.mailbox.message(u)
            except KeyError:
                expunged.append(u)
                continue
            if changedsince is not None and stored.modseq <= changedsince:
                continue
            messages.append((seq, u, stored))
        return messages

    def _fetch_render(self, item, request):
        """The answer to one message, or b"" when another session expunged it meanwhile."""
        seq, u, stored = item
        view = self.view
        if stored is None:  # a ghost: its UID is all that is left (_fetch_targets)
            return b"* %d FETCH (UID %d)\r\n" % (seq, u)
        if stored.size > STREAM_MIN and self._map_first(stored, request):
            # its MIME map is read a piece per step of the streamer, then it is answered
            steps = _unless_gone(mime_map.map_steps(stored, self.max_mime_parts))
            return [_Computed(None, steps, lambda _root: self._fetch_render(item, request))]
        try:
            return self._fetch_response(seq, u, stored, request)
        except (KeyError, OSError):
            if view.is_ghost(u) or u not in view.mailbox.uids():
                request.expunged.append(u)  # expunged by another session while streaming
                return b""
            raise

    def _map_first(self, stored, request):
        """True when answering a large message needs a map not yet built."""
        if not (request.map_sections or request.map_kinds):
            return False
        if mime_map.is_mapped(stored, self.max_mime_parts):
            return False
        if request.map_sections:
            return True
        cache = getattr(self.view.mailbox, "answer_cache", None)
        entry = None if cache is None else cache.get(stored.uid)
        return entry is None or entry[0] is not stored or not request.map_kinds <= entry[1].keys()

    def _fetch_vanished(self, seqset, changedsince):
        """``VANISHED (EARLIER)`` of UID FETCH ... (CHANGEDSINCE n VANISHED) (RFC 7162 3.2.6):
        the UIDs of the set expunged after ``n``. A message this client still numbers
        (another session expunged it, not yet told) is left to the plain VANISHED that
        ends the command."""
        view = self.view
        mailbox = view.mailbox
        star = max(mailbox.uidnext - 1, view.uids[-1] if view.uids else 0)
        if star < 1:
            return
        asked = wire.normalize(wire.with_star(wire.parse_sequence_set(seqset), star))
        gone = wire.intersect(mailbox.vanished_ranges(changedsince), asked)
        gone = wire.subtract(gone, wire.ranges_of(view.uids))
        for line in qresync.vanished_lines(gone, earlier=True):
            self.sendUntaggedResponse(line)

    def _fetch_response(self, seq, uid, stored, request):
        view = self.view
        flags, modseq = stored.flags, stored.modseq
        seen_changes = request.seen_changes
        if uid in seen_changes:
            flags, modseq = seen_changes[uid]
        items = []
        if request.by_uid:
            items.append(b"UID %d" % (uid,))
        message = None
        has_flags = False
        for attr in request.attrs:
            kind = attr.type
            if kind == "uid":
                if not request.by_uid:
                    items.append(b"UID %d" % (uid,))
            elif kind == "flags":
                has_flags = True
                items.append(view.flags_item(uid, flags))
            elif kind == "internaldate":
                items.append(b"INTERNALDATE " + wire.format_internaldate(stored.internaldate))
            elif kind == "savedate":
                saved = stored.saved  # None: not known (a journal from before save dates)
                items.append(b"SAVEDATE " + (b"NIL" if saved is None else wire.format_internaldate(saved)))
            elif kind == "rfc822size":
                items.append(b"RFC822.SIZE %d" % (stored.size,))
            else:
                if message is None:
                    message = StoredMessage(stored, flags)
                items.append(self._fetch_content(attr, message))
        if uid in seen_changes and not has_flags:
            items.append(view.flags_item(uid, flags))
        if request.want_modseq or (view.condstore and (has_flags or uid in seen_changes)):
            items.append(b"MODSEQ (%d)" % (modseq,))
        if not any(isinstance(item, _FileRange) for item in items):
            return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items))
        # [bytes, _FileRange, bytes, ...]: the streamer reads each range as the client reads
        pieces = [b"* %d FETCH (" % (seq,)]
        for n, item in enumerate(items):
            if n:
                pieces.append(b" ")
            if isinstance(item, _FileRange):
                pieces.extend((item.head, item))
            else:
                pieces.append(item)
        pieces.append(b")\r\n")
        return pieces

    def _fetch_content(self, attr, message):
        kind = attr.type
        stored = message.stored  # (a large message is read through its MIME map below)
        if kind == "binary" or kind == "binarysize":
            return self._fetch_binary(attr, message)
        structure = _is_structure(attr)
        large = message.stored.size > STREAM_MIN
        if large:
            if not attr.part:
                streamed = _streamed(attr, message.stored)
                if streamed is not None:
                    return streamed
            header = None
            if kind in ("envelope", "rfc822header") or (kind == "body" and attr.header and not attr.part):
                header = _header_block(message.stored)  # the store's cached header block
            if header is not None:
                message = RawPart(header)
            elif not structure:  # (that maps it only when its answer is not cached)
                # the rest from the message's MIME map: headers read, sections streamed
                message = _mapped(message, self.max_mime_parts)
        if kind == "body" and attr.empty and not attr.part and attr.partial_begin is None:
            # BODY[] / BODY.PEEK[]: the stored octets as they are, nothing parsed
            return b"BODY[] " + wire.literal(message.raw)
        if kind == "envelope":
            return self._derived(stored, message, kind, self._fetch_envelope)
        if structure:
            extended = kind == "bodystructure"

            def make(m):
                return self._fetch_structure(_mapped(m, self.max_mime_parts) if large else m, extended)

            return self._derived(stored, message, kind, make)
        if kind == "rfc822":
            return b"RFC822 " + wire.literal(message.raw)
        if kind == "rfc822header":
            return _item(message, b"RFC822.HEADER", _header_of(message), attr)
        if kind == "rfc822text":
            return _item(message, b"RFC822.TEXT", _body_of(message), attr)
        return self._fetch_section(attr, message)

    def _fetch_binary(self, attr, message):
        """BINARY[...] or BINARY.SIZE[...] of one message (RFC 3516): a literal8 when the
        decoded octets hold NUL, else a literal; No [UNKNOWN-CTE] when they cannot be had."""
        path = attr.part
        try:
            data = b""  # a section the message does not have
            if message.stored.size > STREAM_MIN:
                streamed = _streamed_binary(attr, message.stored)
                if streamed is None:
                    streamed = _mapped_binary(attr, _mapped(message, self.max_mime_parts))
                if streamed is not None:
                    return streamed
            else:
                data = message.decoded.get(path)
                if data is None:
                    data = message.decoded[path] = binary.decoded_section(message, path)
        except binary.UnknownCTE as e:
            raise No("[UNKNOWN-CTE] %s" % (e,))
        section = b".".join(b"%d" % (p + 1) for p in path)
        if attr.type == "binarysize":
            return b"BINARY.SIZE[%s] %d" % (section, len(data))
        name = b"BINARY[%s]" % (section,)
        if attr.partial_begin is not None:
            data = data[attr.partial_begin : attr.partial_begin + attr.partial_length]
            name += b"<%d>" % (attr.partial_begin,)
        return name + b" " + wire.binary_literal(data)

    def _derived(self, stored, message, kind, make):
        """``make(message)``, an answer that depends on the octets of ``stored`` alone, kept
        in the mailbox's answer cache: parsing the header block was most of the time of
        a FETCH (ENVELOPE BODYSTRUCTURE)."""
        cache = getattr(self.view.mailbox, "answer_cache", None)
        if cache is None:
            return make(message)
        entry = cache.get(stored.uid)
        if entry is None or entry[0] is not stored:
            entry = (stored, {})
            cache.put(stored.uid, entry)
        answer = entry[1].get(kind)
        if answer is None:
            answer = entry[1][kind] = make(message)
        return answer

    def _fetch_envelope(self, message):
        try:
            return b"ENVELOPE " + message_envelope(message.header)
        except Exception:
            self._log_unexpected(Failure())  # a traceback once per kind and session
            return b"ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"

    def _fetch_structure(self, message, extended):
        name = b"BODYSTRUCTURE" if extended else b"BODY"
        try:
            structure = body_structure(message, extended)
            return name + b" " + imap4.collapseNestedLists([wire_safe(structure)])
        except Exception:
            self._log_unexpected(Failure())
            return name + b' ("TEXT" "PLAIN" NIL NIL NIL "7BIT" %d %d)' % (message.body_size(), message.body_lines())

    def _fetch_section(self, attr, message):
        path = tuple(attr.part or ())
        section = [str(p + 1).encode() for p in path]
        try:
            part = message.section(path) if path else message
        except (KeyError, IndexError):
            part = None
        if attr.header or attr.text:
            if part is not None and path and part.is_encapsulated():
                part = part.subparts()[0]
        if attr.header:
            header = attr.header
            section.append(_header_section(header))
            if part is None:
                data = b""
            elif header.fields:
                fields = [f.decode("ascii", "replace") if isinstance(f, bytes) else f for f in header.fields]
                data = part.header_fields(fields, header.negate)
            else:
                data = _header_of(part)
        elif attr.text:
            section.append(b"TEXT")
            data = b"" if part is None else _body_of(part)
        elif attr.mime:
            section.append(b"MIME")
            data = b"" if part is None else _header_of(part)
        else:
            data = b"" if part is None else (_body_of(part) if path else _raw_of(part))
        return _item(message, b"BODY[" + b".".join(section) + b"]", data, attr)


# A message larger than this is never read whole: BODY[], RFC822, TEXT and their
# partials are its file, sent STREAM_CHUNK octets at a time as the client reads; the
# rest (sections, BODYSTRUCTURE, BINARY) comes from its MIME map (imap/mime_map.py).
STREAM_MIN = 256 * 1024
STREAM_CHUNK = 64 * 1024


def _is_structure(attr):
    """BODYSTRUCTURE or BODY (not a section)."""
    return attr.type == "bodystructure" or (attr.type == "body" and not is_section(attr))


def _needs_map(attr):
    """True when ``attr`` of a large message reads its MIME map: a numbered part, MIME, or
    BINARY of a part that is not the message's only one (ENVELOPE, HEADER, TEXT and
    BODY[] read the file or its cached header block)."""
    if attr.type in ("binary", "binarysize"):
        return attr.part not in ((), (0,))
    return attr.type == "body" and bool(attr.part or attr.mime)


def _unless_gone(steps):
    """``steps``, ended (returning None) when the message's file is gone: the answer
    that follows finds it expunged."""
    try:
        return (yield from steps)
    except (KeyError, OSError):
        return None


def _mapped(message, max_parts):
    """The L{MappedPart} of a large StoredMessage (built once per FETCH of it)."""
    if message.mapped is None:
        message.mapped = mime_map.mapped_message(message.stored, max_parts)
    return message.mapped


# What a section holds: its octets (a RawPart), or where they lie in the message file
# (a MappedPart of a large message), which _item streams.


def _header_of(part):
    return part.header_range() if type(part) is MappedPart else part.header


def _body_of(part):
    return part.body_range() if type(part) is MappedPart else part.body


def _raw_of(part):
    return part.raw_range() if type(part) is MappedPart else part.raw


def _item(part, name, data, attr):
    """``name`` and a literal of ``data``, octets or a (start, end) range of the file of
    ``part``'s message; with ``attr``'s partial."""
    if type(data) is tuple:
        start, end = data
        return _file_range(part.stored, name, start, attr, stop=end)
    if attr.partial_begin is not None:
        data = data[attr.partial_begin : attr.partial_begin + attr.partial_length]
        name += b"<%d>" % (attr.partial_begin,)
    return name + b" " + wire.literal(data)


def _mapped_binary(attr, message):
    """BINARY[part] or BINARY.SIZE[part] of a large message from its MIME map: a part sent
    as stored is a range of its file, an encoded one is decoded while it is sent. Its
    decoded size (and whether it holds NUL) comes first from a decoding pass that keeps
    nothing, made a STREAM_CHUNK per step of the streamer (L{_Computed}) and kept with
    the map. None for a part the message does not have (answered as usual: empty)."""
    path = attr.part
    try:
        part = message.section(path)
    except (KeyError, IndexError):
        return None
    section = b".".join(b"%d" % (p + 1) for p in path)
    decoder = binary.piece_decoder(part)  # UnknownCTE: the caller answers NO
    start, end = part.body_range()
    stored = message.stored
    if decoder is None:
        if attr.type == "binarysize":
            return b"BINARY.SIZE[%s] %d" % (section, end - start)
        return _file_range(stored, b"BINARY[%s]" % (section,), start, attr, binary=True, stop=end)
    node = part.node
    partial = attr.type == "binary" and attr.partial_begin is not None

    def facts(f):
        if node.decoded is None:
            node.decoded = yield from _decoded_facts(f, part, 0, None)
        size, nul = node.decoded
        if partial and nul:  # does the part asked for hold one?
            begin = min(attr.partial_begin, size)
            nul = (yield from _decoded_facts(f, part, begin, min(attr.partial_length, size - begin)))[1]
        return size, nul

    if attr.type == "binarysize":
        answer = lambda facts: b"BINARY.SIZE[%s] %d" % (section, facts[0])  # noqa: E731
        if node.decoded is not None:
            return answer(node.decoded)
        f = stored.open()
        return _Computed(f, facts(f), answer)
    name = b"BINARY[%s]" % (section,)
    if partial:
        name += b"<%d>" % (attr.partial_begin,)
    answer = _DecodedRange(stored.open(), start, end, decoder)

    def head(facts):
        size, nul = facts
        begin, length = 0, size
        if partial:
            begin = min(attr.partial_begin, size)
            length = min(attr.partial_length, size - begin)
        answer.skip, answer.left = begin, length
        if not length:
            answer.close()  # nothing to read
        return name + b" " + (b"~{%d}\r\n" if nul else b"{%d}\r\n") % (length,)

    if node.decoded is not None and not (partial and node.decoded[1]):
        answer.head = head(node.decoded)
    else:
        f = stored.open()
        answer.head = _Computed(f, facts(f), head)
    return answer


def _decoded_facts(f, part, begin, length):
    """A generator that yields after each STREAM_CHUNK octets of the MappedPart ``part``
    it decodes from the open file ``f``, and returns (decoded size, NUL among the
    ``length`` decoded octets from ``begin``; None: to the end)."""
    start, end = part.body_range()
    decoder = binary.piece_decoder(part)
    size, nul = 0, False
    f.seek(start)
    left = end - start
    while True:
        chunk = f.read(min(STREAM_CHUNK, left)) if left > 0 else b""
        left -= len(chunk)
        data = decoder.feed(chunk) if chunk else decoder.flush()
        if not nul:
            lo = max(begin - size, 0)
            hi = len(data) if length is None else min(len(data), begin + length - size)
            nul = lo < hi and b"\x00" in data[lo:hi]
        size += len(data)
        if not chunk:
            return size, nul
        yield


def _streamed(attr, stored):
    """A L{_FileRange} answering ``attr`` from ``stored``'s file, or None (not a whole-file item).

    BODY[] and RFC822 are the file; BODY[TEXT] and RFC822.TEXT the file after its
    header block (when that block ends within the header reader's limit).
    """
    kind = attr.type
    if kind == "rfc822":
        name, text = b"RFC822", False
    elif kind == "rfc822text":
        name, text = b"RFC822.TEXT", True
    elif kind == "body" and attr.empty and not attr.header and not attr.mime:
        name, text = b"BODY[]", False
    elif kind == "body" and attr.text and not attr.header and not attr.mime:
        name, text = b"BODY[TEXT]", True
    else:
        return None
    start = 0
    if text:
        header = _header_block(stored)
        if header is None:
            return None
        start = len(header)
    return _file_range(stored, name, start, attr)


def _streamed_binary(attr, stored):
    """BINARY[] or BINARY[1] (or their BINARY.SIZE) of a large message from its file when
    nothing is to be decoded: the whole message, or the body of a message that is one
    part in 7bit, 8bit or binary. None otherwise: the section is decoded in memory."""
    if attr.part not in ((), (0,)):
        return None
    start = 0
    if attr.part:
        header = _header_block(stored)
        if header is None:
            return None
        top = RawPart(header)
        if top.isMultipart() or not binary.plain(top):
            return None
        start = len(header)
    section = b"1" if attr.part else b""
    if attr.type == "binarysize":
        return b"BINARY.SIZE[%s] %d" % (section, stored.size - start)
    return _file_range(stored, b"BINARY[%s]" % (section,), start, attr, binary=True)


def _header_block(stored):
    """The message's header block, or None when it ends beyond the header reader's limit
    (the message is then parsed in memory)."""
    header = stored.headers()
    if header != b"\r\n" and not header.endswith(b"\r\n\r\n"):
        return None
    return header


def _file_range(stored, name, start, attr, binary=False, stop=None):
    """A L{_FileRange} of ``stored``'s file from ``start`` to ``stop`` (the end when None),
    and ``attr``'s partial of that, named ``name``; with ``binary``, a literal8 when those
    octets hold NUL (one more read)."""
    f = stored.open()  # KeyError when expunged meanwhile (the caller handles it)
    size = (os.fstat(f.fileno()).st_size if stop is None else stop) - start
    if attr.partial_begin is not None:
        skip = min(attr.partial_begin, max(size, 0))
        start += skip
        size = min(attr.partial_length, size - skip)
        name += b"<%d>" % (attr.partial_begin,)
    size = max(size, 0)
    if binary and _holds_nul(f, start, size):
        return _FileRange(name + b" ~{%d}\r\n" % (size,), f, start, size)
    return _FileRange(name + b" {%d}\r\n" % (size,), f, start, size, plain=True)


def _holds_nul(f, start, size):
    """True when the ``size`` octets of ``f`` from ``start`` hold a NUL (read 1 MiB at a time)."""
    f.seek(start)
    while size > 0:
        chunk = f.read(min(size, 1024 * 1024))
        if not chunk:
            return False
        if b"\x00" in chunk:
            return True
        size -= len(chunk)
    return False


class _FileRange:
    """``size`` octets of an open file from ``start``, read STREAM_CHUNK at a time; ``head``
    goes before them (the item's name and literal header). In a ``plain`` literal (not a
    literal8) each NUL is sent as 0x80 (L{wire.literal})."""

    def __init__(self, head, file, start, size, plain=False):
        self.head = head
        self.plain = plain
        self.file = file
        self.file.seek(start)
        self.left = size

    def read(self):
        """The next chunk; the file is closed after the last one (short file: zeros, see below)."""
        chunk = self.file.read(min(STREAM_CHUNK, self.left))
        if not chunk and self.left:
            # The file shrank under us (it never should: Maildir files are immutable);
            # the literal's length was promised, so the client cannot resynchronise.
            self.close()
            raise OSError("message file shorter than announced")
        self.left -= len(chunk)
        if not self.left:
            self.close()
        return wire.without_nul(chunk) if self.plain else chunk

    @property
    def done(self):
        return not self.left

    def close(self):
        self.file.close()


class _DecodedRange(_FileRange):
    """What ``decoder`` makes of the file's octets ``start``..``stop``: ``left`` octets
    of it after ``skip`` (set with ``head`` once the decoded size is known), decoded
    STREAM_CHUNK file octets per read (BINARY of an encoded part)."""

    def __init__(self, file, start, stop, decoder):
        super().__init__(None, file, start, 0)
        self.raw_left = stop - start
        self.decoder = decoder
        self.skip = 0

    def read(self):
        """The next decoded octets: b"" while skipping (one file chunk per read)."""
        if self.raw_left <= 0:
            self.close()
            raise OSError("decoded section shorter than announced")
        raw = self.file.read(min(STREAM_CHUNK, self.raw_left))
        if not raw:
            self.close()
            raise OSError("message file shorter than announced")
        self.raw_left -= len(raw)
        data = self.decoder.feed(raw)
        if not self.raw_left:
            data += self.decoder.flush()
        if self.skip:
            cut = min(self.skip, len(data))
            data, self.skip = data[cut:], self.skip - cut
        data = data[: self.left]
        self.left -= len(data)
        if not self.left:
            self.close()
        return data


class _Computed(_FileRange):
    """Octets known after a pass over part of a file, made a step per read as the
    streamer asks (b"" until then), so a pass over a large message (its MIME map, a
    part's decoding) does not hold the reactor: ``steps`` yields after each piece it
    reads (from ``file``, or a file of its own when None) and returns the value
    ``finish`` makes the answer of: octets, or pieces as _fetch_response gives them
    (bytes and file ranges), given out in turn."""

    def __init__(self, file, steps, finish):
        self.head = b""
        self.file = file
        self.steps = steps
        self.finish = finish
        self.left = 1  # not done until the answer went out
        self.pieces = None  # what ``finish`` made

    def read(self):
        pieces = self.pieces
        if pieces is None:
            try:
                next(self.steps)
                return b""
            except StopIteration as end:
                if self.file is not None:
                    self.file.close()
                made = self.finish(end.value)
                pieces = self.pieces = collections.deque([made] if type(made) is bytes else made)
        data = b""
        while pieces:
            piece = pieces[0]
            if type(piece) is bytes:
                pieces.popleft()
                data = piece
                break
            if piece.done:
                pieces.popleft()
                continue
            data = piece.read()
            break
        while pieces and type(pieces[0]) is not bytes and pieces[0].done:
            pieces.popleft()
        if not pieces:
            self.left = 0
        return data

    def close(self):
        self.steps.close()
        if self.file is not None:
            self.file.close()
        for piece in self.pieces or ():
            if isinstance(piece, _FileRange):
                piece.close()


@implementer(interfaces.IPushProducer)
class _FetchStreamer:
    """Writes FETCH responses without holding the reactor or filling memory.

    Small answers go out at once. Large ones are written a slice per reactor turn,
    registered as a streaming producer so a slow client pauses the work (backpressure).
    """

    SLICE = 256 * 1024

    def __init__(self, server, items, render, finish, fail):
        self.server = server
        self.items = items
        self.index = 0
        self.render = render
        self.finish = finish
        self.fail = fail  # a message's answer was refused (No): the command ends with it
        self.paused = False
        self.stopped = False
        self.registered = False
        self.call = None
        self.pending = collections.deque()  # what is left of the current message's answer

    def start(self):
        if not self._slice():
            return
        self.server.transport.registerProducer(self, True)
        self.registered = True
        self._schedule()

    def _slice(self):
        """Write up to SLICE octets; False when everything (and the tagged answer) went out."""
        written = 0
        write = self.server._write  # held with the rest of the answer while input is handled
        pending = self.pending
        while written < self.SLICE:
            if self.paused or self.stopped:
                return True
            if not pending:
                if self.index >= len(self.items):
                    break
                data = self.render(self.items[self.index])
                self.index += 1
                if type(data) is bytes:
                    write(data)
                    written += len(data)
                else:
                    pending.extend(data)
                continue
            piece = pending[0]
            if type(piece) is bytes:
                pending.popleft()
            else:
                if piece.done:
                    pending.popleft()
                    continue
                piece = piece.read()
            write(piece)
            written += len(piece) or STREAM_CHUNK  # a step of a decoding pass: nothing yet
        if self.index < len(self.items) or pending:
            return True
        if self.registered:
            self.server.transport.unregisterProducer()
            self.registered = False
        if not self.stopped:
            self.finish()
        return False

    def pending_file(self):
        """The file being streamed, if one is open (for tests)."""
        for piece in self.pending:
            if isinstance(piece, _FileRange) and piece.file is not None and not piece.file.closed:
                return piece.file
        return None

    def _schedule(self):
        if self.call is None and not self.paused and not self.stopped:
            self.call = self.server.clock.callLater(0, self._run)

    def _unschedule(self):
        if self.call is not None:
            self.call.cancel()
            self.call = None

    def _run(self):
        self.call = None
        self.server.resetTimeout()  # a long download is activity, not an idle client
        try:
            more = self._slice()
        except No:  # raised before any octet of that message's answer went out
            failure = Failure()
            self.stopProducing()
            self.server.transport.unregisterProducer()
            self.registered = False
            self.fail(failure)
            return
        except Exception:
            self.stopProducing()
            self.server.log.failure("FETCH stopped half-way")
            self.server.transport.loseConnection()  # the client cannot resynchronise
            return
        if more:
            self._schedule()

    def pauseProducing(self):
        self.paused = True
        self._unschedule()

    def resumeProducing(self):
        self.paused = False
        self._schedule()

    def stopProducing(self):
        self.stopped = True
        self._unschedule()
        for piece in self.pending:  # the connection is gone: close what was being read
            if isinstance(piece, _FileRange):
                piece.close()
        self.pending.clear()
