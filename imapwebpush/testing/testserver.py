"""``imapwebpush testserver``: the test server for any language, run from the shell.

Starts a ``MailServer`` (IMAP with WEBPUSH, SMTP, submission, a loopback push
service) in a fresh temporary folder and its JSON control API
(``imapwebpush.testing.control``), prints one JSON line with the ports once
everything listens, and runs until interrupted (SIGINT/SIGTERM), then removes
its folder. Never for production: logins without TLS, pushes to loopback.
"""

import json
import sys

DEFAULTS = {"imap": 3143, "smtp": 3025, "submission": 3587, "control": 3080}


def _user(text):
    address, sep, password = text.partition(":")
    if not sep or not address or not password:
        raise ValueError("USER must be ADDRESS:PASSWORD")
    return address, password


def register_testserver(subparsers):
    p = subparsers.add_parser(
        "testserver", help="run a throw-away test server with a push service and a JSON control"
        " API on 127.0.0.1 (for client tests in any language; never in production)")
    for name, port in DEFAULTS.items():
        p.add_argument("--%s-port" % name, type=int, default=port, metavar="PORT",
                       help="%s port on 127.0.0.1 (default %d; 0: any free port)" % (name, port))
    p.add_argument("--domain", action="append", default=None,
                   help="a local domain (repeatable; default example.org)")
    p.add_argument("--user", action="append", type=_user, default=[], metavar="ADDRESS:PASSWORD",
                   help="a user to create at start (repeatable)")
    p.set_defaults(func=testserver)


def testserver(args, ctx, reactor=None):
    """Run until the reactor stops; the exit status."""
    from twisted.internet import defer

    from imapwebpush.testing.control import listen_control
    from imapwebpush.testing.mailserver import MailServer

    if reactor is None:
        from twisted.internet import reactor
    server = MailServer(reactor, domains=args.domain or ["example.org"], blocking=False,
                        imap_port=args.imap_port, smtp_port=args.smtp_port,
                        submission_port=args.submission_port)
    status = []

    @defer.inlineCallbacks
    def start():
        try:
            yield server.start()
            for address, password in args.user:
                server.add_user(address, password)
            control = listen_control(server, args.control_port, reactor)
        except Exception as e:
            print("imapwebpush: error: testserver could not start: %s" % (e,), file=ctx.stderr)
            status.append(1)
            reactor.stop()
            return
        ctx.print(json.dumps({"ready": True, "control": control.getHost().port,
                              "imap": server.imap_port, "smtp": server.smtp_port,
                              "submission": server.submission_port,
                              "push_origin": server.push_service.origin}))
        (ctx.stdout if ctx.stdout is not None else sys.stdout).flush()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", server.stop)
    reactor.run()
    return status[0] if status else 0
