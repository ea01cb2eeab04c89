"""A small in-memory ``imap4.IMailbox`` for Twisted's own IMAP server.

Twisted ships ``imap4.MemoryAccount`` but no mailbox to put in it; every
integrator writes one. This is such a mailbox, good enough for a stock
``imap4.IMAP4Server`` to SELECT, FETCH, STORE, APPEND, COPY and EXPUNGE, and for
the examples and tests of the WEBPUSH bridge (``imapwebpush.imap.twisted_bridge``).
Like most such mailboxes it does not call its listeners; the push bridge's
mixin does what is needed for pushes.
"""

import email.parser
import io
import itertools
import time

from twisted.internet import defer
from twisted.mail import imap4
from zope.interface import implementer

from imapwebpush.constants import DELIMITER, SYSTEM_FLAGS

_uidvalidity = itertools.count(int(time.time()))


def _flag_text(flag):
    return flag.decode("utf-8") if isinstance(flag, bytes) else str(flag)


@implementer(imap4.IMessage)
class MemoryMessage:
    """One message: its octets, UID, flags and internal date."""

    def __init__(self, data, uid, flags=(), date=None):
        self.data = data
        self.uid = uid
        self.flags = [_flag_text(f) for f in flags]
        self.date = date or time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime())
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        parsed = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        self._headers = [(k, str(v)) for k, v in parsed.items()]
        self._body = data[len(head):].lstrip(b"\r\n") if len(head) < len(data) else b""

    def getUID(self):
        return self.uid

    def getFlags(self):
        return list(self.flags)

    def getInternalDate(self):
        return self.date

    def getHeaders(self, negate, *names):
        wanted = {n.lower() if isinstance(n, str) else n.decode().lower() for n in names}
        return {k: v for k, v in self._headers if (k.lower() in wanted) != negate}

    def getBodyFile(self):
        return io.BytesIO(self._body)

    def getSize(self):
        return len(self.data)

    def isMultipart(self):
        return False

    def getSubPart(self, part):
        raise IndexError(part)


@implementer(imap4.IMailbox)
class MemoryMailbox:
    """Messages in a list, UIDs from 1; read-write; no listener is ever called."""

    def __init__(self):
        self.messages = []
        self.listeners = []
        self.uidvalidity = next(_uidvalidity)
        self.uidnext = 1

    # -- IMailboxInfo ----------------------------------------------------------

    def getFlags(self):
        return list(SYSTEM_FLAGS)

    def getHierarchicalDelimiter(self):
        return DELIMITER

    # -- IMailbox --------------------------------------------------------------

    def getUIDValidity(self):
        return self.uidvalidity

    def getUIDNext(self):
        return self.uidnext

    def getUID(self, message):
        return self.messages[message - 1].uid

    def getMessageCount(self):
        return len(self.messages)

    def getRecentCount(self):
        return 0

    def getUnseenCount(self):
        return sum(1 for m in self.messages if "\\Seen" not in m.flags)

    def isWriteable(self):
        return True

    def destroy(self):
        self.messages = []

    def requestStatus(self, names):
        values = {"MESSAGES": self.getMessageCount, "RECENT": self.getRecentCount,
                  "UIDNEXT": self.getUIDNext, "UIDVALIDITY": self.getUIDValidity,
                  "UNSEEN": self.getUnseenCount}
        return {n: values[n.upper()]() for n in names if n.upper() in values}

    def addListener(self, listener):
        self.listeners.append(listener)

    def removeListener(self, listener):
        self.listeners.remove(listener)

    def addMessage(self, message, flags=(), date=None):
        data = message.read() if hasattr(message, "read") else bytes(message)
        uid, self.uidnext = self.uidnext, self.uidnext + 1
        self.messages.append(MemoryMessage(data, uid, flags, date))
        return defer.succeed(uid)

    def expunge(self):
        gone = [i + 1 for i, m in enumerate(self.messages) if "\\Deleted" in m.flags]
        self.messages = [m for m in self.messages if "\\Deleted" not in m.flags]
        # sequence numbers as the client must see them: each one after the ones before
        return [seq - n for n, seq in enumerate(gone)]

    def _select(self, messages, uid):
        try:
            messages.last = (self.uidnext - 1) if uid else len(self.messages)
        except ValueError:
            pass  # already set by the caller
        ranges = messages.ranges
        for seq, m in enumerate(self.messages, 1):
            key = m.uid if uid else seq
            if any(lo <= key <= hi for lo, hi in ranges):
                yield seq, m

    def fetch(self, messages, uid):
        return list(self._select(messages, uid))

    def store(self, messages, flags, mode, uid):
        flags = [_flag_text(f) for f in flags]
        result = {}
        for seq, m in self._select(messages, uid):
            if mode == 0:
                m.flags = list(dict.fromkeys(flags))
            elif mode > 0:
                m.flags = list(dict.fromkeys(m.flags + flags))
            else:
                m.flags = [f for f in m.flags if f not in flags]
            result[seq] = list(m.flags)
        return result
