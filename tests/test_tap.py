"""twistd options: defaults, one-line usage errors, and the shape of makeService."""

import os
import subprocess
import sys

from twisted.application import service
from twisted.python import usage
from twisted.trial import unittest

from imapwebpush import datadir, decisions, tap
from imapwebpush.connlimit import LimitedFactory
from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.smtp.server import ReceivingFactory, SubmissionFactory
from imapwebpush.webpush.policy import EndpointRefused
from imapwebpush.webpush.ratelimit import SavedBuckets
from imapwebpush.wildcard import DEFAULT_MAX_PATTERN_LENGTH

from tests.harness.tls import write_self_signed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OptionsTests(unittest.TestCase):
    def setUp(self):
        self.data = os.path.abspath(self.mktemp())

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(["--data", self.data] + list(argv))
        return options

    def usage_error(self, *argv):
        return str(self.assertRaises(usage.UsageError, self.parse, *argv))

    def test_defaults(self):
        o = self.parse()
        self.assertEqual(tap.Options()["data"], "imapwebpush-data")
        self.assertEqual(o["data"], self.data)
        self.assertTrue(os.path.isdir(self.data), "the data folder is created")
        self.assertEqual(o["imap"], "tcp:1143:interface=127.0.0.1")
        self.assertEqual(o["smtp"], "tcp:2525:interface=127.0.0.1")
        self.assertIsNone(o["submission"])
        self.assertEqual(sorted(o["endpoints"]), ["imap", "smtp"])
        self.assertEqual(o["domains"], ["localhost"])
        self.assertEqual(o["max-message-size"], 50 * 1024 * 1024)
        self.assertIsNone(o["tls"])
        self.assertFalse(o["allow-plaintext-auth"])
        self.assertEqual(o["vapid-subject"], "mailto:postmaster@localhost")
        self.assertFalse(o["insecure-push-endpoints"])
        self.assertEqual(o["max-subscriptions"], decisions.DEFAULT_MAX_SUBSCRIPTIONS)
        self.assertEqual(o["push-coalesce"], decisions.DEFAULT_COALESCE_WINDOW)

    def test_domains(self):
        o = self.parse("--domain", "Example.ORG", "--domain", "example.net.", "--domain", "example.org")
        self.assertEqual(o["domains"], ["example.org", "example.net"])
        self.assertEqual(o["vapid-subject"], "mailto:postmaster@example.org")
        self.assertIn("--domain: not a domain name", self.usage_error("--domain", "bad domain"))

    def test_web_push_options(self):
        o = self.parse(
            "--vapid-subject", "https://example.org/contact", "--insecure-push-endpoints",
            "--max-subscriptions", "5", "--push-coalesce", "0.5",
        )
        self.assertEqual(o["vapid-subject"], "https://example.org/contact")
        self.assertTrue(o["insecure-push-endpoints"])
        self.assertEqual((o["max-subscriptions"], o["push-coalesce"]), (5, 0.5))
        self.assertIn("--vapid-subject", self.usage_error("--vapid-subject", "postmaster"))
        self.assertIn("--max-subscriptions", self.usage_error("--max-subscriptions", "0"))
        self.assertIn("--push-coalesce", self.usage_error("--push-coalesce", "-1"))

    def test_max_pattern_length(self):
        self.assertEqual(self.parse()["max-pattern-length"], DEFAULT_MAX_PATTERN_LENGTH)
        o = self.parse("--max-pattern-length", "64")
        top = tap.makeService(o)
        self.assertEqual(top.components.webpush.service.max_pattern_length, 64)
        self.assertEqual(top.getServiceNamed("imap").factory.max_pattern_length, 64)
        self.assertEqual(
            self.usage_error("--max-pattern-length", "0"), "--max-pattern-length must be positive"
        )

    def test_max_append_messages(self):
        self.assertEqual(self.parse()["max-append-messages"], 1000)
        top = tap.makeService(self.parse("--max-append-messages", "7"))
        self.assertEqual(top.getServiceNamed("imap").factory.max_append_messages, 7)
        self.assertEqual(
            self.usage_error("--max-append-messages", "0"), "--max-append-messages must be positive"
        )

    def test_max_append_size(self):
        self.assertEqual(self.parse()["max-append-size"], 4 * 50 * 1024 * 1024)
        top = tap.makeService(self.parse("--max-append-size", "60000000"))
        self.assertEqual(top.getServiceNamed("imap").factory.max_append_size, 60000000)
        self.assertEqual(
            self.usage_error("--max-message-size", "1000", "--max-append-size", "999"),
            "--max-append-size must be at least --max-message-size",
        )

    def test_max_mime_parts(self):
        self.assertEqual(self.parse()["max-mime-parts"], 1000)
        top = tap.makeService(self.parse("--max-mime-parts", "9"))
        factory = top.getServiceNamed("imap").factory
        self.assertEqual(factory.max_mime_parts, 9)
        self.assertEqual(factory.buildProtocol(None).max_mime_parts, 9)
        self.assertEqual(self.usage_error("--max-mime-parts", "0"), "--max-mime-parts must be positive")

    def test_bad_endpoint(self):
        message = self.usage_error("--imap", "tcp:notaport")
        self.assertTrue(message.startswith("--imap: bad endpoint 'tcp:notaport': "), message)
        self.assertNotIn("\n", message)
        self.assertIn("--smtp: bad endpoint", self.usage_error("--smtp", "nosuchkind:25"))
        self.assertIn("--submission: bad endpoint", self.usage_error("--submission", "tcp:"))

    def test_disabled_endpoints(self):
        o = self.parse("--smtp", "none", "--submission", "tcp:0")
        self.assertEqual(sorted(o["endpoints"]), ["imap", "submission"])

    def test_bad_sizes(self):
        self.assertIn("--max-message-size", self.usage_error("--max-message-size", "0"))
        self.assertRaises(usage.UsageError, self.parse, "--max-message-size", "lots")

    def test_non_finite_seconds_refused(self):
        """nan or inf is no number of seconds: one line at startup, not a broken timer later."""
        for name in ("dns-timeout", "outbound-timeout", "queue-retry", "push-coalesce",
                     "login-max-delay", "login-refuse-for", "new-mail-per-hour"):
            for value in ("nan", "inf", "-inf"):
                message = self.usage_error("--" + name, value)
                self.assertIn("finite", message, (name, value))
        self.assertEqual(self.parse("--dns-timeout", "2.5")["dns-timeout"], 2.5)

    def test_relay_password_file_not_text_or_empty(self):
        """A password file that is not UTF-8 text, or whose first line is empty, stops the
        server with one line (not a traceback, not a relay login with an empty password)."""
        path = os.path.abspath(self.mktemp())
        relay = ("--relay-host", "relay.example.net:587", "--relay-user", "me",
                 "--relay-password-file", path)
        for content, says in ((b"\xff\xfesecret\n", "not UTF-8"), (b"\nsecret\n", "empty"),
                              (b"", "empty")):
            with open(path, "wb") as f:
                f.write(content)
            message = self.usage_error(*relay)
            self.assertTrue(message.startswith("--relay-password-file: "), message)
            self.assertIn(says, message)
        with open(path, "wb") as f:
            f.write("s\u00e9cret\r\n".encode("utf-8"))
        self.assertEqual(self.parse(*relay)["relay-password"], "s\u00e9cret")

    def test_broken_database_file(self):
        """A data folder's SQLite file that SQLite cannot read (a disk error, a file copied
        over it) stops the server with one line naming it, not a traceback."""
        os.makedirs(self.data)
        for name in ("webpush-rate.sqlite", "webpush-subscriptions.sqlite"):
            broken = os.path.join(self.data, name)
            with open(broken, "wb") as f:
                f.write(b"not a database" * 100)
            message = self.usage_error()
            self.assertTrue(message.startswith("--data: %s: " % (broken,)), message)
            self.assertNotIn("\n", message)
            os.unlink(broken)
        SavedBuckets(os.path.join(self.data, "webpush-rate.sqlite")).close()
        self.parse()  # a good one passes

    def test_data_folder_parent_missing(self):
        self.data = os.path.join(self.data, "no", "such")
        message = self.usage_error()
        self.assertTrue(message.startswith("--data: cannot create data folder "), message)
        self.assertNotIn("\n", message)

    def test_data_folder_is_a_file(self):
        with open(self.data, "w") as f:
            f.write("x")
        self.assertEqual(
            self.usage_error(), "--data: data folder %s exists and is not a folder" % (self.data,)
        )

    def test_unwritable_data_folder(self):
        os.mkdir(self.data)

        def refuse(*args, **kw):
            raise PermissionError(13, "Permission denied")

        self.patch(datadir.tempfile, "mkstemp", refuse)
        self.assertEqual(
            self.usage_error(), "--data: data folder %s is not usable: Permission denied" % (self.data,)
        )

    def test_broken_users_file(self):
        os.mkdir(self.data)
        with open(datadir.users(self.data), "w") as f:
            f.write('{"users": [')
        message = self.usage_error()
        self.assertTrue(
            message.startswith("--data: cannot parse %s: " % (datadir.users(self.data),)),
            message,
        )
        self.assertNotIn("\n", message)

    def test_tls(self):
        folder = self.mktemp()
        os.mkdir(folder)
        cert, key = write_self_signed(folder)
        o = self.parse("--tls-cert", cert, "--tls-key", key)
        self.assertIsNotNone(o["tls"].getContext())
        # One file holding both.
        both = os.path.join(folder, "both.pem")
        with open(both, "wb") as f:
            f.write(open(cert, "rb").read() + open(key, "rb").read())
        self.assertIsNotNone(self.parse("--tls-cert", both)["tls"])

    def test_tls_errors(self):
        folder = os.path.abspath(self.mktemp())
        os.mkdir(folder)
        cert, key = write_self_signed(folder)
        missing = os.path.join(folder, "missing.pem")
        self.assertEqual(
            self.usage_error("--tls-cert", missing, "--tls-key", key),
            "--tls-cert: cannot read certificate %s: No such file or directory" % (missing,),
        )
        self.assertEqual(
            self.usage_error("--tls-cert", cert, "--tls-key", missing),
            "--tls-cert: cannot read key %s: No such file or directory" % (missing,),
        )
        self.assertIn("--tls-key needs --tls-cert", self.usage_error("--tls-key", key))
        other = os.path.join(folder, "other")
        os.mkdir(other)
        _, other_key = write_self_signed(other)
        message = self.usage_error("--tls-cert", cert, "--tls-key", other_key)
        self.assertTrue(message.startswith("--tls-cert: cannot use certificate "), message)
        self.assertIn("--tls-cert: no PEM certificate in", self.usage_error("--tls-cert", key, "--tls-key", key))


class MakeServiceTests(unittest.TestCase):
    def test_named_children(self):
        data = os.path.abspath(self.mktemp())
        options = tap.Options()
        options.parseOptions(["--data", data, "--submission", "tcp:0:interface=127.0.0.1"])
        top = tap.makeService(options)
        self.assertIsInstance(top, service.MultiService)
        self.assertEqual(
            sorted(child.name for child in top),
            ["imap", "outbound", "smtp", "submission", "webpush"],
        )
        self.assertEqual([child.name for child in top.getServiceNamed("webpush")],
                         ["push-delivery", "subscriptions", "push-dispatcher"])
        # Each listener's factory is wrapped in its connection limits.
        factories = {name: top.getServiceNamed(name).factory for name in ("imap", "smtp", "submission")}
        for name, factory in factories.items():
            self.assertIsInstance(factory, LimitedFactory)
            self.assertEqual((factory.name, factory.counter.max_total, factory.counter.max_per_peer),
                             (name, 256, 20))
        self.assertIsInstance(factories["imap"].wrapped, IMAPFactory)
        self.assertIsInstance(factories["smtp"].wrapped, ReceivingFactory)
        self.assertIsInstance(factories["submission"].wrapped, SubmissionFactory)
        self.assertIsNot(factories["smtp"].counter, factories["submission"].counter)
        c = top.components
        self.assertEqual(c.data_dir, data)
        self.assertIs(factories["smtp"].wrapped.users, c.users)
        self.assertIs(factories["imap"].wrapped.portal, c.portal)

    def test_push_host_allowlist(self):
        """--push-host limits WEBPUSH endpoints to those push services."""
        options = tap.Options()
        options.parseOptions(["--data", os.path.abspath(self.mktemp()),
                              "--push-host", "push.example.net", "--push-host", "*.Push.Example.ORG."])
        self.assertEqual(options["push-hosts"], ["push.example.net", "*.push.example.org"])
        policy = tap.makeService(options).components.webpush.policy
        policy.check_url("https://push.example.net/x")
        policy.check_url("https://fcm.push.example.org/x")
        self.assertRaises(EndpointRefused, policy.check_url, "https://elsewhere.example/x")
        self.assertRaises(usage.UsageError, tap.Options().parseOptions,
                          ["--data", os.path.abspath(self.mktemp()), "--push-host", "not a host"])

    def test_no_allowlist_by_default(self):
        options = tap.Options()
        options.parseOptions(["--data", os.path.abspath(self.mktemp())])
        tap.makeService(options).components.webpush.policy.check_url("https://elsewhere.example/x")

    def test_extra_services_start_first(self):
        """Services put in components.services start before the listeners."""
        built = tap.build_components

        def build(options, reactor=None):
            c = built(options, reactor)
            c.services.append(("background", service.Service()))
            return c

        self.patch(tap, "build_components", build)
        options = tap.Options()
        options.parseOptions(["--data", os.path.abspath(self.mktemp())])
        top = tap.makeService(options)
        self.assertEqual(
            [child.name for child in top],
            ["webpush", "outbound", "background", "imap", "smtp"],
        )

    def test_plugin(self):
        """twistd finds the plugin and lists the options, with the repo on sys.path."""
        env = dict(os.environ, PYTHONPATH=REPO)
        p = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "imapwebpush", "--help"],
            capture_output=True, text=True, cwd=REPO, env=env,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(p.returncode, 0, p.stderr)
        for option in ["--data", "--imap", "--smtp", "--submission", "--domain", "--max-message-size",
                       "--tls-cert", "--tls-key", "--allow-plaintext-auth", "--vapid-subject",
                       "--insecure-push-endpoints", "--max-subscriptions", "--push-coalesce"]:
            self.assertIn(option, p.stdout)

    def test_plugin_usage_error(self):
        env = dict(os.environ, PYTHONPATH=REPO)
        p = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "imapwebpush", "--imap", "tcp:notaport"],
            capture_output=True, text=True, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
        )
        self.assertEqual(p.returncode, 1)
        output = p.stdout + p.stderr
        self.assertIn("--imap: bad endpoint 'tcp:notaport'", output)
        self.assertNotIn("Traceback", output)
