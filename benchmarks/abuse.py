"""What one hostile client costs everyone else: each attack, before and after its fix.

The server runs in a child process (``_harness.OurServer``, the same
makeService twistd uses) on a fresh data folder. ``ATTACKS`` is a table of
named attacks; each one runs against a server built the old way ("before",
the fix undone in the child process by a patch named in the table) and
against the server as it is ("after"), in the same run, and prints one line:

    attack=NAME before=FIGURE after=FIGURE metric=WHAT target=GOAL ok=yes|no

Attacks and their figures:

* ``list_wildcard``: ``LIST "" "*%*%*%*%*%x"`` sent back to back against an
  account with a 24-character mailbox name, while another logged-in client
  sends NOOP every 10 ms; the figure is that client's NOOP latency p99 (the
  reactor stall). Before: the pattern was a backtracking regular expression
  (the stall grows as n**10 with the name's length: 40 characters took ~50 s).
* ``lwebpush_wildcard``: ``LWEBPUSH "*******x"`` against a 64-character
  subscription id; same figure.

Measured on the final code (this machine, ``--seconds 2``)::

    attack=list_wildcard before=3310.3ms after=4.8ms ... ok=yes
    attack=lwebpush_wildcard before=2628.9ms after=2.3ms ... ok=yes

Target: the other client's NOOP p99 stays under 100 ms. Run:
``python benchmarks/abuse.py [--seconds S] [--only NAME ...] [--keep]``.
"""

import argparse
import base64
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _harness  # noqa: E402

USER, PASSWORD = "alice@example.org", "alice-pw"
SERVER_ARGS = ["--domain", "example.org", "--insecure-push-endpoints"]
NOOP_TARGET_MS = 100.0


# ---------------------------------------------------------------------------
# "before": patches applied in the child server process
# ---------------------------------------------------------------------------


def _backtracking_regex(pattern, delimiter):
    """The regular expression LIST/LSUB/LWEBPUSH patterns used to become."""
    import re

    pieces = []
    for ch in pattern:
        if ch == "*" or (ch == "%" and delimiter is None):
            pieces.append(".*")
        elif ch == "%":
            pieces.append("[^" + re.escape(delimiter) + "]*")
        else:
            pieces.append(re.escape(ch))
    return re.compile("".join(pieces) + r"\Z", re.DOTALL)


def backtracking_wildcards():
    """Match wildcards with the backtracking regex again, wherever Pattern is used."""
    from imapwebpush import wildcard

    def match(self, name):
        regex = self.__dict__.get("_regex")
        if regex is None:
            regex = self._regex = _backtracking_regex(self.pattern, self.delimiter)
        return regex.match(name) is not None

    wildcard.Pattern.match = match
    wildcard.Pattern.__call__ = match


BEFORE_PATCHES = {"backtracking_wildcards": backtracking_wildcards}


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------


def p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class NoopProbe:
    """Another logged-in client: NOOP every ``interval`` s, each answer's latency noted."""

    def __init__(self, port, interval=0.01):
        self.conn = _harness.IMAPConn("127.0.0.1", port)
        self.conn.login(USER, PASSWORD)
        self.interval = interval
        self.latencies = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            start = time.perf_counter()
            self.conn.command(b"NOOP")
            self.latencies.append((time.perf_counter() - start) * 1000.0)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.conn.logout()


def stall_during(port, prepare, hostile, seconds):
    """Another client's NOOP p99 (ms) while ``hostile`` is sent back to back for ``seconds``.

    ``prepare(conn)`` sets the account up first (on the attacker's connection).
    The hostile command is sent at least once, however long it takes.
    """
    attacker = _harness.IMAPConn("127.0.0.1", port, timeout=600)
    attacker.login(USER, PASSWORD)
    prepare(attacker)
    with NoopProbe(port) as probe:
        time.sleep(0.2)  # a few quiet samples first
        deadline = time.monotonic() + seconds
        sent = 0
        while sent == 0 or time.monotonic() < deadline:
            attacker.command(hostile, ok=False)
            sent += 1
        time.sleep(0.05)
    attacker.logout()
    return p99(probe.latencies), sent


def run_server(tmp, label, patch, measure):
    """Start a server (patched with ``patch`` when given), run ``measure(port)``, stop it."""
    data = os.path.join(tmp, label)
    os.mkdir(data)
    _harness.add_user(data, USER, PASSWORD)
    child = None
    if patch is not None:
        child = [_harness.PYTHON, os.path.abspath(__file__), "serve", patch]
    server = _harness.OurServer(data, os.path.join(tmp, label + ".log"), SERVER_ARGS, child=child)
    server.start()
    try:
        return measure(server.imap_port)
    finally:
        server.stop()


# ---------------------------------------------------------------------------
# the attacks
# ---------------------------------------------------------------------------


def _create_long_mailbox(conn):
    conn.command(b'CREATE "' + b"a" * 24 + b'"')


def _subscribe_long_id(conn):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    # Pending is enough: LWEBPUSH lists pending subscriptions too. Port 9 refuses at once.
    conn.command(b"WEBPUSH " + b"a" * 64 + b" http://127.0.0.1:9/push " + b64(point) + b" " + b64(os.urandom(16)))


def noop_stall(prepare, hostile):
    def attack(port, seconds):
        latency, _ = stall_during(port, prepare, hostile, seconds)
        return latency

    return attack


# name, the patch that undoes the fix, the attack (port, seconds) -> figure, unit, target
ATTACKS = [
    ("list_wildcard", "backtracking_wildcards",
     noop_stall(_create_long_mailbox, b'LIST "" "*%*%*%*%*%x"'), "ms", NOOP_TARGET_MS),
    ("lwebpush_wildcard", "backtracking_wildcards",
     noop_stall(_subscribe_long_id, b"LWEBPUSH *******x"), "ms", NOOP_TARGET_MS),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=2.0, help="length of each attack (default 2)")
    p.add_argument("--only", nargs="*", metavar="NAME", help="run only these attacks")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="imapwebpush-abuse-")
    all_ok = True
    try:
        for name, patch, attack, unit, target in ATTACKS:
            if args.only and name not in args.only:
                continue
            before = run_server(tmp, name + "-before", patch, lambda port: attack(port, args.seconds))
            after = run_server(tmp, name + "-after", None, lambda port: attack(port, args.seconds))
            ok = after < target
            all_ok = all_ok and ok
            print(
                "attack=%s before=%.1f%s after=%.1f%s metric=other_client_noop_p99 target=<%g%s ok=%s"
                % (name, before, unit, after, unit, target, unit, "yes" if ok else "no"),
                flush=True,
            )
    finally:
        if args.keep:
            print("kept %s" % (tmp,))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "serve":
        # The child of a "before" server: undo one fix, then serve as _harness does.
        BEFORE_PATCHES[sys.argv[2]]()
        _harness._serve(sys.argv[3], sys.argv[4:])
    else:
        sys.exit(main())
