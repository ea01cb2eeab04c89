"""The server-wide WEBPUSH service: what every IMAP session's WEBPUSH commands talk to.

It holds the subscription store, the VAPID keyring, the push sender, the
endpoint policy, the clock and the limits; issues ACK tokens and sends the
verification push (SPEC 3.3, 4); applies what push services answer
(L{IPushOutcomeObserver}, SPEC 6.1); and prunes stale subscriptions on a
L{LoopingCall} driven by the injected clock.

Errors meant for the client are L{ClientError}s carrying the IMAP answer
(BAD or NO) and a sentence; the command handlers only format them.
"""

import collections
import secrets
from urllib.parse import urlsplit

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush import datadir, decisions
from imapwebpush.constants import INBOX
from imapwebpush.interfaces import IPushOutcomeObserver, IWebPushService
from imapwebpush.webpush import crypto, model
from imapwebpush.webpush.delivery import PushDeliveryService
from imapwebpush.webpush.http import make_http_client
from imapwebpush.webpush.payload import select_line
from imapwebpush.webpush.policy import EndpointPolicy, has_space_or_control
from imapwebpush.webpush.subscriptions import (
    HOURLY_WINDOW, SQLiteSubscriptionStore, SubscriptionLimitReached, token_hash)
from imapwebpush.webpush.vapid import VapidKeyring
from imapwebpush.wildcard import DEFAULT_MAX_PATTERN_LENGTH, PatternTooLong, compile_pattern

# How often the store is swept for stale subscriptions and tokens (not a SPEC number:
# it only bounds how late a 24 h / 7 day deadline is applied).
PRUNE_INTERVAL = 300

# The payload of a push sent by the admin `subscriptions test` command: a generic
# sync of INBOX (SPEC 5.4), harmless for any client.
TEST_PUSH_PAYLOAD = select_line(INBOX)


class ClientError(Exception):
    """An IMAP client's WEBPUSH command failed: ``answer`` is b"BAD" or b"NO", ``code`` an optional response code."""

    answer = b"NO"

    def __init__(self, message, code=None):
        Exception.__init__(self, message)
        self.message = message
        self.code = code


class BadArguments(ClientError):
    """Missing, extra or ill-formed arguments: tagged BAD, nothing changed."""

    answer = b"BAD"


class Refused(ClientError):
    """The server will not do it (limit, policy, rate limit, wrong token): tagged NO."""

    answer = b"NO"


# ---------------------------------------------------------------------------
# argument checks (SPEC 3.2)
# ---------------------------------------------------------------------------


def check_id(subscription_id):
    """The subscription id as str, or BadArguments."""
    if not decisions.SUBSCRIPTION_ID_RE.match(subscription_id):
        raise BadArguments(
            "subscription id must be 1 to 64 characters of A-Z a-z 0-9 . _ -")
    return subscription_id


def check_endpoint(endpoint):
    """Syntax of an endpoint: absolute http(s) URL, no userinfo/fragment, at most 1024 octets.

    Whether ``http`` or a private host is acceptable is the endpoint policy's
    call (a NO), not a syntax question (a BAD).
    """
    raw = endpoint.encode("utf-8", "surrogateescape")
    if len(raw) > decisions.MAX_ENDPOINT_OCTETS:
        raise BadArguments("endpoint is longer than %d octets" % decisions.MAX_ENDPOINT_OCTETS)
    if not endpoint.isascii() or has_space_or_control(endpoint):
        raise BadArguments("endpoint must be a URL of printable ASCII without spaces")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        raise BadArguments("endpoint is not a valid URL: %s" % (e,))
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise BadArguments("endpoint must be an absolute https URL")
    if "@" in parts.netloc:
        raise BadArguments("endpoint must not contain userinfo")
    if "#" in endpoint:
        raise BadArguments("endpoint must not contain a fragment")
    return endpoint


def parse_p256dh(text):
    """The 65-byte uncompressed P-256 point, checked to lie on the curve; BadArguments if not."""
    try:
        return crypto.parse_p256dh(text)
    except ValueError as e:
        raise BadArguments(str(e))


def parse_auth(text):
    """The 16-byte auth secret; BadArguments if not."""
    try:
        return crypto.parse_auth(text)
    except ValueError as e:
        raise BadArguments(str(e))


def pattern_matcher(pattern, max_length=DEFAULT_MAX_PATTERN_LENGTH):
    """LWEBPUSH: ``*`` and ``%`` both match any run of characters; the rest literally.

    Linear time whatever the pattern (L{imapwebpush.wildcard}); a pattern longer
    than ``max_length`` is a NO [LIMIT].
    """
    try:
        return compile_pattern(pattern, delimiter=None, max_length=max_length).match
    except PatternTooLong as e:
        raise Refused(str(e), code=b"LIMIT")


def new_token():
    """An ACK token: TOKEN_BYTES from the OS CSPRNG, base64url without padding."""
    return crypto.b64url_encode(secrets.token_bytes(decisions.TOKEN_BYTES))


class _HourlyCounter:
    """Counts events per account in fixed one-hour windows opened by the first event.

    The windows are kept in the subscription store, so a restart does not hand
    an attacker a fresh allowance of wrong tokens or verification pushes.
    """

    def __init__(self, store, kind, limit):
        self.store = store
        self.kind = kind
        self.limit = limit

    def _window(self, account, now):
        start, n = self.store.hourly_window(self.kind, account) or (None, 0)
        if start is None or now >= start + HOURLY_WINDOW:
            return None, 0
        return start, n

    def exhausted(self, account, now):
        """True while the account has used up this window."""
        return self._window(account, now)[1] >= self.limit

    def until(self, account, now):
        start, _ = self._window(account, now)
        return None if start is None else start + HOURLY_WINDOW

    def add(self, account, now):
        start, n = self._window(account, now)
        self.store.set_hourly_window(self.kind, account, now if start is None else start, n + 1)


@implementer(IWebPushService, IPushOutcomeObserver)
class WebPushService(service.Service):
    """The object behind L{IWebPushAccount.webpush}: one per server.

    @param store: an L{ISubscriptionStore} (the SQLite one).
    @param keyring: an L{IVapidKeyring}.
    @param policy: an L{IEndpointPolicy}.
    @param clock: an L{IReactorTime}.
    @param sender: an L{IPushSender}; may be set later (``service.sender = ...``)
        because the sender is usually built with this service as its observer.
    @param dispatcher: an optional L{IPushDispatcher}, told when silences end early.
    @param max_subscriptions: per-account limit (SPEC 4).
    @param max_pattern_length: longest LWEBPUSH pattern, in characters.
    """

    name = "webpush"
    log = Logger()

    def __init__(self, store, keyring, policy, clock, sender=None, dispatcher=None,
                 max_subscriptions=decisions.DEFAULT_MAX_SUBSCRIPTIONS,
                 max_pattern_length=DEFAULT_MAX_PATTERN_LENGTH):
        self.store = store
        self.keyring = keyring
        self.policy = policy
        self.clock = clock
        self.sender = sender
        self.dispatcher = dispatcher
        self.max_subscriptions = max_subscriptions
        self.max_pattern_length = max_pattern_length
        self._verifications = _HourlyCounter(store, "verification", decisions.VERIFICATIONS_PER_HOUR)
        # SPEC 3.3: *more than* ACK_FAILURES_PER_HOUR failures lock ACKWEBPUSH
        self._ack_failures = _HourlyCounter(store, "ack-failure", decisions.ACK_FAILURES_PER_HOUR + 1)
        self._pruner = None
        self._said_not_running = False
        self.deleted = collections.Counter()  # subscriptions the server deleted, by reason (metrics)

    def now(self):
        return self.clock.seconds()

    # -- service --------------------------------------------------------------

    def startService(self):
        service.Service.startService(self)
        self._pruner = task.LoopingCall(self._prune_logged)
        self._pruner.clock = self.clock
        self._pruner.start(PRUNE_INTERVAL, now=True)

    def stopService(self):
        if self._pruner is not None and self._pruner.running:
            self._pruner.stop()
        self._pruner = None
        return service.Service.stopService(self)

    # -- GETVAPID ---------------------------------------------------------------

    def vapid_key(self):
        """The current VAPID public key text (SPEC 3.1)."""
        return self.keyring.current()

    # -- WEBPUSH ----------------------------------------------------------------

    def subscribe(self, account, subscription_id, endpoint, p256dh_text, auth_text):
        """Create or update a subscription; returns (Subscription, vapid key to announce).

        A subscription that ends up pending has its token stored, then its
        verification push sent (signed with the current key). Raises
        L{BadArguments} or L{Refused}; in that case nothing changed.
        """
        check_id(subscription_id)
        check_endpoint(endpoint)
        p256dh = parse_p256dh(p256dh_text)
        auth = parse_auth(auth_text)
        self._check_policy(endpoint)
        self._check_delivery()
        now = self.now()
        current = self.keyring.current()
        existing = self.store.get(account, subscription_id)
        if (existing is not None and existing.state == model.ACTIVE
                and existing.endpoint == endpoint and existing.p256dh == p256dh
                and existing.auth == auth and existing.vapid_key == current):
            return existing, current
        if existing is None and self.store.count(account) >= self.max_subscriptions:
            raise Refused("at most %d subscriptions per account" % self.max_subscriptions,
                          code=b"LIMIT")
        if self._verifications.exhausted(account, now):
            raise Refused("too many verification pushes for this account; try again in %d s"
                          % max(1, self._verifications.until(account, now) - now))
        token = new_token()
        try:
            sub = self.store.set_pending(account, subscription_id, endpoint, p256dh, auth,
                                         current, now, self.max_subscriptions,
                                         token_hash(token))
        except SubscriptionLimitReached:
            raise Refused("at most %d subscriptions per account" % self.max_subscriptions,
                          code=b"LIMIT")
        self._verifications.add(account, now)
        self.log.info("webpush subscription {subscription} of {account} is pending"
                      " verification", account=account, subscription=subscription_id)
        if existing is not None:
            self._cancel(account, subscription_id)  # nothing more for the old version
        self._send_verification(sub, current, token)
        return sub, current

    def _check_delivery(self):
        """Refuse before anything changes when no verification push could go out."""
        if self.sender is not None and self.sender.running:
            self._said_not_running = False
            return
        if not self._said_not_running:
            self._said_not_running = True
            self.log.error("WEBPUSH refused: push delivery is not running (start the push"
                           " sender, e.g. the WebPush service, with the server)")
        raise Refused("push delivery is not running on this server; try again later",
                      code=b"UNAVAILABLE")

    def _check_policy(self, endpoint):
        try:
            self.policy.check_url(endpoint)
        except Exception as e:  # EndpointRefused, or any refusal the policy raises
            raise Refused("endpoint refused: %s" % (getattr(e, "reason", None) or e,))

    def _send_verification(self, sub, key, token):
        if self.sender is None:
            self.log.error("no push sender: verification push for {subscription} of"
                           " {account} not sent", account=sub.account, subscription=sub.id)
            return
        payload = ("* ACKWEBPUSH %s\r\n" % token).encode("ascii")
        d = self.sender.send(sub.target(key), payload, decisions.URGENCY_VERIFICATION,
                             decisions.TTL_VERIFICATION, None,
                             {"kind": "verification", "endpoint": sub.endpoint})
        d.addErrback(lambda f: self.log.failure("verification push failed", f))

    def unsubscribe(self, account, subscription_id):
        """Delete (idempotent); True when it existed."""
        check_id(subscription_id)
        deleted = self.store.delete(account, subscription_id)
        if deleted:
            self._cancel(account, subscription_id)
            self.log.info("webpush subscription {subscription} of {account} deleted by"
                          " the client", account=account, subscription=subscription_id)
        return deleted

    def _cancel(self, account, subscription_id):
        """Deleted or replaced subscriptions stop at once: drop their waiting pushes."""
        if self.sender is not None:
            self.sender.cancel(account, subscription_id)

    # -- ACKWEBPUSH ---------------------------------------------------------------

    def acknowledge(self, account, token):
        """Spend a token; the now active Subscription, or Refused."""
        now = self.now()
        if self._ack_failures.exhausted(account, now):
            raise Refused("too many wrong tokens: ACKWEBPUSH is locked for this account"
                          " for %d s" % max(1, self._ack_failures.until(account, now) - now),
                          code=b"LIMIT")
        sub = self.store.acknowledge(account, token_hash(token), now,
                                     decisions.TOKEN_LIFETIME)
        if sub is None:
            self._ack_failures.add(account, now)
            self.log.info("wrong ACKWEBPUSH token for {account}", account=account)
            raise Refused("unknown, expired or already used token")
        self.log.info("webpush subscription {subscription} of {account} is active under"
                      " VAPID key {key}", account=account, subscription=sub.id,
                      key=sub.vapid_key)
        return sub

    # -- LWEBPUSH -----------------------------------------------------------------

    def list(self, account, pattern):
        """Subscriptions whose id matches the pattern, sorted by id."""
        match = pattern_matcher(pattern, self.max_pattern_length)
        return [s for s in self.store.list(account) if match(s.id)]

    # -- SILWEBPUSH -----------------------------------------------------------------

    def silence(self, account, subscription_id, seconds, connection):
        """Silence for ``seconds`` (capped), until ``connection`` ends (seconds None), or end it (0).

        Returns the Subscription; Refused for an unknown id.
        """
        check_id(subscription_id)
        now = self.now()
        if seconds is None:
            result = self.store.silence(account, subscription_id, connection=connection)
        elif seconds == 0:
            result = self.store.silence(account, subscription_id)
        else:
            seconds = min(seconds, decisions.MAX_SILENCE)
            result = self.store.silence(account, subscription_id, until=now + seconds)
        if result is None:
            raise Refused("no subscription %s" % subscription_id)
        before, after = result
        if before.is_silenced(now) and not after.is_silenced(now):
            self._silence_ended(account, subscription_id)
        return after

    def connection_ended(self, connection):
        """An IMAP connection ended (LOGOUT, disconnect): its silences end."""
        for account, sid in self.store.end_connection(connection):
            self._silence_ended(account, sid)

    def _silence_ended(self, account, subscription_id):
        if self.dispatcher is None:
            return
        try:
            self.dispatcher.silenceEnded(account, subscription_id)
        except Exception:
            self.log.failure("dispatcher.silenceEnded failed for {subscription} of {account}",
                             account=account, subscription=subscription_id)

    # -- outcomes (SPEC 6.1) -----------------------------------------------------------

    def pushOutcome(self, outcome):
        try:
            self._apply(outcome)
        except Exception:
            self.log.failure("could not apply push outcome {outcome!r}", outcome=outcome)

    def _apply(self, outcome):
        account, sid = outcome.account, outcome.subscription_id
        sub = self.store.get(account, sid)
        if sub is None:
            return
        endpoint = (outcome.context or {}).get("endpoint")
        if endpoint is not None and endpoint != sub.endpoint:
            return  # about an endpoint the client has replaced since
        now = self.now()
        if outcome.kind == model.DELIVERED:
            self.store.record_success(account, sid, now, outcome.describe())
        elif outcome.kind == model.GONE:
            self.store.delete(account, sid)
            self.deleted["gone"] += 1
            self._cancel(account, sid)
            self.log.info("webpush subscription {subscription} of {account} deleted: the push"
                          " service answered {status} ({reason})", account=account,
                          subscription=sid, status=outcome.status, reason=outcome.reason)
        elif outcome.kind in (model.REJECTED, model.EXPIRED, model.FAILED):
            rejected = outcome.kind == model.REJECTED
            rejections, first = self.store.record_failure(account, sid, now, rejected,
                                                          outcome.describe())
            if now - first >= decisions.FAILING_SUBSCRIPTION_LIFETIME:
                self.store.delete(account, sid)
                self.deleted["failing"] += 1
                self._cancel(account, sid)
                self.log.info("webpush subscription {subscription} of {account} deleted:"
                              " failing since {since} without a success (last: {status} {reason})",
                              account=account, subscription=sid, since=first,
                              status=outcome.status, reason=outcome.reason)
            elif rejected and rejections >= decisions.REJECTIONS_BEFORE_PENDING:
                if self.store.make_pending(account, sid, now):
                    self._cancel(account, sid)
                    self.log.info("webpush subscription {subscription} of {account} is pending"
                                  " again after {n} rejections (last: {status} {reason})",
                                  account=account, subscription=sid, n=rejections,
                                  status=outcome.status, reason=outcome.reason)
        elif outcome.kind == model.TOO_LARGE:
            # about one body, not about the subscription: shown, nothing counted
            self.store.record_refusal(account, sid, now, outcome.describe())

    # -- pruning -------------------------------------------------------------------------

    def _prune_logged(self):
        """One sweep of the pruning loop; a failure (database busy) waits for the next one."""
        try:
            self.prune()
        except Exception:
            self.log.failure("pruning webpush subscriptions failed; trying again in {interval} s",
                             interval=PRUNE_INTERVAL)

    def prune(self):
        """Delete never-acknowledged pending and long-failing subscriptions."""
        for account, sid, reason in self.store.prune(
                self.now(), decisions.PENDING_LIFETIME,
                decisions.FAILING_SUBSCRIPTION_LIFETIME, decisions.TOKEN_LIFETIME):
            self.deleted["pending" if reason.startswith("pending") else "failing"] += 1
            self._cancel(account, sid)
            self.log.info("webpush subscription {subscription} of {account} deleted: {reason}",
                          account=account, subscription=sid, reason=reason)

    # -- admin ----------------------------------------------------------------------------

    def test_push(self, account, subscription_id):
        """Send one generic-sync push now; Deferred[PushOutcome]. Refused if unknown."""
        sub = self.store.get(account, subscription_id)
        if sub is None:
            raise Refused("no subscription %s for %s" % (subscription_id, account))
        key = sub.vapid_key if sub.vapid_key is not None else self.keyring.current()
        return self.sender.send(sub.target(key), TEST_PUSH_PAYLOAD, decisions.URGENCY_OTHER,
                                decisions.TTL_VERIFICATION, None,
                                {"kind": "test", "endpoint": sub.endpoint})


def build_webpush(data_dir, reactor, subject, insecure=False, allowlist=None,
                  max_subscriptions=decisions.DEFAULT_MAX_SUBSCRIPTIONS, dispatcher=None,
                  http_client=None, outbox_path=None,
                  max_pattern_length=DEFAULT_MAX_PATTERN_LENGTH):
    """The Web Push objects of one server, wired together (what tap.py and the CLI use).

    Returns the L{WebPushService}; its ``sender`` is a (not yet started)
    PushDeliveryService whose observer is the service, and ``keyring``,
    ``store`` and ``policy`` are reachable as attributes. Add both
    ``service.sender`` and ``service`` to the server's MultiService.
    ``outbox_path`` defaults to the server's outbox in ``data_dir``; a process
    that is not the server (the admin CLI) passes its own, since starting a
    sender resumes every delivery of its outbox.
    """
    store = SQLiteSubscriptionStore(datadir.subscriptions(data_dir))
    keyring = VapidKeyring(datadir.vapid(data_dir), subject, reactor)
    policy = EndpointPolicy(allowlist=allowlist, insecure=insecure)
    webpush = WebPushService(store, keyring, policy, reactor, dispatcher=dispatcher,
                             max_subscriptions=max_subscriptions,
                             max_pattern_length=max_pattern_length)
    if http_client is None:
        http_client = make_http_client(reactor, policy)
    webpush.sender = PushDeliveryService(reactor, keyring, http_client, policy,
                                         outbox_path or datadir.outbox(data_dir),
                                         observer=webpush)
    return webpush
