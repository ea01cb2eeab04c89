"""Shared pieces of the IMAP benchmark and the interop script.

Why a separate process for our server: the benchmark's client must not share
the server's CPU thread, and the interop clients (mbsync, offlineimap, curl)
are separate programs anyway. ``python benchmarks/_harness.py serve ARGS...``
runs ``imapwebpush.tap.start_server(ARGS)`` (the same makeService twistd uses),
prints one line ``PORTS imap=N smtp=M`` once it listens, logs to a file, and
stops its services on SIGTERM. With ``IMAPWEBPUSH_PROFILE=FILE`` in its
environment it runs under cProfile and writes the stats to FILE when it stops.

The socket clients here are deliberately small and blocking: the same code
talks to our server and to Dovecot, so client overhead is equal for both.
"""

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


# ---------------------------------------------------------------------------
# Our server in its own process
# ---------------------------------------------------------------------------


def mail_dir(data_dir):
    """Where the server keeps the accounts of ``data_dir`` (the same rule as the server)."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from imapwebpush import datadir

    return datadir.mail(data_dir)


def add_user(data_dir, address, password):
    """Add a user with the admin command, exactly as an operator would."""
    proc = subprocess.run(
        [PYTHON, "-m", "imapwebpush.cli", "--data", data_dir, "user", "add", address, "--password-stdin"],
        input=(password + "\n").encode(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError("user add failed: %s" % proc.stdout.decode(errors="replace").strip())


class OurServer:
    """``imapwebpush`` (makeService) on 127.0.0.1 port 0, in a child process."""

    def __init__(self, data_dir, log_path, extra_args=(), child=None):
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        # The child command line up to LOG ARGS; a benchmark that patches the
        # server first (abuse.py's "before") passes its own script.
        self.child = list(child or [PYTHON, os.path.abspath(__file__), "serve"])
        self.proc = None
        self.imap_port = self.smtp_port = None

    def start(self, timeout=60):
        args = [
            "--data", self.data_dir,
            "--imap", "tcp:0:interface=127.0.0.1",
            "--smtp", "tcp:0:interface=127.0.0.1",
            "--allow-plaintext-auth",
        ] + self.extra_args
        self.proc = subprocess.Popen(
            self.child + [self.log_path] + args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.match(rb"PORTS imap=(\d+) smtp=(\d+)", line)
            if m:
                self.imap_port, self.smtp_port = int(m.group(1)), int(m.group(2))
                return self
        status = self.proc.poll()
        self.stop()
        raise RuntimeError(
            "our server did not start (%s): %s (log: %s)"
            % (
                "no PORTS line in %d s" % timeout if status is None else "exit status %d" % status,
                b"".join(seen).decode(errors="replace").strip()[-2000:],
                self.log_path,
            )
        )

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _serve(log_path, argv):
    """The child side of L{OurServer}."""
    sys.path.insert(0, ROOT)
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from imapwebpush import tap

    logfile = open(log_path, "a")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(logfile)], redirectStandardIO=False)

    def started(running):
        reactor.addSystemEventTrigger("before", "shutdown", running.stop)
        print("PORTS imap=%d smtp=%d" % (running.ports["imap"], running.ports["smtp"]), flush=True)

    def failed(f):
        print("FAILED %s" % (f.getErrorMessage(),), flush=True)
        reactor.stop()

    if "--dns-server" not in argv:
        # The DKIM lookups of mail arriving on --smtp (and SPF, for clients outside
        # --spf-skip-networks, which holds loopback) stay on loopback, as in the tests.
        from imapwebpush.testing import dns as testing_dns

        argv = list(argv) + ["--dns-server", testing_dns.loopback(reactor)[0]]
    reactor.callWhenRunning(lambda: tap.start_server(argv, reactor).addCallbacks(started, failed))
    profile_to = os.environ.get("IMAPWEBPUSH_PROFILE")
    if profile_to:
        # cProfile of the whole reactor thread, written when the server stops.
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(reactor.run)
        profiler.dump_stats(profile_to)
    else:
        reactor.run()


def tree_cpu_seconds(pid):
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants.

    Why: on a shared machine throughput moves with other load, CPU per operation
    much less. Children that already exited count through their parent's
    cutime/cstime (Dovecot forks a process per login). Linux /proc only.
    """
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based from state
        stats[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    children = {}
    for p, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
            todo.extend(children.get(p, ()))
    return total / tick


# ---------------------------------------------------------------------------
# Raw clients
# ---------------------------------------------------------------------------


class ProtocolError(Exception):
    """The server answered something other than what the step needs."""


_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n\Z")


class IMAPConn:
    """A blocking IMAP connection: send a command, read everything up to its tagged answer."""

    def __init__(self, host, port, timeout=30):
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.greeting = self.read()
        self.n = 0

    def read(self):
        """One response (a line, with any literals it announces inlined)."""
        line = self.file.readline()
        if not line:
            raise ProtocolError("connection closed")
        parts = [line]
        m = _LITERAL.search(line)
        while m:
            parts.append(self.file.read(int(m.group(1))))
            line = self.file.readline()
            parts.append(line)
            m = _LITERAL.search(line)
        return b"".join(parts)

    def send(self, data):
        self.sock.sendall(data)

    def command(self, text, ok=True):
        """``(untagged responses, tagged line)``; ProtocolError unless OK when ``ok``."""
        self.n += 1
        tag = b"a%d" % self.n
        self.sock.sendall(tag + b" " + text + b"\r\n")
        untagged = []
        prefix = tag + b" "
        while True:
            r = self.read()
            if r.startswith(prefix):
                if ok and not r[len(prefix):].startswith(b"OK"):
                    raise ProtocolError("%r -> %r" % (text[:60], r))
                return untagged, r
            untagged.append(r)

    def login(self, user, password):
        return self.command(b"LOGIN " + quote(user) + b" " + quote(password))

    def logout(self):
        try:
            self.command(b"LOGOUT", ok=False)
        finally:
            self.close()

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def quote(text):
    if isinstance(text, str):
        text = text.encode()
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class MailConn:
    """A blocking SMTP (or LMTP) client: one connection, many transactions."""

    def __init__(self, host, port, lmtp=False, timeout=30):
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.expect(220)
        self.cmd((b"LHLO" if lmtp else b"EHLO") + b" bench.localhost", 250)

    def reply(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ProtocolError("connection closed")
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def expect(self, code):
        got, lines = self.reply()
        if got != code:
            raise ProtocolError("expected %d, got %r" % (code, b"".join(lines)))
        return lines

    def cmd(self, line, code):
        self.sock.sendall(line + b"\r\n")
        return self.expect(code)

    def send_message(self, sender, recipient, data):
        """Everything up to and including the final dot; read the answer with ``finish``."""
        self.cmd(b"MAIL FROM:<" + sender.encode() + b">", 250)
        self.cmd(b"RCPT TO:<" + recipient.encode() + b">", 250)
        self.cmd(b"DATA", 354)
        self.sock.sendall(dot_stuff(data) + b".\r\n")

    def finish(self):
        return self.expect(250)

    def deliver(self, sender, recipient, data):
        self.send_message(sender, recipient, data)
        return self.finish()

    def quit(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except (OSError, ProtocolError):
            pass
        self.file.close()
        self.sock.close()


def dot_stuff(data):
    """CRLF line ends, leading dots doubled, ending in CRLF (RFC 5321 4.5.2)."""
    data = re.sub(rb"\r?\n", b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", data)


def to_crlf(data):
    return re.sub(rb"\r?\n", b"\r\n", data)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        _serve(sys.argv[2], sys.argv[3:])
    else:
        sys.exit("usage: _harness.py serve LOGFILE [imapwebpush options]")
