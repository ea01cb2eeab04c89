"""Several sessions on one mailbox at once, random commands, imaptest's state rules checked.

Why: imaptest's stress mode found protocol errors that no single-session test shows
(a keyword in a FETCH before FLAGS listed it, numbers shifting under a client). This
runs N sessions, each in its own thread and connection, on one shared INBOX for a
bounded time, each doing what mail clients do at random: FETCH (UID FLAGS), STORE of
system flags and keywords, UID STORE, APPEND with or without flags, EXPUNGE, UID
EXPUNGE, COPY, MOVE, FETCH BODY[] (which sets \\Seen), SEARCH, SELECT again, NOOP, CHECK. Every response is checked against what that connection was told
(``imaptest_scripts.Conn``: EXPUNGE and FETCH numbers within the message count, the
count never dropping through EXISTS, a message's UID never changing, keywords in FETCH
FLAGS announced by an untagged FLAGS first, ``\\Recent`` of a message given to one
session only).

Run: ``python benchmarks/imap_state_stress.py [--server ours|dovecot|both] [--sessions 5]
[--seconds 20] [--seed 1]`` (Dovecot: a private one, as root). Prints per server::

    imap_state_stress server=ours sessions=5 seconds=20 commands=N per_s=R no=N bad=0 state_errors=0

``no`` counts tagged NO (COPY of a message another session expunged answers
``NO [EXPUNGEISSUED]``, on both servers); ``bad`` tagged BAD; then the first state errors.
Exit status 1 when a server had a BAD or a state error.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import imaptest_scripts  # noqa: E402

PASSWORD = "stress-Pass_1"
KEYWORDS = ("kw1", "kw2", "$Junk", "\\Seen", "\\Flagged", "\\Deleted", "\\Answered")


def random_command(rnd, exists, n):
    """One command as a client would send it, for a mailbox of ``exists`` messages."""
    k = rnd.random()
    seq = rnd.randint(1, exists) if exists else None
    if seq and k < 0.25:
        return "FETCH %d:%d (UID FLAGS)" % (seq, min(exists, seq + rnd.randint(0, 5)))
    if seq and k < 0.45:
        return "STORE %d %sFLAGS (%s)" % (seq, rnd.choice("+-"), rnd.choice(KEYWORDS))
    if seq and k < 0.5:
        return "UID STORE %d:* +FLAGS.SILENT (%s)" % (rnd.randint(1, 60), rnd.choice(KEYWORDS))
    if k < 0.62:
        body = "Subject: s%d\r\n\r\nbody %d\r\n" % (n, n)
        flags = rnd.choice(["", "(kw3) ", "(\\Seen) "])
        return "APPEND INBOX %s{%d}\r\n%s" % (flags, len(body), body)
    if k < 0.67:
        return "EXPUNGE"
    if k < 0.69:
        return "UID EXPUNGE %d:*" % rnd.randint(1, 60)
    if seq and k < 0.74:
        return "COPY %d INBOX" % seq
    if seq and k < 0.77:
        return "MOVE %d INBOX" % seq
    if seq and k < 0.8:
        return "FETCH %d (UID BODY[])" % seq
    if k < 0.84:
        return "SEARCH ALL"
    if k < 0.88:
        return "FETCH 1:* (FLAGS)" if exists else "NOOP"
    if k < 0.9:
        return "SELECT INBOX"
    if k < 0.96:
        return "NOOP"
    return "CHECK"


def session(conn, rnd, deadline, result):
    """One client's loop: a command, its answer, the state checks; until ``deadline``."""
    n = 0
    try:
        while time.monotonic() < deadline:
            command = random_command(rnd, conn.exists, n)
            status, _ = conn.simple(command)
            n += 1
            if status != "OK":
                result[status.lower()] = result.get(status.lower(), 0) + 1
                verb = command.split(" ", 2)[1] if command.startswith("UID ") else command.split(" ", 1)[0]
                result["verbs"][verb] = result["verbs"].get(verb, 0) + 1
                if status == "BAD":
                    result["errors"].append("BAD for %s" % command.split("\r\n")[0])
            for error in conn.errors:
                result["errors"].append("%s: %s" % (command.split("\r\n")[0], error))
            conn.errors[:] = []
    except (imaptest_scripts.TestFailed, OSError) as e:
        result["errors"].append("session %d stopped: %s" % (conn.idx + 1, e))
    result["commands"] = n


def run(name, port, user, sessions, seconds, seed):
    owners = {}
    conns = []
    for i in range(sessions):
        conn = imaptest_scripts.Conn("127.0.0.1", port, i, 30)
        conn.pending_untagged = []
        conn.recent_owners = owners
        status, _ = conn.simple('LOGIN "%s" "%s"' % (user, PASSWORD))
        if status != "OK":
            raise SystemExit("%s: LOGIN failed" % name)
        conns.append(conn)
    for i in range(20):
        body = "Subject: m%d\r\n\r\nbody\r\n" % i
        conns[0].simple("APPEND INBOX {%d}\r\n%s" % (len(body), body))
    for conn in conns:
        conn.simple("SELECT INBOX")
    results = [{"errors": [], "verbs": {}} for _ in conns]
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=session, args=(conn, random.Random(seed * 100 + i), deadline, results[i]))
        for i, conn in enumerate(conns)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.monotonic() - started
    for conn in conns:
        conn.close()
    commands = sum(r.get("commands", 0) for r in results)
    errors = [e for r in results for e in r["errors"]]
    bad = sum(r.get("bad", 0) for r in results)
    verbs = {}
    for r in results:
        for verb, count in r["verbs"].items():
            verbs[verb] = verbs.get(verb, 0) + count
    print(
        "imap_state_stress server=%s sessions=%d seconds=%g commands=%d per_s=%.0f no=%d bad=%d state_errors=%d"
        " not_ok_by_command=%s"
        % (name, sessions, seconds, commands, commands / elapsed, sum(r.get("no", 0) for r in results), bad,
           len(errors) - bad, ",".join("%s:%d" % kv for kv in sorted(verbs.items())) or "-"),
        flush=True,
    )
    for e in errors[:10]:
        print("  " + e)
    return not errors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", choices=("ours", "dovecot", "both"), default="ours")
    p.add_argument("--sessions", type=int, default=5)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    root = tempfile.mkdtemp(prefix="imap-state-stress-")
    os.chmod(root, 0o755)
    ok = True
    try:
        if args.server in ("ours", "both"):
            server, port = imaptest_scripts.start_ours(root, "stress@localhost", PASSWORD)
            try:
                ok = run("ours", port, "stress@localhost", args.sessions, args.seconds, args.seed) and ok
            finally:
                server.stop()
        if args.server in ("dovecot", "both"):
            server, port = imaptest_scripts.start_dovecot(root, "stress@localhost", PASSWORD)
            try:
                ok = run("dovecot", port, "stress", args.sessions, args.seconds, args.seed) and ok
            finally:
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
