"""THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES over the messages a SEARCH found.

Pure: ``thread_info(item)`` reads what threading needs of a message (Message-ID,
References or In-Reply-To, base subject, sent date); ``ordered_subject`` and
``references`` turn [(number, info)] into a list of L{Node} trees, and ``format_threads``
writes them as RFC 5256's thread-list.
"""

import re

from imapwebpush.imap.sort import base_subject, sent_time

ALGORITHMS = (b"ORDEREDSUBJECT", b"REFERENCES")

_MSG_ID = re.compile(r"<([^<>\s]+)>")


class ThreadInfo:
    __slots__ = ("message_id", "refs", "subject", "is_reply", "date")

    def __init__(self, message_id, refs, subject, is_reply, date):
        self.message_id = message_id
        self.refs = refs
        self.subject = subject
        self.is_reply = is_reply
        self.date = date


def thread_info(item):
    """The L{ThreadInfo} of a L{imapwebpush.imap.search.SearchItem}."""
    ids = _MSG_ID.findall(item.header("message-id"))
    refs = _MSG_ID.findall(item.header("references"))
    if not refs:
        refs = _MSG_ID.findall(item.header("in-reply-to"))[:1]
    subject, is_reply = base_subject(item.header("subject"))
    return ThreadInfo(ids[0] if ids else None, refs, subject, is_reply, sent_time(item))


class Node:
    """A thread container: ``number`` (None for a dummy), ``info``, ``parent``, ``children``."""

    __slots__ = ("number", "info", "parent", "children")

    def __init__(self, number=None, info=None):
        self.number = number
        self.info = info
        self.parent = None
        self.children = []

    def sort_key(self):
        """(sent date, number) of the message, or of a dummy's first child (RFC 5256 REFERENCES 4)."""
        node = self
        while node.number is None and node.children:
            node = node.children[0]
        if node.number is None:
            return (0, 0)
        return (node.info.date, node.number)

    def first_info(self):
        return self.info if self.number is not None else (self.children[0].info if self.children else None)


def ordered_subject(entries):
    """RFC 5256 ORDEREDSUBJECT: by base subject, each thread's first message the parent of the rest."""
    groups = {}
    for number, info in sorted(entries, key=lambda e: (e[1].date, e[0])):
        groups.setdefault(info.subject, []).append(Node(number, info))
    threads = []
    for nodes in groups.values():
        head = nodes[0]
        head.children = nodes[1:]
        threads.append(head)
    threads.sort(key=Node.sort_key)
    return threads


def _is_ancestor(ancestor, node):
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


def _link(parent, child):
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def _prune(children, at_root):
    """RFC 5256 REFERENCES (3): dummies without children go, dummies' children move up
    (at the root only when there is a single one)."""
    out = []
    for node in children:
        node.children = _prune(node.children, False)
        for child in node.children:
            child.parent = node
        if node.number is None:
            if not node.children:
                continue
            if not at_root or len(node.children) == 1:
                out.extend(node.children)
                continue
        out.append(node)
    return out


def references(entries):
    """RFC 5256 REFERENCES (the JWZ algorithm, with subject grouping of the root set)."""
    table = {}

    def container(message_id):
        node = table.get(message_id)
        if node is None:
            node = table[message_id] = Node()
        return node

    for number, info in entries:  # (1) link by Message-ID, References, In-Reply-To
        key = info.message_id
        if key is None or (key in table and table[key].number is not None):
            key = ("unique", number)  # no or a duplicate Message-ID: a message of its own
        node = container(key)
        node.number, node.info = number, info
        previous = None
        for ref in info.refs:
            ref_node = container(ref)
            if previous is not None and ref_node.parent is None and not _is_ancestor(ref_node, previous):
                _link(previous, ref_node)
            previous = ref_node
        if previous is not None and not _is_ancestor(node, previous):
            _link(previous, node)
        elif previous is None and node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
    roots = [node for node in table.values() if node.parent is None]  # (2)
    roots = _prune(roots, True)  # (3)
    for node in roots:
        node.parent = None
    _sort_tree(roots)  # (4)
    roots = _group_by_subject(roots)  # (5)
    _sort_tree(roots)  # (6)
    return roots


def _sort_tree(nodes):
    for node in nodes:
        _sort_tree(node.children)
    nodes.sort(key=Node.sort_key)


def _group_by_subject(roots):
    subjects = {}
    for node in roots:  # (5 A)
        info = node.first_info()
        if info is None or not info.subject:
            continue
        held = subjects.get(info.subject)
        if (
            held is None
            or (node.number is None and held.number is not None)
            or (held.number is not None and held.info.is_reply and node.number is not None and not node.info.is_reply)
        ):
            subjects[info.subject] = node
    out = list(roots)
    for node in roots:  # (5 B)
        info = node.first_info()
        if info is None or not info.subject or node not in out:
            continue
        held = subjects[info.subject]
        if held is node:
            continue
        out.remove(node)
        if held.number is None and node.number is None:
            for child in list(node.children):
                _link(held, child)
        elif held.number is None:
            _link(held, node)
        elif not held.info.is_reply and node.number is not None and node.info.is_reply:
            _link(held, node)
        elif held.info.is_reply and node.number is not None and not node.info.is_reply:
            out[out.index(held)] = node
            _link(node, held)
            subjects[info.subject] = node
        else:
            dummy = Node()
            out[out.index(held)] = dummy
            held.parent = None
            _link(dummy, held)
            _link(dummy, node)
            subjects[info.subject] = dummy
    return out


def _members(node):
    parts = []
    while True:
        if node.number is not None:
            parts.append(b"%d" % (node.number,))
        if len(node.children) == 1:
            node = node.children[0]
            continue
        if node.children:
            parts.append(b"".join(b"(" + _members(child) + b")" for child in node.children))
        return b" ".join(parts)


def format_threads(roots):
    """RFC 5256 thread-list text: ``(2)(3 6 (4 23)(44 7 96))``."""
    return b"".join(b"(" + _members(node) + b")" for node in roots)
