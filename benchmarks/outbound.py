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

Then one large message (``--large-mb``, default 40) goes the same way: the
client writes it in pieces (it holds no copy), and the resident memory of this
process (both servers) is sampled every 5 ms from the submission to the
arrival. Signing, queueing, sending and the remote's DKIM check read it as a
stream, so ``rss_growth_mib`` is a fixed cost, not a multiple of the message:
16.2 MiB for 10 MiB, 16.3 MiB for 40 MiB (the code before, which read it whole
at each step and gave it whole to dkimpy, grew by 1804 MiB for 40 MiB, same
machine and benchmark). The size must stay under ``--max-message-size`` (50 MiB).

Prints two lines:

    outbound messages=500 seconds=... messages_per_s=... p50_ms=... p99_ms=... dkim_pass=500 ok=yes
    outbound_large mib=40 seconds=... rss_growth_mib=... growth_per_message_size=... dkim=pass ok=yes

``messages_per_s`` is messages over the time from the first submission to the
last arrival. ``ok=yes`` when every message arrived once with dkim=pass.
Run: ``python benchmarks/outbound.py [--messages N] [--large-mb N]``.
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


def rss_bytes():
    """Resident memory of this process now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def send_large(port, size):
    """Submit one message of about ``size`` octets, written in 64 KiB pieces (no copy held)."""
    s = smtplib.SMTP("127.0.0.1", port, timeout=300)
    s.login("alice@local.test", "pw")
    s.mail("alice@local.test")
    s.rcpt("bob@remote.test")
    code, _ = s.docmd("DATA")
    assert code == 354, code
    s.sock.sendall(b"From: Alice <alice@local.test>\r\nTo: Bob <bob@remote.test>\r\n"
                   b"Subject: large\r\nMessage-ID: <large@bench>\r\n\r\n")
    line = b"A line of text for the large message, long enough to be typical.\r\n"
    piece = line * (65536 // len(line))
    for _ in range(size // len(piece)):
        s.sock.sendall(piece)
    s.sock.sendall(b".\r\n")
    code, _ = s.getreply()
    assert code == 250, code
    s.quit()


@defer.inlineCallbacks
def run(count, large_mb):
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
             dkim_pass[0], "yes" if ok else "no"), flush=True)

    if large_mb:
        size = large_mb * 1024 * 1024
        large = defer.Deferred()

        class LargeArrival:
            def changed(self, event):
                for uid in getattr(event, "uids", ()) or ([event.uid] if hasattr(event, "uid") else []):
                    try:
                        head = inbox.message(uid).headers()
                    except KeyError:
                        continue
                    if b"Message-ID: <large@bench>" in head and not large.called:
                        large.callback(head)

        remote.components.mail_store.bus.subscribe(LargeArrival())
        base = rss_bytes()
        peak = [base]
        sampler = task.LoopingCall(lambda: peak.__setitem__(0, max(peak[0], rss_bytes())))
        sampler.start(0.005)
        start = time.monotonic()
        yield threads.deferToThread(send_large, local.ports["submission"], size)
        head = yield large
        seconds = time.monotonic() - start
        sampler.stop()
        growth = max(0, peak[0] - base)
        passed = b"\tdkim=pass header.d=local.test" in head
        print("outbound_large mib=%d seconds=%.2f rss_growth_mib=%.1f growth_per_message_size=%.2f dkim=%s ok=%s"
              % (large_mb, seconds, growth / 1048576.0, growth / float(size), "pass" if passed else "no",
                 "yes" if passed else "no"), flush=True)
    yield local.stop()
    yield remote.stop()
    for port in dns_ports:
        yield port.stopListening()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--large-mb", type=int, default=40, help="size of the one large message (0: none)")
    args = parser.parse_args()
    task.react(lambda _: run(args.messages, args.large_mb))


if __name__ == "__main__":
    main()
