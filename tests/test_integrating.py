"""docs/integrating.rst keeps its promises: its two short paths run, and so do the examples.

* the integrator path is taken out of the page and executed: a stock
  IMAP4Server built from exactly those lines pushes a new message, decrypted by
  the loopback PushService; examples/twisted_server.py holds the same lines and
  is run as a process, end to end;
* the client-testing path is examples/test_webpush_client.py, run with pytest
  and the imapwebpush plugin in a subprocess (so CI's trial run covers the plugin).

The page and the examples are read from next to tests/ (CI copies them there).
"""

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import textwrap

from twisted.application import service
from twisted.internet import defer, protocol, reactor, threads
from twisted.mail import imap4
from twisted.trial import unittest

from imapwebpush.testing import PushService
from imapwebpush.testing.memory_mailbox import MemoryMailbox
from tests.harness.connections import ConnectionTracker
from tests.harness.wire import connect_line_client
from tests.test_imap_twisted_bridge import ENVELOPE, MESSAGE, BridgeHarness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "integrating.rst")
EXAMPLES = os.path.join(ROOT, "examples")
SERVER_EXAMPLE = os.path.join(EXAMPLES, "twisted_server.py")
CLIENT_EXAMPLE = os.path.join(EXAMPLES, "test_webpush_client.py")
NEW_MAIL = b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS () ENVELOPE %s)\r\n' % ENVELOPE


def need_sources(testcase):
    for path in (DOC, SERVER_EXAMPLE, CLIENT_EXAMPLE):
        if not os.path.exists(path):
            raise unittest.SkipTest("%s is not next to tests/ (a copy of the tests alone)" % path)


def doc_block(name):
    """The code block that follows ``.. path: <name>`` in docs/integrating.rst, dedented."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^\.\. path: %s\n\n\.\. code-block:: python\n\n((?:    .*\n|\n)+)"
                  % re.escape(name), text, re.M)
    assert m, "no '.. path: %s' code block in %s" % (name, DOC)
    return textwrap.dedent(m.group(1)).strip("\n") + "\n"


def example_block(path, name):
    """The lines between ``# --- <name> (docs/integrating.rst) ---`` and ``# --- end ---``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"# --- %s \(docs/integrating\.rst\) ---\n(.*?)\n[ \t]*# --- end ---"
                  % re.escape(name), text, re.S)
    assert m, "no marked %s block in %s" % (name, path)
    return textwrap.dedent(m.group(1)).strip("\n") + "\n"


def code_lines(block):
    return [line for line in block.splitlines() if line.strip()]


class DocPaths(unittest.TestCase):

    def setUp(self):
        need_sources(self)

    def test_integrator_path_is_at_most_ten_lines(self):
        self.assertLessEqual(len(code_lines(doc_block("integrator"))), 10)

    def test_client_testing_path_is_at_most_ten_lines(self):
        self.assertLessEqual(len(code_lines(doc_block("client-testing"))), 10)

    def test_examples_hold_the_documented_lines(self):
        self.assertEqual(example_block(SERVER_EXAMPLE, "integrator path"),
                         doc_block("integrator"))
        self.assertEqual(example_block(CLIENT_EXAMPLE, "client-testing path"),
                         doc_block("client-testing"))


class IntegratorPathRuns(BridgeHarness):
    """The documented lines, executed as they stand, make a server that pushes new mail."""

    def setUp(self):
        need_sources(self)
        return BridgeHarness.setUp(self)

    def stack(self):
        names = {"DATA": self.mktemp(), "reactor": reactor, "application": service.MultiService(),
                 "MyMailbox": MemoryMailbox, "imap4": imap4, "TESTING": True}
        exec(compile(doc_block("integrator"), DOC, "exec"), names)
        self.assertIs(names["push"].parent, names["application"])
        return names["push"], names["Account"], names["IMAPServer"]

    @defer.inlineCallbacks
    def test_new_mail_is_pushed(self):
        phone = yield self.subscribe()
        lines = yield self.append(MESSAGE)
        self.assertEqual(lines[-1], b"p OK APPEND complete")
        plaintext = yield self.push(phone, 2)
        self.assertEqual(plaintext, NEW_MAIL)


class _ExampleProcess(protocol.ProcessProtocol):
    def __init__(self):
        self.output = b""
        self.errors = b""
        self.listening = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data
        m = re.search(rb"listening on (\d+)", self.output)
        if m and not self.listening.called:
            self.listening.callback(int(m.group(1)))

    def errReceived(self, data):
        self.errors += data

    def processEnded(self, reason):
        if not self.listening.called:
            self.listening.errback(AssertionError("the example ended: %r" % (self.errors[-2000:],)))
        self.ended.callback(reason.value.exitCode)


class ExampleServerEndToEnd(unittest.TestCase):
    """examples/twisted_server.py as a process: subscribe, acknowledge, APPEND, a decrypted push."""

    timeout = 60

    @defer.inlineCallbacks
    def test_example_server(self):
        need_sources(self)
        pushservice = PushService(reactor)
        yield pushservice.start()
        self.addCleanup(pushservice.stop)
        proc = _ExampleProcess()
        transport = reactor.spawnProcess(
            proc, sys.executable,
            [sys.executable, SERVER_EXAMPLE, "--data", os.path.abspath(self.mktemp()),
             "--port", "0", "--testing"], env=dict(os.environ))

        def kill():
            if not proc.ended.called:
                transport.signalProcess("KILL")
            return proc.ended

        self.addCleanup(kill)
        port = yield proc.listening
        tracker = ConnectionTracker()
        self.addCleanup(tracker.close)
        client = yield connect_line_client(tracker, port, user=b"alice")
        phone = pushservice.new_subscription()
        lines = yield client.command(b"w WEBPUSH phone-1 %s %s %s" % (
            phone.endpoint.encode(), phone.p256dh.encode(), phone.auth.encode()))
        self.assertEqual(lines[-1], b"w OK WEBPUSH completed")
        [verification] = yield pushservice.wait_for(1, phone)
        lines = yield client.command(b"k ACKWEBPUSH " + verification.plaintext.split()[2])
        self.assertEqual(lines[-1], b"k OK ACKWEBPUSH completed")
        client.sendLine(b"p APPEND INBOX () {%d}" % len(MESSAGE))
        yield client.continuation()
        client.transport.write(MESSAGE + b"\r\n")
        lines = yield client.expect(lambda line: line.startswith(b"p "))
        self.assertEqual(lines[-1], b"p OK APPEND complete")
        pushes = yield pushservice.wait_for(2, phone)
        self.assertEqual([p.problems for p in pushes], [[], []])
        self.assertEqual(pushes[1].plaintext, NEW_MAIL)
        yield client.command(b"z LOGOUT")
        transport.signalProcess(signal.SIGTERM)
        code = yield proc.ended
        self.assertEqual(code, 0, proc.errors[-2000:])


def run_pytest(args, cwd, autoload=False):
    """``python -m pytest args`` in a subprocess: (exit code, output)."""
    env = dict(os.environ)
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + args,
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL)
    return result.returncode, result.stdout + result.stderr


FAILING_TEST = '''
def test_no_push_comes(mail_server, push_service):
    phone = push_service.new_subscription()
    mail_server.wait_for_push(phone, timeout=0.3)
'''


class PytestPlugin(unittest.TestCase):
    """The pytest plugin's own tests: pytest in a subprocess, as a client developer runs it."""

    timeout = 120

    def setUp(self):
        need_sources(self)
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)

    @defer.inlineCallbacks
    def test_client_example_passes(self):
        code, output = yield threads.deferToThread(
            run_pytest, ["-p", "imapwebpush.testing.pytest_plugin", CLIENT_EXAMPLE], self.tmp)
        self.assertEqual(code, 0, output)
        self.assertIn("2 passed", output)

    @defer.inlineCallbacks
    def test_a_push_that_never_comes_fails_the_test(self):
        path = os.path.join(self.tmp, "test_never.py")
        with open(path, "w") as f:
            f.write(FAILING_TEST)
        code, output = yield threads.deferToThread(
            run_pytest, ["-p", "imapwebpush.testing.pytest_plugin", path], self.tmp)
        self.assertEqual(code, 1, output)
        self.assertIn("TimeoutError: no 1 push(es) within 0.3 s", output)
        self.assertIn("1 failed", output)

    @defer.inlineCallbacks
    def test_entry_point(self):
        """Installed imapwebpush registers the plugin: no -p needed (CI's install)."""
        points = [ep for ep in importlib.metadata.entry_points(group="pytest11")
                  if ep.value == "imapwebpush.testing.pytest_plugin"]
        if not points:
            setup_cfg = os.path.join(ROOT, "setup.cfg")
            if os.path.exists(setup_cfg):
                with open(setup_cfg) as f:
                    self.assertIn("pytest11 =\n    imapwebpush = imapwebpush.testing.pytest_plugin",
                                  f.read())
            raise unittest.SkipTest("this imapwebpush was installed before its pytest11 entry"
                                    " point existed; setup.cfg declares it")
        code, output = yield threads.deferToThread(
            run_pytest, [CLIENT_EXAMPLE], self.tmp, True)
        self.assertEqual(code, 0, output)
        self.assertIn("2 passed", output)
