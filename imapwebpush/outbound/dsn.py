"""Delivery status notifications (RFC 3464): the bounce and the delay notice.

Why built by hand rather than with the email package: the report is a fixed
shape of CRLF text, and the exact bytes are what tests and mail clients read.
The third part carries the original headers only (text/rfc822-headers), so a
bounce of a 50 MB message stays small.
"""

import os
from datetime import datetime, timezone

FAILED = "failed"
DELAYED = "delayed"


def _date(when):
    return datetime.fromtimestamp(when, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")


def original_headers(data):
    """The header block of ``data`` (bytes), without the blank line."""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def _header_value(headers, name):
    prefix = name.lower() + b":"
    for line in headers.split(b"\r\n"):
        if line.lower().startswith(prefix):
            return line[len(prefix):].strip().decode("utf-8", "replace")
    return ""


def build_dsn(action, hostname, entry, recipients, original, now, retry_until=None):
    """The whole notification message (bytes, CRLF) for ``recipients`` of ``entry``.

    @param action: L{FAILED} (a bounce) or L{DELAYED} (still trying).
    @param recipients: the L{imapwebpush.outbound.queue.Recipient}s it reports on,
        with their last answer and remote host.
    @param original: the queued message (bytes); only its headers are quoted.
    @param retry_until: for L{DELAYED}, when the queue gives up (seconds).
    """
    boundary = "dsn-%s" % (os.urandom(8).hex(),)
    headers = original_headers(original)
    title, human = _human_part(action, hostname, recipients, _header_value(headers, b"subject"))
    status = _status_part(action, hostname, entry, recipients, now, retry_until)

    head = [
        "From: Mail Delivery System <MAILER-DAEMON@%s>" % (hostname,),
        "To: <%s>" % (entry.sender,),
        "Subject: %s" % (title,),
        "Date: %s" % (_date(now),),
        "Message-ID: <%s.%s@%s>" % (entry.id, os.urandom(4).hex(), hostname),
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="%s"' % (boundary,),
    ]
    parts = [
        "\r\n".join(head),
        "",
        "This is a MIME-encapsulated delivery status notification.",
        "",
        "--%s" % (boundary,),
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "\r\n".join(human),
        "",
        "--%s" % (boundary,),
        "Content-Type: message/delivery-status",
        "",
        "\r\n".join(status),
        "",
        "--%s" % (boundary,),
        "Content-Type: text/rfc822-headers",
        "",
    ]
    text = "\r\n".join(parts).encode("utf-8") + b"\r\n" + headers
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    return text + ("\r\n--%s--\r\n" % (boundary,)).encode("ascii")


def _human_part(action, hostname, recipients, subject):
    """The title and the lines of the part a person reads."""
    if action == FAILED:
        title = "Undelivered Mail Returned to Sender"
        human = [
            "This is the mail system at %s." % (hostname,),
            "",
            "Your message could not be delivered to the recipients below.",
            "It has been given up; the last answer for each follows.",
        ]
    else:
        title = "Delayed Mail (still being retried)"
        human = [
            "This is the mail system at %s." % (hostname,),
            "",
            "Your message has not been delivered yet to the recipients below.",
            "It is still being retried; you do not need to send it again.",
        ]
    human.append("")
    for r in recipients:
        human.append("<%s>: %s" % (r.address, r.answer or "no answer"))
    if subject:
        human.extend(["", "Subject of your message: %s" % (subject,)])
    return title, human


def _status_part(action, hostname, entry, recipients, now, retry_until):
    """The lines of the message/delivery-status part: per message, then per recipient."""
    status = [
        "Reporting-MTA: dns; %s" % (hostname,),
        "X-Queue-ID: %s" % (entry.id,),
        "Arrival-Date: %s" % (_date(entry.created),),
    ]
    for r in recipients:
        status.append("")
        status.append("Final-Recipient: rfc822; %s" % (r.address,))
        status.append("Action: %s" % (action,))
        status.append("Status: %s" % (r.status or ("5.0.0" if action == FAILED else "4.0.0"),))
        if r.remote:
            status.append("Remote-MTA: dns; %s" % (r.remote,))
        if r.answer and r.answer[:3].isdigit():
            status.append("Diagnostic-Code: smtp; %s" % (r.answer,))
        status.append("Last-Attempt-Date: %s" % (_date(now),))
        if retry_until is not None:
            status.append("Will-Retry-Until: %s" % (_date(retry_until),))
    return status
