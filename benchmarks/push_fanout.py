"""Push fan-out: 1,000 accounts x 10 active subscriptions, 1,000 messages over SMTP, rate limit on.

The server is started with ``imapwebpush.tap.start_server`` on loopback; each
account has 10 active subscriptions at the testing push service (same
process: it verifies VAPID and decrypts every push, so its cost is counted
too). Four smtplib client threads deliver one message to each account as
fast as the server accepts them; each message makes one push per
subscription, 10,000 pushes in all.

The server runs with its defaults, so the new-mail rate limit is on
(``--new-mail-burst 20 --new-mail-per-hour 3``); ``--messages N`` sends N
messages to each account, one after the other, so past the 20th each device
gets a Topic'd generic sync (``* SELECT "INBOX"``) instead of the envelope.
``--metrics`` is on too, and the server's own metrics are scraped at the end.

Prints two lines:

    push_fanout accounts=1000 subscriptions=10000 messages=1000 pushes=10000
        smtp_s=... last_push_s=... pushes_per_s=... peak_rss_mib=... decrypted=10000
        limited=0 ok=yes
    push_fanout_metrics smtp_deliveries=... push_sends_2xx=... push_latency_p50_s=...
        push_latency_count=... rate_limited=... retries=... outbox_depth=... pruned=...

``limited``: pushes that were rate-limited generic syncs (expected:
accounts x subscriptions x max(0, messages - 20)).

``smtp_s``: from the first MAIL FROM to the last DATA reply; ``last_push_s``:
from the first MAIL FROM to the arrival of the last push; ``pushes_per_s``:
pushes / last_push_s; ``peak_rss_mib``: resource.getrusage ru_maxrss of the
whole process; ``ok=yes`` when every push arrived and decrypted to the
expected payload. Run: ``python benchmarks/push_fanout.py [--accounts N]
[--per-account N]``.
"""

import argparse
import os
import resource
import shutil
import smtplib
import sys
import tempfile
import threading
import time
import urllib.request

from twisted.internet import defer, reactor, threads
from twisted.python import failure

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from push_latency import DOMAIN, PushWiring, add_users, message, quiet_logs  # noqa: E402

from imapwebpush.tap import start_server  # noqa: E402
from imapwebpush.testing import PushService  # noqa: E402
from imapwebpush.testing import dns as testing_dns  # noqa: E402

CLIENTS = 4


def smtp_client(port, recipients, first_start, last_reply, lock):
    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
    client.ehlo("bench.example")
    sender = "bench@elsewhere.example"
    try:
        with lock:
            first_start.append(time.time())
        for n, recipient in recipients:
            client.mail(sender)
            code, _ = client.rcpt(recipient)
            assert code == 250, code
            code, _ = client.data(message(sender, recipient, n))
            assert code == 250, code
        with lock:
            last_reply.append(time.time())
    finally:
        client.quit()


def scrape(port):
    """{name{labels}: value} of the server's /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30) as r:
        text = r.read().decode("utf-8")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            values[name] = float(number)
    return values


def latency_quantile(values, q):
    """The upper bound of the histogram bucket holding quantile ``q`` of the push latency."""
    name = "imapwebpush_push_latency_seconds_bucket"
    buckets = sorted((float(k.split('le="')[1].rstrip('"}')), v) for k, v in values.items()
                     if k.startswith(name))
    total = values.get("imapwebpush_push_latency_seconds_count", 0)
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float("nan")


@defer.inlineCallbacks
def run(accounts, per_account, messages):
    tmp = tempfile.mkdtemp(prefix="imapwebpush-bench-")
    try:
        data = os.path.join(tmp, "data")
        os.mkdir(data, 0o700)
        users = ["user%04d@%s" % (i, DOMAIN) for i in range(accounts)]
        add_users(data, users)
        server = yield start_server([
            "--data", data, "--domain", DOMAIN, "--imap", "none",
            "--smtp", "tcp:0:interface=127.0.0.1", "--hostname", "bench.example",
            "--insecure-push-endpoints", "--metrics", "tcp:0:interface=127.0.0.1",
            # SPF/DKIM lookups of the delivered mail: a loopback server (empty zone).
            "--dns-server", testing_dns.loopback(reactor)[0],
        ], reactor)
        # the accounts exist before the clock starts, as after "imapwebpush user add"
        for user in users:
            server.components.mail_store.account(user).mailbox("INBOX")
        pushservice = PushService(reactor)
        yield pushservice.start()
        wiring = PushWiring(server.components)
        devices = {}
        for user in users:
            for i in range(per_account):
                device = pushservice.new_subscription()
                wiring.activate(user, "device-%d" % i, device)
                devices[device] = user
        total = accounts * per_account * messages
        try:
            first_start, last_reply, lock = [], [], threading.Lock()
            work = [(m * accounts + i, user) for m in range(messages)
                    for i, user in enumerate(users)]
            yield defer.gatherResults([
                threads.deferToThread(smtp_client, server.ports["smtp"], work[c::CLIENTS],
                                      first_start, last_reply, lock)
                for c in range(CLIENTS)
            ], consumeErrors=True)
            pushes = yield pushservice.wait_for(total)
            metrics = yield threads.deferToThread(scrape, server.ports["metrics"])
        finally:
            yield pushservice.stop()
            yield server.stop()
        start = min(first_start)
        last_push = max([p.received_at for p in pushes] or [max(last_reply)])
        decrypted = limited = 0
        for p in pushes:
            if p.ok and p.status == 201 and p.plaintext == b'* SELECT "INBOX"\r\n' \
                    and p.headers.get("topic"):
                limited += 1
                continue
            user = devices.get(p.subscription)
            if (p.ok and p.status == 201 and p.plaintext is not None
                    and p.plaintext.startswith(b'* SELECT "INBOX"\r\n* ')
                    and (b'"' + user.split("@")[0].encode() + b'" "' + DOMAIN.encode() + b'"')
                    in p.plaintext):
                decrypted += 1
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
        expected_limited = accounts * per_account * max(0, messages - 20)
        print("push_fanout accounts=%d subscriptions=%d messages=%d pushes=%d smtp_s=%.2f "
              "last_push_s=%.2f pushes_per_s=%.0f peak_rss_mib=%.0f decrypted=%d limited=%d "
              "ok=%s" % (
                  accounts, accounts * per_account, accounts * messages, len(pushes),
                  max(last_reply) - start, last_push - start,
                  len(pushes) / max(1e-9, last_push - start), peak, decrypted, limited,
                  "yes" if (decrypted + limited == total == len(pushes)
                            and limited == expected_limited) else "no"))
        m = metrics
        print("push_fanout_metrics smtp_deliveries=%d push_sends_2xx=%d push_sends_4xx=%d "
              "push_sends_5xx=%d push_sends_none=%d push_latency_count=%d push_latency_p50_s=%g "
              "push_latency_p99_s=%g rate_limited=%d retries=%d outbox_depth=%d "
              "pruned_gone=%d imap_sessions=%d login_failures=%d" % (
                  m.get("imapwebpush_smtp_deliveries_total", 0),
                  m.get('imapwebpush_push_sends_total{status_class="2xx"}', 0),
                  m.get('imapwebpush_push_sends_total{status_class="4xx"}', 0),
                  m.get('imapwebpush_push_sends_total{status_class="5xx"}', 0),
                  m.get('imapwebpush_push_sends_total{status_class="none"}', 0),
                  m.get("imapwebpush_push_latency_seconds_count", 0),
                  latency_quantile(m, 0.5), latency_quantile(m, 0.99),
                  m.get("imapwebpush_push_rate_limited_total", 0),
                  m.get("imapwebpush_push_retries_total", 0),
                  m.get("imapwebpush_push_outbox_depth", 0),
                  m.get('imapwebpush_subscriptions_pruned_total{reason="gone"}', 0),
                  m.get("imapwebpush_imap_sessions_total", 0),
                  m.get("imapwebpush_login_failures_total", 0)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--per-account", type=int, default=10)
    parser.add_argument("--messages", type=int, default=1,
                        help="messages per account (past 20 the rate limit collapses them)")
    args = parser.parse_args()
    quiet_logs()
    result = []

    def done(outcome):
        result.append(outcome)
        reactor.stop()

    reactor.callWhenRunning(lambda: run(args.accounts, args.per_account, args.messages).addBoth(done))
    reactor.run()
    if not result or isinstance(result[0], failure.Failure):
        if result:
            result[0].printTraceback(file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
