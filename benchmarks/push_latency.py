"""Push latency: end of the SMTP DATA reply -> the push arrives at the push service.

The server is started with ``imapwebpush.tap.start_server`` (makeService) on
loopback; one user has one active Web Push subscription at the testing push
service (imapwebpush.testing.PushService, same process, which checks VAPID and
decrypts every push). A client thread sends 200 messages one by one with
smtplib from a client process of its own; for each, the time from ``SMTP.data()``
returning (the 250 reply was read) to the push service receiving the POST is
recorded (both are wall-clock times of the same machine).

Prints one line:

    push_latency messages=200 p50_ms=... p99_ms=... max_ms=... decrypted=200 ok=yes

``ok=yes`` when p50 <= 10 ms and p99 <= 50 ms and every push decrypted to the
expected payload. Run: ``python benchmarks/push_latency.py [--messages N]``.

The Web Push pieces are the server's own (makeService with
``--insecure-push-endpoints``, since the push service is plain HTTP on
loopback); the benchmark only adds the subscription to its store.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer, reactor, threads
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import failure

# run from a checkout without installing: the repository root on the path
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imapwebpush import decisions
from imapwebpush.store.users import UserDatabase
from imapwebpush.tap import start_server
from imapwebpush.testing import PushService
from imapwebpush.webpush import crypto
from imapwebpush.webpush.subscriptions import token_hash

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
# the reply). It sends one message per "go" line and prints when DATA returned.
CLIENT = r"""
import smtplib, sys, time
port, recipient, sender = int(sys.argv[1]), sys.argv[2], sys.argv[3]
client = smtplib.SMTP("127.0.0.1", port, timeout=30)
client.ehlo("bench.example")
for line in sys.stdin:
    n = int(line)
    client.mail(sender)
    code, _ = client.rcpt(recipient)
    assert code == 250, code
    data = (
        "From: Bench Sender <%s>\r\nTo: <%s>\r\nSubject: latency probe %d\r\n"
        "Message-ID: <probe-%d@%s>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n"
        "probe body %d\r\n" % (sender, recipient, n, n, recipient.split("@")[1], n)
    ).encode("ascii")
    code, _ = client.data(data)
    replied = time.time()
    assert code == 250, code
    print(repr(replied), flush=True)
client.quit()
"""


def smtp_run(port, recipient, count, warmup, pushservice, device):
    """In a thread: have the client process send, then wait (via the reactor) for the push."""
    latencies = []
    sender = "bench@elsewhere.example"
    child = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), recipient, sender],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for n in range(warmup + count):
            child.stdin.write("%d\n" % n)
            child.stdin.flush()
            replied = float(child.stdout.readline())
            pushes = threads.blockingCallFromThread(reactor, pushservice.wait_for, n + 1, device)
            push = pushes[n]
            if n >= warmup:
                latencies.append(push.received_at - replied)
    finally:
        child.stdin.close()
        child.wait(30)
    return latencies


@defer.inlineCallbacks
def run(count, warmup=10):
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
        ], reactor)
        pushservice = PushService(reactor)
        yield pushservice.start()
        wiring = PushWiring(server.components)
        device = pushservice.new_subscription()
        wiring.activate(user, "phone", device)
        try:
            latencies = yield threads.deferToThread(
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
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        ok = p50 <= 10 and p99 <= 50 and decrypted == count
        print("push_latency messages=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f decrypted=%d ok=%s"
              % (count, p50, p99, max(ms), decrypted, "yes" if ok else "no"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    quiet_logs()
    result = []

    def done(outcome):
        result.append(outcome)
        reactor.stop()

    reactor.callWhenRunning(lambda: run(args.messages).addBoth(done))
    reactor.run()
    if not result or isinstance(result[0], failure.Failure):
        if result:
            result[0].printTraceback(file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
