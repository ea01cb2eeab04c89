"""imapwebpush: a Twisted mail server that brings Web Push to IMAP (the WEBPUSH extension)."""

__version__ = "0.1.0"
