"""--vapid-subject: a malformed contact stops the server, an unroutable one is a loud warning."""

from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage
from twisted.trial import unittest

from imapwebpush.tap import Options
from imapwebpush.webpush.assembly import WebPush
from imapwebpush.webpush.contact import check_subject, unroutable_reason


class CheckTests(unittest.TestCase):
    def test_accepted(self):
        for subject in ("mailto:postmaster@example.org", "mailto:ops+push@mail.example.net",
                        "https://example.org", "https://example.org:8443/push-contact",
                        "mailto:admin@192.0.2.1"):
            self.assertEqual(check_subject(subject), subject)

    def test_refused(self):
        for subject in ("mailto:<admin@example.org>", "mailto:admin @example.org",
                        "mailto:Admin Person admin@example.org", "mailto:admin", "mailto:",
                        "mailto:admin@exa_mple.org", "mailto:admin@example.org?subject=x",
                        "https://", "https://exa mple.org", "https://[::1]/",
                        "https://user@example.org/", "https://example.org/#x",
                        "https://example.org:99999/", "http://example.org", "admin@example.org",
                        "https://example.org/\u00e9", None):
            self.assertRaises(ValueError, check_subject, subject)

    def test_unroutable(self):
        for subject, expected in (
                ("mailto:postmaster@localhost", "localhost is not a domain name on the internet"
                                                " (no dot)"),
                ("mailto:a@mail.localhost", "mail.localhost is a name that does not resolve on"
                                            " the internet"),
                ("mailto:a@box.local", "box.local is a name that does not resolve on the"
                                       " internet"),
                ("mailto:a@example.org", "example.org is a documentation domain (RFC 2606)"),
                ("https://push.test/", "push.test is a name that does not resolve on the"
                                       " internet"),
                ("mailto:a@10.0.0.1", "10.0.0.1 is not a public IP address"),
                ("mailto:a@127.0.0.1", "127.0.0.1 is not a public IP address")):
            self.assertEqual(unroutable_reason(subject), expected)
        self.assertIsNone(unroutable_reason("mailto:postmaster@mail.imapwebpush.net"))
        self.assertIsNone(unroutable_reason("https://imapwebpush.net/contact"))


class StartupTests(unittest.TestCase):
    def parse(self, *argv):
        options = Options()
        options.parseOptions(["--data", self.mktemp()] + list(argv))
        return options

    def test_malformed_is_a_one_line_usage_error(self):
        e = self.assertRaises(usage.UsageError, self.parse, "--vapid-subject",
                              "mailto:<admin@example.org>")
        self.assertEqual(str(e), "--vapid-subject: the VAPID subject must be mailto:local@domain"
                                 " (one plain address, no spaces, brackets or display name),"
                                 " not 'mailto:<admin@example.org>'")

    def test_default_from_the_first_domain(self):
        self.assertEqual(self.parse("--domain", "mail.example.net")["vapid-subject"],
                         "mailto:postmaster@mail.example.net")

    def warnings(self, subject):
        seen = []

        def observer(event):
            if event.get("log_level") == LogLevel.warn and "VAPID" in event.get("log_format", ""):
                seen.append(event)
        globalLogPublisher.addObserver(observer)
        try:
            WebPush(self.mktemp(), subject=subject).store.close()
        finally:
            globalLogPublisher.removeObserver(observer)
        return seen

    def test_unroutable_is_a_loud_warning(self):
        [event] = self.warnings("mailto:postmaster@localhost")
        self.assertEqual(event["reason"], "localhost is not a domain name on the internet (no dot)")
        self.assertIn("CANNOT REACH ANYBODY", event["log_format"])

    def test_routable_is_quiet(self):
        self.assertEqual(self.warnings("mailto:postmaster@mail.imapwebpush.net"), [])

    def test_webpush_refuses_malformed(self):
        self.assertRaises(ValueError, WebPush, self.mktemp(), subject="mailto:a b@example.org")
