"""Runs the SPEC checks against one IMAP server with a local push service.

The server under test must be able to reach the push service on 127.0.0.1 over
plain HTTP (for imapwebpush: ``--insecure-push-endpoints``), and the account
should be a throw-away one: the checks add a few messages to its INBOX and
remove them again at the end, create and delete a mailbox, and make and delete
subscriptions whose ids start with ``conformance``.
"""

import secrets
import time

from twisted.internet import defer
from twisted.logger import Logger

from imapwebpush.conformance.checks import CHECKS, CheckFailed
from imapwebpush.conformance.client import connect
from imapwebpush.testing.pushservice import PushService

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

log = Logger()


class Result:
    def __init__(self, check, outcome, detail, seconds):
        self.name = check.name
        self.section = check.section
        self.outcome = outcome
        self.detail = detail
        self.seconds = seconds

    def line(self):
        return "%s  %-20s SPEC %-9s %s" % (self.outcome, self.name, self.section, self.detail)


class Session:
    """What the checks share: the logged-in client, the push service, what was learnt."""

    def __init__(self, reactor, host, port, user, password, tls=False, timeout=10.0, quiet=1.5):
        self.reactor = reactor
        self.host, self.port, self.tls = host, port, tls
        self.user, self.password = user, password
        self.timeout = timeout
        self.quiet = quiet  # how long "no push" is watched for
        self.push = PushService(reactor)
        self.client = None
        self.sid = "conformance-%s" % secrets.token_hex(4)
        self.vapid_key = None
        self.phone = None
        self.token = None
        self.uid = None
        self.appended = []
        self.uidplus = False

    def wait_push(self, subscription, count):
        """The ``count``-th push to ``subscription`` (fails after ``timeout``)."""
        d = self.push.wait_for(count, subscription)
        d.addTimeout(self.timeout, self.reactor)

        def timed_out(failure):
            failure.trap(defer.TimeoutError, defer.CancelledError)
            raise CheckFailed("no push within %g s" % self.timeout)

        return d.addCallbacks(lambda pushes: pushes[count - 1], timed_out)


@defer.inlineCallbacks
def run_checks(reactor, host, port, user, password, tls=False, timeout=10.0, report=None,
               checks=None):
    """Run every check (or ``checks``); the list of L{Result}s. ``report(result)`` sees each."""
    s = Session(reactor, host, port, user, password, tls, timeout)
    yield s.push.start()
    results = []
    facts = set()
    try:
        s.client = yield connect(reactor, host, port, tls, timeout)
        answer = yield s.client.command(b"CAPABILITY")
        s.uidplus = b"UIDPLUS" in b" ".join(answer.named(b"CAPABILITY")).upper().split()
        for check in checks or CHECKS:
            missing = check.needs - facts
            started = time.monotonic()
            if missing:
                result = Result(check, SKIP, "needs %s" % ", ".join(sorted(missing)), 0.0)
            else:
                try:
                    detail = yield check.run(s)
                except CheckFailed as e:
                    result = Result(check, FAIL, str(e), time.monotonic() - started)
                except Exception as e:
                    result = Result(check, FAIL, "%s: %s" % (type(e).__name__, e),
                                    time.monotonic() - started)
                else:
                    facts |= check.gives
                    result = Result(check, PASS, detail or "", time.monotonic() - started)
            results.append(result)
            if report is not None:
                report(result)
        yield cleanup(s)
    finally:
        if s.client is not None and s.client.transport is not None:
            s.client.transport.loseConnection()
            yield s.client.closed
        yield s.push.stop()
    return results


@defer.inlineCallbacks
def cleanup(s):
    """Delete the subscription and the runner's messages (found by their Message-ID)."""
    try:
        yield s.client.command(b"WEBPUSH %s NIL" % s.sid.encode())
        answer = yield s.client.command(b"SELECT INBOX")
        if answer.status != b"OK":
            return
        answer = yield s.client.command(b'UID SEARCH HEADER Message-ID "@conformance.invalid"')
        uids = b" ".join(answer.named(b"SEARCH")).split()
        if uids and s.uidplus:
            ids = b",".join(uids)
            yield s.client.command(b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % ids)
            yield s.client.command(b"UID EXPUNGE %s" % ids)
        yield s.client.command(b"LOGOUT")
    except Exception as e:
        log.warn("conformance: cleanup failed: {error}", error=e)
