"""The trial helper for client tests: a started ``MailServer`` that stops with the test.

::

    from imapwebpush.testing.trial import start_mail_server

    class MyClientTests(unittest.TestCase):
        @defer.inlineCallbacks
        def test_new_mail_push(self):
            server = yield start_mail_server(self)
            ...
"""

from imapwebpush.testing.mailserver import MailServer


def start_mail_server(testcase, **kwargs):
    """Deferred[MailServer], started on the test's reactor; stopped by the test's cleanup."""
    server = MailServer(blocking=False, **kwargs)
    d = server.start()
    testcase.addCleanup(server.stop)
    return d
