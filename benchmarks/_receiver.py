"""The benchmarks' push receiver in a process of its own: imapwebpush.testing.PushService.

push_throughput.py starts it as a child so that neither sender shares a CPU
thread (or a GIL) with the receiver's work (HTTP parsing, VAPID check,
decryption). Run: python benchmarks/_receiver.py --subscriptions 20 [--tls]

It starts the push service on 127.0.0.1 (port 0; plain HTTP, or with --tls
HTTPS with a self-signed certificate), creates the subscriptions and prints one
JSON line:

  {"origin": "http://127.0.0.1:PORT", "certificate": null or "PEM text",
   "subscriptions": [{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}, ...]}

Then it answers commands read from stdin, one JSON line per command:

  stats KIND COUNT  how many pushes arrived since the last reset, how many had
                    problems, and how many distinct payloads ``payload(KIND, n)``
                    for n < COUNT were decrypted exactly, without problems, and
                    answered 201; plus this process's CPU seconds
  reset             forget the pushes received so far

When stdin closes it stops the service and exits.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from push_throughput import payload  # noqa: E402  (the payloads both senders send)
from twisted.internet import stdio  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402


def stats(service, kind, count):
    expected = {payload(kind, n) for n in range(count)}
    good = {
        p.plaintext for p in service.pushes
        if p.ok and p.status == 201 and p.plaintext in expected
    }
    return {
        "received": len(service.pushes),
        "problems": sum(1 for p in service.pushes if p.problems),
        "verified": len(good),
        "cpu_s": time.process_time(),
    }


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, service, done):
        self.service = service
        self.done = done

    def lineReceived(self, line):
        words = line.decode("ascii").split()
        try:
            if words[:1] == ["stats"] and len(words) == 3:
                answer = stats(self.service, words[1], int(words[2]))
            elif words == ["reset"]:
                del self.service.pushes[:]
                answer = {"ok": True}
            else:
                answer = {"error": "unknown command %r" % (line,)}
        except Exception as e:  # a benchmark tool: say what went wrong, keep serving
            answer = {"error": "%s: %s" % (type(e).__name__, e)}
        self.sendLine(json.dumps(answer).encode("ascii"))

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=20)
    parser.add_argument("--tls", action="store_true", help="HTTPS with a self-signed certificate")
    options = parser.parse_args(argv)

    from twisted.internet import defer
    from twisted.internet.task import react

    from imapwebpush.testing import PushService

    @defer.inlineCallbacks
    def run(reactor):
        service = PushService(reactor, tls=options.tls)
        yield service.start()
        subs = [service.new_subscription() for _ in range(options.subscriptions)]
        done = defer.Deferred()
        io = stdio.StandardIO(Commands(service, done), reactor=reactor)
        io.write(json.dumps({
            "origin": service.origin,
            "certificate": service.certificate.dumpPEM().decode("ascii") if options.tls else None,
            "subscriptions": [s.subscription_info() for s in subs],
        }).encode("ascii") + b"\n")
        yield done
        yield service.stop()

    react(run)


if __name__ == "__main__":
    main()
