"""A DNS server on loopback for each test that starts a whole server with an SMTP listener.

Why every such test needs one: mail arriving on port 25 gets SPF and DKIM
checks, whose lookups would otherwise go to the resolver of /etc/resolv.conf,
off the machine. Tests stay on 127.0.0.0/8.
"""

from twisted.internet import reactor

from imapwebpush.testing import dns as testing_dns


def dns_server_option(case, zone=None):
    """``["--dns-server", HOST:PORT]`` of a server for ``zone`` (default: empty), stopped after ``case``."""
    address, stop = testing_dns.loopback(reactor, zone)
    case.addCleanup(stop)
    return ["--dns-server", address]
