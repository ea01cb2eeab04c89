"""Every zope.interface contract of imapwebpush, in one file: the doors between rooms.

A room (store/, imap/, smtp/, webpush/) imports the interfaces of another room
and its public constructors, never its private helpers. Implementations
declare what they provide with ``@implementer``.

Two kinds of API live here:

* the store and the subscription store are synchronous: they write a few KB
  to local disk or SQLite, which is fine on the reactor thread (DESIGN.md);
* anything that talks to the network returns a Deferred.
"""

from zope.interface import Attribute, Interface

# ---------------------------------------------------------------------------
# store/: mailboxes, accounts, users, the change bus
# ---------------------------------------------------------------------------


class IChangeListener(Interface):
    """Receives the typed change events of ``imapwebpush.events``."""

    def changed(event):
        """Called once per event, after the change is durable. Must not raise."""


class IChangeBus(Interface):
    """Fans the events of one account (or of the whole store) out to listeners."""

    def subscribe(listener):
        """Add an L{IChangeListener}."""

    def unsubscribe(listener):
        """Remove it; unknown listeners are ignored."""

    def publish(event):
        """Deliver ``event`` to every listener, in subscription order.

        A listener that raises is logged and does not stop the others.
        """


class IStoredMessage(Interface):
    """One message of a mailbox, named by its UID."""

    uid = Attribute("int")
    flags = Attribute("frozenset of str: system flags (\\Seen...) and keywords; never \\Recent")
    modseq = Attribute("int: CONDSTORE mod-sequence of the last change")
    size = Attribute("int: octets of the message as stored (CRLF line ends)")
    internaldate = Attribute("float: seconds since the epoch")
    saved = Attribute(
        "float: when the message was saved into this mailbox (APPEND, delivery, COPY, MOVE), "
        "seconds since the epoch; None when not known (RFC 8514 SAVEDATE NIL)"
    )

    def read():
        """The whole message, bytes with CRLF line ends."""

    def headers():
        """The raw header block, bytes, up to and including the blank line."""

    def open():
        """The stored message as a binary file object (caller closes it), for partial reads."""


class IStoredMailbox(Interface):
    """A mailbox addressed by UIDs; knows nothing of sessions or sequence numbers.

    Every mutating method takes ``origin`` (an opaque token, typically the IMAP
    session) that is copied into the change events it announces.
    """

    name = Attribute("str: full name with '/' as separator ('INBOX' for the inbox)")
    uidvalidity = Attribute("int")
    uidnext = Attribute("int")
    highestmodseq = Attribute("int")

    def uids():
        """Sorted list of the UIDs of the messages now in the mailbox.

        Files dropped into the Maildir by other tools get UIDs here.
        """

    def message(uid):
        """The L{IStoredMessage} with that UID; KeyError when there is none."""

    def add(data, flags=(), internaldate=None, origin=None, recent=False):
        """Store a message durably (tmp, fsync, rename), announce MessageAdded; return its UID.

        Without system flags the message is \\Recent; with them only when ``recent`` is
        true (IMAP APPEND). A COPY or MOVE into the mailbox is always \\Recent.
        """

    def add_staged(source, flags=(), internaldate=None, origin=None, recent=False):
        """L{add} of a L{imapwebpush.spool.Snapshot} (``size``; ``reader()`` from any thread).

        Returns a Deferred of the UID, fired once the message is durable. A large message
        is copied into tmp/ and fsynced off the reactor; the rest is done on it as L{add}
        does. These adds commit (take their UIDs) in the order they were called.
        """

    def set_flags(uids, flags, mode, unchangedsince=None, origin=None):
        """Change flags; ``mode`` is 'replace', 'add' or 'remove'.

        Returns ``(changed, failed)``: ``changed`` maps uid -> (new flags, modseq) for
        messages whose flags actually changed, ``failed`` lists the UIDs refused by
        ``unchangedsince`` (CONDSTORE). Announces one FlagsChanged for all of them.
        """

    def expunge(uids=None, origin=None):
        """Remove messages flagged \\Deleted (only among ``uids`` when given).

        Returns the sorted list of removed UIDs; announces one MessagesExpunged.
        """

    def copy(uids, destination, origin=None):
        """Copy to another L{IStoredMailbox}; returns [(source uid, new uid), ...]."""

    def move(uids, destination, origin=None):
        """Copy then expunge from here (whatever their flags); returns the pairs."""

    def claim_recent():
        """Claim the recent messages (moving those in new/ to cur/); the set of their UIDs.

        The one session that claims them sees them as \\Recent (RFC 3501).
        """

    def refresh():
        """Pick up files other tools added, renamed or removed (two stat calls when none)."""

    def count():
        """Number of messages, from memory."""

    def recent():
        """Sorted UIDs of the recent messages not claimed yet, without claiming them."""

    def unseen():
        """Sorted UIDs of messages without \\Seen."""

    def total_size():
        """Octets of all the messages (the sum of their sizes), from memory (STATUS SIZE)."""

    def changed_since(modseq):
        """Sorted UIDs of messages whose modseq is greater than ``modseq`` (CHANGEDSINCE)."""

    vanished_floor = Attribute(
        "int: lowest modseq from which the expunge history is complete (QRESYNC)"
    )

    def vanished_ranges(modseq):
        """UIDs expunged with a modseq above ``modseq``, as sorted ``(first, last)`` ranges.

        Below ``vanished_floor``: every UID under UIDNEXT not in the mailbox.
        """


class IAccount(Interface):
    """One user's mailboxes and change bus."""

    address = Attribute("str: the account's address, lower-cased")
    bus = Attribute("IChangeBus of this account")

    def mailbox(name):
        """The L{IStoredMailbox} ``name`` ('inbox' in any case is INBOX).

        Raises L{imapwebpush.store.errors.MailboxNotFound}.
        """

    def list_mailboxes():
        """Sorted names of every mailbox, INBOX first; \\Noselect parents included."""

    def create_mailbox(name, origin=None):
        """Create it (and missing parents); MailboxExists if it exists."""

    def delete_mailbox(name, origin=None):
        """Delete it; a mailbox with children becomes \\Noselect (RFC 3501 6.3.4).

        L{imapwebpush.store.errors.NotAllowed} for INBOX and for a \\Noselect
        mailbox with children.
        """

    def rename_mailbox(old, new, origin=None):
        """Rename with its children; renaming INBOX moves its messages (RFC 3501 6.3.5)."""

    def has_children(name):
        """True when some mailbox lies below ``name`` (for \\HasChildren/\\HasNoChildren)."""

    def is_selectable(name):
        """True when ``name`` can be selected; a listed name that is not is \\Noselect."""

    def special_use(name):
        """'\\Sent', '\\Drafts', '\\Trash', '\\Junk' or None."""

    def set_special_use(name, use):
        """Give an existing mailbox a RFC 6154 attribute, or clear it with None (persisted)."""

    def subscribe(name):
        """Persist a LSUB subscription."""

    def unsubscribe(name):
        """Drop a LSUB subscription."""

    def subscriptions():
        """Sorted list of subscribed names."""


class IMailStore(Interface):
    """All accounts under one data folder."""

    bus = Attribute("IChangeBus that receives the events of every account")

    def account(address):
        """The L{IAccount} for ``address`` (one object per address, created on demand)."""

    def delete_account(address):
        """Remove every mailbox of the account from disk."""

    def exists(address):
        """True when the account has a folder (no folder is created)."""


class IUserDatabase(Interface):
    """Users and their hashed passwords."""

    def add(address, password):
        """Create a user; ValueError if it exists or the address is not valid."""

    def delete(address):
        """Remove a user; KeyError if unknown."""

    def set_password(address, password):
        """Change a password; KeyError if unknown."""

    def check(address, password):
        """True when the password is right (constant-time compare)."""

    def exists(address):
        """True for a known user."""

    def users():
        """Sorted list of addresses."""


# ---------------------------------------------------------------------------
# webpush/: crypto, VAPID keys, delivery, subscriptions, dispatch
# ---------------------------------------------------------------------------


class IVapidKeyring(Interface):
    """The server's VAPID keys. A key is named by its public key text (87 chars)."""

    def current():
        """The name (public key text) of the current key."""

    def keys():
        """Names of every key kept, current included."""

    def rotate():
        """Make a new current key, keep the old ones; return the new name."""

    def retire(name):
        """Forget a key that is not current; ValueError for the current key."""

    def authorization(name, endpoint):
        """The ``Authorization: vapid t=..., k=...`` value for ``endpoint``'s origin.

        Cached per (key, origin) and renewed shortly before it expires.
        """

    def public_key(name):
        """The 65-octet public point of a kept key; KeyError if unknown. (Added by webpush/vapid.py.)"""


class IEndpointPolicy(Interface):
    """Which push endpoints the server will talk to (SPEC 7)."""

    def check_url(url):
        """Raise L{imapwebpush.webpush.policy.EndpointRefused} with a reason, or return None."""


class IPushSender(Interface):
    """Gets one encrypted, signed push to a push service, with the retries of SPEC 6.1."""

    running = Attribute("bool: true while sends can be delivered (IService.running)")

    def send(target, payload, urgency, ttl, topic=None, context=None):
        """Send ``payload`` (bytes, at most MAX_PLAINTEXT) to the L{PushTarget}.

        ``context`` is a JSON-serialisable dict kept with the delivery (on disk
        while it waits) and returned in the outcome. Returns a Deferred that
        fires with the final L{PushOutcome} (after retries); it never errbacks.
        Outcomes are also reported to the sender's L{IPushOutcomeObserver},
        which sees the outcome of deliveries resumed after a restart too.
        Input refused before any request (bad keys, Urgency, TTL or Topic, an
        endpoint the policy refuses, not running, queue full) fires at once
        with a FAILED outcome; a payload over MAX_PLAINTEXT with TOO_LARGE and
        status None.
        """


    def cancel(account, subscription_id):
        """Drop every push to that subscription that is queued or waiting to be retried.

        For a subscription deleted or replaced: "deleted subscriptions stop at
        once". Each gets the outcome CANCELLED; a request already in flight
        finishes. Returns how many were dropped.
        """


class IPushOutcomeObserver(Interface):
    """Applies what push services answered (delete on 404/410, pending after 3 rejections)."""

    def pushOutcome(outcome):
        """Called once per final L{PushOutcome}. Must not raise."""


class ISubscriptionStore(Interface):
    """Persistent WEBPUSH subscriptions (SPEC 3 and 4). Synchronous, one transaction per change.

    Owned by the WEBPUSH command room; the dispatcher only reads through
    ``active`` and ``get``.
    """

    def get(account, subscription_id):
        """The L{Subscription} or None."""

    def list(account):
        """Every subscription of the account, pending ones included, sorted by id."""

    def active(account):
        """The active subscriptions of the account (silenced ones included)."""

    # The methods below are used by the WEBPUSH command room only (webpush/service.py).

    def accounts():
        """Sorted accounts that have at least one subscription."""

    def count(account):
        """How many subscriptions (pending included) the account has."""

    def set_pending(account, subscription_id, endpoint, p256dh, auth, vapid_key, now, limit,
                    token_digest):
        """Create/update as pending under ``vapid_key`` and store the token hash, in one
        transaction. Raises SubscriptionLimitReached for a new id past ``limit``."""

    def acknowledge(account, token_digest, now, lifetime):
        """Spend a token (constant-time compare, single use): the now active Subscription or None."""

    def delete(account, subscription_id):
        """Erase it and its tokens; True when it existed."""

    def delete_account(account):
        """Erase every subscription and token of the account."""

    def silence(account, subscription_id, until=None, connection=None):
        """Set or clear the silence: (before, after) Subscriptions, or None when unknown."""

    def end_connection(connection):
        """End the silences tied to a connection id; the (account, id) pairs ended."""

    def record_success(account, subscription_id, now, answer=None):
        """Reset the failure counters; keep the time and ``answer`` of this delivery."""

    def record_failure(account, subscription_id, now, rejected, answer=None):
        """Count a failure, keep its time and ``answer``: (consecutive rejections, first
        failure time) or None."""

    def make_pending(account, subscription_id, now):
        """Active -> pending (repeated rejections); True when it changed."""

    def prune(now, pending_lifetime, failing_lifetime, token_lifetime):
        """Delete stale pending and long-failing subscriptions: [(account, id, reason)]."""

    def hourly_window(kind, account):
        """``(start, count)`` of the account's abuse-counter window of ``kind``, or None.

        Kinds: ``verification`` (SPEC 4) and ``ack-failure`` (SPEC 3.3). Kept
        with the subscriptions so a restart does not reset them.
        """

    def set_hourly_window(kind, account, start, count):
        """Record the account's window of ``kind``."""

    def privacy(account):
        """The account's own privacy level (``full``, ``minimal``, ``sync``) or None."""

    def set_privacy(account, level):
        """Set the account's own privacy level; None: back to the server default."""


class IPushDispatcher(Interface):
    """Turns change events into pushes; told by the WEBPUSH commands when silences end."""

    def silenceEnded(account, subscription_id):
        """A silence was lifted early (SILWEBPUSH 0, LOGOUT, disconnect): flush dropped events."""


class IWebPushAccount(Interface):
    """What the WEBPUSH command handlers need from a logged-in avatar.

    An existing Twisted IMAP stack gains WEBPUSH by making its avatar provide
    this interface (``WebPush.account(name)``, ``WebPushAvatarFactory``, the
    ``PushingMemoryAccount`` mixin) and using our server subclass or its mixin.

    ``account`` is the one name of the user on the push side: subscriptions are
    stored under it, and every event about the user's mail
    (L{IWebPushNotifier}) must carry exactly this string.
    """

    account = Attribute("str: the account id the subscriptions belong to")
    webpush = Attribute("the server-wide L{IWebPushService}")


class IWebPushService(Interface):
    """The server-wide service behind the WEBPUSH commands (SPEC 3 and 4).

    Synchronous: each call reads or writes the subscription store and returns.
    Errors meant for the client are raised as
    L{imapwebpush.webpush.service.CommandError} (a BAD or NO and a sentence).
    """

    def now():
        """The clock's time, in seconds."""

    def vapid_key():
        """The current VAPID public key text (GETVAPID)."""

    def subscribe(account, subscription_id, endpoint, p256dh_text, auth_text):
        """Create or update a subscription and send its verification push.

        Returns ``(Subscription, vapid key text)``. Refused (NO) when push
        delivery is not running, since no verification push could be sent.
        """

    def unsubscribe(account, subscription_id):
        """Delete (idempotent); True when it existed."""

    def acknowledge(account, token):
        """Spend an ACKWEBPUSH token: the now active Subscription."""

    def list(account, pattern):
        """Subscriptions whose id matches the LWEBPUSH pattern, sorted by id."""

    def silence(account, subscription_id, seconds, connection):
        """SILWEBPUSH: silence for ``seconds``, until ``connection`` ends (None), or end it (0)."""

    def connection_ended(connection):
        """An IMAP connection ended: the silences tied to it end."""


class IWebPushNotifier(Interface):
    """How a mail store that is not ours tells the push side what changed.

    Call after the change is durable. ``account`` must be the
    L{IWebPushAccount.account} of the user (the account the subscriptions were
    made under); an account that has no subscription and was never handed out
    by ``WebPush.account()`` is logged once, since its events push nothing.
    ``mailbox`` uses ``/`` as delimiter; INBOX may be spelled in any case.
    Flags are IMAP flag strings (``\\Seen``, ``$Label``). None of these raise:
    a bad argument is logged in one line and dropped.
    """

    def message_added(account, mailbox, uid, flags=(), headers=b"", body=b""):
        """A message with ``uid`` arrived in ``mailbox``; ``headers`` its raw header block.

        ``body``, optional: the start of the body (the first 8 KB are used), for
        the RFC 8970 PREVIEW of a ``full``-privacy push.
        """

    def flags_changed(account, mailbox, changes):
        """Flags changed: ``changes`` maps uid -> the message's flags now."""

    def expunged(account, mailbox, uids):
        """Messages with these UIDs were removed from ``mailbox``."""

    def mailbox_created(account, mailbox):
        """A mailbox was created."""

    def mailbox_renamed(account, old, new):
        """``old`` is now called ``new``."""

    def mailbox_deleted(account, mailbox):
        """A mailbox was deleted."""

    def publish(event):
        """Pass on an event of L{imapwebpush.events} built by the caller."""


# ---------------------------------------------------------------------------
# outbound/: the queue of mail to other domains, routing, delivery, DKIM
# ---------------------------------------------------------------------------


class IOutboundQueue(Interface):
    """Mail accepted for other domains, on disk until every recipient is done.

    Synchronous like the mail store: each call writes a few KB and fsyncs.
    """

    def add(sender, recipients, data, now):
        """Store ``data`` (bytes) for ``recipients`` durably; return the new L{QueueEntry}.

        When it returns, a kill -9 cannot lose the message.
        """

    def write_message(parts, now):
        """The first half of L{add}, safe in a thread: the message file from
        ``parts`` (bytes or binary readables), fsynced; ``(queue_id, size)``."""

    def commit(queue_id, sender, recipients, size, now):
        """The second half of L{add}, on the reactor: the state file; the new L{QueueEntry}."""

    def entries():
        """Every L{QueueEntry} now queued, oldest first."""

    def get(queue_id):
        """The L{QueueEntry}; KeyError when there is none."""

    def save(entry):
        """Persist the recipients' state of ``entry`` (atomic replace)."""

    def read_message(queue_id):
        """The queued message, bytes with CRLF line ends."""

    def message_file(queue_id):
        """The queued message as a file: ``size`` and ``open()``; OSError when unreadable."""

    def read_headers(queue_id, limit):
        """The queued message's header block, at most ``limit`` octets (for DSNs)."""

    def remove(queue_id):
        """Forget the entry and its message; KeyError when there is none."""


class IMailRouter(Interface):
    """Where mail for a domain goes (MX, then A/AAAA; or one smarthost)."""

    def route(domain):
        """Deferred[list of L{imapwebpush.outbound.resolver.Destination}], best first.

        Errbacks with L{imapwebpush.outbound.resolver.RouteError} (``permanent``
        tells whether retrying can help).
        """


class IMailSubmitter(Interface):
    """Takes mail for remote recipients from the submission port."""

    def submit(sender, recipients, data):
        """Queue ``data`` durably for ``recipients`` (signed first when a signer is set).

        ``data``: bytes, or an object whose ``reader()`` gives a new binary
        readable of the message at each call, from any thread (a
        L{imapwebpush.spool.Snapshot}): the message is then read as a stream
        (to sign it, then to copy it), never held whole.

        Deferred[queue id (str)], fired once the message is on disk; it
        errbacks when the message could not be stored (the client gets a 451).
        """


class IMessageSigner(Interface):
    """Signs outbound mail (DKIM)."""

    def sign(sender, message):
        """The header lines (bytes, CRLF-terminated) to put on top of ``message``; b"" when none.

        ``message``: bytes or a binary readable (read once, to its end).
        """


class IMessageAuthenticator(Interface):
    """Checks where inbound mail comes from (DKIM, SPF) for an Authentication-Results header."""

    def authenticate(data, client_ip, helo, mail_from):
        """Deferred[bytes]: the header line(s) to put on top of ``data``; never errbacks.

        ``data``: bytes, or a snapshot whose ``reader()`` gives a new binary
        readable of the message at each call, from any thread.
        """
