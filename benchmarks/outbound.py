"""Outbound throughput and latency: submission at one server -> arrival at another, DKIM on.

Two servers run in this process on loopback, each from ``tap.start_server``
(makeService): ``local.test`` (submission, outbound queue, a DKIM key made with
``imapwebpush dkim generate``) and ``remote.test`` (SMTP in, checking DKIM).
A twisted.names server on 127.0.0.1 serves the MX, A and DKIM TXT records, and
``--outbound-port`` points delivery at the remote server's port: no traffic
leaves 127.0.0.0/8. A client thread submits the messages over one smtplib
connection, one after another; for each, the time from the submission's 250
(``SMTP.data()`` returned) to the copy being stored at the remote server is
recorded (same machine, same clock). Each arrival's Authentication-Results is
read: ``dkim_pass`` counts the copies whose signature verified there.

Prints one line:

    outbound messages=500 seconds=... messages_per_s=... p50_ms=... p99_ms=... dkim_pass=500 ok=yes

``messages_per_s`` is messages over the time from the first submission to the
last arrival. ``ok=yes`` when every message arrived once with dkim=pass.
Run: ``python benchmarks/outbound.py [--messages N]``.
"""

import argparse
import io
import os
import re
import smtplib
import sys
import tempfile
import time

from twisted.internet import defer, reactor, task, threads

# run from a checkout without installing: the repository root on the path
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imapwebpush import cli, tap  # noqa: E402
from imapwebpush.constants import INBOX  # noqa: E402
from imapwebpush.testing import dns as testing_dns  # noqa: E402

LOOPBACK = "tcp:0:interface=127.0.0.1"


def admin(data, *argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["--data", data] + list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    if status:
        raise SystemExit("imapwebpush %s: %s" % (" ".join(argv), err.getvalue()))
    return out.getvalue()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


@defer.inlineCallbacks
def run(count):
    root = tempfile.mkdtemp(prefix="outbound-bench-")
    local_data, remote_data = os.path.join(root, "local"), os.path.join(root, "remote")
    os.makedirs(local_data)
    os.makedirs(remote_data)
    admin(local_data, "user", "add", "--password-stdin", "alice@local.test", stdin="pw\n")
    admin(remote_data, "user", "add", "--password-stdin", "bob@remote.test", stdin="pw\n")
    record = re.search(r'^(\S+)\. IN TXT "(.*)"$', admin(local_data, "dkim", "generate", "local.test"), re.M)

    zone = testing_dns.Zone()
    zone.add("remote.test", "MX", 10, "mx.remote.test")
    zone.add("mx.remote.test", "A", "127.0.0.1")
    zone.add(record.group(1), "TXT", record.group(2))
    dns_port, dns_ports = testing_dns.listen(reactor, zone)
    dns = "127.0.0.1:%d" % (dns_port,)

    remote = yield tap.start_server(
        ["--data", remote_data, "--imap", "none", "--smtp", LOOPBACK, "--domain", "remote.test",
         "--hostname", "mx.remote.test", "--dns-server", dns])
    local = yield tap.start_server(
        ["--data", local_data, "--imap", "none", "--smtp", "none", "--submission", LOOPBACK,
         "--domain", "local.test", "--hostname", "mx.local.test", "--allow-plaintext-auth",
         "--dns-server", dns, "--outbound-port", str(remote.ports["smtp"])])

    accepted = {}  # Message-ID -> time of the 250
    arrived = {}  # Message-ID -> time stored at the remote server
    dkim_pass = [0]
    done = defer.Deferred()
    inbox = remote.components.mail_store.account("bob@remote.test").mailbox(INBOX)

    class Arrivals:
        def changed(self, event):
            now = time.monotonic()
            for uid in getattr(event, "uids", ()) or ([event.uid] if hasattr(event, "uid") else []):
                try:
                    head = inbox.message(uid).headers()
                except KeyError:
                    continue
                m = re.search(rb"Message-ID: <(\d+)@bench>", head)
                if m and m.group(1) not in arrived:
                    arrived[m.group(1)] = now
                    if b"\tdkim=pass header.d=local.test" in head:
                        dkim_pass[0] += 1
            if len(arrived) >= count and not done.called:
                done.callback(None)

    remote.components.mail_store.bus.subscribe(Arrivals())

    def submit():
        s = smtplib.SMTP("127.0.0.1", local.ports["submission"], timeout=60)
        s.login("alice@local.test", "pw")
        for i in range(count):
            message = (
                "From: Alice <alice@local.test>\r\nTo: Bob <bob@remote.test>\r\n"
                "Subject: bench %d\r\nMessage-ID: <%d@bench>\r\n\r\n" % (i, i)
            ).encode() + b"A line of text for the benchmark body.\r\n" * 40
            s.sendmail("alice@local.test", ["bob@remote.test"], message)
            accepted[str(i).encode()] = time.monotonic()
        s.quit()

    start = time.monotonic()
    yield threads.deferToThread(submit)
    yield defer.DeferredList([done], fireOnOneErrback=True) if not done.called else None
    end = max(arrived.values())
    latencies = [(arrived[k] - accepted[k]) * 1000.0 for k in accepted if k in arrived]
    seconds = end - start
    ok = len(arrived) == count and dkim_pass[0] == count
    print("outbound messages=%d seconds=%.2f messages_per_s=%.1f p50_ms=%.1f p99_ms=%.1f dkim_pass=%d ok=%s"
          % (count, seconds, count / seconds, percentile(latencies, 50), percentile(latencies, 99),
             dkim_pass[0], "yes" if ok else "no"))
    yield local.stop()
    yield remote.stop()
    for port in dns_ports:
        yield port.stopListening()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    task.react(lambda _: run(args.messages))


if __name__ == "__main__":
    main()
