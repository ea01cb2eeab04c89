"""A JSON control API for a MailServer, on loopback, so tests in any language can drive it.

Modelled on GreenMail's REST API (readiness, reset, users, messages), plus what
push needs: the subscriptions the server holds, test subscriptions of the
loopback push service, the pushes it received (decrypted), chaos, and a
long-poll ``/api/events`` so a test waits for a push instead of polling.

Every answer is JSON; an error is ``{"error": "..."}`` with a 4xx status.
Routes (``ADDRESS`` is a user's address, URL-quoted):

GET    /api/service/readiness            ports and push origin once serving
POST   /api/service/reset                forget users, mail, subscriptions, pushes, events
GET    /api/users                        [{"address"}]
POST   /api/users                        {"address", "password"} -> 201
DELETE /api/users/ADDRESS
GET    /api/users/ADDRESS/messages?mailbox=INBOX      [{"uid", "flags", "size", "message"}]
POST   /api/users/ADDRESS/messages       {"message", "mailbox"?, "flags"?} -> {"uid"}
GET    /api/users/ADDRESS/subscriptions  WEBPUSH subscriptions the server holds
POST   /api/push/subscriptions           a new test subscription: endpoint, p256dh, auth, token
GET    /api/push/received?token=T        pushes received (plaintext decrypted)
GET    /api/push/chaos | PUT {"probability", "statuses", "retry_after", "delay", "drop", "seed"}
DELETE /api/push/chaos
GET    /api/events?since=N&timeout=S     events after N (waits up to S seconds for one)
"""

import json
from urllib.parse import unquote

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from imapwebpush.store.errors import InvalidMailboxName, MailboxNotFound
from imapwebpush.store.users import InvalidAddress, UnknownUser, UserExists
from imapwebpush.testing.chaos import Chaos

MAX_POLL = 60.0  # longest /api/events wait a request may ask for
MAX_REQUEST = 1 << 20  # a JSON request body, octets

log = Logger()


class ApiError(Exception):
    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.status = status


def _text(data):
    return data.decode("utf-8", "replace") if data is not None else None


def push_json(push):
    """One ReceivedPush as JSON."""
    return {
        "token": push.subscription.token if push.subscription is not None else None,
        "status": push.status,
        "plaintext": _text(push.plaintext),
        "headers": push.headers,
        "problems": list(push.problems),
        "vapid_key": push.vapid_key,
        "received_at": push.received_at,
    }


def event_json(event):
    out = {k: v for k, v in event.items() if k != "push"}
    if "push" in event:
        out["push"] = push_json(event["push"])
    return out


def subscription_json(sub, now):
    return {"id": sub.id, "endpoint": sub.endpoint, "state": sub.state,
            "silence": sub.silence_field(now), "vapid_key": sub.vapid_key}


class ControlResource(resource.Resource):
    """Routes ``/api/...`` to a started MailServer (Deferred mode, same reactor)."""

    isLeaf = True

    def __init__(self, mail_server):
        resource.Resource.__init__(self)
        self.server = mail_server
        self._tokens = {}  # token -> TestSubscription made through the API

    def render(self, request):
        d = defer.maybeDeferred(self._route, request)
        d.addCallbacks(lambda result: self._send(request, *result), lambda f: self._failed(request, f))
        return server.NOT_DONE_YET

    def _failed(self, request, failure):
        if failure.check(ApiError):
            self._send(request, failure.value.status, {"error": str(failure.value)})
        elif failure.check(UserExists):
            self._send(request, 409, {"error": "user exists: %s" % (failure.value,)})
        elif failure.check(UnknownUser, MailboxNotFound):
            self._send(request, 404, {"error": "not found: %s" % (failure.value,)})
        elif failure.check(InvalidAddress, InvalidMailboxName):
            self._send(request, 400, {"error": str(failure.value)})
        elif failure.check(KeyError, ValueError, TypeError):
            self._send(request, 400, {"error": "%s: %s" % (failure.type.__name__, failure.value)})
        else:
            log.failure("control API request failed", failure)
            self._send(request, 500, {"error": "internal error; see the server log"})

    def _send(self, request, status, body):
        if request.finished or request._disconnected:
            return
        data = json.dumps(body, indent=None).encode("utf-8") + b"\n"
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.write(data)
        request.finish()

    def _json(self, request):
        data = request.content.read(MAX_REQUEST + 1)
        if len(data) > MAX_REQUEST:
            raise ApiError(413, "request body over %d octets" % MAX_REQUEST)
        try:
            value = json.loads(data or b"{}")
        except ValueError as e:
            raise ApiError(400, "not JSON: %s" % (e,))
        if not isinstance(value, dict):
            raise ApiError(400, "the body must be a JSON object")
        return value

    def _arg(self, request, name, default=None):
        values = request.args.get(name.encode())
        return values[0].decode("utf-8") if values else default

    # -- routing ---------------------------------------------------------------------

    def _route(self, request):
        method = request.method.decode()
        parts = [unquote(p.decode("utf-8")) for p in request.path.split(b"/") if p]
        if parts[:1] != ["api"]:
            raise ApiError(404, "no such resource; the API is under /api/")
        parts = parts[1:]
        s = self.server
        if parts == ["service", "readiness"] and method == "GET":
            return 200, {"ready": True, "imap": s.imap_port, "smtp": s.smtp_port,
                         "submission": s.submission_port, "push_origin": s.push_service.origin,
                         "domains": s.components.domains}
        if parts == ["service", "reset"] and method == "POST":
            self._tokens.clear()
            return 200, {"reset": s.reset()}
        if parts == ["users"]:
            if method == "GET":
                return 200, [{"address": a} for a in s.components.users.users()]
            if method == "POST":
                body = self._json(request)
                return 201, {"address": s.add_user(body["address"], body["password"])}
        if len(parts) == 2 and parts[0] == "users" and method == "DELETE":
            if not s.components.users.exists(parts[1]):
                raise ApiError(404, "no such user: %s" % (parts[1],))
            s.delete_user(parts[1])
            return 200, {"deleted": parts[1]}
        if len(parts) == 3 and parts[0] == "users":
            return self._user(request, method, parts[1], parts[2])
        if parts == ["push", "subscriptions"] and method == "POST":
            sub = s.push_service.new_subscription()
            self._tokens[sub.token] = sub
            return 201, {"token": sub.token, "endpoint": sub.endpoint, "p256dh": sub.p256dh,
                         "auth": sub.auth}
        if parts == ["push", "received"] and method == "GET":
            token = self._arg(request, "token")
            return 200, [push_json(p) for p in s.push_service.pushes
                         if token is None or (p.subscription is not None
                                              and p.subscription.token == token)]
        if parts == ["push", "chaos"]:
            return self._chaos(request, method)
        if parts == ["events"] and method == "GET":
            since = int(self._arg(request, "since", "0"))
            timeout = min(float(self._arg(request, "timeout", "0")), MAX_POLL)
            d = s.wait_for_events(since, timeout)
            return d.addCallback(lambda events: (200, [event_json(e) for e in events]))
        raise ApiError(404, "no route for %s /api/%s" % (method, "/".join(parts)))

    def _user(self, request, method, address, what):
        s = self.server
        if not s.components.users.exists(address):
            raise ApiError(404, "no such user: %s" % (address,))
        if what == "messages" and method == "GET":
            mailbox = self._arg(request, "mailbox", "INBOX")
            box = s.components.mail_store.account(address.lower()).mailbox(mailbox)
            out = []
            for uid in box.uids():
                m = box.message(uid)
                out.append({"uid": uid, "flags": sorted(m.flags), "size": m.size,
                            "message": _text(m.read())})
            return 200, out
        if what == "messages" and method == "POST":
            body = self._json(request)
            uid = s.deliver(address, body["message"], body.get("mailbox", "INBOX"),
                            body.get("flags", ()))
            return 201, {"uid": uid}
        if what == "subscriptions" and method == "GET":
            now = s.reactor.seconds()
            return 200, [subscription_json(sub, now) for sub in s.subscriptions(address)]
        raise ApiError(404, "no route for %s /api/users/ADDRESS/%s" % (method, what))

    def _chaos(self, request, method):
        push = self.server.push_service
        if method == "PUT":
            body = self._json(request)
            allowed = {"probability", "statuses", "retry_after", "delay", "drop", "seed"}
            unknown = set(body) - allowed
            if unknown:
                raise ApiError(400, "unknown chaos settings: %s" % ", ".join(sorted(unknown)))
            try:
                push.chaos = Chaos(**body)
            except (TypeError, ValueError) as e:
                raise ApiError(400, str(e))
        elif method == "DELETE":
            push.chaos = None
        elif method != "GET":
            raise ApiError(405, "GET, PUT or DELETE")
        return 200, push.chaos.describe() if push.chaos is not None else None


def listen_control(mail_server, port=0, reactor=None):
    """Serve the control API of ``mail_server`` on 127.0.0.1:``port``; the listening port."""
    reactor = reactor or mail_server.reactor
    site = server.Site(ControlResource(mail_server))
    site.log = lambda request: None  # every poll would be a line
    return reactor.listenTCP(port, site, interface="127.0.0.1")
