"""THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES over the messages a SEARCH found.

Pure: ``thread_info(item)`` reads what threading needs of a message (Message-ID,
References or In-Reply-To, base subject, sent date); ``ordered_subject`` and
``references`` turn [(number, info)] into a list of L{Node} trees, and ``format_threads``
writes them as RFC 5256's thread-list.

Each is also a generator (``..._steps``) that yields every few hundred messages, so a
server can run it in slices (imap/sort_command.py), and none recurses: a chain of
10,000 replies, or a References header naming 10,000 ancestors, is walked with loops
and lists, never with the Python stack. Loop checks look up the would-be ancestor's
parents only when it has children, which keeps a long chain linear.
"""

import operator
import re

from imapwebpush.imap.sort import base_subject, sent_time

ALGORITHMS = (b"ORDEREDSUBJECT", b"REFERENCES")

_MSG_ID = re.compile(r"<([^<>\s]+)>")


# What threading needs of a message is a plain tuple of strings and numbers (``refs`` a
# tuple too): the garbage collector stops tracking such a tuple (it never does for a
# class instance, a namedtuple's included), so the 20,000 kept while a THREAD runs do not
# make the full collections, which hold every session, longer or more frequent.
MESSAGE_ID, REFS, SUBJECT, IS_REPLY, DATE = range(5)


def info_tuple(message_id, refs, subject, is_reply, date):
    """The tuple of what threading needs of a message (read it with the names above)."""
    return (message_id, tuple(refs), subject, is_reply, date)


def thread_info(item):
    """The L{info_tuple} of a L{imapwebpush.imap.search.SearchItem}."""
    ids = _MSG_ID.findall(item.header("message-id"))
    refs = _MSG_ID.findall(item.header("references"))
    if not refs:
        refs = _MSG_ID.findall(item.header("in-reply-to"))[:1]
    subject, is_reply = base_subject(item.header("subject"))
    return info_tuple(ids[0] if ids else None, refs, subject, is_reply, sent_time(item))


class Node:
    """A thread container: ``number`` (None for a dummy), ``info``, ``parent``, ``children``
    (a list, or the empty tuple until the first child comes: one object fewer for the
    garbage collector per leaf)."""

    __slots__ = ("number", "info", "parent", "children")

    def __init__(self, number=None, info=None):
        self.number = number
        self.info = info
        self.parent = None
        self.children = ()

    def sort_key(self):
        """(sent date, number) of the message, or of a dummy's first child (RFC 5256 REFERENCES 4)."""
        node = self
        while node.number is None and node.children:
            node = node.children[0]
        if node.number is None:
            return (0, 0)
        return (node.info[DATE], node.number)

    def first_info(self):
        return self.info if self.number is not None else (self.children[0].info if self.children else None)


# work done between two yields of a ``..._steps`` generator: a millisecond or two
_STEP = 256


def run(steps):
    """What the generator ``steps`` returns, run to its end at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def ordered_subject(entries):
    return run(ordered_subject_steps(entries))


def references(entries):
    return run(references_steps(entries))


def format_threads(roots):
    """RFC 5256 thread-list text: ``(2)(3 6 (4 23)(44 7 96))``."""
    return run(thread_list_steps(roots))


def ordered_subject_steps(entries):
    """RFC 5256 ORDEREDSUBJECT: by base subject, each thread's first message the parent of the rest."""
    decorated = []
    for count, (number, info) in enumerate(entries):
        if count % _STEP == 0:
            yield
        decorated.append((info[DATE], number, info))
    decorated.sort(key=operator.itemgetter(0, 1))
    yield
    heads = {}  # base subject: its first message, the parent of the others
    for count, (_, number, info) in enumerate(decorated):
        if count % _STEP == 0:
            yield
        node = Node(number, info)
        head = heads.setdefault(info[SUBJECT], node)
        if head is not node:
            _link(head, node)
    threads = list(heads.values())
    yield from _sort_nodes(threads)
    return threads


def _is_ancestor(ancestor, node):
    """True when ``ancestor`` is ``node`` or one of its parents."""
    if not ancestor.children:
        return ancestor is node  # a childless container is no one's parent
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


def _link(parent, child):
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    if parent.children:
        parent.children.append(child)
    else:
        parent.children = [child]


def _adopt_children(parent, node):
    """Every child of ``node`` becomes the last children of ``parent``."""
    for child in node.children:
        child.parent = parent
    parent.children = list(parent.children) + list(node.children)
    node.children = ()


def _top_down(roots):
    """Every node under ``roots`` (and they), each before its children."""
    order = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(node.children))
    return order


def _standing_for(node, at_root):
    """What takes ``node``'s place once its children are pruned (RFC 5256 REFERENCES (3)):
    a dummy without children goes, a dummy's children move up (at the root only when
    there is a single one)."""
    if node.number is None:
        if not node.children:
            return []
        if not at_root or len(node.children) == 1:
            return node.children
    return [node]


def _prune(roots):
    order = _top_down(roots)
    for count, node in enumerate(reversed(order)):  # children before their parents
        if count % _STEP == 0:
            yield
        if node.children:
            kept = []
            for child in node.children:
                kept.extend(_standing_for(child, False))
            for child in kept:
                child.parent = node
            node.children = kept or ()
    out = []
    for node in roots:
        out.extend(_standing_for(node, True))
    for node in out:
        node.parent = None
    return out


def references_steps(entries):
    """RFC 5256 REFERENCES (the JWZ algorithm, with subject grouping of the root set)."""
    table = {}

    def container(message_id):
        node = table.get(message_id)
        if node is None:
            node = table[message_id] = Node()
        return node

    work = 0
    for number, info in entries:  # (1) link by Message-ID, References, In-Reply-To
        work += 1 + len(info[REFS])
        if work >= _STEP:
            work = 0
            yield
        key = info[MESSAGE_ID]
        if key is None or (key in table and table[key].number is not None):
            key = ("unique", number)  # no or a duplicate Message-ID: a message of its own
        node = container(key)
        node.number, node.info = number, info
        previous = None
        for ref in info[REFS]:
            ref_node = container(ref)
            if previous is not None and ref_node.parent is None and not _is_ancestor(ref_node, previous):
                _link(previous, ref_node)
            previous = ref_node
        if previous is not None and not _is_ancestor(node, previous):
            _link(previous, node)
        elif previous is None and node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
    yield
    roots = [node for node in table.values() if node.parent is None]  # (2)
    roots = yield from _prune(roots)  # (3)
    yield from _sort_tree(roots)  # (4)
    roots = yield from _group_by_subject(roots)  # (5)
    yield from _sort_tree(roots)  # (6)
    return roots


def _sort_nodes(nodes):
    """Sort ``nodes`` in place by L{Node.sort_key}, the keys read in steps, one C-level sort."""
    decorated = []
    for count, node in enumerate(nodes):
        if count % _STEP == 0 and count:
            yield
        decorated.append((node.sort_key(), count))
    decorated.sort()
    nodes[:] = [nodes[i] for _, i in decorated]


def _sort_tree(roots):
    """Every list of children sorted (children before parents: a dummy sorts by its first
    child), then ``roots``."""
    for count, node in enumerate(reversed(_top_down(roots))):
        if count % _STEP == 0:
            yield
        if len(node.children) > 1:
            yield from _sort_nodes(node.children)
    yield from _sort_nodes(roots)


def _group_by_subject(roots):
    """RFC 5256 REFERENCES (5): roots of one base subject gathered. ``where`` holds the
    position in ``out`` of each root still there (no list search: 20,000 roots)."""
    subjects = {}
    for count, node in enumerate(roots):  # (5 A)
        if count % _STEP == 0:
            yield
        info = node.first_info()
        if info is None or not info[SUBJECT]:
            continue
        held = subjects.get(info[SUBJECT])
        if (
            held is None
            or (node.number is None and held.number is not None)
            or (held.number is not None and held.info[IS_REPLY] and node.number is not None and not node.info[IS_REPLY])
        ):
            subjects[info[SUBJECT]] = node
    out = list(roots)
    where = {id(node): i for i, node in enumerate(out)}
    for count, node in enumerate(roots):  # (5 B)
        if count % _STEP == 0:
            yield
        info = node.first_info()
        if info is None or not info[SUBJECT] or id(node) not in where:
            continue
        held = subjects[info[SUBJECT]]
        if held is node:
            continue
        out[where.pop(id(node))] = None
        if held.number is None and node.number is None:
            _adopt_children(held, node)
        elif held.number is None:
            _link(held, node)
        elif not held.info[IS_REPLY] and node.number is not None and node.info[IS_REPLY]:
            _link(held, node)
        elif held.info[IS_REPLY] and node.number is not None and not node.info[IS_REPLY]:
            _replace(out, where, held, node)
            _link(node, held)
            subjects[info[SUBJECT]] = node
        else:
            dummy = Node()
            _replace(out, where, held, dummy)
            _link(dummy, held)
            _link(dummy, node)
            subjects[info[SUBJECT]] = dummy
    return [node for node in out if node is not None]


def _replace(out, where, old, new):
    """``new`` takes the place of the root ``old`` in ``out``."""
    i = where.pop(id(old))
    out[i] = new
    where[id(new)] = i


def thread_list_steps(roots):
    """Generator returning the thread-list text of ``roots``.

    A chain of single children is one run of numbers (``(1 2 3)``), a node with several
    children ends its run with one parenthesised member per child (RFC 5256 5). Written
    from a stack of what remains: literal text, or a node whose members come next.
    """
    out = []
    stack = []
    for node in reversed(roots):
        stack += (b")", node, b"(")
    count = 0
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out.append(item)
            continue
        node = item
        first = True
        while True:
            count += 1
            if count % _STEP == 0:
                yield
            if node.number is not None:
                out.append(b"%d" % (node.number,) if first else b" %d" % (node.number,))
                first = False
            if len(node.children) == 1:
                node = node.children[0]
                continue
            if node.children:
                if not first:
                    out.append(b" ")
                for child in reversed(node.children):
                    stack += (b")", child, b"(")
            break
    return b"".join(out)
