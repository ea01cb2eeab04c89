"""twistd plugin: ``twistd -n imapwebpush [options]`` runs the mail server.

Lives in Twisted's ``twisted.plugins`` namespace package (no ``__init__.py``
here or in ``twisted/``); the real code is in ``imapwebpush.tap``, imported
only when the plugin is used so ``twistd --help`` stays fast.
"""

from twisted.application.service import ServiceMaker

imapwebpush = ServiceMaker(
    "imapwebpush",
    "imapwebpush.tap",
    "Mail server (SMTP, Maildir, IMAP4) with the IMAP WEBPUSH extension",
    "imapwebpush",
)
