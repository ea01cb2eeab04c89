"""pytest fixtures for testing mail clients: ``mail_server`` and ``push_service``.

Registered through the ``pytest11`` entry point (setup.cfg), so installing
imapwebpush is enough; or load it by hand with ``-p imapwebpush.testing.pytest_plugin``.
The tests are plain functions: the server's reactor runs in a thread of its own
and every call blocks (see ``imapwebpush.testing.mailserver``).
"""

import pytest

from imapwebpush.testing.mailserver import MailServer


@pytest.fixture
def mail_server():
    """A started MailServer (IMAP with WEBPUSH, SMTP, submission, push service); stopped after."""
    server = MailServer(blocking=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def push_service(mail_server):
    """The loopback push service of ``mail_server``: ``new_subscription()``, ``wait_for()``."""
    return mail_server.push_service
