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

* ``literal_memory``: 20 connections each announce a 9 MiB APPEND literal and
  send all of it but its last octet; the figure is the server's RSS growth.
  Before: each literal waited in memory (up to 10 MiB each).
* ``append_many``: one client sends an APPEND of 200,000 one-octet messages
  (LITERAL+) and never ends the command; the figure is the server's RSS
  growth. Before: no cap on the messages of one APPEND, each staged message
  held until the command ends. Now the 1001st is refused and the rest are
  read and dropped.
* ``fetch_no_read``: 5 clients FETCH ``BODY.PEEK[]`` of a 40 MB message and
  read nothing; the figure is the server's RSS growth. Before: the message was
  read whole and handed to the transport whole. Target for both: the
  documented budget of an IMAP connection (docs/operating.rst, 1 MiB) times
  the number of connections, plus 10 MB for the allocator's slack.
* ``section_memory``: 5 clients FETCH ``(BODYSTRUCTURE BODY.PEEK[1]
  BINARY.PEEK[2])`` of a 50 MB message (a 25 MB text part, a 25 MB base64 part)
  and read nothing; the figure is the server's RSS growth. Before: each read the
  message whole, split it in memory and held its answers (the text part, the
  decoded attachment) whole. Now the message's MIME map (one pass, cached), the
  part ranges streamed from the file, the attachment decoded as it is sent.
* ``search_nesting``: ``SEARCH`` with 400-deep parentheses, then 5000 NOTs,
  back to back; the other client's NOOP p99. Before: twisted's list parser
  (4 microseconds per octet), then recursion to a RecursionError whose ~100 KB
  traceback went to the log.

* ``smtp_data_memory``: one SMTP client sends 40 MiB of DATA in 2-octet lines;
  the figure is the server's peak RSS growth up to the ``250`` after the final
  dot. Before: every line was a bytes object of its own until the dot.
* ``large_delivery``: 50 MB messages delivered over SMTP back to back while
  another client (INBOX selected) sends NOOP every 10 ms; that client's NOOP
  p99. Before: each copy from the spool into the Maildir and its fsync ran on
  the reactor; now from 1 MiB on they run in a thread (``add_staged``).
* ``login_guessing``: 10 IMAP connections from one address send LOGIN with
  wrong passwords as fast as they are answered, for 30 s; the figure is the
  passwords checked a second after the first 10 failures (target: at most 1).
  Before: no brakes, every try checked at once.
* ``connection_flood``: one address opens 300 SMTP connections and holds
  them; the figure is how many the server greets with 220 (the rest read
  ``421 4.7.0``), and a client from 127.0.0.2 must still be greeted. Before:
  no connection caps.

Measured on the final code (this machine, ``--seconds 2``)::

    attack=list_wildcard before=3310.3ms after=4.8ms ... ok=yes
    attack=lwebpush_wildcard before=2628.9ms after=2.3ms ... ok=yes
    attack=literal_memory before=190.9MB after=0.0MB metric=server_rss_growth target=<30MB ok=yes
    attack=append_many before=50.0MB after=0.1MB metric=server_rss_growth target=<11MB ok=yes
    attack=fetch_no_read before=179.4MB after=1.8MB metric=server_rss_growth target=<15MB ok=yes
    attack=section_memory before=336.8MB after=1.5MB metric=server_rss_growth target=<15MB ok=yes
    attack=search_nesting before=113.0ms after=37.5ms ... ok=yes
    attack=smtp_data_memory before=2281.6MB after=0.6MB metric=server_rss_growth target=<11.5MB ok=yes
    attack=login_guessing before=7.0/s after=0.3/s metric=password_checks_per_s_one_ip target=<1/s ok=yes
    attack=connection_flood before=300.0 after=20.0 metric=smtp_connections_held_one_ip target=<21 ok=yes

Target: the other client's NOOP p99 stays under 100 ms; RSS growth under the
documented budget. Run:
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
        regexes = self.__dict__.get("_regexes")
        if regexes is None:  # a Pattern holds one pattern, or several (LIST-EXTENDED)
            texts = [self.pattern] if isinstance(self.pattern, str) else self.pattern
            regexes = self._regexes = [_backtracking_regex(t, self.delimiter) for t in texts]
        return any(regex.match(name) is not None for regex in regexes)

    wildcard.Pattern.match = match
    wildcard.Pattern.__call__ = match


def literals_in_memory():
    """APPEND literals wait in memory up to 10 MiB, as they did before the spool."""
    from imapwebpush import spool
    from imapwebpush.imap import append

    append.Spool = lambda directory=None: spool.Spool(directory, in_memory=10 * 1024 * 1024)


def unbounded_multiappend():
    """No cap on the messages of one APPEND (MULTIAPPEND), as before --max-append-messages."""
    from imapwebpush.imap import append

    append.AppendCommandMixin.max_append_messages = property(lambda self: 1 << 62, lambda self, value: None)


def fetch_whole():
    """FETCH reads a message whole and writes its answer whole, as before streaming."""
    from imapwebpush.imap import fetch

    fetch.STREAM_MIN = 1 << 62


def sections_in_memory():
    """Sections, BODYSTRUCTURE and BINARY of a large message read it whole and split it
    in memory, their answers written whole, as before the MIME map."""
    from imapwebpush.imap import fetch, search

    fetch.STREAM_MIN = 1 << 62
    search.LARGE_MESSAGE = 1 << 62


def unbounded_nesting():
    """No nesting cap; a RecursionError is logged with its traceback, as before."""
    from imapwebpush.imap import core, factory

    build = factory.IMAPFactory.buildProtocol

    def buildProtocol(self, addr):
        p = build(self, addr)
        p.max_nesting = 10**9
        return p

    factory.IMAPFactory.buildProtocol = buildProtocol
    fail = core.IMAPCore._fail

    def _fail(self, tag, failure):
        if failure.check(RecursionError):
            self.log.failure("IMAP command failed", failure, tag=tag)
            self.sendBadResponse(tag, b"Internal server error")
            return
        fail(self, tag, failure)

    core.IMAPCore._fail = _fail

    from twisted.mail import imap4

    from imapwebpush.imap import search_command

    def search_arguments(server, line):  # twisted's parser, 4 microseconds per octet
        charset, line = imap4.IMAP4Server.opt_charset(server, line.strip())
        return charset, imap4.parseNestedParens(line)

    search_command.search_arguments = search_arguments


def smtp_lines_in_memory():
    """SMTP DATA kept as one bytes object per line until the final dot, as before the spool."""
    import io

    from imapwebpush.smtp import delivery

    class Lines:
        def __init__(self, directory=None):
            self.lines = []
            self.size = 0

        def write(self, data):
            self.lines.append(data)
            self.size += len(data)

        def reader(self, prefix=b""):
            return io.BytesIO(prefix + b"".join(self.lines))

        def close(self):
            self.lines = []

    delivery.Spool = Lines


def no_login_brakes():
    """Every login try checks its password at once, as many at a time as come in."""
    from twisted.internet import defer

    from imapwebpush import throttle
    from imapwebpush.store import users

    throttle.LoginThrottle.attempt = lambda self, peer, account: defer.succeed(None)
    throttle.LoginThrottle.failed = lambda self, peer, account: None
    init = users.UserChecker.__init__

    def __init__(self, users_, defer_to_thread=None, max_concurrent=None):
        init(self, users_, defer_to_thread, max_concurrent=10**6)

    users.UserChecker.__init__ = __init__


def no_connection_caps():
    """Listeners accept every connection (still counted, never refused)."""
    from imapwebpush import connlimit

    init = connlimit.ConnectionCounter.__init__
    connlimit.ConnectionCounter.__init__ = lambda self, max_total=0, max_per_peer=0: init(self, 0, 0)


def stage_on_reactor():
    """Every message copied into the Maildir and fsynced on the reactor, as before add_staged."""
    from imapwebpush.store import maildir

    maildir.DEFAULT_STAGE_THRESHOLD = sys.maxsize


BEFORE_PATCHES = {
    "stage_on_reactor": stage_on_reactor,
    "backtracking_wildcards": backtracking_wildcards,
    "literals_in_memory": literals_in_memory,
    "fetch_whole": fetch_whole,
    "sections_in_memory": sections_in_memory,
    "unbounded_multiappend": unbounded_multiappend,
    "unbounded_nesting": unbounded_nesting,
    "smtp_lines_in_memory": smtp_lines_in_memory,
    "no_login_brakes": no_login_brakes,
    "no_connection_caps": no_connection_caps,
}


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


SERVERS = {}  # imap port -> the running _harness.OurServer (for its pid)


def rss_mb(port, field="VmRSS"):
    """The resident memory of the server listening on ``port``, in MB (VmHWM: its peak)."""
    with open("/proc/%d/status" % (SERVERS[port].proc.pid,)) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no " + field)


def settle_rss(port, seconds=1.0):
    """RSS once it stopped growing for a moment (the server is done reading), in MB."""
    last = rss_mb(port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(seconds / 4)
        now = rss_mb(port)
        if now <= last + 0.5:
            return now
        last = now
    return last


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
    SERVERS[server.imap_port] = server
    try:
        return measure(server.imap_port)
    finally:
        SERVERS.pop(server.imap_port, None)
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


IMAP_CONNECTION_BUDGET_MB = 1.0  # docs/operating.rst, "Limits and abuse"
RSS_SLACK_MB = 10.0


def literal_memory(port, seconds, connections=20, size=9 * 1024 * 1024):
    """RSS growth (MB) while ``connections`` clients hold unfinished ``size``-octet literals."""
    conns = []
    for _ in range(connections):
        c = _harness.IMAPConn("127.0.0.1", port)
        c.login(USER, PASSWORD)
        conns.append(c)
    before = settle_rss(port)
    piece = b"x" * (1024 * 1024)
    for c in conns:
        c.send(b"A APPEND INBOX {%d}\r\n" % (size,))
        c.read()  # + Ready for literal data
        left = size - 1
        while left:
            c.send(piece[:left])
            left -= min(left, len(piece))
    after = settle_rss(port, seconds)
    for c in conns:
        c.close()
    return after - before


def append_many(port, seconds, messages=200000):
    """RSS growth (MB) while one client's APPEND carries ``messages`` one-octet messages."""
    c = _harness.IMAPConn("127.0.0.1", port)
    c.login(USER, PASSWORD)
    before = settle_rss(port)
    c.send(b"A APPEND INBOX {1+}\r\nx")
    piece = b" {1+}\r\nx" * 1000
    for _ in range(messages // 1000):
        c.send(piece)
    time.sleep(seconds)
    after = settle_rss(port, seconds)
    c.close()
    return after - before


def _fetch_without_reading(port, seconds, message, command, clients):
    """RSS growth (MB) while ``clients`` send ``command`` about ``message`` (APPENDed
    first) and read nothing."""
    import socket

    owner = _harness.IMAPConn("127.0.0.1", port, timeout=600)
    owner.login(USER, PASSWORD)
    owner.send(b"A APPEND INBOX {%d}\r\n" % (len(message),))
    owner.read()
    owner.send(message + b"\r\n")
    owner.read()
    owner.command(b"SELECT INBOX")
    owner.command(b"FETCH 1 (FLAGS RFC822.SIZE BODY.PEEK[HEADER])")  # warm: what any FETCH loads
    conns = []
    for _ in range(clients):
        c = _harness.IMAPConn("127.0.0.1", port)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.login(USER, PASSWORD)
        c.command(b"SELECT INBOX")
        conns.append(c)
    before = settle_rss(port)
    for c in conns:
        c.send(b"F " + command + b"\r\n")
    time.sleep(seconds)
    after = settle_rss(port)
    for c in conns:
        c.close()
    owner.logout()
    return after - before


LINE = b"y" * 998 + b"\r\n"


def fetch_no_read(port, seconds, clients=5, size=40 * 1000 * 1000):
    """RSS growth (MB) while ``clients`` FETCH a ``size``-octet message and read nothing."""
    head = b"From: a@example.org\r\nSubject: big\r\n\r\n"
    message = head + LINE * ((size - len(head)) // len(LINE))
    return _fetch_without_reading(port, seconds, message, b"FETCH 1 BODY.PEEK[]", clients)


def section_memory(port, seconds, clients=5, size=50 * 1000 * 1000):
    """RSS growth (MB) while ``clients`` FETCH BODYSTRUCTURE, BODY[1] (a text part) and
    BINARY[2] (a base64 part) of a ``size``-octet message and read nothing."""
    half = size // 2
    encoded = base64.encodebytes(os.urandom(half * 3 // 4 - 3000)).replace(b"\n", b"\r\n")
    message = (
        b"From: a@example.org\r\nSubject: parts\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n" + LINE * (half // len(LINE)) + b"\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + encoded + b"--b--\r\n"
    )
    del encoded
    return _fetch_without_reading(
        port, seconds, message, b"FETCH 1 (BODYSTRUCTURE BODY.PEEK[1] BINARY.PEEK[2])", clients
    )


def rss_target(connections):
    return connections * IMAP_CONNECTION_BUDGET_MB + RSS_SLACK_MB


DEEP_SEARCHES = [b"SEARCH " + b"(" * 400 + b"ALL" + b")" * 400, b"SEARCH " + b"NOT " * 5000 + b"ALL"]


def search_nesting(port, seconds):
    """The other client's NOOP p99 (ms) while deep SEARCH criteria are sent back to back."""

    def select(conn):
        conn.command(b"SELECT INBOX")

    latencies = []
    for hostile in DEEP_SEARCHES:
        latency, _ = stall_during(port, select, hostile, seconds / len(DEEP_SEARCHES))
        latencies.append(latency)
    return max(latencies)


SMTP_CONNECTION_BUDGET_MB = 1.5  # docs/operating.rst, "Limits and abuse" (--max-message-size)


def smtp_data_memory(port, seconds, size=40 * 1024 * 1024):
    """Peak RSS growth (MB) while one SMTP client sends ``size`` octets of DATA in 2-octet
    lines, up to the 250 after the final dot."""
    server = SERVERS[port]
    conn = _harness.MailConn("127.0.0.1", server.smtp_port, timeout=600)
    before = settle_rss(port)
    conn.cmd(b"MAIL FROM:<carol@remote.example>", 250)
    conn.cmd(b"RCPT TO:<" + USER.encode() + b">", 250)
    conn.cmd(b"DATA", 354)
    conn.sock.sendall(b"Subject: many short lines\r\n\r\n")
    chunk = b"ab\r\n" * (256 * 1024)
    for _ in range(size // len(chunk)):
        conn.sock.sendall(chunk)
    conn.sock.sendall(b".\r\n")
    conn.finish()
    peak = rss_mb(port, "VmHWM")
    conn.quit()
    return peak - before


def large_delivery(port, seconds, size=50 * 1000 * 1000):
    """The other client's NOOP p99 (ms) while 50 MB messages are delivered over SMTP back
    to back (at least two), each to the INBOX the NOOP client has selected."""
    server = SERVERS[port]
    line = b"z" * 998 + b"\r\n"
    body = b"Subject: large\r\n\r\n" + line * (size // len(line))
    conn = _harness.MailConn("127.0.0.1", server.smtp_port, timeout=600)
    probe = NoopProbe(port)
    probe.conn.command(b"SELECT INBOX")
    with probe:
        time.sleep(0.2)
        deadline = time.monotonic() + seconds
        sent = 0
        while sent < 2 or time.monotonic() < deadline:
            conn.deliver("carol@remote.example", USER, body)
            sent += 1
        time.sleep(0.05)
    conn.quit()
    return p99(probe.latencies)


LOGIN_SECONDS = 30.0  # at least this long: the brakes need failures to bite
LOGIN_RATE_TARGET = 1.0


def login_guessing(port, seconds, connections=10):
    """Password checks a second one address gets after its first 10 failures.

    ``connections`` IMAP clients send LOGIN with wrong passwords as fast as they
    are answered (reconnecting when closed) for ``max(seconds, LOGIN_SECONDS)``;
    each ``NO [AUTHENTICATIONFAILED]`` is one checked guess (a try refused
    unchecked, ``NO [UNAVAILABLE]``, is none). The figure: guesses after the
    10th, divided by the time left after it.
    """
    duration = max(seconds, LOGIN_SECONDS)
    start = time.monotonic()
    deadline = start + duration
    answered = []  # when each checked guess was answered
    lock = threading.Lock()

    def guess(i):
        conn = None
        n = 0
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = _harness.IMAPConn("127.0.0.1", port, timeout=duration + 60)
                n += 1
                _, answer = conn.command(b'LOGIN "%s" "guess-%d-%d"' % (USER.encode(), i, n), ok=False)
            except (OSError, _harness.ProtocolError):
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
                continue
            if b"[AUTHENTICATIONFAILED]" in answer:
                with lock:
                    answered.append(time.monotonic())
            elif b"[UNAVAILABLE]" in answer:
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=guess, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    answered.sort()
    if len(answered) <= 10:
        return 0.0
    tenth = answered[9]
    return (len(answered) - 10) / max(deadline - tenth, 1e-3)


FLOOD_CONNECTIONS = 300
FLOOD_TARGET = 20  # --max-connections-per-ip


def connection_flood(port, seconds, connections=FLOOD_CONNECTIONS):
    """SMTP connections one address gets the server to hold: it opens ``connections`` and
    keeps those greeted with 220; then a client from another loopback address must still
    be greeted (the run fails otherwise)."""
    import socket

    server = SERVERS[port]
    held, socks = 0, []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", server.smtp_port), timeout=10)
        socks.append(s)
        line = s.makefile("rb").readline()
        if line.startswith(b"220 "):
            held += 1
        elif not line.startswith(b"421 4.7.0 "):
            raise _harness.ProtocolError("flood: unexpected %r" % (line,))
    other = socket.socket()
    other.settimeout(10)
    other.bind(("127.0.0.2", 0))
    other.connect(("127.0.0.1", server.smtp_port))
    greeting = other.makefile("rb").readline()
    other.close()
    for s in socks:
        s.close()
    if not greeting.startswith(b"220 "):
        raise _harness.ProtocolError("flood: another address was not served: %r" % (greeting,))
    return held


# name, the patch that undoes the fix, the attack (port, seconds) -> figure, unit, target[, metric]
ATTACKS = [
    ("list_wildcard", "backtracking_wildcards",
     noop_stall(_create_long_mailbox, b'LIST "" "*%*%*%*%*%x"'), "ms", NOOP_TARGET_MS),
    ("lwebpush_wildcard", "backtracking_wildcards",
     noop_stall(_subscribe_long_id, b"LWEBPUSH *******x"), "ms", NOOP_TARGET_MS),
    ("literal_memory", "literals_in_memory", literal_memory, "MB", rss_target(20), "server_rss_growth"),
    ("append_many", "unbounded_multiappend", append_many, "MB", rss_target(1), "server_rss_growth"),
    ("fetch_no_read", "fetch_whole", fetch_no_read, "MB", rss_target(5), "server_rss_growth"),
    ("section_memory", "sections_in_memory", section_memory, "MB", rss_target(5), "server_rss_growth"),
    ("search_nesting", "unbounded_nesting", search_nesting, "ms", NOOP_TARGET_MS),
    ("smtp_data_memory", "smtp_lines_in_memory", smtp_data_memory, "MB",
     SMTP_CONNECTION_BUDGET_MB + RSS_SLACK_MB, "server_rss_growth"),
    ("large_delivery", "stage_on_reactor", large_delivery, "ms", NOOP_TARGET_MS),
    ("login_guessing", "no_login_brakes", login_guessing, "/s", LOGIN_RATE_TARGET + 1e-9,
     "password_checks_per_s_one_ip"),
    ("connection_flood", "no_connection_caps", connection_flood, "", FLOOD_TARGET + 1,
     "smtp_connections_held_one_ip"),
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
        for name, patch, attack, unit, target, *metric in ATTACKS:
            if args.only and name not in args.only:
                continue
            before = run_server(tmp, name + "-before", patch, lambda port: attack(port, args.seconds))
            after = run_server(tmp, name + "-after", None, lambda port: attack(port, args.seconds))
            ok = after < target
            all_ok = all_ok and ok
            print(
                "attack=%s before=%.1f%s after=%.1f%s metric=%s target=<%g%s ok=%s"
                % (name, before, unit, after, unit, (metric or ["other_client_noop_p99"])[0], target, unit,
                   "yes" if ok else "no"),
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
