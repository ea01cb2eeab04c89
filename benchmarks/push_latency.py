"""Push latency: end of the SMTP DATA reply -> the push arrives at the push service.

The server is started with ``imapwebpush.tap.start_server`` (makeService) on
loopback; one user has one active Web Push subscription at the testing push
service (imapwebpush.testing.PushService, same process, which checks VAPID and
decrypts every push). A client thread sends 200 messages one by one with
smtplib from a client process of its own; for each, the time from ``SMTP.data()``
returning (the 250 reply was read) to the push service receiving the POST is
recorded (both are wall-clock times of the same machine).

In the same run, when Dovecot is installed and we are root, the same client
code delivers the same messages over LMTP to a private Dovecot
(``_dovecot.PrivateDovecot`` with ``push_url``) that has its own
push_notification plugin with the OX driver (an unencrypted JSON HTTP PUT per
new INBOX message) pointed at a small twisted.web receiver in this process.
The OX driver answers the LMTP DATA only after its PUT was answered, so
Dovecot's "DATA reply -> PUT" figures are negative; both servers therefore also
get the time from the final "." of the message leaving the client to the push
arriving (``dot_*``), which includes the delivery itself.

Prints one line:

    push_latency messages=200 p50_ms=... p99_ms=... max_ms=... decrypted=200
      dot_p50_ms=... dot_p99_ms=... dovecot_p50_ms=... dovecot_p99_ms=...
      dovecot_dot_p50_ms=... dovecot_dot_p99_ms=... dovecot_received=200 ok=yes

(``dovecot=skipped (reason)`` instead of the dovecot fields when it is not
installed, we are not root, or ``--no-dovecot``). ``ok=yes`` when our p50 <= 10
ms and p99 <= 50 ms, every push decrypted to the expected payload, and (when
Dovecot ran) every message gave Dovecot's PUT. Run:
``python benchmarks/push_latency.py [--messages N] [--no-dovecot]
[--install-dovecot]`` (Dovecot is installed with apt-get only when
``--install-dovecot`` is given).

The Web Push pieces are the server's own (makeService with
``--insecure-push-endpoints``, since the push service is plain HTTP on
loopback); the benchmark only adds the subscription to its store.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from twisted.internet import defer, reactor, threads
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import failure
from twisted.web import resource, server as webserver

# run from a checkout without installing: the repository root on the path
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imapwebpush import decisions
from imapwebpush.store.users import UserDatabase
from imapwebpush.tap import start_server
from imapwebpush.testing import PushService
from imapwebpush.testing import dns as testing_dns
from imapwebpush.webpush import crypto
from imapwebpush.webpush.subscriptions import token_hash

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _dovecot  # noqa: E402

CHEAP_SCRYPT = {"n": 2, "r": 1, "p": 1}  # SMTP never checks passwords; adding users is fast
DOMAIN = "example.org"


def quiet_logs():
    """Warnings and errors to stderr only, so stdout has the one result line."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
        redirectStandardIO=False)


def add_users(data_dir, addresses):
    users = UserDatabase(data_dir, scrypt_params=CHEAP_SCRYPT)
    for address in addresses:
        users.add(address, "password")


class PushWiring:
    """The server's own Web Push side (built by makeService), and a way to add devices."""

    def __init__(self, components):
        self.webpush = components.webpush
        self.subscriptions = components.webpush.store
        self.keyring = components.webpush.keyring

    def activate(self, account, sid, device):
        """An active subscription for ``device``, as WEBPUSH + ACKWEBPUSH leave it.

        The token round trip itself is tested in tests/; here it would only
        add one verification push per device to the figures.
        """
        token = os.urandom(decisions.TOKEN_BYTES)
        now = reactor.seconds()
        self.subscriptions.set_pending(
            account, sid, device.endpoint, crypto.parse_p256dh(device.p256dh),
            crypto.parse_auth(device.auth), self.keyring.current(), now,
            decisions.DEFAULT_MAX_SUBSCRIPTIONS, token_hash(token))
        sub = self.subscriptions.acknowledge(account, token_hash(token), now,
                                             decisions.TOKEN_LIFETIME)
        assert sub is not None and sub.state == "active"


def message(sender, recipient, n):
    return (
        "From: Bench Sender <%s>\r\nTo: <%s>\r\nSubject: latency probe %d\r\n"
        "Message-ID: <probe-%d@%s>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n"
        "probe body %d\r\n" % (sender, recipient, n, n, DOMAIN, n)
    ).encode("ascii")


def percentile(values, p):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[index]


# The SMTP client runs in its own process, so the moment it reads the 250 reply
# is not delayed by the server's reactor holding this process's GIL (in a thread
# of the server process the push could even "arrive" before the client noticed
# the reply). It sends one message per "go" line and prints two times: when the
# final "." of the message was sent, and when the 250 reply to it was read.
# With "lmtp" it speaks LMTP (one recipient, so one reply) instead of SMTP.
CLIENT = r"""
import smtplib, sys, time
port, recipient, sender, domain, proto = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
client = (smtplib.LMTP if proto == "lmtp" else smtplib.SMTP)("127.0.0.1", port, timeout=30)
client.ehlo("bench.example")
for line in sys.stdin:
    n = int(line)
    client.mail(sender)
    code, _ = client.rcpt(recipient)
    assert code == 250, code
    data = (
        "From: Bench Sender <%s>\r\nTo: <%s>\r\nSubject: latency probe %d\r\n"
        "Message-ID: <probe-%d@%s>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n"
        "probe body %d\r\n" % (sender, recipient, n, n, domain, n)
    ).encode("ascii")
    code, _ = client.docmd("DATA")
    assert code == 354, code
    client.send(data + b".\r\n")  # no line starts with "."
    sent = time.time()
    code, _ = client.getreply()
    replied = time.time()
    assert code == 250, code
    print(repr(sent), repr(replied), flush=True)
client.quit()
"""


def client_run(port, recipient, proto, count, warmup, wait_for):
    """In a thread: have the client process send; ``wait_for(n)`` (in the reactor) gives push n's arrival time.

    Returns two lists over the measured messages: push arrival minus DATA reply
    read, and push arrival minus final dot sent (seconds).
    """
    after_reply, after_dot = [], []
    sender = "bench@elsewhere.example"
    child = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), recipient, sender, DOMAIN, proto],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for n in range(warmup + count):
            child.stdin.write("%d\n" % n)
            child.stdin.flush()
            sent, replied = (float(x) for x in child.stdout.readline().split())
            arrived = threads.blockingCallFromThread(reactor, wait_for, n)
            if n >= warmup:
                after_reply.append(arrived - replied)
                after_dot.append(arrived - sent)
    finally:
        child.stdin.close()
        child.wait(30)
    return after_reply, after_dot


def smtp_run(port, recipient, count, warmup, pushservice, device):
    """Our server: SMTP in, Web Push out to the testing push service."""
    def arrival(n):
        d = pushservice.wait_for(n + 1, device)
        d.addCallback(lambda pushes: pushes[n].received_at)
        return d.addTimeout(30, reactor)
    return client_run(port, recipient, "smtp", count, warmup, arrival)


class NotifyReceiver(resource.Resource):
    """Dovecot's OX driver endpoint: records each PUT's arrival time and JSON body, answers 200."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.received = []  # (time, parsed JSON or None, method)
        self._waiters = []

    def render(self, request):
        at = reactor.seconds()
        try:
            body = json.loads(request.content.read().decode("utf-8"))
        except ValueError:
            body = None
        self.received.append((at, body, request.method))
        for waiter in list(self._waiters):
            count, d = waiter
            if len(self.received) >= count:
                self._waiters.remove(waiter)
                d.callback(self.received)
        request.setResponseCode(200)
        return b""

    def wait_for(self, count):
        d = defer.Deferred()
        if len(self.received) >= count:
            d.callback(self.received)
        else:
            self._waiters.append((count, d))
        return d

    def matching(self, warmup, count):
        """How many of the measured PUTs were messageNew for INBOX with the expected subject."""
        return sum(
            1 for n, (_, body, method) in enumerate(self.received[warmup:warmup + count], warmup)
            if method == b"PUT" and isinstance(body, dict) and body.get("event") == "messageNew"
            and body.get("folder") == "INBOX" and body.get("subject") == "latency probe %d" % n)


def dovecot_unavailable(install):
    """None when the Dovecot comparison can run, else the reason it is skipped."""
    if os.geteuid() != 0:
        return "not root"
    if install:
        _dovecot.ensure_installed()
    if not (shutil.which("dovecot") and os.path.exists("/usr/lib/dovecot/lmtp")):
        return "not installed"
    if not any("push_notification_plugin" in f for f in os.listdir("/usr/lib/dovecot/modules")):
        return "no push_notification plugin"
    return None


@defer.inlineCallbacks
def dovecot_run(tmp, count, warmup):
    """Dovecot over LMTP with its push_notification OX driver; the same client and messages."""
    receiver = NotifyReceiver()
    port = reactor.listenTCP(0, webserver.Site(receiver), interface="127.0.0.1")
    root = os.path.join(tmp, "dovecot")
    os.makedirs(root)
    os.chmod(tmp, 0o755)  # Dovecot's unprivileged processes read below it
    dc = _dovecot.PrivateDovecot(root, "bench", "password",
                                 push_url="http://127.0.0.1:%d/notify" % port.getHost().port)
    try:
        yield threads.deferToThread(dc.start)
        try:
            yield threads.deferToThread(dc.set_http_notify)

            def arrival(n):
                d = receiver.wait_for(n + 1)
                d.addCallback(lambda received: received[n][0])
                return d.addTimeout(30, reactor)
            after_reply, after_dot = yield threads.deferToThread(
                client_run, dc.lmtp_port, "bench", "lmtp", count, warmup, arrival)
        finally:
            yield threads.deferToThread(dc.stop)
    finally:
        yield port.stopListening()
    return after_reply, after_dot, receiver.matching(warmup, count)


@defer.inlineCallbacks
def run(count, warmup=10, dovecot=True, install_dovecot=False):
    tmp = tempfile.mkdtemp(prefix="imapwebpush-bench-")
    try:
        data = os.path.join(tmp, "data")
        os.mkdir(data, 0o700)
        user = "alice@" + DOMAIN
        add_users(data, [user])
        server = yield start_server([
            "--data", data, "--domain", DOMAIN, "--imap", "none",
            "--smtp", "tcp:0:interface=127.0.0.1", "--hostname", "bench.example",
            "--insecure-push-endpoints",
            # SPF/DKIM lookups of the delivered mail: a loopback server (empty zone).
            "--dns-server", testing_dns.loopback(reactor)[0],
        ], reactor)
        pushservice = PushService(reactor)
        yield pushservice.start()
        wiring = PushWiring(server.components)
        device = pushservice.new_subscription()
        wiring.activate(user, "phone", device)
        try:
            latencies, dot = yield threads.deferToThread(
                smtp_run, server.ports["smtp"], user, count, warmup, pushservice, device)
            pushes = pushservice.received(device)
            decrypted = sum(
                1 for p in pushes[warmup:]
                if p.ok and p.plaintext is not None and p.plaintext.startswith(b'* SELECT "INBOX"\r\n* ')
                and b"latency probe" in p.plaintext)
        finally:
            yield pushservice.stop()
            yield server.stop()
        ms = [x * 1000.0 for x in latencies]
        dot_ms = [x * 1000.0 for x in dot]
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        ok = p50 <= 10 and p99 <= 50 and decrypted == count
        line = ("push_latency messages=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f decrypted=%d"
                " dot_p50_ms=%.2f dot_p99_ms=%.2f"
                % (count, p50, p99, max(ms), decrypted, percentile(dot_ms, 50), percentile(dot_ms, 99)))
        skipped = "--no-dovecot" if not dovecot else dovecot_unavailable(install_dovecot)
        if skipped:
            line += " dovecot=skipped (%s)" % skipped
        else:
            d_reply, d_dot, received = yield dovecot_run(tmp, count, warmup)
            d_ms = [x * 1000.0 for x in d_reply]
            d_dot_ms = [x * 1000.0 for x in d_dot]
            line += (" dovecot_p50_ms=%.2f dovecot_p99_ms=%.2f dovecot_dot_p50_ms=%.2f"
                     " dovecot_dot_p99_ms=%.2f dovecot_received=%d"
                     % (percentile(d_ms, 50), percentile(d_ms, 99), percentile(d_dot_ms, 50),
                        percentile(d_dot_ms, 99), received))
            ok = ok and received == count
        print(line + " ok=%s" % ("yes" if ok else "no"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--no-dovecot", action="store_true", help="skip the Dovecot comparison")
    parser.add_argument("--install-dovecot", action="store_true",
                        help="apt-get install dovecot-imapd dovecot-lmtpd when missing")
    args = parser.parse_args()
    quiet_logs()
    result = []

    def done(outcome):
        result.append(outcome)
        reactor.stop()

    reactor.callWhenRunning(lambda: run(args.messages, dovecot=not args.no_dovecot,
                                                install_dovecot=args.install_dovecot).addBoth(done))
    reactor.run()
    if not result or isinstance(result[0], failure.Failure):
        if result:
            result[0].printTraceback(file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
