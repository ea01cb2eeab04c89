"""A conformance runner for IMAP servers that speak WEBPUSH (SPEC.md).

``python -m imapwebpush.conformance --imap HOST:PORT --user U --password P``
logs in, subscribes with the local push service of ``imapwebpush.testing``,
and checks the commands, the verification, the payloads (shape and size), the
Web Push headers, and what the server does when the push service answers
404, 410, 413 and 429. It prints one PASS/FAIL/SKIP line per check.
"""

from imapwebpush.conformance.runner import FAIL, PASS, SKIP, run_checks

__all__ = ["run_checks", "PASS", "FAIL", "SKIP"]
