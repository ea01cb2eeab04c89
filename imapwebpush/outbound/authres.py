"""The ``Authentication-Results:`` header (RFC 8601) of inbound mail: DKIM and SPF, no spam filtering.

Why one header at the top: mail clients and filters read the receiving
server's verdict there instead of checking signatures themselves. Every
check is bounded in time and never fails the delivery: a DNS error is a
``temperror`` in the header, not a lost or refused message.

Because readers trust the header that names this server, a message must not
bring one of its own: L{ClaimedResults} finds the fields that claim our
authserv-id (RFC 8601 section 5) as the header block arrives, so the store
leaves them out.
"""

import re

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush.interfaces import IMessageAuthenticator

_SAFE = str.maketrans({c: "?" for c in "\r\n;()\"\\"})


def _clean(value):
    return str(value).translate(_SAFE)[:255] if value else ""


def render(authserv_id, dkim_results, spf_result=None):
    """The header line(s), bytes ending in CRLF."""
    parts = []
    if not dkim_results:
        parts.append("dkim=none")
    for domain, selector, result in dkim_results:
        if domain is None:
            parts.append("dkim=%s" % (result,))
        else:
            parts.append("dkim=%s header.d=%s header.s=%s" % (result, _clean(domain), _clean(selector)))
    if spf_result is not None:
        result, mail_from = spf_result
        if mail_from:
            parts.append("spf=%s smtp.mailfrom=%s" % (result, _clean(mail_from)))
        else:
            parts.append("spf=%s" % (result,))
    text = "Authentication-Results: %s;\r\n\t" % (_clean(authserv_id),) + ";\r\n\t".join(parts) + "\r\n"
    return text.encode("utf-8")


# An Authentication-Results field's name; the value starts with the authserv-id (RFC 8601 2.2),
# perhaps after comments, as a token or a quoted string.
_FIELD = re.compile(rb"authentication-results[ \t]*:", re.I)
_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"|([^\s;()"]+)')
CLAIM_SCAN = 1024  # octets of a field read to find its authserv-id


def _skip_cfws(value):
    """``value`` without leading white space and (nested) comments."""
    while True:
        value = value.lstrip(b" \t\r\n")
        if not value.startswith(b"("):
            return value
        depth, i = 0, 0
        while i < len(value):
            c = value[i:i + 1]
            if c == b"\\":
                i += 1
            elif c == b"(":
                depth += 1
            elif c == b")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        value = value[i + 1:]


def claimed_id(field):
    """The authserv-id (lower case, str) of one Authentication-Results field, else None."""
    m = _FIELD.match(field)
    if not m:
        return None
    token = _TOKEN.match(_skip_cfws(field[m.end():]))
    if not token:
        return None
    value = token.group(1) if token.group(1) is not None else token.group(2)
    return re.sub(rb"\\(.)", rb"\1", value).decode("ascii", "replace").lower().rstrip(".")


class ClaimedResults:
    """The Authentication-Results fields of a header block that claim ``authserv_id``.

    Fed each line of the message as it arrives (without its CRLF, at its
    offset in the message); ``ranges()`` gives the (start, end) offsets of
    those fields, folded lines included, for the reader to leave out. Holds at
    most L{CLAIM_SCAN} octets of one field, whatever the header size.
    """

    def __init__(self, authserv_id):
        if isinstance(authserv_id, bytes):
            authserv_id = authserv_id.decode("ascii", "replace")
        self.authserv_id = authserv_id.lower().rstrip(".")
        self._ranges = []
        self._start = None  # the field being read: its offset, end and first octets
        self._end = 0
        self._text = b""
        self._done = False

    def line(self, offset, line):
        if self._done:
            return
        if line[:1] in (b" ", b"\t") and self._start is not None:
            if len(self._text) < CLAIM_SCAN:
                self._text += b" " + line[:CLAIM_SCAN]
            self._end = offset + len(line) + 2
            return
        self._close()
        if not line:
            self._done = True  # the blank line: the body starts
            return
        self._start, self._end, self._text = offset, offset + len(line) + 2, line[:CLAIM_SCAN]

    def _close(self):
        if self._start is not None and claimed_id(self._text) == self.authserv_id:
            self._ranges.append((self._start, self._end))
        self._start = None

    def ranges(self):
        self._close()
        return list(self._ranges)


@implementer(IMessageAuthenticator)
class Authenticator:
    """DKIM (L{imapwebpush.outbound.dkim.DKIMVerifier}) and SPF (L{imapwebpush.outbound.spfcheck.SPFChecker}).

    Both run at once; each is bounded by its own timeout.
    """

    log = Logger()

    def __init__(self, authserv_id, dkim_verifier, spf_checker=None):
        self.authserv_id = authserv_id
        self.dkim = dkim_verifier
        self.spf = spf_checker

    @defer.inlineCallbacks
    def authenticate(self, data, client_ip, helo, mail_from):
        dkim_checked = defer.maybeDeferred(self.dkim.verify, data)
        spf_checked = None
        if self.spf is not None:
            spf_checked = defer.maybeDeferred(self.spf.check, client_ip, mail_from, helo)
        try:
            dkim_results = yield dkim_checked
        except Exception:
            self.log.failure("DKIM verification failed")
            dkim_results = [(None, None, "temperror")]
        spf_result = None
        if spf_checked is not None:
            # RFC 7208 2.4: with a null reverse-path, the identity is postmaster@HELO.
            identity = mail_from or ("postmaster@" + helo if helo else "")
            try:
                result = yield spf_checked
                spf_result = None if result is None else (result, identity)  # None: not checked
            except Exception:
                self.log.failure("SPF check failed")
                spf_result = ("temperror", identity)
        return render(self.authserv_id, dkim_results, spf_result)
