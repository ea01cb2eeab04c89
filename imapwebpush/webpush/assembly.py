"""The whole Web Push side of one server as one service: ``WebPush``.

An IMAP server (ours, or any Twisted one) needs four things to push: the
subscription service the WEBPUSH commands talk to, the push sender, the
dispatcher that turns mail changes into pushes, and the key that makes Topic
headers. ``WebPush`` builds them from one data folder and is a ``MultiService``
that starts them in the one safe order (sender, subscriptions, dispatcher) and
stops them in reverse, so nothing is sent through a stopped sender::

    push = WebPush("/var/lib/myserver/push", reactor, subject="mailto:admin@example.org")
    push.setServiceParent(application)
    avatar = push.account("alice")          # an IWebPushAccount for the commands
    push.notifier.message_added("alice", "INBOX", uid=7, headers=raw_headers)

tap.py builds its server with it too, so there is one wiring, not two.
"""

import os

from twisted.application import service
from twisted.logger import Logger

from imapwebpush import datadir, decisions
from imapwebpush.imap.webpush_commands import WebPushAccount, WebPushAvatarFactory
from imapwebpush.webpush.contact import check_subject, unroutable_reason
from imapwebpush.webpush.dispatcher import PushDispatcher
from imapwebpush.webpush.notifier import Notifier
from imapwebpush.webpush.owed import OwedSyncs
from imapwebpush.webpush.preview import DEFAULT_PREVIEW_CHARS
from imapwebpush.webpush.privacy import DEFAULT_PRIVACY, AccountPrivacy
from imapwebpush.webpush.ratelimit import (
    DEFAULT_NEW_MAIL_BURST,
    DEFAULT_NEW_MAIL_PER_HOUR,
    SavedBuckets,
    TokenBuckets,
)
from imapwebpush.webpush.service import build_webpush
from imapwebpush.webpush.topic import load_or_create_topic_key
from imapwebpush.wildcard import DEFAULT_MAX_PATTERN_LENGTH

log = Logger()


class WebPush(service.MultiService):
    """Sender, subscription service, dispatcher and topic key of one data folder.

    @param data_dir: folder for the subscriptions, VAPID keys, outbox and topic
        key (created, mode 0700, when missing).
    @param reactor: the reactor (also the clock); default the global one.
    @param subject: the VAPID ``sub`` claim, a ``mailto:`` or ``https:`` URL.
    @param insecure: allow ``http://`` and private-address push endpoints
        (loopback tests only).
    @param allowlist: push service host names allowed (``*.example.net`` for
        subdomains); None allows any public host.
    @param http_client: a treq-like client for the sender (tests inject one).
    @param max_pattern_length: longest LWEBPUSH pattern accepted.
    @param privacy: the server's default privacy level (``full``, ``minimal``,
        ``sync``; see L{imapwebpush.webpush.privacy}); accounts may have their own.
    @param new_mail_burst: new-mail pushes a subscription may get at once
        (L{imapwebpush.webpush.ratelimit}); 0: no limit.
    @param new_mail_per_hour: how fast that allowance comes back.
    @param preview_chars: longest RFC 8970 PREVIEW text in a new-mail push; 0: none.
    @param scope: which mailboxes are pushed: an object whose ``mailboxes(account)``
        gives the names (e.g. L{imapwebpush.webpush.scope.SubscribedMailboxes}),
        or None for every mailbox.

    Attributes: ``service`` (the L{IWebPushService} of the WEBPUSH commands),
    ``sender``, ``store`` (subscriptions), ``keyring``, ``policy``,
    ``dispatcher`` (an L{IChangeListener}), ``topic_key`` and ``notifier``
    (the L{IWebPushNotifier} for stores that are not ours).
    """

    def __init__(self, data_dir, reactor=None, subject=None, insecure=False, allowlist=None,
                 max_subscriptions=decisions.DEFAULT_MAX_SUBSCRIPTIONS,
                 coalesce_window=decisions.DEFAULT_COALESCE_WINDOW, http_client=None,
                 max_pattern_length=DEFAULT_MAX_PATTERN_LENGTH, privacy=DEFAULT_PRIVACY,
                 new_mail_burst=DEFAULT_NEW_MAIL_BURST,
                 new_mail_per_hour=DEFAULT_NEW_MAIL_PER_HOUR,
                 preview_chars=DEFAULT_PREVIEW_CHARS, scope=None):
        service.MultiService.__init__(self)
        if reactor is None:
            from twisted.internet import reactor
        if not subject:
            raise ValueError("WebPush needs subject=, the VAPID contact: a mailto: or https: URL")
        unroutable = unroutable_reason(check_subject(subject))
        if unroutable:
            log.warn("VAPID CONTACT {subject} CANNOT REACH ANYBODY: {reason}. Push services"
                     " may refuse every push from this server (403); give --vapid-subject"
                     " mailto:you@your-public-domain or an https:// page.",
                     subject=subject, reason=unroutable)
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        self.reactor = reactor
        self.service = build_webpush(data_dir, reactor, subject, insecure=insecure,
                                     allowlist=allowlist, max_subscriptions=max_subscriptions,
                                     http_client=http_client,
                                     max_pattern_length=max_pattern_length)
        self.sender = self.service.sender
        self.store = self.service.store
        self.keyring = self.service.keyring
        self.policy = self.service.policy
        self.topic_key = load_or_create_topic_key(datadir.topic_key(data_dir))
        self.privacy = AccountPrivacy(self.store, privacy)
        self.dispatcher = PushDispatcher(
            reactor, self.store, self.sender, self.topic_key, coalesce_window=coalesce_window,
            privacy=self.privacy, limiter=TokenBuckets(reactor, new_mail_burst, new_mail_per_hour,
                                 saved=SavedBuckets(datadir.rate_limits(data_dir))),
            preview_chars=preview_chars, scope=scope,
            owed=OwedSyncs(datadir.owed(data_dir), reactor))
        self.service.dispatcher = self.dispatcher
        self.notifier = Notifier(self.dispatcher, self.store)
        # MultiService starts children in this order and stops them in reverse.
        for name, child in (("push-delivery", self.sender), ("subscriptions", self.service),
                            ("push-dispatcher", self.dispatcher)):
            child.setName(name)
            child.setServiceParent(self)

    def account(self, name):
        """An L{IWebPushAccount} for the logged-in user ``name``.

        ``name`` is the account the subscriptions are stored under; the events
        about this user's mail must carry the same string.
        """
        self.notifier.account_in_use(name)
        return WebPushAccount(name, self.service)

    def avatar_factory(self, factory, account_of=None):
        """Wrap an avatar factory so that each avatar provides L{IWebPushAccount}.

        ``account_of(avatar)`` gives the account name (default: ``avatar.address``).
        """
        account_of = account_of or (lambda avatar: avatar.address)

        def named(avatar):
            name = account_of(avatar)
            self.notifier.account_in_use(name)
            return name

        return WebPushAvatarFactory(self.service, factory, account_of=named)
