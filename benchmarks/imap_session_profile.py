"""Our IMAP server alone, under the session workload of imap_vs_dovecot.py: CPU per op.

Why: imap_vs_dovecot.py needs root, Dovecot and about 75 s; this runs in about
10 s as any user and measures the one thing the session row depends on, our
server's CPU time per op (``UID FETCH <random uid> BODY.PEEK[]`` + ``NOOP`` by
one logged-in client), with the same server process (``_harness.OurServer``),
client code and mailbox (N messages of ~2 KiB). ``--profile FILE`` runs the
server under cProfile and prints its top functions by internal time.

Run: ``python benchmarks/imap_session_profile.py [--messages 1000] [--seconds 5]
[--rounds 2] [--profile FILE]``. Last line:
``imap_session_profile ops_s=X cpu_ms_op=Y rounds=R``.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402
from imap_vs_dovecot import (  # noqa: E402
    PASSWORD,
    USER,
    fill_ours,
    login_select,
    make_message,
    pct,
    w_session,
)


class _Target:
    def __init__(self, port):
        self.imap = port


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=5.0, help="length of one timed round (default 5)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds; the best CPU/op is reported too")
    p.add_argument("--profile", metavar="FILE", help="run the server under cProfile, save stats to FILE")
    args = p.parse_args(argv)

    root = tempfile.mkdtemp(prefix="iwp-session-")
    rnd = random.Random(1)
    if args.profile:
        os.environ["IMAPWEBPUSH_PROFILE"] = os.path.abspath(args.profile)
    server = _harness.OurServer(os.path.join(root, "data"), os.path.join(root, "server.log"))
    os.mkdir(server.data_dir)
    results = []
    try:
        _harness.add_user(server.data_dir, USER, PASSWORD)
        fill_ours(server.data_dir, [make_message(i, rnd) for i in range(args.messages)])
        server.start()
        target = _Target(server.imap_port)
        c = login_select(target.imap)  # warm-up, as imap_vs_dovecot does
        c.command(b"FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)")
        c.logout()
        for i in range(args.rounds):
            cpu = _harness.tree_cpu_seconds(server.proc.pid)
            part = w_session(target, args.seconds, random.Random(7 + i))
            part["cpu"] = _harness.tree_cpu_seconds(server.proc.pid) - cpu
            results.append(part)
            print(
                "round %d: %.0f op/s, p50 %.3f ms, server CPU %.3f ms/op"
                % (
                    i + 1,
                    part["n"] / part["elapsed"],
                    pct(part["lat"], 0.5) * 1e3,
                    part["cpu"] * 1e3 / part["n"],
                ),
                flush=True,
            )
    finally:
        server.stop()
        os.environ.pop("IMAPWEBPUSH_PROFILE", None)
        shutil.rmtree(root, ignore_errors=True)
    n = sum(r["n"] for r in results)
    ops = n / sum(r["elapsed"] for r in results)
    cpu = sum(r["cpu"] for r in results) * 1e3 / n
    best = min(r["cpu"] * 1e3 / r["n"] for r in results)
    if args.profile:
        import pstats

        print("\nour server, cProfile by internal time (top 30):")
        pstats.Stats(os.path.abspath(args.profile)).sort_stats("tottime").print_stats(30)
    print("imap_session_profile ops_s=%.1f cpu_ms_op=%.3f best_cpu_ms_op=%.3f rounds=%d" % (ops, cpu, best, len(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
