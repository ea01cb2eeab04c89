"""Pushes per second: imapwebpush's PushDeliveryService vs pywebpush, same receiver, same payloads.

Run:  python benchmarks/push_throughput.py [--pushes 3000] [--pywebpush-pushes 800]

The receiver is imapwebpush.testing.PushService on 127.0.0.1 (plain HTTP): it
checks VAPID and decrypts every push. Three measurements in one run:

* imapwebpush: PushDeliveryService (treq, one persistent pool) in this
  process, on the same reactor as the receiver, all pushes queued at once;
* pywebpush: ``webpush()`` with one reused requests.Session, sequential, in a
  child process (so it does not share this process's GIL), same payloads and
  subscriptions, sending to the same receiver;
* crypto_only: RFC 8291 encryption + an ES256 VAPID signature per push, no HTTP.

A push counts only if the receiver decrypted it to the exact payload sent, with
no problem found. Prints one line:

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


# -- pywebpush, in a child process ------------------------------------------------


def pywebpush_child(job_path):
    import requests
    from py_vapid import Vapid
    from pywebpush import webpush

    with open(job_path) as f:
        job = json.load(f)
    vapid = Vapid.from_file(job["pem"])
    session = requests.Session()
    subs = job["subscriptions"]
    statuses = {}
    start = time.perf_counter()
    for n in range(job["count"]):
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
    print(json.dumps({"elapsed": elapsed, "statuses": statuses}))


# -- crypto only -------------------------------------------------------------------


def crypto_only(subs, count):
    from cryptography.hazmat.primitives.asymmetric import ec

    from imapwebpush.webpush import crypto
    from imapwebpush.webpush.vapid import sign_jwt

    key = ec.generate_private_key(ec.SECP256R1())
    keys = [(crypto.parse_p256dh(s.p256dh), crypto.parse_auth(s.auth)) for s in subs]
    start = time.perf_counter()
    for n in range(count):
        p256dh, auth = keys[n % len(keys)]
        crypto.encrypt(payload("crypto", n), p256dh, auth)
        sign_jwt(key, {"aud": "https://push.example.net", "exp": 1, "sub": SUBJECT})
    return count / (time.perf_counter() - start)


# -- the run -----------------------------------------------------------------------


def verified(receiver, kind, count):
    """How many of the ``count`` pushes of ``kind`` the receiver decrypted exactly, without problems."""
    expected = {payload(kind, n) for n in range(count)}
    good = {p.plaintext for p in receiver.pushes if p.ok and p.plaintext in expected and p.status == 201}
    return len(good)


def run(reactor, options):
    from twisted.internet import defer, threads

    from imapwebpush.testing import PushService
    from imapwebpush.webpush import crypto
    from imapwebpush.webpush.delivery import PushDeliveryService
    from imapwebpush.webpush.http import make_http_client
    from imapwebpush.webpush.model import DELIVERED, PushTarget
    from imapwebpush.webpush.policy import EndpointPolicy
    from imapwebpush.webpush.vapid import PEM_SUFFIX, VapidKeyring

    @defer.inlineCallbacks
    def go():
        tmp = tempfile.mkdtemp(prefix="push-bench-")
        receiver = PushService(reactor)
        yield receiver.start()
        subs = [receiver.new_subscription() for _ in range(options.subscriptions)]
        keyring = VapidKeyring(os.path.join(tmp, "vapid"), SUBJECT, reactor)

        crypto_rate = crypto_only(subs, options.crypto)

        policy = EndpointPolicy(insecure=True)  # the receiver is plain HTTP on loopback
        client = make_http_client(reactor, policy, max_per_host=options.concurrency)
        service = PushDeliveryService(
            reactor, keyring, client, policy, os.path.join(tmp, "outbox.sqlite"),
            max_in_flight=options.concurrency, max_per_host=options.concurrency,
            max_queue=options.pushes + 100,
        )
        service.startService()
        targets = [
            PushTarget("bench", "s%d" % i, s.endpoint, crypto.parse_p256dh(s.p256dh),
                       crypto.parse_auth(s.auth), keyring.current())
            for i, s in enumerate(subs)
        ]
        # warm up: open the connections, cache the VAPID token
        yield defer.gatherResults(
            [service.send(targets[i % len(targets)], b"warm-up", "normal", 600) for i in range(100)]
        )

        start = time.perf_counter()
        ds = [
            service.send(targets[n % len(targets)], payload("imapwebpush", n), "normal", 600)
            for n in range(options.pushes)
        ]
        outcomes = yield defer.gatherResults(ds)
        ours_elapsed = time.perf_counter() - start
        delivered = sum(1 for o in outcomes if o.kind == DELIVERED)
        ours_ok = verified(receiver, "imapwebpush", options.pushes)
        if not (delivered == ours_ok == options.pushes):
            raise SystemExit("imapwebpush: %d delivered, %d verified of %d" % (delivered, ours_ok, options.pushes))
        yield service.stopService()

        # pywebpush in a child process; the receiver keeps running on this reactor
        pem = os.path.join(tmp, "vapid", keyring.current() + PEM_SUFFIX)
        job = os.path.join(tmp, "job.json")
        with open(job, "w") as f:
            json.dump({"pem": pem, "count": options.pywebpush_pushes,
                       "subscriptions": [s.subscription_info() for s in subs]}, f)
        out = yield threads.deferToThread(
            subprocess.run, [sys.executable, os.path.abspath(__file__), "--pywebpush-child", job],
            capture_output=True, check=False,
        )
        if out.returncode:
            raise SystemExit("pywebpush child failed:\n" + out.stderr.decode())
        child = json.loads(out.stdout.decode().strip().splitlines()[-1])
        theirs_ok = verified(receiver, "pywebpush", options.pywebpush_pushes)
        if theirs_ok != options.pywebpush_pushes:
            raise SystemExit("pywebpush: %d verified of %d (%r)" % (theirs_ok, options.pywebpush_pushes, child))

        yield receiver.stop()
        ours = ours_ok / ours_elapsed
        theirs = theirs_ok / child["elapsed"]
        print(
            "push_throughput: imapwebpush=%.0f/s pywebpush=%.0f/s ratio=%.1f crypto_only=%.0f/s"
            % (ours, theirs, ours / theirs, crypto_rate)
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
    parser.add_argument("--pywebpush-child", metavar="JOB", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.pywebpush_child:
        return pywebpush_child(options.pywebpush_child)
    from twisted.internet.task import react

    react(lambda reactor: run(reactor, options))


if __name__ == "__main__":
    main()
