"""imapwebpush: a Twisted mail server that brings Web Push to IMAP (the WEBPUSH extension).

``imapwebpush.WebPush`` is the Web Push side of any Twisted IMAP server in one
service (see docs/integrating.rst); it is imported on first use, so that
``import imapwebpush`` stays cheap.
"""

__version__ = "0.1.0"

__all__ = ["WebPush", "__version__"]


def __getattr__(name):
    if name == "WebPush":
        from imapwebpush.webpush.assembly import WebPush

        return WebPush
    raise AttributeError("module 'imapwebpush' has no attribute %r" % (name,))
