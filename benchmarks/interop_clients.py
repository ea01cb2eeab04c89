"""Interop: real IMAP clients fetch what SMTP delivered, byte for byte.

Starts our server (makeService, in its own process) on 127.0.0.1 with a temp
data folder and one user, delivers a corpus over SMTP (dot lines, 8-bit UTF-8,
a 998-octet line, multipart with a base64 attachment, a 300 KiB message, an
empty body; not a header-only message without the blank line: mbsync skips
it, "incomplete header", and offlineimap adds the blank line), then lets each client take the INBOX; then delivers three more and lets
mbsync and offlineimap sync again (their incremental path); last, offlineimap
and then mbsync sync both ways (each flags a message \\Flagged \\Seen,
deletes one and writes one in its Maildir; the server must then hold exactly
those changes, checked over IMAP: STORE, EXPUNGE, APPEND from real clients):

* ``mbsync`` (Debian ``isync``): pull into a Maildir;
* ``offlineimap`` (Debian ``offlineimap3``): read-only sync into a Maildir;
* ``curl imap://``: ``UID SEARCH ALL``, then every message by UID on one connection.

Each fetched message (for mbsync, less the X-TUID line it adds) must equal
the file our store wrote (line ends compared as
CRLF, since Maildir clients store LF), that file must be the delivered message
with only trace headers (Return-Path, Received, and the RFC 8601
Authentication-Results the server adds to mail from other servers) in front, and every client must
see exactly the delivered set, found by Message-ID.

Missing clients are installed with ``apt-get install -y`` (``apt-get update``
first if that fails); a client that cannot be installed is skipped with a
message (``ok=skip`` when none could run). Exit status 1 on any mismatch or
client failure. Last line:

    interop ok=yes delivered=23 mbsync=23/23 offlineimap=23/23 curl=20/20 offlineimap_two_way=ok mbsync_two_way=ok seconds=6.5

Run: ``python benchmarks/interop_clients.py [--keep]``.
"""

import argparse
import base64
import glob
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

USER = "bob@localhost"
PASSWORD = "interop-Pass_1"
CLIENTS = {  # name: (program, Debian package)
    "mbsync": ("mbsync", "isync"),
    "offlineimap": ("offlineimap", "offlineimap3"),
    "curl": ("curl", "curl"),
}
CLIENT_TIMEOUT = 60
TRACE_HEADER = re.compile(rb"\A(?:(?:Return-Path|Received|Authentication-Results):[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)*\Z", re.I)


def say(*parts):
    print(*parts, flush=True)


# ---------------------------------------------------------------------------
# Installing the clients
# ---------------------------------------------------------------------------


def ensure_clients(wanted):
    """``{name: True}`` for each client that is (now) installed; prints why others are not."""
    missing = [n for n in wanted if shutil.which(CLIENTS[n][0]) is None]
    if missing and shutil.which("apt-get"):
        packages = sorted({CLIENTS[n][1] for n in missing})
        say("installing %s with apt-get" % " ".join(packages))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q"] + packages
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = {}
    for name in wanted:
        ready[name] = shutil.which(CLIENTS[name][0]) is not None
        if not ready[name]:
            say("SKIP %s: %s not found and package %s could not be installed" % ((name,) + CLIENTS[name]))
    return ready


# ---------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------


def corpus():
    """Messages as submitted (CRLF); each has a unique Message-ID."""
    rnd = random.Random(3)
    out = []

    def msg(n, subject, body, extra=b"", ctype=b"text/plain; charset=us-ascii"):
        head = (
            b"From: Alice <alice@example.org>\r\n"
            b"To: Bob <bob@localhost>\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Date: Fri, 27 Nov 2026 12:%02d:00 +0000\r\n" % (n % 60)
            + b"Message-ID: <interop-%d@example.org>\r\n" % n
            + b"MIME-Version: 1.0\r\n"
            + b"Content-Type: " + ctype + b"\r\n"
            + extra
        )
        return head + b"\r\n" + body

    n = 0
    for i in range(15):
        n += 1
        lines = [b"line %d of message %d: %s" % (j, n, bytes(rnd.choice(b"abcdefgh ") for _ in range(60))) for j in range(rnd.randint(1, 40))]
        out.append(msg(n, b"plain %d" % n, b"\r\n".join(lines) + b"\r\n"))
    n += 1
    out.append(msg(n, b"dots", b".\r\n..\r\n.leading dot\r\n...three\r\nend.\r\n.\r\n"))
    n += 1
    out.append(
        msg(
            n,
            b"=?UTF-8?B?" + base64.b64encode("Grüße ☃".encode()) + b"?=",
            "8-bit body: Grüße, ☃, 日本語\r\n".encode() * 5,
            extra=b"Content-Transfer-Encoding: 8bit\r\n",
            ctype=b"text/plain; charset=utf-8",
        )
    )
    n += 1
    out.append(msg(n, b"long line", b"x" * 996 + b"\r\nshort\r\n"))
    n += 1
    attachment = base64.encodebytes(bytes(rnd.getrandbits(8) for _ in range(50_000))).replace(b"\n", b"\r\n")
    out.append(
        msg(
            n,
            b"multipart",
            b"preamble\r\n--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
            b"--BOUNDARY\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"r.bin\"\r\n\r\n"
            + attachment
            + b"--BOUNDARY--\r\nepilogue\r\n",
            ctype=b'multipart/mixed; boundary="BOUNDARY"',
        )
    )
    n += 1
    big = b"".join(b"%06d %s\r\n" % (j, b"y" * 70) for j in range(4000))
    out.append(msg(n, b"300 KiB", big))
    n += 1
    out.append(msg(n, b"empty body", b""))
    n += 1
    out.append(msg(n, b"from line", b"From the start, a line an mbox would escape\r\n>From quoted\r\n"))
    n += 1
    out.append(msg(n, b"trailing spaces", b"tab\tand spaces   \r\n\r\n\r\nblank lines above\r\n"))
    return out


MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.I | re.M)


def message_id(data):
    head = re.split(rb"\r?\n\r?\n", data, 1)[0]
    m = MESSAGE_ID.search(head)
    return m.group(1) if m else None


def by_id(blobs):
    """``{message-id: CRLF bytes}``, plus the list of blobs without/with duplicate ids."""
    out, bad = {}, []
    for b in blobs:
        mid = message_id(b)
        if mid is None or mid in out:
            bad.append(b[:200])
        else:
            out[mid] = _harness.to_crlf(b)
    return out, bad


def maildir_files(folder):
    blobs = []
    for sub in ("cur", "new"):
        for path in sorted(glob.glob(os.path.join(folder, sub, "*"))):
            with open(path, "rb") as f:
                blobs.append(f.read())
    return blobs


# ---------------------------------------------------------------------------
# The clients
# ---------------------------------------------------------------------------


def run(cmd, workdir, name):
    proc = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=CLIENT_TIMEOUT)
    with open(os.path.join(workdir, name + ".out"), "wb") as f:
        f.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (name, proc.returncode, proc.stdout.decode(errors="replace")[-800:].strip()))
    return proc.stdout


def without_tuid(data):
    """mbsync writes its own "X-TUID:" header into the copies it makes (it finds
    them again by it); take exactly that one line out, nothing else."""
    return re.sub(rb"(?m)^X-TUID: [A-Za-z0-9+/]{12}\r?\n", b"", data, count=1)


def fetch_mbsync(port, workdir, sync="Pull"):
    local = os.path.join(workdir, "mbsync")
    os.makedirs(local, exist_ok=True)
    conf = os.path.join(workdir, "mbsyncrc")
    with open(conf, "w") as f:
        f.write(
            "IMAPAccount ours\nHost 127.0.0.1\nPort %d\nUser %s\nPass %s\nSSLType None\nAuthMechs LOGIN\n\n"
            "IMAPStore far\nAccount ours\n\n"
            "MaildirStore near\nPath %s/\nInbox %s/INBOX\n\n"
            "Channel inbox\nFar :far:\nNear :near:\nPatterns INBOX\nSync %s\nCreate Near\nSyncState *\n%s"
            % (port, USER, PASSWORD, local, local, sync, "Expunge Both\n" if sync == "All" else "")
        )
    run(["mbsync", "-c", conf, "-a"], workdir, "mbsync-" + sync.lower())
    return [without_tuid(b) for b in maildir_files(os.path.join(local, "INBOX"))]


def server_messages(port, problems):
    """``{message-id: (flags, octets)}`` of INBOX as our server shows it (EXAMINE: no side effects)."""
    c = _harness.IMAPConn("127.0.0.1", port)
    try:
        c.login(USER, PASSWORD)
        c.command(b"EXAMINE INBOX")
        untagged, _ = c.command(b"UID FETCH 1:* (FLAGS BODY.PEEK[])")
    finally:
        c.logout()
    out = {}
    for r in untagged:
        m = re.match(rb"\* \d+ FETCH \(.*?FLAGS \(([^)]*)\).*?BODY\[\] \{(\d+)\}\r\n", r, re.S)
        if not m:
            problems.append("unexpected FETCH response %r" % r[:100])
            continue
        body = r[m.end():m.end() + int(m.group(2))]
        out[message_id(body)] = (set(m.group(1).split()) - {b"\\Recent"}, body)
    return out


def upload_for(name):
    return (
        b"From: Bob <bob@localhost>\nTo: Alice <alice@example.org>\nSubject: written offline\n"
        b"Message-ID: <interop-upload-" + name.encode() + b"@localhost>\n\n"
        b"Uploaded by " + name.encode() + b" with APPEND.\n.dot line\n"
    )


TWO_WAY = {
    # client: (message to flag \Flagged \Seen, message to delete, how to delete it, sync)
    "offlineimap": (
        b"<interop-3@example.org>",
        b"<interop-4@example.org>",
        "unlink",
        lambda port, workdir: fetch_offlineimap(port, workdir, readonly=False),
    ),
    "mbsync": (
        b"<interop-1@example.org>",
        b"<interop-2@example.org>",
        "trash",
        lambda port, workdir: fetch_mbsync(port, workdir, sync="All"),
    ),
}


def two_way(name, port, workdir):
    """Change the client's Maildir (flag one message, delete another, write a new
    one), sync both ways, and check over IMAP that the server holds exactly that
    change: STORE, EXPUNGE and APPEND from a real client. Returns problems."""
    flag_id, gone_id, how, sync = TWO_WAY[name]
    inbox = os.path.join(workdir, name, "INBOX")
    near = {}
    for sub in ("cur", "new"):
        for path in glob.glob(os.path.join(inbox, sub, "*")):
            with open(path, "rb") as f:
                near[message_id(f.read())] = path
    problems = []
    before = server_messages(port, problems)
    for mid in (flag_id, gone_id):
        if mid not in near or mid not in before:
            return ["%s (two-way): %s is not on both sides before the sync" % (name, mid.decode())]
    path = near[flag_id]
    os.rename(path, os.path.join(inbox, "cur", os.path.basename(path).split(":")[0] + ":2,FS"))
    path = near[gone_id]
    if how == "trash":  # mbsync: \Deleted (T), expunged by "Expunge Both"
        os.rename(path, os.path.join(inbox, "cur", os.path.basename(path).split(":")[0] + ":2,T"))
    else:  # offlineimap: a message gone from the Maildir is deleted on the server
        os.unlink(path)
    upload = upload_for(name)
    with open(os.path.join(inbox, "new", "%d.interop-%s.localhost" % (time.time(), name)), "wb") as f:
        f.write(upload)
    sync(port, workdir)
    after = server_messages(port, problems)

    label = "%s (two-way)" % name
    upload_id = message_id(upload)
    want = set(before) - {gone_id} | {upload_id}
    if set(after) != want:
        problems.append("%s: the server holds %s; expected the messages before less %s plus %s (difference: %s)" % (
            label, len(after), gone_id.decode(), upload_id.decode(), sorted(x.decode() for x in set(after) ^ want)))
    if flag_id in after and after[flag_id][0] != {b"\\Flagged", b"\\Seen"}:
        problems.append("%s: %s has flags %r, expected \\Flagged \\Seen" % (label, flag_id.decode(), after[flag_id][0]))
    for mid, (flags, body) in after.items():
        if mid in before and mid != flag_id and flags != before[mid][0]:
            problems.append("%s: %s flags went from %r to %r" % (label, mid.decode(), before[mid][0], flags))
        if mid in before and body != before[mid][1]:
            problems.append("%s: %s changed on the server" % (label, mid.decode()))
    if upload_id in after and without_tuid(after[upload_id][1]) != _harness.to_crlf(upload):
        problems.append("%s: the uploaded message reads back as %r" % (label, after[upload_id][1][:300]))
    base = os.path.basename(near[gone_id]).split(":")[0]
    if glob.glob(os.path.join(inbox, "*", base + "*")):
        problems.append("%s: the deleted message is still in the client's Maildir" % label)
    return problems


def fetch_offlineimap(port, workdir, readonly=True):
    local = os.path.join(workdir, "offlineimap")
    conf = os.path.join(workdir, "offlineimaprc")
    with open(conf, "w") as f:
        f.write(
            "[general]\naccounts = t\nmetadata = %s/offlineimap-meta\n\n"
            "[Account t]\nlocalrepository = L\nremoterepository = R\n\n"
            "[Repository L]\ntype = Maildir\nlocalfolders = %s\n\n"
            "[Repository R]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = %d\n"
            "remoteuser = %s\nremotepass = %s\nssl = no\nstarttls = no\nreadonly = %s\n"
            "folderfilter = lambda f: f == 'INBOX'\n"
            % (workdir, local, port, USER, PASSWORD, readonly)
        )
    run(["offlineimap", "-c", conf, "-o", "-u", "basic"], workdir, "offlineimap" + ("" if readonly else "-rw"))
    return maildir_files(os.path.join(local, "INBOX"))


def fetch_curl(port, workdir):
    base = "imap://127.0.0.1:%d/INBOX" % port
    auth = ["--user", "%s:%s" % (USER, PASSWORD)]
    listing = run(["curl", "-sS", "--max-time", "30"] + auth + ["imap://127.0.0.1:%d/" % port], workdir, "curl-list")
    if b"INBOX" not in listing:
        raise RuntimeError("curl LIST shows no INBOX: %r" % listing[:300])
    search = run(["curl", "-sS", "--max-time", "30"] + auth + ["-X", "UID SEARCH ALL", base], workdir, "curl-search")
    m = re.search(rb"\* SEARCH([ 0-9]*)", search)
    if not m:
        raise RuntimeError("curl UID SEARCH: no SEARCH response in %r" % search[:300])
    uids = [int(u) for u in m.group(1).split()]
    out = os.path.join(workdir, "curl")
    os.makedirs(out, exist_ok=True)
    cmd = ["curl", "-sS", "--max-time", "60"] + auth
    for uid in uids:
        cmd += ["%s;UID=%d" % (base, uid), "-o", os.path.join(out, "%d.eml" % uid)]
    run(cmd, workdir, "curl-fetch")
    blobs = []
    for uid in uids:
        with open(os.path.join(out, "%d.eml" % uid), "rb") as f:
            blobs.append(f.read())
    return blobs


FETCHERS = {"mbsync": fetch_mbsync, "offlineimap": fetch_offlineimap, "curl": fetch_curl}


# ---------------------------------------------------------------------------


def compare(name, fetched, stored):
    """``(messages equal to the stored ones, [problems])`` for what ``name`` fetched."""
    got, bad = by_id(fetched)
    problems = ["%s: message without (or with a repeated) Message-ID: %r" % (name, b) for b in bad]
    for mid in sorted(set(stored) - set(got)):
        problems.append("%s: missing %s" % (name, mid.decode()))
    for mid in sorted(set(got) - set(stored)):
        problems.append("%s: unexpected %s" % (name, mid.decode()))
    same = 0
    for mid in sorted(set(got) & set(stored)):
        if got[mid] == stored[mid]:
            same += 1
        else:
            a, b = got[mid], stored[mid]
            at = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            problems.append(
                "%s: %s differs at octet %d (fetched %d octets, stored %d): fetched %r, stored %r"
                % (name, mid.decode(), at, len(a), len(b), a[max(0, at - 20):at + 40], b[max(0, at - 20):at + 40])
            )
    return same, problems


def check_store(data, delivered_list, problems):
    """The store's messages by id; each must be trace headers + what was delivered."""
    delivered, bad = by_id(delivered_list)
    assert not bad and len(delivered) == len(delivered_list)
    stored, bad = by_id(maildir_files(os.path.join(_harness.mail_dir(data), USER)))
    problems += ["store: message without Message-ID: %r" % b for b in bad]
    if set(stored) != set(delivered):
        problems.append("store: holds %d messages, %d delivered" % (len(stored), len(delivered)))
    for mid, sent in delivered.items():
        s = stored.get(mid)
        if s is not None and not (s.endswith(sent) and TRACE_HEADER.match(s[: len(s) - len(sent)])):
            problems.append("store: %s is not trace headers + the delivered message" % mid.decode())
    return stored


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path is printed)")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated subset of %s" % ",".join(CLIENTS))
    args = parser.parse_args(argv)
    wanted = [c for c in args.clients.split(",") if c]
    for c in wanted:
        if c not in CLIENTS:
            parser.error("unknown client %r" % c)
    started = time.monotonic()
    ready = ensure_clients(wanted)

    workdir = tempfile.mkdtemp(prefix="imapwebpush-interop-")
    data = os.path.join(workdir, "data")
    os.mkdir(data)
    server = _harness.OurServer(data, os.path.join(workdir, "server.log"))
    results, problems = {}, []
    messages = corpus()
    try:
        _harness.add_user(data, USER, PASSWORD)
        server.start()
        # Round 1 syncs the corpus; round 2 delivers more and syncs again, so
        # the Maildir clients take the incremental path (UID FETCH n:* etc.).
        rounds = [("initial", messages[:-3]), ("incremental", messages[-3:])]
        so_far = []
        for round_name, batch in rounds:
            smtp = _harness.MailConn("127.0.0.1", server.smtp_port)
            for m in batch:
                smtp.deliver("alice@example.org", USER, m)
            smtp.quit()
            so_far += batch
            stored = check_store(data, so_far, problems)
            for name in wanted:
                if not ready[name] or results.get(name) == "failed":
                    results[name] = results.get(name, "skipped")
                    continue
                if round_name != "initial" and name == "curl":
                    continue  # curl keeps no state; one round says all
                t0 = time.monotonic()
                try:
                    fetched = FETCHERS[name](server.imap_port, workdir)
                except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                    problems.append("%s failed (%s round): %s" % (name, round_name, e))
                    results[name] = "failed"
                    continue
                count, found = compare("%s (%s)" % (name, round_name), fetched, stored)
                problems += found
                results[name] = "%d/%d" % (count, len(so_far))
                say(
                    "%-12s %-11s %d messages in %.1f s%s"
                    % (name, round_name, len(fetched), time.monotonic() - t0, "" if not found else ", %d problems" % len(found))
                )
        # Last, both ways, one client after the other (each sees the other's changes first).
        for name in ("offlineimap", "mbsync"):
            if name not in wanted or not results.get(name, "").endswith("/%d" % len(so_far)) or problems:
                continue
            t0 = time.monotonic()
            try:
                found = two_way(name, server.imap_port, workdir)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, _harness.ProtocolError) as e:
                found = ["%s (two-way) failed: %s" % (name, e)]
            problems += found
            results[name + "_two_way"] = "ok" if not found else "failed"
            say("%-12s %-11s flag, delete, upload in %.1f s%s" % (
                name, "two-way", time.monotonic() - t0, "" if not found else ", %d problems" % len(found)))
    except Exception as e:  # setup or a step broke: say so, keep the evidence
        problems.append("run failed: %s: %s" % (type(e).__name__, e))
    finally:
        server.stop()
        if args.keep or problems:
            say("kept %s (server log: server.log, client output: *.out)" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    for p in problems:
        say("MISMATCH " + p)
    ok = not problems
    ran = any(v not in ("skipped",) for v in results.values())
    say(
        "interop ok=%s delivered=%d %s seconds=%.1f"
        % ("no" if not ok else "yes" if ran else "skip", len(messages), " ".join("%s=%s" % kv for kv in results.items()), time.monotonic() - started)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
