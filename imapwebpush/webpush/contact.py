"""The VAPID contact (the JWT ``sub`` claim, RFC 8292 2.1): refused when malformed, flagged when unroutable.

Push services read the contact to reach the operator when the server
misbehaves, and some refuse pushes (403) whose contact they dislike: a
``mailto:`` with spaces or angle brackets (``mailto:<admin@example.org>``), or
a host nobody can reach (``mailto:postmaster@localhost``). So:

* ``check_subject`` accepts only ``mailto:local@domain`` (one plain address,
  no display name, no query) or ``https://host[:port][/path]``, ASCII without
  spaces, brackets or quotes; anything else is a ValueError, which the server
  turns into a one-line start-up error;
* ``unroutable_reason`` says why a well-formed contact still cannot reach
  anybody (localhost, ``.local``, ``.test``, ``example.org``, a name without a
  dot, a private or loopback IP address), for a loud start-up warning.
"""

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["check_subject", "unroutable_reason"]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(r"\A(?=.{1,253}\Z)%s(?:\.%s)*\.?\Z" % (_LABEL, _LABEL))
_LOCAL_RE = re.compile(r"\A[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_PATH_RE = re.compile(r"\A(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?\Z")

# Names that never resolve on the internet (RFC 6761, RFC 8375, RFC 6762, common LAN habits)
_UNROUTABLE_SUFFIXES = ("localhost", "local", "localdomain", "internal", "lan", "home.arpa",
                        "test", "example", "invalid", "intranet", "corp", "home")
_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")


def check_subject(subject):
    """``subject`` if it is a contact push services accept; ValueError with the reason if not."""
    if not isinstance(subject, str):
        raise ValueError("the VAPID subject must be text, not %r" % (subject,))
    if subject.startswith("mailto:"):
        local, at, host = subject[len("mailto:"):].rpartition("@")
        if not at or not _LOCAL_RE.match(local) or not _host_ok(host):
            raise ValueError("the VAPID subject must be mailto:local@domain (one plain address,"
                             " no spaces, brackets or display name), not %r" % (subject,))
        return subject
    if subject.startswith("https://"):
        rest = subject[len("https://"):]
        if not rest or not rest.isascii() or any(c in rest for c in " \t<>\"[]{}|\\^`#?@"):
            raise ValueError("the VAPID subject must be https://host/path without spaces,"
                             " brackets, user, query or fragment, not %r" % (subject,))
        try:
            parts = urlsplit(subject)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError("the VAPID subject is not a valid https URL: %r" % (subject,))
        if not _host_ok(parts.hostname or "") or not _PATH_RE.match(parts.path):
            raise ValueError("the VAPID subject must be https://host/path, not %r" % (subject,))
        return subject
    raise ValueError("the VAPID subject must be a mailto: or https:// URI, got %r" % (subject,))


def _host_ok(host):
    if _HOST_RE.match(host):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_of(subject):
    if subject.startswith("mailto:"):
        return subject.rpartition("@")[2]
    return urlsplit(subject).hostname or ""


def unroutable_reason(subject):
    """Why the (well-formed) contact cannot reach anybody, or None when it may."""
    host = _host_of(subject).lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return None if address.is_global else "%s is not a public IP address" % (host,)
    if "." not in host:
        return "%s is not a domain name on the internet (no dot)" % (host,)
    for suffix in _UNROUTABLE_SUFFIXES:
        if host == suffix or host.endswith("." + suffix):
            return "%s is a name that does not resolve on the internet" % (host,)
    if host in _EXAMPLE_DOMAINS or host.endswith(tuple("." + d for d in _EXAMPLE_DOMAINS)):
        return "%s is a documentation domain (RFC 2606)" % (host,)
    return None
