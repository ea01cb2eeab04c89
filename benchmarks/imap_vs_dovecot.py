"""IMAP vs Dovecot: the same mailbox, the same client code, both on 127.0.0.1.

Our server runs in its own process (makeService via ``_harness.OurServer``);
Dovecot runs privately (``_dovecot.PrivateDovecot``: its own config, folders
and ports; installed from Debian when missing). Both INBOXes start with the
same N messages of about 2 KiB (identical bytes: ours added through the store,
Dovecot's written into its Maildir), and each gets one warm-up SELECT. Both
servers run at the same time and each workload runs in two halves per server,
in the order ours, Dovecot, Dovecot, ours, so load from other programs on a
shared machine weighs on both alike.

Workloads, one blocking raw-socket client (the same code for both):

1. session  -- one logged-in client, repeated ``UID FETCH <random uid>
   BODY.PEEK[]`` + ``NOOP``; an op is that pair (op/s, p50, p99);
2. cycle    -- connect, LOGIN, SELECT INBOX, ``FETCH 1:20 (FLAGS RFC822.SIZE
   ENVELOPE)``, LOGOUT (cycles/s; also the mean LOGIN time and cycles/s
   without it, since our LOGIN runs scrypt and Dovecot's passdb is PLAIN);
3. delivery -- one connection, ~2 KiB messages one after another: SMTP to us,
   LMTP to Dovecot (messages/s);
4. idle     -- a client idles on INBOX; the time from sending the final "." of
   a delivery to reading ``* n EXISTS`` (p50, p99).
5. concurrent -- 10 persistent sessions (one process each) on the one INBOX doing
   what mail clients do: FETCH, STORE, APPEND, EXPUNGE, LIST, STATUS, NOOP
   (``_concurrent.py``); commands/s of all of them, and protocol errors (every
   tagged NO or BAD) on each side.

For session, cycle and delivery the table also gives the server's CPU time
per operation (user + system of the server process, or of Dovecot's master and
all its children, from /proc), which moves much less with other load on the
machine than throughput does. The password-hash cost of one LOGIN (our scrypt, with the stored parameters)
is measured separately in this process.

Prints a table and one parseable line starting ``imap_vs_dovecot``; targets:
idle p50 < 50 ms, session op/s >= 0.5 x Dovecot, delivery >= Dovecot,
concurrent commands/s >= Dovecot with 0 protocol errors on our side.
Exit status 0 unless something failed to run (missed targets are reported,
not fatal). Run: ``python benchmarks/imap_vs_dovecot.py [--messages 1000]
[--seconds 8] [--idle-samples 30] [--only concurrent,...] [--profile FILE]``
(``--profile`` runs our server under cProfile and prints its top functions).
"""

import argparse
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _concurrent  # noqa: E402
import _dovecot  # noqa: E402
import _harness  # noqa: E402

USER = "bench@localhost"
PASSWORD = "bench-Pass_1"
SENDER = "load@example.org"


def make_message(i, rnd, size=2048):
    head = (
        "From: Load Generator <load@example.org>\r\n"
        "To: Bench <bench@localhost>\r\n"
        "Subject: benchmark message %d\r\n"
        "Date: Fri, 27 Nov 2026 12:00:%02d +0000\r\n"
        "Message-ID: <bench-%d@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n" % (i, i % 60, i)
    ).encode()
    lines = []
    total = len(head)
    while total < size:
        line = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz     ") for _ in range(70)) + b"\r\n"
        lines.append(line)
        total += len(line)
    return head + b"".join(lines)


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


# ---------------------------------------------------------------------------
# Workloads (the same code for both servers)
# ---------------------------------------------------------------------------


def login_select(port):
    c = _harness.IMAPConn("127.0.0.1", port)
    c.login(USER, PASSWORD)
    c.command(b"SELECT INBOX")
    return c


def uids_of(c):
    untagged, _ = c.command(b"UID SEARCH ALL")
    for r in untagged:
        if r.startswith(b"* SEARCH"):
            return [int(u) for u in r.split()[2:]]
    raise _harness.ProtocolError("no SEARCH response")


def w_session(server, seconds, rnd):
    c = login_select(server.imap)
    uids = uids_of(c)
    lat = []
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        uid = rnd.choice(uids)
        t0 = time.perf_counter()
        untagged, _ = c.command(b"UID FETCH %d BODY.PEEK[]" % uid)
        c.command(b"NOOP")
        lat.append(time.perf_counter() - t0)
        if not untagged or b"BODY[] {" not in untagged[0]:
            raise _harness.ProtocolError("UID FETCH %d: %r" % (uid, untagged[:1]))
    elapsed = time.perf_counter() - start
    c.logout()
    return {"n": len(lat), "elapsed": elapsed, "lat": lat}


def w_cycle(server, seconds, rnd):
    cycles, logins = [], []
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        c = _harness.IMAPConn("127.0.0.1", server.imap)
        t1 = time.perf_counter()
        c.login(USER, PASSWORD)
        logins.append(time.perf_counter() - t1)
        c.command(b"SELECT INBOX")
        untagged, _ = c.command(b"FETCH 1:20 (FLAGS RFC822.SIZE ENVELOPE)")
        if sum(1 for r in untagged if b" FETCH (" in r) != 20:
            raise _harness.ProtocolError("FETCH 1:20 gave %d responses" % len(untagged))
        c.logout()
        cycles.append(time.perf_counter() - t0)
    return {"n": len(cycles), "elapsed": time.perf_counter() - start, "cycles": cycles, "logins": logins}


def w_delivery(server, seconds, rnd):
    m = _harness.MailConn("127.0.0.1", server.mail, lmtp=server.lmtp)
    lat = []
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        data = make_message(server.next_id(), rnd)
        t0 = time.perf_counter()
        m.deliver(SENDER, USER, data)
        lat.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    m.quit()
    return {"n": len(lat), "elapsed": elapsed, "lat": lat}


def w_idle(server, samples, rnd):
    c = login_select(server.imap)
    exists = len(uids_of(c))
    c.send(b"i1 IDLE\r\n")
    r = c.read()
    if not r.startswith(b"+"):
        raise _harness.ProtocolError("IDLE: %r" % r)
    m = _harness.MailConn("127.0.0.1", server.mail, lmtp=server.lmtp)
    lat = []
    for i in range(samples):
        m.send_message(SENDER, USER, make_message(server.next_id(), rnd))
        t0 = time.perf_counter()
        while True:
            r = c.read()
            found = re.match(rb"\* (\d+) EXISTS", r)
            if found and int(found.group(1)) > exists:
                exists = int(found.group(1))
                break
        lat.append(time.perf_counter() - t0)
        m.finish()
        time.sleep(rnd.uniform(0.0, 0.02))
    m.quit()
    c.send(b"DONE\r\n")
    while not c.read().startswith(b"i1 "):
        pass
    c.logout()
    return {"n": len(lat), "elapsed": sum(lat), "lat": lat}


def w_concurrent(server, seconds, rnd):
    return _concurrent.run(server.imap, USER, PASSWORD, seconds, rnd.randint(0, 1 << 30),
                           make_message(0, rnd))


class Target:
    """Where one server listens, and the message numbers its deliveries use."""

    def __init__(self, name, imap, mail, lmtp, first, pid):
        self.name, self.imap, self.mail, self.lmtp = name, imap, mail, lmtp
        self._next = first
        self.pid = pid  # the server process (Dovecot: its master), for CPU accounting

    def next_id(self):
        self._next += 1
        return self._next


def merge(parts):
    out = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, [] if isinstance(v, list) else 0) + v
    return out


def run_all(ours, dovecot, args):
    """Each workload in two halves per server, in the order ours, dovecot, dovecot, ours.

    Why ABBA: the machine is shared, and load that drifts during the run then
    weighs on both servers alike instead of on whichever ran second.
    """
    for t in (ours, dovecot):  # warm-up: index the mailbox, fill caches
        c = login_select(t.imap)
        c.command(b"FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)")
        c.logout()
    half = args.seconds / 2.0
    steps = [
        ("session", lambda t, rnd: w_session(t, half, rnd)),
        ("cycle", lambda t, rnd: w_cycle(t, half, rnd)),
        ("delivery", lambda t, rnd: w_delivery(t, half, rnd)),
        ("idle", lambda t, rnd: w_idle(t, max(1, args.idle_samples // 2), rnd)),
        ("concurrent", lambda t, rnd: w_concurrent(t, half, rnd)),
    ]
    steps = [(name, fn) for name, fn in steps if name in args.only]
    res = {ours.name: {}, dovecot.name: {}}
    for step, fn in steps:
        t0 = time.monotonic()
        parts = {ours.name: [], dovecot.name: []}
        for t in (ours, dovecot, dovecot, ours):
            cpu = _harness.tree_cpu_seconds(t.pid)
            part = fn(t, random.Random(len(parts[t.name]) + 7))
            part["cpu"] = _harness.tree_cpu_seconds(t.pid) - cpu
            parts[t.name].append(part)
        for name in parts:
            res[name][step] = merge(parts[name])
        print("  %-10s done in %.1f s" % (step, time.monotonic() - t0), flush=True)
    return res


KEYS = (
    "session_ops", "session_p50", "session_p99", "session_cpu", "cycles", "login_ms",
    "cycles_ex_login", "cycle_cpu", "delivery", "delivery_p50", "delivery_cpu", "idle_p50",
    "idle_p99", "concurrent_ops", "concurrent_errors", "concurrent_cpu",
)


def summarize(r):
    """The figures of the workloads that ran (NaN for the others)."""
    nan = float("nan")
    ms = lambda v: v * 1e3  # noqa: E731
    out = dict.fromkeys(KEYS, nan)
    for step, figures in (("session", _session_figures), ("cycle", _cycle_figures),
                          ("delivery", _delivery_figures), ("idle", _idle_figures),
                          ("concurrent", _concurrent_figures)):
        if step in r:
            out.update(figures(r[step], ms))
    return out


def _concurrent_figures(c, ms):
    return {
        "concurrent_ops": c["n"] / c["elapsed"],
        "concurrent_errors": c["errors"],
        "concurrent_cpu": ms(c["cpu"] / c["n"]),
    }


def _session_figures(s, ms):
    return {
        "session_ops": s["n"] / s["elapsed"],
        "session_p50": ms(pct(s["lat"], 0.5)),
        "session_p99": ms(pct(s["lat"], 0.99)),
        "session_cpu": ms(s["cpu"] / s["n"]),
    }


def _cycle_figures(cyc, ms):
    return {
        "cycles": cyc["n"] / cyc["elapsed"],
        "login_ms": ms(statistics.mean(cyc["logins"])),
        "cycles_ex_login": cyc["n"] / (sum(cyc["cycles"]) - sum(cyc["logins"])),
        "cycle_cpu": ms(cyc["cpu"] / cyc["n"]),
    }


def _delivery_figures(d, ms):
    return {
        "delivery": d["n"] / d["elapsed"],
        "delivery_p50": ms(pct(d["lat"], 0.5)),
        "delivery_cpu": ms(d["cpu"] / d["n"]),
    }


def _idle_figures(i, ms):
    return {"idle_p50": ms(pct(i["lat"], 0.5)), "idle_p99": ms(pct(i["lat"], 0.99))}


# ---------------------------------------------------------------------------


def scrypt_cost(data_dir, reps=5):
    sys.path.insert(0, _harness.ROOT)
    from imapwebpush.store.users import UserDatabase

    verifier = UserDatabase(data_dir).verifier(USER)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        if not verifier.verify(PASSWORD):
            raise RuntimeError("the stored hash does not verify")
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def fill_ours(data_dir, messages):
    sys.path.insert(0, _harness.ROOT)
    from imapwebpush.store.account import MailStore

    inbox = MailStore(_harness.mail_dir(data_dir)).account(USER).mailbox("INBOX")
    for i, m in enumerate(messages):
        inbox.add(m, internaldate=1795000000 + i)


def fill_dovecot(maildir, messages):
    for i, m in enumerate(messages):
        path = os.path.join(maildir, "cur", "%d.M%dP1.bench:2," % (1795000000 + i, i))
        with open(path, "wb") as f:
            f.write(m)
        os.utime(path, (1795000000 + i, 1795000000 + i))


def ratio(a, b):
    return a / b if b else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=1000, help="messages in each INBOX (default 1000)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each timed workload (default 8)")
    p.add_argument("--idle-samples", type=int, default=30, help="deliveries timed at the idling client (default 30)")
    p.add_argument("--only", default="session,cycle,delivery,idle,concurrent",
                   type=lambda v: v.split(","), help="the workloads to run (default: all five)")
    p.add_argument("--profile", metavar="FILE", help="run our server under cProfile, save stats to FILE, print the top")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = p.parse_args(argv)
    started = time.monotonic()

    if os.geteuid() != 0:
        print("SKIP: run as root (Dovecot's master must start as root to drop to its users)")
        print("imap_vs_dovecot ok=skip")
        return 0
    if not _dovecot.ensure_installed():
        print("SKIP: dovecot is not installed and could not be installed (apt-get install dovecot-imapd dovecot-lmtpd)")
        print("imap_vs_dovecot ok=skip")
        return 0

    root = tempfile.mkdtemp(prefix="iwp-bench-")
    os.chmod(root, 0o755)  # Dovecot's unprivileged processes read below it
    rnd = random.Random(1)
    messages = [make_message(i, rnd) for i in range(args.messages)]
    ours_data = os.path.join(root, "ours")
    os.mkdir(ours_data)
    dc = _dovecot.PrivateDovecot(os.path.join(root, "dovecot"), USER, PASSWORD)
    os.makedirs(dc.root)
    ours = _harness.OurServer(ours_data, os.path.join(root, "ours.log"))
    if args.profile:
        os.environ["IMAPWEBPUSH_PROFILE"] = os.path.abspath(args.profile)
    results = {}
    try:
        print("filling both INBOXes with %d messages of ~2 KiB" % args.messages, flush=True)
        _harness.add_user(ours_data, USER, PASSWORD)
        fill_ours(ours_data, messages)
        fill_dovecot(dc.maildir(), messages)
        scrypt_ms = scrypt_cost(ours_data)

        ours.start()
        try:
            dc.start()
            try:
                results = run_all(
                    Target("ours", ours.imap_port, ours.smtp_port, False, args.messages, ours.proc.pid),
                    Target("dovecot", dc.imap_port, dc.lmtp_port, True, args.messages, dc.proc.pid),
                    args,
                )
            finally:
                dc.stop()
        finally:
            ours.stop()
    finally:
        os.environ.pop("IMAPWEBPUSH_PROFILE", None)
        if args.keep:
            print("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)

    o, d = summarize(results["ours"]), summarize(results["dovecot"])
    rows = [
        ("session op/s (UID FETCH+NOOP)", "session_ops"),
        ("session p50 ms", "session_p50"),
        ("session p99 ms", "session_p99"),
        ("session server CPU ms/op", "session_cpu"),
        ("cycle cycles/s", "cycles"),
        ("cycle LOGIN mean ms", "login_ms"),
        ("cycle cycles/s without LOGIN", "cycles_ex_login"),
        ("cycle server CPU ms/cycle", "cycle_cpu"),
        ("delivery msg/s (SMTP | LMTP)", "delivery"),
        ("delivery p50 ms", "delivery_p50"),
        ("delivery server CPU ms/msg", "delivery_cpu"),
        ("IDLE latency p50 ms", "idle_p50"),
        ("IDLE latency p99 ms", "idle_p99"),
        ("concurrent commands/s (10 sess.)", "concurrent_ops"),
        ("concurrent NO/BAD answers", "concurrent_errors"),
        ("concurrent server CPU ms/command", "concurrent_cpu"),
    ]
    print()
    print("%d messages of ~2 KiB; Dovecot %s; %.0f s timed workloads, %d IDLE samples"
          % (args.messages, dc.version(), args.seconds, args.idle_samples))
    print("%-32s %12s %12s %10s" % ("", "ours", "dovecot", "ours/dc"))
    for label, key in rows:
        print("%-32s %12.2f %12.2f %10.2f" % (label, o[key], d[key], ratio(o[key], d[key])))
    print("%-32s %12.1f %12s" % ("scrypt verify, one LOGIN, ms", scrypt_ms, "(PLAIN)"))
    for name in ("ours", "dovecot"):
        for line in results[name].get("concurrent", {}).get("samples", [])[:5]:
            print("  %s error: %s" % (name, line))

    targets = {
        "idle": o["idle_p50"] < 50,
        "session": o["session_ops"] >= 0.5 * d["session_ops"],
        "delivery": o["delivery"] >= d["delivery"],
        "concurrent": o["concurrent_ops"] >= d["concurrent_ops"] and o["concurrent_errors"] == 0,
    }
    targets = {k: ok for k, ok in targets.items() if k in args.only}
    print()
    for k, ok in targets.items():
        print("target %-8s %s" % (k, "met" if ok else "MISSED"))
    if args.profile:
        import pstats

        print("\nour server, cProfile by cumulative time (top 25):")
        pstats.Stats(os.path.abspath(args.profile)).sort_stats("cumulative").print_stats(25)
    print(
        "imap_vs_dovecot messages=%d session_ops=%.1f/%.1f session_ratio=%.2f cycles=%.2f/%.2f "
        "cycles_ex_login=%.1f/%.1f delivery=%.1f/%.1f delivery_ratio=%.2f idle_p50_ms=%.1f/%.1f "
        "idle_p99_ms=%.1f/%.1f cpu_ms_session=%.2f/%.2f cpu_ms_cycle=%.1f/%.1f cpu_ms_delivery=%.2f/%.2f "
        "concurrent_ops=%.1f/%.1f concurrent_ratio=%.2f concurrent_errors=%d/%d cpu_ms_concurrent=%.2f/%.2f "
        "scrypt_ms=%.1f targets=%s seconds=%.0f"
        % (
            args.messages,
            o["session_ops"], d["session_ops"], ratio(o["session_ops"], d["session_ops"]),
            o["cycles"], d["cycles"],
            o["cycles_ex_login"], d["cycles_ex_login"],
            o["delivery"], d["delivery"], ratio(o["delivery"], d["delivery"]),
            o["idle_p50"], d["idle_p50"], o["idle_p99"], d["idle_p99"],
            o["session_cpu"], d["session_cpu"], o["cycle_cpu"], d["cycle_cpu"],
            o["delivery_cpu"], d["delivery_cpu"],
            o["concurrent_ops"], d["concurrent_ops"], ratio(o["concurrent_ops"], d["concurrent_ops"]),
            o["concurrent_errors"], d["concurrent_errors"], o["concurrent_cpu"], d["concurrent_cpu"],
            scrypt_ms,
            ",".join("%s:%s" % (k, "met" if v else "missed") for k, v in targets.items()),
            time.monotonic() - started,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
