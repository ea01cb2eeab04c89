"""twistd Options and makeService: read the options, build the shared objects, listen.

Three steps, each a function the lead (and tests) can call on its own:

* L{Options} parses and checks everything that can be wrong in the
  configuration (endpoint strings, data folder, certificate files) and turns it
  into a one-line usage error before anything starts;
* L{build_components} makes the objects every server shares (the mail store,
  the users, the cred checker and portal, the TLS context factory);
* L{makeService} wraps the protocol factories in named endpoint services
  ("imap", "smtp", "submission") under one MultiService.

L{start_server} starts the whole thing inside a running reactor (port 0 is fine)
and tells which ports it got; the end-to-end tests use it.
"""

import os
import re

from OpenSSL import crypto
from twisted.application import service
from twisted.cred.portal import Portal
from twisted.internet import defer, endpoints, ssl
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from imapwebpush import datadir, decisions, throttle
from imapwebpush.choices import finite_float
from imapwebpush.connlimit import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    ConnectionCounter,
    LimitedFactory,
)
from imapwebpush.constants import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_MIME_PARTS, DEFAULT_MAX_NESTING
from imapwebpush.datadir import DEFAULT_DATA, DataDirError
from imapwebpush.imap.append import DEFAULT_MAX_APPEND_MESSAGES, DEFAULT_MAX_APPEND_SIZE
from imapwebpush.imap.auth import DEFAULT_LOGIN_DEADLINE
from imapwebpush.imap.avatar import Avatar
from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.imap.server import IMAPServer
from imapwebpush.imap.webpush_commands import webpush_server_class
from imapwebpush.private import make_folders
from imapwebpush.outbound import wiring as outbound_wiring
from imapwebpush.smtp.server import (
    DEFAULT_SMTP_DEADLINE,
    DEFAULT_SMTP_TIMEOUT,
    ReceivingFactory,
    SubmissionFactory,
)
from imapwebpush.store.account import MailStore
from imapwebpush.store.users import (
    DEFAULT_MAX_PASSWORD_CHECKS,
    UserChecker,
    UserDatabase,
    UsersFileError,
    read_users_file,
)
from imapwebpush.metrics import DEFAULT_METRICS, ServerMetrics
from imapwebpush.webpush.assembly import WebPush
from imapwebpush.webpush.contact import check_subject
from imapwebpush.webpush.preview import DEFAULT_PREVIEW_CHARS, MAX_PREVIEW_CHARS
from imapwebpush.webpush.privacy import DEFAULT_PRIVACY, check_level
from imapwebpush.webpush.ratelimit import DEFAULT_NEW_MAIL_BURST, DEFAULT_NEW_MAIL_PER_HOUR
from imapwebpush.webpush.scope import DEFAULT_SCOPE, SUBSCRIBED, SubscribedMailboxes, check_scope
from imapwebpush.wildcard import DEFAULT_MAX_PATTERN_LENGTH

DEFAULT_IMAP = "tcp:1143:interface=127.0.0.1"
DEFAULT_SMTP = "tcp:2525:interface=127.0.0.1"
DEFAULT_DOMAIN = "localhost"
DISABLED = ("", "none", "off")

_DOMAIN_RE = re.compile(r"\A(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z")

log = Logger()


def load_tls(cert_path, key_path=None):
    """A server TLS context factory from PEM files (the cert file may hold the chain).

    ``key_path`` defaults to ``cert_path`` (one file with both). Raises
    ValueError with a one-line reason.
    """

    def read(path, what):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError("cannot read %s %s: %s" % (what, path, e.strerror or e))

    cert_pem = read(cert_path, "certificate")
    key_pem = read(key_path or cert_path, "key")
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", cert_pem, re.S
    )
    if not blocks:
        raise ValueError("no PEM certificate in %s" % (cert_path,))
    try:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, key_pem)
        chain = [crypto.load_certificate(crypto.FILETYPE_PEM, b) for b in blocks]
        options = ssl.CertificateOptions(
            privateKey=key, certificate=chain[0], extraCertChain=chain[1:]
        )
        options.getContext()  # checks that the key matches the certificate
    except Exception as e:
        raise ValueError(
            "cannot use certificate %s with key %s: %s" % (cert_path, key_path or cert_path, e)
        )
    return options


class Options(outbound_wiring.OptionsMixin, usage.Options):
    synopsis = "[options]"
    longdesc = (
        "A mail server: SMTP in, Maildir store, IMAP4 out, with the IMAP WEBPUSH "
        "extension. Endpoints are Twisted endpoint strings (tcp:PORT:interface=ADDR, "
        "ssl:PORT:privateKey=KEY:certKey=CERT, ...); 'none' disables a listener. "
        "Add users with 'imapwebpush --data DIR user add ADDRESS'."
    )

    optParameters = [
        ["data", "d", DEFAULT_DATA, "Data folder (users, mailboxes, subscriptions); created if missing."],
        ["imap", None, DEFAULT_IMAP, "IMAP endpoint."],
        ["smtp", None, DEFAULT_SMTP, "SMTP endpoint receiving mail for the local domains."],
        ["submission", None, None, "SMTP submission endpoint (AUTH required); default: none."],
        ["max-message-size", None, DEFAULT_MAX_MESSAGE_SIZE, "Largest message accepted, in octets.", int],
        ["tls-cert", None, None, "PEM certificate (chain) for STARTTLS on IMAP, SMTP and submission."],
        ["tls-key", None, None, "PEM private key of --tls-cert (default: in the --tls-cert file)."],
        ["hostname", None, None, "This server's name in greetings and Received: headers (default: the FQDN)."],
        ["vapid-subject", None, None, "VAPID 'sub' claim (default: mailto:postmaster@FIRST-DOMAIN)."],
        [
            "max-subscriptions",
            None,
            decisions.DEFAULT_MAX_SUBSCRIPTIONS,
            "Web Push subscriptions per account.",
            int,
        ],
        [
            "max-pattern-length",
            None,
            DEFAULT_MAX_PATTERN_LENGTH,
            "Longest LIST/LSUB (reference + pattern; a LIST's patterns together) or LWEBPUSH pattern, in characters.",
            int,
        ],
        [
            "max-append-messages",
            None,
            DEFAULT_MAX_APPEND_MESSAGES,
            "Most messages in one IMAP APPEND (MULTIAPPEND).",
            int,
        ],
        [
            "max-append-size",
            None,
            DEFAULT_MAX_APPEND_SIZE,
            "Most octets of all the messages of one IMAP APPEND together (at least --max-message-size).",
            int,
        ],
        [
            "max-nesting",
            None,
            DEFAULT_MAX_NESTING,
            "Deepest nesting of parentheses, NOT and OR in an IMAP command (SEARCH, STATUS).",
            int,
        ],
        [
            "max-mime-parts",
            None,
            DEFAULT_MAX_MIME_PARTS,
            "Most MIME parts of a message over 256 KiB that IMAP FETCH describes and serves.",
            int,
        ],
        [
            "push-coalesce",
            None,
            decisions.DEFAULT_COALESCE_WINDOW,
            "Seconds flag/expunge events may wait to be merged into one push.",
            finite_float,
        ],
        [
            "max-connections",
            None,
            DEFAULT_MAX_CONNECTIONS,
            "Connections each listener (IMAP, SMTP, submission) holds at once; 0: no cap.",
            int,
        ],
        [
            "max-connections-per-ip",
            None,
            DEFAULT_MAX_CONNECTIONS_PER_IP,
            "Connections each listener holds at once from one IPv4 address or IPv6 /64; 0: no cap.",
            int,
        ],
        [
            "login-deadline",
            None,
            DEFAULT_LOGIN_DEADLINE,
            "Seconds an IMAP client has from the greeting to log in, whatever it sends meanwhile;"
            " 0: no deadline.",
            int,
        ],
        [
            "login-free-failures",
            None,
            throttle.DEFAULT_FREE_FAILURES,
            "Failed logins (IMAP, submission) of one address or account before its tries are slowed.",
            int,
        ],
        [
            "login-max-delay",
            None,
            throttle.DEFAULT_MAX_DELAY,
            "Longest wait, in seconds, between two login tries of a slowed address or account.",
            finite_float,
        ],
        [
            "login-refuse-after",
            None,
            throttle.DEFAULT_REFUSE_AFTER,
            "Failed logins of one address or account after which its tries are refused unchecked;"
            " 0: never.",
            int,
        ],
        [
            "login-refuse-for",
            None,
            throttle.DEFAULT_REFUSE_FOR,
            "Seconds after its last failure that an address or account stays refused (and counted).",
            finite_float,
        ],
        [
            "max-password-checks",
            None,
            DEFAULT_MAX_PASSWORD_CHECKS,
            "Password hashes (scrypt, 16 MiB each) computed at once.",
            int,
        ],
        [
            "smtp-timeout",
            None,
            DEFAULT_SMTP_TIMEOUT,
            "Seconds an SMTP or submission client may stay silent; 0: forever.",
            int,
        ],
        [
            "smtp-deadline",
            None,
            DEFAULT_SMTP_DEADLINE,
            "Seconds an SMTP or submission client has from connecting (or its last message) to DATA,"
            " whatever it sends meanwhile; 0: no deadline.",
            int,
        ],
        ["push-privacy", None, DEFAULT_PRIVACY,
         "What pushes reveal by default: full (envelope, preview), minimal (UID, flags) or"
         " sync (mailbox name only); accounts may have their own."],
        ["new-mail-burst", None, DEFAULT_NEW_MAIL_BURST,
         "New-mail pushes a subscription may get at once before they become one generic"
         " sync per mailbox (0: no limit).", int],
        ["new-mail-per-hour", None, DEFAULT_NEW_MAIL_PER_HOUR,
         "How many new-mail pushes an hour a subscription gets back.", finite_float],
        ["metrics", None, DEFAULT_METRICS,
         "Prometheus endpoint serving /metrics, e.g. tcp:9464:interface=127.0.0.1; default:"
         " none."],
        ["push-scope", None, DEFAULT_SCOPE,
         "Mailboxes whose changes are pushed: subscribed (INBOX and the SUBSCRIBEd ones) or"
         " all."],
        ["push-preview", None, DEFAULT_PREVIEW_CHARS,
         "Longest RFC 8970 PREVIEW text in a new-mail push, in characters (0: none, at most"
         " 256).", int],
    ]

    optFlags = [
        ["allow-plaintext-auth", None, "Allow LOGIN/AUTH without TLS (only for loopback or tests)."],
        ["insecure-push-endpoints", None, "Allow http:// and private-address push endpoints (tests only)."],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["domains"] = []
        self["push-hosts"] = []

    def _add_name(self, key, option, what, text, wildcard=False):
        """Check a repeatable host-name option and add it to ``self[key]`` once."""
        name = text.strip().lower().rstrip(".")
        bare = name[2:] if wildcard and name.startswith("*.") else name
        if not _DOMAIN_RE.match(bare):
            raise usage.UsageError("--%s: not a %s name: %r" % (option, what, name))
        if name not in self[key]:
            self[key].append(name)

    def opt_push_host(self, host):
        """Only push to this push service host (repeatable; *.example.net: its subdomains)."""
        self._add_name("push-hosts", "push-host", "host", host, wildcard=True)

    def opt_domain(self, domain):
        """A local domain (repeat for several; default: localhost)."""
        self._add_name("domains", "domain", "domain", domain)

    def postOptions(self):
        if not self["domains"]:
            self["domains"] = [DEFAULT_DOMAIN]
        if self["max-message-size"] <= 0:
            raise usage.UsageError("--max-message-size must be a positive number of octets")
        if self["max-subscriptions"] <= 0:
            raise usage.UsageError("--max-subscriptions must be positive")
        if self["max-pattern-length"] <= 0:
            raise usage.UsageError("--max-pattern-length must be positive")
        if self["max-nesting"] <= 0:
            raise usage.UsageError("--max-nesting must be positive")
        if self["max-mime-parts"] <= 0:
            raise usage.UsageError("--max-mime-parts must be positive")
        if self["max-append-messages"] <= 0:
            raise usage.UsageError("--max-append-messages must be positive")
        if self["max-append-size"] < self["max-message-size"]:
            raise usage.UsageError("--max-append-size must be at least --max-message-size")
        if self["push-coalesce"] < 0:
            raise usage.UsageError("--push-coalesce must not be negative")
        for name in (
            "max-connections",
            "max-connections-per-ip",
            "smtp-timeout",
            "smtp-deadline",
            "login-deadline",
            "login-refuse-after",
        ):
            if self[name] < 0:
                raise usage.UsageError("--%s must not be negative (0: no limit)" % (name,))
        for name in ("login-free-failures", "login-max-delay", "login-refuse-for"):
            if self[name] < 0:
                raise usage.UsageError("--%s must not be negative" % (name,))
        if self["max-password-checks"] <= 0:
            raise usage.UsageError("--max-password-checks must be positive")
        try:
            self["push-privacy"] = check_level(self["push-privacy"])
        except ValueError as e:
            raise usage.UsageError("--push-privacy: %s" % (e,))
        try:
            self["push-scope"] = check_scope(self["push-scope"])
        except ValueError as e:
            raise usage.UsageError("--push-scope: %s" % (e,))
        if self["new-mail-burst"] < 0 or self["new-mail-per-hour"] < 0:
            raise usage.UsageError("--new-mail-burst and --new-mail-per-hour must not be negative")
        if not 0 <= self["push-preview"] <= MAX_PREVIEW_CHARS:
            raise usage.UsageError("--push-preview must be 0 to %d characters" % MAX_PREVIEW_CHARS)
        if self["vapid-subject"] is None:
            self["vapid-subject"] = "mailto:postmaster@%s" % (self["domains"][0],)
        try:
            check_subject(self["vapid-subject"])
        except ValueError as e:
            raise usage.UsageError("--vapid-subject: %s" % (e,))
        if self["tls-key"] and not self["tls-cert"]:
            raise usage.UsageError("--tls-key needs --tls-cert")
        self["tls"] = None
        if self["tls-cert"]:
            try:
                self["tls"] = load_tls(self["tls-cert"], self["tls-key"])
            except ValueError as e:
                raise usage.UsageError("--tls-cert: %s" % (e,))
        self["endpoints"] = {}
        for name in ("imap", "smtp", "submission", "metrics"):
            description = self[name]
            if description is None or description.strip().lower() in DISABLED:
                continue
            self["endpoints"][name] = parse_endpoint(name, description)
        try:
            self["data"] = datadir.prepare(self["data"])
            users_file = datadir.users(self["data"])
            if os.path.exists(users_file):
                read_users_file(users_file)  # a broken file: one line now, not a traceback later
            datadir.check_databases(self["data"])
        except (DataDirError, UsersFileError) as e:
            raise usage.UsageError("--data: %s" % (e,))
        outbound_wiring.check(self)


def parse_endpoint(name, description, reactor=None):
    """An IStreamServerEndpoint from a strports description, or a UsageError."""
    if reactor is None:
        from twisted.internet import reactor
    try:
        return endpoints.serverFromString(reactor, description)
    except Exception as e:
        raise usage.UsageError("--%s: bad endpoint %r: %s" % (name, description, e))


class Components:
    """The objects every server of one process shares.

    ``build_components`` fills the mail ones; the Web Push wiring adds its own
    attributes here (subscription store, keyring, sender, dispatcher).
    ``services`` lists ``(name, IService)`` pairs that L{makeService} adds
    before the listeners, so they start first and stop last.
    """

    def __init__(self, options, reactor):
        self.options = options
        self.reactor = reactor
        self.data_dir = options["data"]
        self.domains = list(options["domains"])
        self.hostname = options["hostname"]
        self.tls = options["tls"]
        self.mail_store = None
        self.users = None
        self.checker = None
        self.throttle = None  # the LoginThrottle IMAP and submission share
        self.portal = None
        self.webpush = None  # the WebPush service (subscriptions, keyring, sender, dispatcher)
        self.dispatcher = None  # the PushDispatcher on the mail store's bus
        self.avatar_factory = None  # makes IMAP avatars that provide IWebPushAccount
        self.outbound = None  # the OutboundService (queue and delivery of mail to other domains)
        self.senders = None  # the SenderPolicy of submission
        self.signer = None  # the DKIMSigner of outbound mail, when there are keys
        self.authenticator = None  # Authentication-Results of mail from other servers
        self.services = []
        self.metrics = None  # ServerMetrics when --metrics is given

    def counted_checker(self, protocol):
        """The checker one listener uses: its refusals counted under ``protocol`` when
        --metrics is on."""
        if self.metrics is None:
            return self.checker
        return self.metrics.checker(self.checker, protocol)


def build_components(options, reactor=None):
    """Make the mail store, the users, the checker and the IMAP portal."""
    if reactor is None:
        from twisted.internet import reactor
    c = Components(options, reactor)
    c.mail_store = MailStore(datadir.mail(c.data_dir), clock=reactor)
    c.users = UserDatabase(c.data_dir, mail_store=c.mail_store)
    c.checker = UserChecker(c.users, max_concurrent=options["max-password-checks"])
    c.throttle = throttle.LoginThrottle(
        reactor,
        free_failures=options["login-free-failures"],
        max_delay=options["login-max-delay"],
        refuse_after=options["login-refuse-after"],
        refuse_for=options["login-refuse-for"],
    )
    if "metrics" in options["endpoints"]:
        c.metrics = ServerMetrics()
        c.metrics.watch_store(c.mail_store.bus)
    add_webpush(c)
    if c.metrics is not None:
        c.metrics.watch_webpush(c.webpush)
    outbound_wiring.add_outbound(c)
    c.portal = Portal(IMAPRealm(c.mail_store, avatar_factory=c.avatar_factory),
                      [c.counted_checker("imap")])
    return c


def add_webpush(c):
    """Wire the Web Push side: one L{WebPush} service on the mail store's bus.

    The dispatcher listens to the store-wide change bus, so every change made
    by SMTP, IMAP or the admin command reaches it once. ``WebPush`` starts its
    sender first and stops it last, and it is added before the listeners.
    """
    options = c.options
    c.webpush = WebPush(
        c.data_dir,
        c.reactor,
        subject=options["vapid-subject"],
        insecure=options["insecure-push-endpoints"],
        allowlist=options["push-hosts"] or None,
        max_subscriptions=options["max-subscriptions"],
        max_pattern_length=options["max-pattern-length"],
        coalesce_window=options["push-coalesce"],
        privacy=options["push-privacy"],
        new_mail_burst=options["new-mail-burst"],
        new_mail_per_hour=options["new-mail-per-hour"],
        preview_chars=options["push-preview"],
        scope=SubscribedMailboxes(c.mail_store) if options["push-scope"] == SUBSCRIBED else None,
    )
    c.dispatcher = c.webpush.dispatcher
    c.mail_store.bus.subscribe(c.dispatcher)
    c.avatar_factory = c.webpush.avatar_factory(Avatar)
    c.services.append(("webpush", c.webpush))


def server_factories(c):
    """``{name: protocol factory}`` for each listener that has an endpoint."""

    options = c.options
    wanted = options["endpoints"]
    spool = datadir.spool(c.data_dir)
    make_folders(spool)
    common = dict(
        tls=c.tls,
        hostname=c.hostname,
        max_message_size=options["max-message-size"],
        spool_dir=spool,
        timeout=options["smtp-timeout"],
        deadline=options["smtp-deadline"],
    )
    factories = {}
    imap_protocol = webpush_server_class(IMAPServer)
    if c.metrics is not None:
        imap_protocol = c.metrics.imap_protocol(imap_protocol)
        if "metrics" in wanted:
            factories["metrics"] = c.metrics.site()
    if "imap" in wanted:
        factories["imap"] = IMAPFactory(
            c.portal,
            c.mail_store,
            tls=c.tls,
            allow_plaintext_auth=options["allow-plaintext-auth"],
            clock=c.reactor,
            max_message_size=options["max-message-size"],
            max_append_messages=options["max-append-messages"],
            max_append_size=options["max-append-size"],
            max_pattern_length=options["max-pattern-length"],
            max_nesting=options["max-nesting"],
            max_mime_parts=options["max-mime-parts"],
            spool_dir=spool,
            protocol=imap_protocol,
            throttle=c.throttle,
            login_deadline=options["login-deadline"],
        )
    if "smtp" in wanted:
        factories["smtp"] = ReceivingFactory(
            c.mail_store, c.users, c.domains, c.reactor, authenticator=c.authenticator, **common
        )
    if "submission" in wanted:
        factories["submission"] = SubmissionFactory(
            c.mail_store,
            c.users,
            c.domains,
            c.reactor,
            c.counted_checker("smtp"),
            allow_plaintext_auth=options["allow-plaintext-auth"],
            outbound=c.outbound,
            senders=c.senders,
            throttle=c.throttle,
            **common,
        )
    return factories


class ListeningService(service.Service):
    """Listens on one endpoint while it runs; fails loudly at start and remembers its port.

    Twisted's StreamServerEndpointService gives neither the port nor a failure
    raised at start except through private attributes, hence this one.
    """

    port = None

    def __init__(self, endpoint, factory):
        self.endpoint = endpoint
        self.factory = factory
        self._listening = None

    def privilegedStartService(self):
        service.Service.privilegedStartService(self)
        self._listen()

    def startService(self):
        service.Service.startService(self)
        if self._listening is None:
            self._listen()

    def stopService(self):
        service.Service.stopService(self)
        listening, self._listening = self._listening, None
        if listening is None:
            return None
        listening.cancel()
        return listening.addCallback(lambda port: port and port.stopListening())

    def listening(self):
        """Deferred[port, or None if listening failed]; None before the service starts."""
        return self._listening

    def _listen(self):
        """Listen now: a failure the endpoint reports at once is raised, a later one logged."""
        at_once = []

        def failed(reason):
            if at_once is not None:
                at_once.append(reason)
            elif not reason.check(defer.CancelledError):
                log.failure("{service} cannot listen", reason, service=self.name)

        self._listening = self.endpoint.listen(self.factory).addCallbacks(self._remember, failed)
        reasons, at_once = at_once, None
        if reasons:
            reasons[0].raiseException()

    def _remember(self, port):
        self.port = port
        log.info(
            "{service} listening on {address}", service=self.name, address=port.getHost()
        )
        return port


def makeService(options, reactor=None):
    """The whole server: a MultiService with one named child per listener."""
    c = build_components(options, reactor)
    top = service.MultiService()
    top.components = c
    for name, svc in c.services:
        svc.setName(name)
        svc.setServiceParent(top)
    for name, factory in server_factories(c).items():
        counter = ConnectionCounter(options["max-connections"], options["max-connections-per-ip"])
        factory = LimitedFactory(factory, counter, name, clock=c.reactor)
        svc = ListeningService(options["endpoints"][name], factory)
        svc.setName(name)
        svc.setServiceParent(top)
    return top


class RunningServer:
    """What L{start_server} returns: the service, its ports, and how to stop it."""

    def __init__(self, service):
        self.service = service
        self.components = service.components
        self.ports = {
            child.name: child.port.getHost().port
            for child in service
            if isinstance(child, ListeningService) and child.port is not None
        }

    def stop(self):
        return defer.maybeDeferred(self.service.stopService)


def start_server(argv, reactor=None):
    """Parse ``argv`` like twistd would, start everything; Deferred[L{RunningServer}].

    Options errors raise UsageError at once; a port that cannot be listened on
    fails the Deferred, after the ports already opened are closed again.

    For tests: pass ``--imap tcp:0:interface=127.0.0.1`` etc. and read
    ``RunningServer.ports``.
    """
    options = Options()
    options.parseOptions(argv)
    top = makeService(options, reactor)
    try:
        top.privilegedStartService()
    except Exception:
        failure = Failure()
        listening = [c.port.stopListening() for c in top if getattr(c, "port", None) is not None]
        d = defer.gatherResults(listening)
        d.addBoth(lambda _: failure)
        return d
    top.startService()
    waits = [child.listening() for child in top if isinstance(child, ListeningService)]
    d = defer.gatherResults(waits, consumeErrors=True)
    d.addCallback(lambda _: RunningServer(top))
    return d
