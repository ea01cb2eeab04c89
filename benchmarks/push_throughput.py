"""Pushes per second: imapwebpush's PushDeliveryService vs pywebpush, same receiver, same payloads.

Run:  python benchmarks/push_throughput.py [--pushes 3000] [--pywebpush-pushes 800]

The receiver is imapwebpush.testing.PushService on 127.0.0.1 (plain HTTP) in a
process of its own (benchmarks/_receiver.py): it checks VAPID and decrypts
every push. Three measurements in one run:

* imapwebpush: PushDeliveryService (treq, one persistent pool, SQLite outbox)
  in this process, all pushes queued at once;
* pywebpush: ``webpush()`` with one reused requests.Session, sequential, in a
  child process, same payloads and subscriptions, sending to the same receiver;
* crypto_only: RFC 8291 encryption + an ES256 VAPID signature per push, no HTTP.

The two senders take turns in halves, A B B A, so a change in the machine's
load weighs on both. A push counts only if the receiver decrypted it to the
exact payload sent, with no problem found, and answered 201. Prints one line:

  push_throughput: imapwebpush=N/s pywebpush=M/s ratio=R crypto_only=C/s
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

SUBJECT = "mailto:bench@example.org"
RECEIVER = os.path.join(HERE, "_receiver.py")
WARM_UP = 100  # imapwebpush pushes before its clock starts (32 requests in flight)
PYWEBPUSH_WARM_UP = 10  # pywebpush pushes before each of its halves (one at a time)


def payload(kind, n):
    """A realistic new-mail push (SPEC 5.1), unique per push so the receiver can be checked."""
    return (
        '* SELECT "INBOX"\r\n'
        '* %d UIDFETCH (FLAGS () ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "bench %s %d" '
        '(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) (("Fred Foobar" NIL "foobar" '
        '"Blurdybloop.example")) (("Fred Foobar" NIL "foobar" "Blurdybloop.example")) '
        '((NIL NIL "mooch" "owatagu.siam.edu.example")) NIL NIL NIL "<B27397-%d@Blurdybloop.example>"))\r\n'
        % (1000 + n, kind, n, n)
    ).encode("utf-8")


# -- the receiver, in its own process ------------------------------------------------


class Receiver:
    """benchmarks/_receiver.py as a child process; ``ask`` blocks (call it from a thread)."""

    def __init__(self, subscriptions, tls=False):
        self.process = subprocess.Popen(
            [sys.executable, RECEIVER, "--subscriptions", str(subscriptions)] + (["--tls"] if tls else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the receiver did not start (exit status %s)" % (self.process.wait(),))
        info = json.loads(line)
        self.origin = info["origin"]
        self.certificate = info["certificate"]  # PEM of the self-signed certificate with --tls
        self.subscriptions = info["subscriptions"]

    def ask(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        if "error" in answer:
            raise SystemExit("receiver: %s" % (answer["error"],))
        return answer

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- pywebpush, in a child process ------------------------------------------------


def pywebpush_child(job_path):
    import requests
    from py_vapid import Vapid
    from pywebpush import webpush

    with open(job_path) as f:
        job = json.load(f)
    vapid = Vapid.from_file(job["pem"])
    session = requests.Session()
    if job["ca"]:
        # verify the receiver's self-signed certificate (these variables would override it)
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
        os.environ.pop("CURL_CA_BUNDLE", None)
        session.verify = job["ca"]
    subs = job["subscriptions"]
    for n in range(PYWEBPUSH_WARM_UP):  # open the connection, run first-call code, as ours had
        webpush(subs[n % len(subs)], data=b"warm-up", vapid_private_key=vapid,
                vapid_claims={"sub": SUBJECT}, ttl=600, requests_session=session)
    statuses = {}
    cpu = time.process_time()
    start = time.perf_counter()
    for n in range(job["first"], job["first"] + job["count"]):
        response = webpush(
            subs[n % len(subs)],
            data=payload("pywebpush", n),
            vapid_private_key=vapid,
            vapid_claims={"sub": SUBJECT},
            ttl=600,
            headers={"Urgency": "normal"},
            requests_session=session,
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    print(json.dumps({"elapsed": elapsed, "cpu": cpu, "statuses": statuses}))


# -- crypto only -------------------------------------------------------------------


def crypto_only(subs, count):
    from cryptography.hazmat.primitives.asymmetric import ec

    from imapwebpush.webpush import crypto
    from imapwebpush.webpush.vapid import sign_jwt

    key = ec.generate_private_key(ec.SECP256R1())
    keys = [(crypto.parse_p256dh(s["keys"]["p256dh"]), crypto.parse_auth(s["keys"]["auth"])) for s in subs]
    start = time.perf_counter()
    for n in range(count):
        p256dh, auth = keys[n % len(keys)]
        crypto.encrypt(payload("crypto", n), p256dh, auth)
        sign_jwt(key, {"aud": "https://push.example.net", "exp": 1, "sub": SUBJECT})
    return count / (time.perf_counter() - start)


# -- the run -----------------------------------------------------------------------


def halves(total):
    """(first, count) of the two halves of ``total`` pushes."""
    return (0, total // 2), (total // 2, total - total // 2)


def run(reactor, options, receiver):
    from twisted.internet import defer, threads

    from imapwebpush.webpush import crypto
    from imapwebpush.webpush.delivery import PushDeliveryService
    from imapwebpush.webpush.http import make_http_client
    from imapwebpush.webpush.model import DELIVERED, PushTarget
    from imapwebpush.webpush.policy import EndpointPolicy
    from imapwebpush.webpush.vapid import PEM_SUFFIX, VapidKeyring

    @defer.inlineCallbacks
    def go():
        tmp = tempfile.mkdtemp(prefix="push-bench-")
        subs = receiver.subscriptions
        keyring = VapidKeyring(os.path.join(tmp, "vapid"), SUBJECT, reactor)

        crypto_rate = crypto_only(subs, options.crypto)

        policy = EndpointPolicy(insecure=True)  # the receiver is on loopback
        trust_root = None
        ca = None
        if receiver.certificate:
            from twisted.internet.ssl import Certificate

            trust_root = Certificate.loadPEM(receiver.certificate)
            ca = os.path.join(tmp, "receiver-ca.pem")
            with open(ca, "w") as f:
                f.write(receiver.certificate)
        client = make_http_client(reactor, policy, max_per_host=options.concurrency, trust_root=trust_root)
        service = PushDeliveryService(
            reactor, keyring, client, policy, os.path.join(tmp, "outbox.sqlite"),
            max_in_flight=options.concurrency, max_per_host=options.concurrency,
            max_queue=options.pushes + 100,
        )
        service.startService()
        targets = [
            PushTarget("bench", "s%d" % i, s["endpoint"], crypto.parse_p256dh(s["keys"]["p256dh"]),
                       crypto.parse_auth(s["keys"]["auth"]), keyring.current())
            for i, s in enumerate(subs)
        ]
        # warm up: open the connections, cache the VAPID token
        warm = yield defer.gatherResults(
            [service.send(targets[i % len(targets)], b"warm-up", "normal", 600) for i in range(WARM_UP)]
        )
        if any(o.kind != DELIVERED for o in warm):
            raise SystemExit("imapwebpush warm-up failed: %r" % ([o for o in warm if o.kind != DELIVERED][:3],))
        yield threads.deferToThread(receiver.ask, "reset")

        ours = {"elapsed": 0.0, "cpu": 0.0, "delivered": 0, "receiver_cpu": 0.0}
        theirs = {"elapsed": 0.0, "cpu": 0.0, "receiver_cpu": 0.0}
        pem = os.path.join(tmp, "vapid", keyring.current() + PEM_SUFFIX)

        @defer.inlineCallbacks
        def imapwebpush_half(first, count):
            cpu = (yield threads.deferToThread(receiver.ask, "stats - 0"))["cpu_s"]
            own_cpu = time.process_time()
            start = time.perf_counter()
            outcomes = yield defer.gatherResults([
                service.send(targets[n % len(targets)], payload("imapwebpush", n), "normal", 600)
                for n in range(first, first + count)
            ])
            ours["elapsed"] += time.perf_counter() - start
            ours["cpu"] += time.process_time() - own_cpu
            ours["delivered"] += sum(1 for o in outcomes if o.kind == DELIVERED)
            ours["receiver_cpu"] += (yield threads.deferToThread(receiver.ask, "stats - 0"))["cpu_s"] - cpu

        @defer.inlineCallbacks
        def pywebpush_half(first, count):
            job = os.path.join(tmp, "job-%d.json" % first)
            with open(job, "w") as f:
                json.dump({"pem": pem, "ca": ca, "first": first, "count": count, "subscriptions": subs}, f)
            cpu = (yield threads.deferToThread(receiver.ask, "stats - 0"))["cpu_s"]
            out = yield threads.deferToThread(
                subprocess.run, [sys.executable, os.path.abspath(__file__), "--pywebpush-child", job],
                capture_output=True, check=False,
            )
            if out.returncode:
                raise SystemExit("pywebpush child failed:\n" + out.stderr.decode())
            child = json.loads(out.stdout.decode().strip().splitlines()[-1])
            theirs["elapsed"] += child["elapsed"]
            theirs["cpu"] += child["cpu"]
            theirs["receiver_cpu"] += (yield threads.deferToThread(receiver.ask, "stats - 0"))["cpu_s"] - cpu

        ours_halves = halves(options.pushes)
        theirs_halves = halves(options.pywebpush_pushes)
        yield imapwebpush_half(*ours_halves[0])
        yield pywebpush_half(*theirs_halves[0])
        yield pywebpush_half(*theirs_halves[1])
        yield imapwebpush_half(*ours_halves[1])
        yield service.stopService()

        ours_ok = (yield threads.deferToThread(receiver.ask, "stats imapwebpush %d" % options.pushes))["verified"]
        if not (ours["delivered"] == ours_ok == options.pushes):
            raise SystemExit("imapwebpush: %d delivered, %d verified of %d"
                             % (ours["delivered"], ours_ok, options.pushes))
        final = yield threads.deferToThread(receiver.ask, "stats pywebpush %d" % options.pywebpush_pushes)
        theirs_ok = final["verified"]
        if theirs_ok != options.pywebpush_pushes:
            raise SystemExit("pywebpush: %d verified of %d" % (theirs_ok, options.pywebpush_pushes))
        if final["problems"] or final["received"] != options.pushes + options.pywebpush_pushes + 2 * PYWEBPUSH_WARM_UP:
            raise SystemExit("receiver: %d pushes received, %d with problems"
                             % (final["received"], final["problems"]))

        ours_rate = ours_ok / ours["elapsed"]
        theirs_rate = theirs_ok / theirs["elapsed"]
        print(
            "push_throughput%s: imapwebpush=%.0f/s pywebpush=%.0f/s ratio=%.1f crypto_only=%.0f/s"
            % (" (tls)" if options.tls else "", ours_rate, theirs_rate, ours_rate / theirs_rate, crypto_rate)
        )
        if options.verbose:
            # CPU time per push of each sender's process, and how busy the receiver process was
            # while each sender ran (1.0 = one core all the time)
            print(
                "sender cpu per push: imapwebpush %.3f ms, pywebpush %.3f ms; "
                "receiver busy: during imapwebpush %.2f, during pywebpush %.2f"
                % (1000 * ours["cpu"] / options.pushes, 1000 * theirs["cpu"] / options.pywebpush_pushes,
                   ours["receiver_cpu"] / ours["elapsed"], theirs["receiver_cpu"] / theirs["elapsed"])
            )
        sys.stdout.flush()

    return go()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=3000, help="pushes sent by imapwebpush")
    parser.add_argument("--pywebpush-pushes", type=int, default=800, help="pushes sent by pywebpush")
    parser.add_argument("--crypto", type=int, default=2000, help="encrypt+sign rounds for crypto_only")
    parser.add_argument("--subscriptions", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (global and per host)")
    parser.add_argument("--tls", action="store_true",
                        help="the receiver speaks HTTPS (self-signed certificate, verified by both senders)")
    parser.add_argument("--verbose", action="store_true", help="also print CPU per push and how busy the receiver was")
    parser.add_argument("--pywebpush-child", metavar="JOB", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.pywebpush_child:
        return pywebpush_child(options.pywebpush_child)
    from twisted.internet.task import react

    receiver = Receiver(options.subscriptions, options.tls)
    try:
        react(lambda reactor: run(reactor, options, receiver))
    finally:
        receiver.close()


if __name__ == "__main__":
    main()
