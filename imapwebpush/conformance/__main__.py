"""``python -m imapwebpush.conformance``: the runner from the shell; exit 0 when all pass."""

import argparse
import sys

from twisted.internet import defer, task


def parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m imapwebpush.conformance",
        description="Check an IMAP server's WEBPUSH extension against SPEC.md, with a local"
        " push service on 127.0.0.1 (the server must allow http loopback endpoints). Use a"
        " throw-away account.")
    p.add_argument("--imap", required=True, metavar="HOST:PORT")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--tls", action="store_true", help="implicit TLS (e.g. port 993)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for each push (default %(default)s)")
    args = p.parse_args(argv)
    host, sep, port = args.imap.rpartition(":")
    if not sep or not host or not port.isdigit():
        p.error("--imap must be HOST:PORT")
    args.host, args.port = host, int(port)
    return args


def main(argv=None, out=None):
    from imapwebpush.conformance.runner import PASS, run_checks

    args = parse(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout

    def report(result):
        print(result.line(), file=out, flush=True)

    @defer.inlineCallbacks
    def run(reactor):
        try:
            results = yield run_checks(reactor, args.host, args.port, args.user, args.password,
                                       args.tls, args.timeout, report)
        except Exception as e:
            print("conformance: cannot run: %s" % (e,), file=out)
            raise SystemExit(2)
        passed = sum(1 for r in results if r.outcome == PASS)
        print("%d of %d checks passed" % (passed, len(results)), file=out)
        if passed != len(results):
            raise SystemExit(1)

    task.react(run)


if __name__ == "__main__":
    main()
