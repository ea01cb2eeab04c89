"""The ``Authentication-Results:`` header (RFC 8601) of inbound mail: DKIM and SPF, no spam filtering.

Why one header at the top: mail clients and filters read the receiving
server's verdict there instead of checking signatures themselves. Every
check is bounded in time and never fails the delivery: a DNS error is a
``temperror`` in the header, not a lost or refused message.
"""

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


@implementer(IMessageAuthenticator)
class Authenticator:
    """DKIM (L{imapwebpush.outbound.dkim.DKIMVerifier}) and SPF (L{imapwebpush.outbound.spf.SPFChecker})."""

    log = Logger()

    def __init__(self, authserv_id, dkim_verifier, spf_checker=None):
        self.authserv_id = authserv_id
        self.dkim = dkim_verifier
        self.spf = spf_checker

    @defer.inlineCallbacks
    def authenticate(self, data, client_ip, helo, mail_from):
        try:
            dkim_results = yield self.dkim.verify(data)
        except Exception:
            self.log.failure("DKIM verification failed")
            dkim_results = [(None, None, "temperror")]
        spf_result = None
        if self.spf is not None:
            try:
                spf_result = (
                    (yield self.spf.check(client_ip, mail_from, helo)),
                    mail_from or ("postmaster@" + helo if helo else ""),
                )
            except Exception:
                self.log.failure("SPF check failed")
                spf_result = ("temperror", mail_from)
        return render(self.authserv_id, dkim_results, spf_result)
