"""Push fan-out: 1,000 accounts x 10 active subscriptions, 1,000 messages over SMTP.

The server is started with ``imapwebpush.tap.start_server`` on loopback; each
account has 10 active subscriptions at the testing push service (same
process: it verifies VAPID and decrypts every push, so its cost is counted
too). Four smtplib client threads deliver one message to each account as
fast as the server accepts them; each message makes one push per
subscription, 10,000 pushes in all.

Prints one line:

    push_fanout accounts=1000 subscriptions=10000 messages=1000 pushes=10000
        smtp_s=... last_push_s=... pushes_per_s=... peak_rss_mib=... decrypted=10000 ok=yes

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

from twisted.internet import defer, reactor, threads
from twisted.python import failure

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from push_latency import DOMAIN, PushWiring, add_users, message, quiet_logs  # noqa: E402

from imapwebpush.tap import start_server  # noqa: E402
from imapwebpush.testing import PushService  # noqa: E402

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


@defer.inlineCallbacks
def run(accounts, per_account):
    tmp = tempfile.mkdtemp(prefix="imapwebpush-bench-")
    try:
        data = os.path.join(tmp, "data")
        os.mkdir(data, 0o700)
        users = ["user%04d@%s" % (i, DOMAIN) for i in range(accounts)]
        add_users(data, users)
        server = yield start_server([
            "--data", data, "--domain", DOMAIN, "--imap", "none",
            "--smtp", "tcp:0:interface=127.0.0.1", "--hostname", "bench.example",
            "--insecure-push-endpoints",
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
        total = accounts * per_account
        try:
            first_start, last_reply, lock = [], [], threading.Lock()
            work = list(enumerate(users))
            yield defer.gatherResults([
                threads.deferToThread(smtp_client, server.ports["smtp"], work[c::CLIENTS],
                                      first_start, last_reply, lock)
                for c in range(CLIENTS)
            ], consumeErrors=True)
            pushes = yield pushservice.wait_for(total)
        finally:
            yield pushservice.stop()
            yield server.stop()
        start = min(first_start)
        last_push = max([p.received_at for p in pushes] or [max(last_reply)])
        decrypted = 0
        for p in pushes:
            user = devices.get(p.subscription)
            if (p.ok and p.status == 201 and p.plaintext is not None
                    and p.plaintext.startswith(b'* SELECT "INBOX"\r\n* ')
                    and (b'"' + user.split("@")[0].encode() + b'" "' + DOMAIN.encode() + b'"')
                    in p.plaintext):
                decrypted += 1
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
        print("push_fanout accounts=%d subscriptions=%d messages=%d pushes=%d smtp_s=%.2f "
              "last_push_s=%.2f pushes_per_s=%.0f peak_rss_mib=%.0f decrypted=%d ok=%s" % (
                  accounts, total, accounts, len(pushes), max(last_reply) - start,
                  last_push - start, len(pushes) / max(1e-9, last_push - start), peak, decrypted,
                  "yes" if decrypted == total == len(pushes) else "no"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--per-account", type=int, default=10)
    args = parser.parse_args()
    quiet_logs()
    result = []

    def done(outcome):
        result.append(outcome)
        reactor.stop()

    reactor.callWhenRunning(lambda: run(args.accounts, args.per_account).addBoth(done))
    reactor.run()
    if not result or isinstance(result[0], failure.Failure):
        if result:
            result[0].printTraceback(file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
