"""The SPEC checks, in the order a client meets them; each one a function of the session.

A check returns a Deferred that fires with a short detail on success or fails
with L{CheckFailed} and the reason. ``needs`` names facts that earlier checks
establish (``gives``); a check whose needs are missing is skipped, not failed.
"""

import base64
import re
import secrets

from twisted.internet import defer, task

from imapwebpush.conformance.client import connect, quoted
from imapwebpush.testing.pushservice import Answer

MAX_PLAINTEXT = 3993  # SPEC 5.2
MAX_BODY = 4096
TOKEN_RE = re.compile(rb"\A\* ACKWEBPUSH ([A-Za-z0-9_-]+={0,2})\r\n\Z")
# an RFC 8970 PREVIEW item may follow the ENVELOPE
NEW_MAIL_RE = re.compile(rb'\A\* SELECT "INBOX"\r\n\* (\d+) UIDFETCH \(FLAGS \([^)]*\) ENVELOPE \(.*\)'
                         rb'( PREVIEW (?:"(?:[^"\\]|\\.)*"|NIL))?\)\r\n\Z', re.S)
MESSAGE = (b"From: Conformance <conformance@example.org>\r\nTo: you@example.org\r\n"
           b"Subject: imapwebpush conformance %s\r\nMessage-ID: <%s@conformance.invalid>\r\n"
           b"\r\nThis message was added by the WEBPUSH conformance runner.\r\n")


class CheckFailed(Exception):
    pass


def require(condition, reason, *args):
    if not condition:
        raise CheckFailed(reason % args if args else reason)


def b64url_decode(text):
    if isinstance(text, bytes):
        text = text.decode("ascii")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Check:
    def __init__(self, name, section, run, needs=(), gives=()):
        self.name = name
        self.section = section
        self.run = run
        self.needs = frozenset(needs)
        self.gives = frozenset(gives)


CHECKS = []


def check(name, section, needs=(), gives=()):
    def register(f):
        CHECKS.append(Check(name, section, f, needs, gives))
        return f
    return register


# -- helpers on the session -------------------------------------------------------------

def subscribe_line(sid, sub):
    return b"WEBPUSH %s %s %s %s" % (sid.encode(), sub.endpoint.encode(), sub.p256dh.encode(),
                                      sub.auth.encode())


def expect_push(s, sub, action):
    """Run ``action()``; fire with the next push to ``sub`` (a ReceivedPush)."""
    n = len(s.push.received(sub)) + 1
    d = defer.maybeDeferred(action)
    d.addCallback(lambda _: s.wait_push(sub, n))
    return d


@defer.inlineCallbacks
def append(s, subject=None):
    tag = secrets.token_hex(6).encode()
    message = MESSAGE % (subject or tag, tag)
    answer = yield s.client.command(b"APPEND INBOX ()", literal=message)
    require(answer.status == b"OK", "APPEND INBOX answered %r", answer)


def wait(s, seconds):
    return task.deferLater(s.reactor, seconds, lambda: None)


@defer.inlineCallbacks
def activate(s, sid, sub):
    """WEBPUSH, verification push, ACKWEBPUSH: an active subscription."""
    push = yield expect_push(s, sub, lambda: s.client.command(subscribe_line(sid, sub)))
    m = TOKEN_RE.match(push.plaintext or b"")
    require(m, "no verification push for %s: %r", sid, push.plaintext)
    answer = yield s.client.command(b"ACKWEBPUSH " + m.group(1))
    require(answer.status == b"OK", "ACKWEBPUSH for %s answered %r", sid, answer)


def listed(answer, sid):
    return [line for line in answer.named(b"WEBPUSH") if line.split(b" ")[0] == sid.encode()]


# -- the checks -----------------------------------------------------------------------

@check("capability", "2", gives=["login"])
@defer.inlineCallbacks
def capability(s):
    answer = yield s.client.command(b"CAPABILITY")
    before = b" ".join(answer.named(b"CAPABILITY")).upper().split()
    require(b"WEBPUSH" not in before, "WEBPUSH is advertised before authentication")
    answer = yield s.client.command(b"LOGIN %s %s" % (quoted(s.user), quoted(s.password)))
    require(answer.status == b"OK", "LOGIN failed: %r", answer)
    answer = yield s.client.command(b"CAPABILITY")
    after = b" ".join(answer.named(b"CAPABILITY")).upper().split()
    require(b"WEBPUSH" in after, "WEBPUSH is not advertised after LOGIN: %r", answer)
    return "advertised after LOGIN only"


@check("commands-need-login", "3")
@defer.inlineCallbacks
def commands_need_login(s):
    client = yield connect(s.reactor, s.host, s.port, s.tls, s.timeout)
    try:
        for command in (b"GETVAPID", b"LWEBPUSH *"):
            answer = yield client.command(command)
            require(answer.status == b"BAD", "%s before LOGIN answered %r, not BAD",
                    command.decode(), answer)
    finally:
        client.transport.loseConnection()
    return "BAD before LOGIN"


@check("getvapid", "3.1", needs=["login"], gives=["vapid"])
@defer.inlineCallbacks
def getvapid(s):
    answer = yield s.client.command(b"GETVAPID")
    require(answer.status == b"OK", "GETVAPID answered %r", answer)
    keys = answer.named(b"VAPID")
    require(len(keys) == 1, "expected one * VAPID line, got %r", answer)
    point = b64url_decode(keys[0])
    require(len(point) == 65 and point[:1] == b"\x04",
            "the VAPID key is not an uncompressed P-256 point: %r", keys[0])
    s.vapid_key = keys[0].decode("ascii")
    return "key %s..." % s.vapid_key[:12]


@check("bad-arguments", "3", needs=["login"])
@defer.inlineCallbacks
def bad_arguments(s):
    sub = s.push.new_subscription()
    for command in (b"WEBPUSH conformance-bad",
                    b"WEBPUSH conformance-bad %s not-a-key %s" % (sub.endpoint.encode(),
                                                                  sub.auth.encode()),
                    b"WEBPUSH conformance-bad %s %s AAAA" % (sub.endpoint.encode(),
                                                             sub.p256dh.encode()),
                    b"SILWEBPUSH conformance-bad soon"):
        answer = yield s.client.command(command)
        require(answer.status == b"BAD", "%r answered %r, not BAD", command, answer)
    answer = yield s.client.command(b"LWEBPUSH conformance-bad")
    require(not answer.named(b"WEBPUSH"), "a BAD WEBPUSH created a subscription: %r", answer)
    return "BAD for missing and ill-formed arguments, nothing created"


@check("webpush-create", "3.2", needs=["vapid"], gives=["pending"])
@defer.inlineCallbacks
def webpush_create(s):
    s.phone = s.push.new_subscription()
    n = len(s.push.received(s.phone))
    answer = yield s.client.command(subscribe_line(s.sid, s.phone))
    require(answer.status == b"OK", "WEBPUSH answered %r", answer)
    require(answer.named(b"VAPID") == [s.vapid_key.encode()],
            "expected exactly one * VAPID with the GETVAPID key: %r", answer)
    expected = b"%s %s NIL" % (s.sid.encode(), s.phone.endpoint.encode())
    require(answer.named(b"WEBPUSH") == [expected], "expected exactly * WEBPUSH %r: %r",
            expected, answer)
    s.verification = s.wait_push(s.phone, n + 1)
    return "pending, * VAPID and * WEBPUSH once each"


@check("verification-push", "4, 6", needs=["pending"], gives=["token"])
@defer.inlineCallbacks
def verification_push(s):
    push = yield s.verification
    require(push.ok, "the push service found problems: %s", "; ".join(push.problems))
    m = TOKEN_RE.match(push.plaintext or b"")
    require(m, "the verification payload is not '* ACKWEBPUSH <token>': %r", push.plaintext)
    require(len(b64url_decode(m.group(1))) >= 16, "the token has less than 128 bits")
    h = push.headers
    require(h.get("ttl") == "600", "TTL is %r, not 600", h.get("ttl"))
    require(h.get("urgency") == "high", "Urgency is %r, not high", h.get("urgency"))
    require(push.vapid_key == s.vapid_key, "signed with %s, not the current key", push.vapid_key)
    s.token = m.group(1)
    return "token of %d bits, TTL 600, Urgency high, VAPID ok" % (len(b64url_decode(s.token)) * 8)


@check("ackwebpush", "3.3", needs=["token"], gives=["active"])
@defer.inlineCallbacks
def ackwebpush(s):
    wrong = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=")
    answer = yield s.client.command(b"ACKWEBPUSH " + wrong)
    require(answer.status == b"NO", "a wrong token answered %r, not NO", answer)
    answer = yield s.client.command(b"ACKWEBPUSH " + s.token)
    require(answer.status == b"OK", "the right token answered %r", answer)
    expected = b"%s %s NIL" % (s.sid.encode(), s.phone.endpoint.encode())
    require(answer.named(b"WEBPUSH") == [expected], "expected * WEBPUSH %r: %r", expected, answer)
    answer = yield s.client.command(b"ACKWEBPUSH " + s.token)
    require(answer.status == b"NO", "a spent token answered %r, not NO", answer)
    return "wrong NO, right OK, reused NO"


@check("lwebpush", "3.4", needs=["active"])
@defer.inlineCallbacks
def lwebpush(s):
    answer = yield s.client.command(b"LWEBPUSH *")
    require(answer.status == b"OK" and listed(answer, s.sid), "LWEBPUSH * answered %r", answer)
    answer = yield s.client.command(b"LWEBPUSH no-such-id-%")
    require(answer.status == b"OK" and not answer.named(b"WEBPUSH"),
            "LWEBPUSH no-such-id-%% answered %r", answer)
    return "listed; a pattern that matches nothing lists nothing"


@check("new-mail-push", "5.1, 6", needs=["active"], gives=["uid"])
@defer.inlineCallbacks
def new_mail_push(s):
    push = yield expect_push(s, s.phone, lambda: append(s))
    require(push.ok, "problems: %s", "; ".join(push.problems))
    m = NEW_MAIL_RE.match(push.plaintext or b"")
    require(m, "not '* SELECT \"INBOX\"' + '* uid UIDFETCH (FLAGS (...) ENVELOPE (...)"
               " [PREVIEW ...])': %r",
            push.plaintext)
    h = push.headers
    require(h.get("urgency") == "high", "Urgency is %r, not high", h.get("urgency"))
    require(h.get("ttl") == "86400", "TTL is %r, not 86400", h.get("ttl"))
    require("topic" not in h, "a new-mail push has a Topic (%r)", h.get("topic"))
    s.uid = int(m.group(1))
    s.appended.append(s.uid)
    return "UID %d with ENVELOPE, Urgency high, TTL 86400, no Topic" % s.uid


@check("flags-push", "5.1, 6", needs=["uid"])
@defer.inlineCallbacks
def flags_push(s):
    answer = yield s.client.command(b"SELECT INBOX")
    require(answer.status == b"OK", "SELECT INBOX answered %r", answer)
    push = yield expect_push(s, s.phone, lambda: s.client.command(
        b"UID STORE %d +FLAGS (\\Flagged)" % s.uid))
    text = push.plaintext or b""
    m = re.match(rb'\A\* SELECT "INBOX"\r\n\* %d UIDFETCH \(FLAGS \(([^)]*)\)\)\r\n\Z' % s.uid, text)
    require(m and b"\\Flagged" in m.group(1).split(), "not the flag update of UID %d: %r",
            s.uid, text)
    h = push.headers
    require(h.get("urgency") == "low", "Urgency is %r, not low", h.get("urgency"))
    require(h.get("topic"), "a flag push without a Topic")
    return "FLAGS update, Urgency low, Topic %s" % h["topic"]


@check("expunge-push", "5.1", needs=["uid"])
@defer.inlineCallbacks
def expunge_push(s):
    answer = yield s.client.command(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % s.uid)
    require(answer.status == b"OK", "UID STORE answered %r", answer)

    def expunge():
        return s.client.command(b"UID EXPUNGE %d" % s.uid if s.uidplus else b"EXPUNGE")

    pushes = s.push.received(s.phone)
    yield expunge()
    for _ in range(2):  # the \Deleted flag push may come first
        push = yield s.wait_push(s.phone, len(pushes) + 1)
        pushes = s.push.received(s.phone)
        if b"VANISHED" in (push.plaintext or b""):
            break
    text = push.plaintext or b""
    require(re.search(rb'\A\* SELECT "INBOX"\r\n(.*\r\n)?\* VANISHED [0-9:,]*\b%d\b' % s.uid,
                      text, re.S), "no * VANISHED for UID %d: %r", s.uid, text)
    s.appended.remove(s.uid)
    return "VANISHED %d" % s.uid


@check("mailbox-push", "5.1", needs=["active"])
@defer.inlineCallbacks
def mailbox_push(s):
    name = "conformance-%s" % secrets.token_hex(4)
    push = yield expect_push(s, s.phone, lambda: s.client.command(b"CREATE " + quoted(name)))
    text = push.plaintext or b""
    require(re.match(rb'\A\* LIST \([^)]*\) (NIL|"[^"]*") "%s"\r\n' % name.encode(), text),
            "not a * LIST for the new mailbox: %r", text)
    push = yield expect_push(s, s.phone, lambda: s.client.command(b"DELETE " + quoted(name)))
    text = push.plaintext or b""
    require(re.match(rb'\A\* LIST \([^)]*\\NonExistent[^)]*\) (NIL|"[^"]*") "%s"\r\n'
                     % name.encode(), text), "not a \\NonExistent * LIST: %r", text)
    return "* LIST on CREATE, \\NonExistent on DELETE"


@check("silence", "3.5", needs=["active"])
@defer.inlineCallbacks
def silence(s):
    answer = yield s.client.command(b"SILWEBPUSH %s 600" % s.sid.encode())
    lines = listed(answer, s.sid)
    require(answer.status == b"OK" and lines, "SILWEBPUSH answered %r", answer)
    left = lines[0].rsplit(b" ", 1)[1]
    require(left.isdigit() and 0 < int(left) <= 600, "seconds left is %r", left)
    before = len(s.push.received(s.phone))
    yield append(s)
    yield wait(s, s.quiet)
    require(len(s.push.received(s.phone)) == before, "a silenced subscription got a push")
    push = yield expect_push(s, s.phone, lambda: s.client.command(
        b"SILWEBPUSH %s 0" % s.sid.encode()))
    require(push.plaintext == b'* SELECT "INBOX"\r\n',
            "the end of the silence did not send the generic sync: %r", push.plaintext)
    return "nothing while silenced, a generic sync after"


@check("payload-size", "5.2, 5.4", needs=["active"])
@defer.inlineCallbacks
def payload_size(s):
    subject = ("Ünïcödé " * 1000).encode("utf-8")
    push = yield expect_push(s, s.phone, lambda: append(s, subject))
    text = push.plaintext or b""
    require(push.ok, "problems: %s", "; ".join(push.problems))
    require(len(text) <= MAX_PLAINTEXT, "plaintext of %d octets", len(text))
    require(len(push.body) <= MAX_BODY, "body of %d octets", len(push.body))
    text.decode("utf-8")  # raises (fails the check) when a UTF-8 sequence was cut
    require(text.startswith(b'* SELECT "INBOX"\r\n') and text.endswith(b"\r\n"),
            "not whole responses: %r", text[:80])
    return "%d octets of plaintext, valid UTF-8" % len(text)


@check("answer-413", "6.1, 5.4", needs=["active"])
@defer.inlineCallbacks
def answer_413(s):
    s.phone.respond(Answer(413))
    first = yield expect_push(s, s.phone, lambda: append(s, ("Größe " * 200).encode("utf-8")))
    require(first.status == 413, "the scripted 413 was not used")
    second = yield s.wait_push(s.phone, s.push.received(s.phone).index(first) + 2)
    require(len(second.body) < len(first.body) and second.plaintext != first.plaintext,
            "after 413 the same or a bigger body came again (%d then %d octets)",
            len(first.body), len(second.body))
    return "resent smaller (%d -> %d octets)" % (len(first.body), len(second.body))


@check("answer-429", "6.1", needs=["active"])
@defer.inlineCallbacks
def answer_429(s):
    s.phone.respond(Answer.retry_after("2"))
    first = yield expect_push(s, s.phone, lambda: append(s))
    require(first.status == 429, "the scripted 429 was not used")
    second = yield s.wait_push(s.phone, s.push.received(s.phone).index(first) + 2)
    waited = second.received_at - first.received_at
    require(waited >= 1.9, "retried after %.2f s, before Retry-After: 2", waited)
    require(second.plaintext == first.plaintext, "the retry carried another payload")
    return "retried after %.1f s" % waited


def _gone(status):
    @defer.inlineCallbacks
    def run(s):
        sid = "conformance-%d-%s" % (status, secrets.token_hex(3))
        sub = s.push.new_subscription()
        yield activate(s, sid, sub)
        sub.respond(Answer.gone(status))
        push = yield expect_push(s, sub, lambda: append(s))
        require(push.status == status, "the scripted %d was not used", status)
        for _ in range(int(s.timeout / 0.1)):
            answer = yield s.client.command(b"LWEBPUSH " + sid.encode())
            if not listed(answer, sid):
                return "subscription deleted after %d" % status
            yield wait(s, 0.1)
        raise CheckFailed("the subscription is still listed %g s after %d" % (s.timeout, status))
    return run


check("answer-410", "6.1", needs=["active"])(_gone(410))
check("answer-404", "6.1", needs=["active"])(_gone(404))


@check("webpush-delete", "3.2", needs=["active"])
@defer.inlineCallbacks
def webpush_delete(s):
    for _ in range(2):  # deleting is idempotent
        answer = yield s.client.command(b"WEBPUSH %s NIL" % s.sid.encode())
        require(answer.status == b"OK", "WEBPUSH id NIL answered %r", answer)
    answer = yield s.client.command(b"LWEBPUSH *")
    require(not listed(answer, s.sid), "still listed after delete: %r", answer)
    return "deleted; deleting again is OK"
