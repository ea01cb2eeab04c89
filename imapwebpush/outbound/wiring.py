"""The outbound side's twistd options and how they become an OutboundService.

Why here and not in tap.py: tap.py's Options only inherits L{OptionsMixin}
(whose ``optParameters`` and ``optFlags`` twisted.python.usage gathers with
its own), calls L{check} from postOptions and L{add_outbound} from
build_components, so the outbound room owns its options,
their checks and their defaults.
"""

import os

from twisted.python import usage

from imapwebpush.choices import finite_float
from imapwebpush.constants import INBOX
from imapwebpush.outbound import dkim
from imapwebpush.outbound import resolver as resolver_module
from imapwebpush.outbound import service as service_module
from imapwebpush import datadir
from imapwebpush.outbound.queue import DiskQueue, QueueFileError
from imapwebpush.outbound.spfcheck import DEFAULT_SPF_SKIP, parse_networks
from imapwebpush.smtp.senders import SenderPolicy

ORIGIN = "outbound"  # the ``origin`` token of store changes made by DSNs

PARAMETERS = [
    ["dns-server", None, None,
     "DNS server HOST:PORT for MX, A/AAAA, TXT lookups (default: the nameservers of /etc/resolv.conf)."],
    ["outbound-port", None, 25, "Port to deliver outbound mail to at the MX hosts (25; other values are for tests).", int],
    ["relay-host", None, None, "Send all outbound mail through this smarthost HOST:PORT (STARTTLS required)."],
    ["relay-user", None, None, "User name for AUTH PLAIN at --relay-host."],
    ["relay-password-file", None, None, "File whose first line is the --relay-user password."],
    ["relay-ca", None, None, "PEM CA certificate(s) to verify --relay-host with (default: the system's)."],
    ["queue-lifetime", None, service_module.DEFAULT_LIFETIME,
     "Seconds outbound mail is retried before it bounces.", finite_float],
    ["queue-delay-notice", None, service_module.DEFAULT_DELAY_NOTICE,
     "Seconds after which the sender is told once that mail is delayed.", finite_float],
    ["queue-retry", None, service_module.DEFAULT_RETRY,
     "First retry delay in seconds; doubles at each retry up to --queue-max-retry.", finite_float],
    ["queue-max-retry", None, service_module.DEFAULT_MAX_RETRY, "Longest retry delay in seconds.", finite_float],
    ["outbound-connections", None, service_module.DEFAULT_MAX_CONNECTIONS,
     "Outbound SMTP connections open at once (one per destination domain).", int],
    ["outbound-timeout", None, service_module.DEFAULT_COMMAND_TIMEOUT,
     "Seconds to wait for each answer of a remote SMTP server, or for it to take more of a message.", finite_float],
    ["dns-timeout", None, resolver_module.DEFAULT_DNS_TIMEOUT,
     "Seconds one MX/address lookup (or one message's DKIM/SPF lookups) may take.", finite_float],
    ["spf-skip-networks", None, ",".join(DEFAULT_SPF_SKIP),
     "Comma-separated client networks whose mail gets no SPF check (default: loopback;"
     " an empty string checks every client)."],
]

FLAGS = [
    ["submission-allow-any-sender", None,
     "Let submission users use any MAIL FROM (default: their own address and --submission-allow-sender)."],
    ["no-authentication-results", None,
     "Do not check DKIM and SPF of mail from other servers (no Authentication-Results header)."],
]


class OptionsMixin:
    """The outbound options; usage.Options gathers optParameters and optFlags of every base."""

    optParameters = PARAMETERS
    optFlags = FLAGS

    def opt_submission_allow_sender(self, text):
        """LOGIN=SENDER: LOGIN (or * for every user) may send as SENDER (an address or @domain); repeatable."""
        try:
            grant = SenderPolicy.parse(text)
        except ValueError as e:
            raise usage.UsageError("--submission-allow-sender: %s" % (e,))
        self.setdefault("submission-allow-sender", [])
        if grant not in self["submission-allow-sender"]:
            self["submission-allow-sender"].append(grant)


def _positive(options, name):
    if options[name] <= 0:
        raise usage.UsageError("--%s must be positive" % (name,))


def check(options):
    """Turn every bad outbound option into a one-line UsageError; fill derived keys."""
    options.setdefault("submission-allow-sender", [])
    for name in ("queue-lifetime", "queue-delay-notice", "queue-retry", "queue-max-retry",
                 "outbound-connections", "outbound-timeout", "dns-timeout", "outbound-port"):
        _positive(options, name)
    if options["outbound-port"] > 65535:
        raise usage.UsageError("--outbound-port must be a port number")
    for name, default in (("dns-server", 53), ("relay-host", 25)):
        if options[name]:
            try:
                options[name + "-address"] = resolver_module.parse_host_port(options[name], default)
            except ValueError as e:
                raise usage.UsageError("--%s: %s" % (name, e))
        else:
            options[name + "-address"] = None
    try:
        options["spf-skip"] = parse_networks(options["spf-skip-networks"])
    except ValueError as e:
        raise usage.UsageError("--spf-skip-networks: %s" % (e,))
    relay_only = ("relay-user", "relay-password-file", "relay-ca")
    if not options["relay-host"] and any(options[n] for n in relay_only):
        raise usage.UsageError("--relay-user, --relay-password-file and --relay-ca need --relay-host")
    if bool(options["relay-user"]) != bool(options["relay-password-file"]):
        raise usage.UsageError("--relay-user and --relay-password-file go together")
    options["relay-password"] = None
    if options["relay-password-file"]:
        try:
            with open(options["relay-password-file"], encoding="utf-8") as f:
                options["relay-password"] = f.readline().rstrip("\r\n")
        except OSError as e:
            raise usage.UsageError("--relay-password-file: %s" % (e.strerror or e,))
        except UnicodeDecodeError:
            raise usage.UsageError("--relay-password-file: not UTF-8 text")
        if not options["relay-password"]:
            raise usage.UsageError("--relay-password-file: its first line is empty")
    options["relay-trust"] = None
    if options["relay-ca"]:
        from twisted.internet import ssl

        try:
            with open(options["relay-ca"], "rb") as f:
                options["relay-trust"] = ssl.Certificate.loadPEM(f.read())
        except Exception as e:
            raise usage.UsageError("--relay-ca: cannot use %s: %s" % (options["relay-ca"], e))
    try:
        options["dkim-keys"] = dkim.load_keys(datadir.dkim(options["data"]))
    except dkim.DKIMKeyError as e:
        raise usage.UsageError("--data: %s" % (e,))
    queue_dir = datadir.queue(options["data"])
    if os.path.isdir(queue_dir):
        try:
            DiskQueue(queue_dir)  # a broken queue file: one line now, not a traceback later
        except (QueueFileError, OSError) as e:
            raise usage.UsageError("--data: %s" % (e,))


def resolver_for(options, reactor):
    """The twisted.names resolver the options ask for (shared by MX and DKIM/SPF lookups)."""
    return resolver_module.make_resolver(reactor, options["dns-server-address"])


def add_outbound(c):
    """Make the queue, the router and the OutboundService; add it to ``c.services``."""
    from twisted.internet import ssl
    from twisted.mail import smtp

    from imapwebpush.outbound.client import connect_tcp

    options = c.options
    hostname = c.hostname or smtp.DNSNAME
    if isinstance(hostname, bytes):
        hostname = hostname.decode("ascii")
    c.resolver = resolver_for(options, c.reactor)
    relay = options["relay-host-address"]
    if relay:
        router = resolver_module.SmarthostRouter(*relay)
        tls = ssl.optionsForClientTLS(
            relay[0], trustRoot=options["relay-trust"] or ssl.platformTrust()
        )
        auth = (options["relay-user"], options["relay-password"]) if options["relay-user"] else None
    else:
        router = resolver_module.MXRouter(
            c.resolver, c.reactor, port=options["outbound-port"], timeout=options["dns-timeout"]
        )
        tls = ssl.CertificateOptions()  # opportunistic: encrypt, do not verify (RFC 7435)
        auth = None
    domains = {d.lower() for d in c.domains}

    def notify(address, data):
        """Store a DSN in a local sender's INBOX; False for other senders."""
        if address.rsplit("@", 1)[-1].lower() not in domains or not c.users.exists(address):
            return False
        account = c.mail_store.account(address.lower())
        account.mailbox(INBOX).add(data, internaldate=c.reactor.seconds(), origin=ORIGIN)
        return True

    from twisted.internet import threads

    from imapwebpush.outbound.authres import Authenticator
    from imapwebpush.outbound.spfcheck import SPFChecker

    keys = options["dkim-keys"]
    c.signer = dkim.DKIMSigner(keys) if keys else None
    c.authenticator = None
    if not options["no-authentication-results"]:
        c.authenticator = Authenticator(
            hostname,
            dkim.DKIMVerifier(c.resolver, c.reactor, threads.deferToThread, timeout=options["dns-timeout"]),
            SPFChecker(c.resolver, c.reactor, timeout=options["dns-timeout"], receiver=hostname,
                       skip=options["spf-skip"]),
        )
    c.outbound = service_module.OutboundService(
        DiskQueue(datadir.queue(c.data_dir)),
        router,
        c.reactor,
        hostname,
        connect_tcp(c.reactor),
        notify,
        signer=c.signer,
        run=threads.deferToThread,
        tls=tls,
        require_tls=bool(relay),
        auth=auth,
        lifetime=options["queue-lifetime"],
        delay_notice=options["queue-delay-notice"],
        retry=options["queue-retry"],
        max_retry=options["queue-max-retry"],
        max_connections=options["outbound-connections"],
        timeout=options["outbound-timeout"],
    )
    c.senders = SenderPolicy(
        options["submission-allow-sender"], allow_any=options["submission-allow-any-sender"]
    )
    c.services.append(("outbound", c.outbound))
