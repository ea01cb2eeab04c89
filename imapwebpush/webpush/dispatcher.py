"""From change events to pushes (SPEC 5 and 6): who gets what, when, and how big.

``PushDispatcher`` listens on the store-wide change bus. Per account it keeps
two queues:

* new messages are flushed on the next reactor turn (``callLater(0)``), so a
  burst appended in one go (500 messages from one SMTP transaction or one
  APPEND loop) shares pushes instead of making one push per message;
* flag changes, expunges and mailbox changes wait ``coalesce_window``
  seconds from the first of them and are merged: as many mailboxes as fit
  share a push, one ``* SELECT`` each (SPEC 5.3); a push that alone speaks of
  one mailbox carries that mailbox's Topic, so the push service may replace an
  older undelivered one; the mailbox tree gets pushes of its own.

A flush renders the payload once per account (``payload.render``) and sends
it to every *active* subscription of the account: pending ones get nothing;
silenced ones get nothing either, but the dispatcher remembers the mailboxes
they missed and sends one generic sync push per mailbox when the silence ends
(timer at ``silenced_until``, ``silenceEnded`` from the WEBPUSH commands, or
the next flush that finds it no longer silenced).

The pushes of one flush go to one subscription one after the other, so a
404/410 (GONE) stops the rest and a 413 (TOO_LARGE) is re-rendered with half
the size of the refused body, following SPEC 5.4, before the next one.
Before every push but the first of a flush the subscription is read again:
deleted, pending or silenced meanwhile means nothing more is sent.
"""

import itertools
from collections import OrderedDict

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush import decisions
from imapwebpush.constants import INBOX
from imapwebpush.interfaces import IChangeListener, IPushDispatcher
from imapwebpush.events import (
    FlagsChanged,
    MailboxCreated,
    MailboxDeleted,
    MailboxRenamed,
    MessageAdded,
    MessagesExpunged,
)
from imapwebpush.webpush import model, privacy
from imapwebpush.webpush.limits import MAX_PLAINTEXT
from imapwebpush.webpush.payload import (
    FlagUpdate,
    ListUpdate,
    NewMessage,
    Section,
    Vanished,
    render,
)
from imapwebpush.webpush.preview import DEFAULT_PREVIEW_CHARS
from imapwebpush.webpush.topic import topic as topic_for

__all__ = ["PushDispatcher"]

# kinds of push, also put in the delivery context
KIND_NEW = "new"
KIND_MAILBOX = "mailbox"  # flags and expunges of one mailbox
KIND_LIST = "list"  # mailbox tree changes
KIND_SYNC = "sync"  # generic sync after a silence
KIND_LIMITED = "limited"  # new mail past the rate limit: one generic sync per mailbox


_TREE_EVENTS = (MailboxCreated, MailboxRenamed, MailboxDeleted)
_ALL_EVENTS = (MessageAdded, FlagsChanged, MessagesExpunged) + _TREE_EVENTS


class _Planned:
    """One push about to be sent, with what it takes to re-render it smaller."""

    __slots__ = ("push", "kind", "urgency", "ttl", "topic", "generation", "since")

    def __init__(self, push, kind, urgency, ttl, topic, generation=0, since=None):
        self.push = push
        self.kind = kind
        self.urgency = urgency
        self.ttl = ttl
        self.topic = topic
        self.generation = generation
        self.since = since  # when the first event it tells of arrived (push latency)


class _Account:
    """What waits to be pushed for one account.

    ``new_names`` and ``other_names``: the mailboxes the waiting events speak of, kept as
    they come, so what is owed is known without a pass over every event (a burst of flag
    changes waits a whole coalescing window, and what is owed is asked every turn).
    """

    __slots__ = ("new", "new_call", "other", "other_call", "new_since", "other_since",
                 "new_names", "other_names")

    def __init__(self):
        self.new = []
        self.new_call = None
        self.other = []
        self.other_call = None
        self.new_since = self.other_since = None
        self.new_names = OrderedDict()
        self.other_names = OrderedDict()


class _Silence:
    """Mailboxes a silenced subscription missed, and the timer for its end."""

    __slots__ = ("mailboxes", "timer")

    def __init__(self):
        self.mailboxes = OrderedDict()
        self.timer = None


@implementer(IChangeListener, IPushDispatcher)
class PushDispatcher(service.Service):
    """Turns change events into Web Push messages for the account's active subscriptions.

    Subscribe it to the store-wide bus (``MailStore.bus.subscribe(dispatcher)``)
    and start it with the application (``stopService`` cancels its timers).
    """

    log = Logger()

    def __init__(self, clock, subscriptions, sender, topic_key,
                 coalesce_window=decisions.DEFAULT_COALESCE_WINDOW, budget=MAX_PLAINTEXT,
                 privacy=None, limiter=None, preview_chars=DEFAULT_PREVIEW_CHARS, scope=None,
                 owed=None):
        self._clock = clock
        self._subscriptions = subscriptions
        self._sender = sender
        self._topic_key = topic_key
        self._window = coalesce_window
        self._budget = budget
        self._privacy = privacy  # AccountPrivacy, or None: every account is "full"
        self._limiter = limiter  # TokenBuckets for new-mail pushes, or None: no limit
        self._preview_chars = preview_chars
        self._scope = scope  # SubscribedMailboxes, or None: every mailbox is pushed
        self._owed = owed  # OwedSyncs: what is held in memory, as mailboxes, on disk
        self._queues = {}  # (account, id) -> {id(queue): queue} of bursts still being sent
        self._accounts = {}
        self._silences = {}
        self.rate_limited = 0  # subscription flushes collapsed by the rate limit (metrics)
        self.latency = None  # called with event -> delivered seconds of each push (metrics)
        self._order = itertools.count()
        self._stopped = False

    # -- service -----------------------------------------------------------

    def startService(self):
        self._stopped = False
        service.Service.startService(self)
        if self._owed is not None:
            self._owed.source = self._owed_now
            self._resume(self._owed.load())

    def stopService(self):
        self.stop()
        return service.Service.stopService(self)

    def stop(self):
        """Cancel every timer; events still waiting are not pushed, later events are ignored."""
        self._stopped = True
        if self._owed is not None:  # what is still owed stays on disk for the next start
            for key in self._owed_keys():
                self._owed.mark(key)
            try:
                self._owed.close()
            except Exception:
                self.log.failure("push dispatcher: could not save what it still owes")
            self._owed = None
        if self._limiter is not None and hasattr(self._limiter, "close"):
            self._limiter.close()  # its buckets stay on disk for the next start
        self._queues.clear()
        for pending in self._accounts.values():
            for call in (pending.new_call, pending.other_call):
                if call is not None and call.active():
                    call.cancel()
        self._accounts.clear()
        for silence in self._silences.values():
            if silence.timer is not None and silence.timer.active():
                silence.timer.cancel()
        self._silences.clear()

    # -- IChangeListener ---------------------------------------------------

    def changed(self, event):
        if self._stopped:
            return
        try:
            self._changed(event)
        except Exception:
            self.log.failure("push dispatcher could not take event {event!r}", event=event)

    def _changed(self, event):
        if isinstance(event, _ALL_EVENTS):
            self._mark((event.account, ""))
        if isinstance(event, MessageAdded):
            pending = self._pending(event.account)
            if not pending.new:
                pending.new_since = self._clock.seconds()
            pending.new.append((next(self._order), event))
            _note_owed(pending.new_names, event)
            if pending.new_call is None:
                pending.new_call = self._clock.callLater(
                    0, self._guarded, self._flush_new, event.account)
        elif isinstance(event, (FlagsChanged, MessagesExpunged, MailboxCreated,
                                MailboxRenamed, MailboxDeleted)):
            pending = self._pending(event.account)
            if not pending.other:
                pending.other_since = self._clock.seconds()
            pending.other.append(event)
            _note_owed(pending.other_names, event)
            if pending.other_call is None:
                pending.other_call = self._clock.callLater(
                    self._window, self._guarded, self._flush_other, event.account)

    def _pending(self, account):
        pending = self._accounts.get(account)
        if pending is None:
            pending = self._accounts[account] = _Account()
        return pending

    # -- IPushDispatcher ---------------------------------------------------

    def silenceEnded(self, account, subscription_id):
        if self._stopped:
            return
        try:
            self._silence_over((account, subscription_id))
        except Exception:
            self.log.failure("push dispatcher: silence end of {account} {subscription} failed",
                             account=account, subscription=subscription_id)

    # -- flushing ----------------------------------------------------------

    def _guarded(self, flush, account):
        try:
            flush(account)
        except Exception:
            self.log.failure("push dispatcher: flush for {account} failed", account=account)

    def _take(self, account, new):
        """(events, active subscriptions, since): the account's waiting new-mail events or
        the others, and when the first of them arrived.

        The subscriptions are empty when nothing waits or nobody listens (most
        accounts): then nothing is rendered.
        """
        pending = self._accounts.get(account)
        if pending is None:
            return [], (), None
        if new:
            events, pending.new, pending.new_call = pending.new, [], None
            pending.new_names = OrderedDict()
            since = pending.new_since
        else:
            events, pending.other, pending.other_call = pending.other, [], None
            pending.other_names = OrderedDict()
            since = pending.other_since
        self._forget(account, pending)
        self._mark((account, ""))
        return events, self._subscriptions.active(account), since

    def _level(self, account):
        return privacy.FULL if self._privacy is None else self._privacy.level(account)

    def _wanted(self, account):
        """The mailboxes in the push scope (a set), or None: all of them."""
        return None if self._scope is None else self._scope.mailboxes(account)

    def _flush_new(self, account):
        events, subs, since = self._take(account, new=True)
        if not subs:
            return
        wanted = self._wanted(account)
        if wanted is not None:
            events = [(order, e) for order, e in events if e.mailbox in wanted]
        level = self._level(account)
        sections = OrderedDict()
        for order, event in events:
            items = sections.setdefault(event.mailbox, [])
            if level == privacy.FULL:
                body = event.body if self._preview_chars > 0 else b""
                items.append(NewMessage(event.uid, event.flags, event.headers, order, body,
                                        self._preview_chars))
            elif level == privacy.MINIMAL:
                items.append(FlagUpdate(event.uid, frozenset(event.flags)))
        planned = []
        for push in render([Section(m, tuple(items)) for m, items in sections.items()],
                           self._budget):
            urgency = (decisions.URGENCY_NEW_MAIL_INBOX if INBOX in push.mailboxes
                       else decisions.URGENCY_NEW_MAIL_OTHER)
            planned.append(_Planned(push, KIND_NEW, urgency, decisions.TTL_NEW_MAIL, None))
        self._fan_out(account, planned, subs, since)

    def _flush_other(self, account):
        events, subs, since = self._take(account, new=False)
        if not subs:
            return
        wanted = self._wanted(account)
        if wanted is not None:  # the mailbox tree is the account's: always pushed
            events = [e for e in events if isinstance(e, _TREE_EVENTS) or e.mailbox in wanted]
        mailboxes, tree = _merge(events)
        if self._level(account) == privacy.SYNC:
            mailboxes = OrderedDict((m, Section(m)) for m in mailboxes)
        planned = []
        # SPEC 5.3: what is due at the same time shares pushes, one "* SELECT" per mailbox.
        pushes = render(list(mailboxes.values()), self._budget)
        for push in pushes:
            planned.append(_Planned(push, KIND_MAILBOX, decisions.URGENCY_OTHER,
                                    decisions.TTL_OTHER, self._mailbox_topic(account, push, pushes)))
        if tree:
            section = Section(None, tuple(ListUpdate(n, gone) for n, gone in tree.items()))
            pushes = render([section], self._budget)
            if sum(len(p.sections[0].items) for p in pushes if p.sections) < len(tree):
                self.log.warn("push: {account}: some LIST responses did not fit in {n} pushes"
                              " and were left out", account=account,
                              n=decisions.MAX_PUSHES_PER_BURST)
            for push in pushes:
                planned.append(_Planned(push, KIND_LIST, decisions.URGENCY_OTHER,
                                        decisions.TTL_OTHER, self._list_topic(account, push)))
        self._fan_out(account, planned, subs, since)

    def _forget(self, account, pending):
        if not pending.new and not pending.other and pending.new_call is None \
                and pending.other_call is None:
            del self._accounts[account]

    def _mailbox_topic(self, account, push, pushes):
        """The mailbox's Topic when this push alone speaks of that one mailbox.

        A push about several mailboxes, or one of several pushes about the same
        mailbox, has no Topic: the push service must not let it replace another.
        """
        if len(push.mailboxes) != 1:
            return None
        [mailbox] = push.mailboxes
        if sum(1 for p in pushes if mailbox in p.mailboxes) != 1:
            return None
        return topic_for(self._topic_key, account, mailbox)

    def _list_topic(self, account, push):
        names = {item.name for s in push.sections for item in s.items}
        if len(names) == 1:
            return topic_for(self._topic_key, account, names.pop())
        return None  # about several mailboxes: must not replace another push

    def _fan_out(self, account, planned, subs, since=None):
        if not planned:
            return
        for p in planned:
            p.since = since
        now = self._clock.seconds()
        limited = []  # the rate-limited form of ``planned``, made for the first who needs it
        for sub in subs:
            if sub.state != model.ACTIVE:
                continue
            key = (sub.account, sub.id)
            if sub.is_silenced(now):
                self._dropped(sub, planned)
                continue
            queue = self._within_limit(sub, planned, limited)
            if key in self._silences:
                # the silence ended without a word from the commands: resync first
                queue[:0] = self._sync_pushes(account, self._pop_silence(key))
            self._run(sub, queue, fresh=True)

    def _within_limit(self, sub, planned, limited):
        """``planned`` for ``sub``, its new-mail pushes collapsed when its bucket is empty.

        The new-mail pushes of a flush are the only ones without a Topic; they
        all go, or (the bucket cannot pay for all) none of them and one generic
        sync per mailbox instead, each with the mailbox's new-mail Topic.
        """
        loose = sum(1 for p in planned if p.kind == KIND_NEW)
        if not loose or self._limiter is None \
                or self._limiter.take((sub.account, sub.id), loose):
            return list(planned)
        self.rate_limited += 1
        if not limited:
            limited.extend(self._collapsed(sub.account, planned))
        self.log.debug("push: {account} {subscription}: new-mail rate limit reached, "
                       "sending generic syncs", account=sub.account, subscription=sub.id)
        return list(limited)

    def _collapsed(self, account, planned):
        mailboxes = OrderedDict()
        for p in planned:
            if p.kind == KIND_NEW:
                for mailbox in p.push.mailboxes:
                    mailboxes[mailbox] = (decisions.URGENCY_NEW_MAIL_INBOX if mailbox == INBOX
                                          else decisions.URGENCY_NEW_MAIL_OTHER)
        out = []
        for mailbox, urgency in mailboxes.items():
            for push in render([Section(mailbox)], self._budget):
                out.append(_Planned(push, KIND_LIMITED, urgency, decisions.TTL_NEW_MAIL,
                                    topic_for(self._topic_key, account, mailbox, "new"),
                                    since=planned[0].since))
        return out + [p for p in planned if p.kind != KIND_NEW]

    # -- sending -----------------------------------------------------------

    def _run(self, sub, queue, fresh):
        """Send the first push of ``queue`` to ``sub``; the rest follow its outcome."""
        if not queue or self._stopped:
            return
        key = (sub.account, sub.id)
        if not fresh:
            sub = self._subscriptions.get(sub.account, sub.id)
            if sub is None or sub.state != model.ACTIVE:
                self._unqueue(key, queue)
                return  # deleted or made pending meanwhile: nothing more
            if sub.is_silenced(self._clock.seconds()):
                self._dropped(sub, queue)
                self._unqueue(key, queue)
                return
        planned = queue.pop(0)
        if queue:
            self._queues.setdefault(key, {})[id(queue)] = queue
            self._mark(key)
        else:
            self._unqueue(key, queue)
        try:
            target = sub.target()
        except ValueError:
            self.log.warn("push: {account} {subscription} is active without a VAPID key",
                          account=sub.account, subscription=sub.id)
            return
        # "endpoint" lets the outcome observer ignore answers about a replaced endpoint
        context = {"kind": planned.kind, "mailboxes": list(planned.push.mailboxes),
                   "endpoint": target.endpoint}
        # send() never errbacks by contract; a bug that raises must not stop the flush
        d = defer.maybeDeferred(self._sender.send, target, planned.push.payload,
                                planned.urgency, planned.ttl, planned.topic, context)
        d.addCallback(self._outcome, sub, planned, queue)
        d.addErrback(lambda f: self.log.failure("push dispatcher: send failed", f))

    def _unqueue(self, key, queue):
        queues = self._queues.get(key)
        if queues is not None and queues.pop(id(queue), None) is not None:
            if not queues:
                del self._queues[key]
            self._mark(key)

    def _outcome(self, outcome, sub, planned, queue):
        if outcome.kind == model.DELIVERED and planned.since is not None \
                and self.latency is not None:
            self.latency(self._clock.seconds() - planned.since)
        if outcome.kind == model.GONE:
            self.log.info("push: {account} {subscription} is gone ({status}); "
                          "{count} more pushes not sent", account=sub.account,
                          subscription=sub.id, status=outcome.status, count=len(queue))
            self._unqueue((sub.account, sub.id), queue)
            return
        if outcome.kind == model.TOO_LARGE:
            queue[:0] = self._smaller(sub, planned)
        self._run(sub, queue, fresh=False)

    def _smaller(self, sub, planned):
        """The same news in bodies of at most half the refused one (SPEC 5.4 via 413)."""
        push = planned.push
        budget = len(push.payload) // 2
        if planned.generation == 0:
            sections = list(push.sections) + [Section(m) for m in push.synced]
            max_pushes = decisions.MAX_PUSHES_PER_BURST
        elif planned.kind == KIND_LIST:
            sections = list(push.sections)
            max_pushes = 1
        else:
            # refused twice: only the generic sync is left to say
            sections = [Section(m) for m in push.mailboxes]
            max_pushes = 1
        smaller = [p for p in render(sections, budget, max_pushes) if p.payload != push.payload]
        self.log.info("push: {account} {subscription}: 413 for {size} octets, "
                      "resending as {count} push(es) of at most {budget}",
                      account=sub.account, subscription=sub.id, size=len(push.payload),
                      count=len(smaller), budget=budget)
        topic = planned.topic
        return [
            _Planned(p, planned.kind, planned.urgency, planned.ttl,
                     self._list_topic(sub.account, p) if planned.kind == KIND_LIST else topic,
                     planned.generation + 1, planned.since)
            for p in smaller
        ]

    # -- silence -----------------------------------------------------------

    def _dropped(self, sub, planned):
        key = (sub.account, sub.id)
        self._mark(key)
        silence = self._silences.get(key)
        if silence is None:
            silence = self._silences[key] = _Silence()
        for p in planned:
            if p.kind == KIND_LIST:
                for section in p.push.sections:
                    for item in section.items:
                        if item.nonexistent:
                            silence.mailboxes.pop(item.name, None)
                        else:
                            silence.mailboxes[item.name] = True
            else:
                for mailbox in p.push.mailboxes:
                    silence.mailboxes[mailbox] = True
        until = sub.silenced_until
        if sub.silenced_connection is None and until is not None:
            if silence.timer is None or not silence.timer.active() \
                    or silence.timer.getTime() != until:
                if silence.timer is not None and silence.timer.active():
                    silence.timer.cancel()
                silence.timer = self._clock.callLater(
                    max(0, until - self._clock.seconds()), self._silence_timer, key)

    def _silence_timer(self, key):
        silence = self._silences.get(key)
        if silence is not None:
            silence.timer = None
        try:
            self._silence_over(key)
        except Exception:
            self.log.failure("push dispatcher: silence timer failed")

    def _pop_silence(self, key):
        self._mark(key)
        silence = self._silences.pop(key)
        if silence.timer is not None and silence.timer.active():
            silence.timer.cancel()
        return list(silence.mailboxes)

    def _silence_over(self, key):
        silence = self._silences.get(key)
        if silence is None:
            return
        sub = self._subscriptions.get(*key)
        if sub is None or sub.state != model.ACTIVE:
            self._pop_silence(key)
            return
        if sub.is_silenced(self._clock.seconds()):
            self._dropped(sub, [])  # extended: wait for the new end
            return
        queue = self._sync_pushes(key[0], self._pop_silence(key))
        self._run(sub, queue, fresh=True)

    # -- what is owed, on disk (OwedSyncs) ------------------------------------

    def _mark(self, key):
        if self._owed is not None:
            self._owed.mark(key)

    def _owed_keys(self):
        keys = {(account, "") for account in self._accounts}
        return keys | set(self._silences) | set(self._queues)

    def _owed_now(self, key):
        """The mailboxes ``key`` is owed a sync of, from what is in memory now."""
        account, sid = key
        names = OrderedDict()
        if sid == "":
            pending = self._accounts.get(account)
            if pending is not None:
                names.update(pending.new_names)
                names.update(pending.other_names)
            return list(names)
        silence = self._silences.get(key)
        if silence is not None:
            names.update(silence.mailboxes)
        for queue in self._queues.get(key, {}).values():
            for planned in queue:
                for name in _names(planned):
                    names[name] = True
        return list(names)

    def _resume(self, owed):
        """After a restart: one generic sync per mailbox owed, to whom it was owed."""
        now = self._clock.seconds()
        for (account, sid), mailboxes in owed.items():
            self._mark((account, sid))  # rewritten from memory at the end of this turn
            if sid == "":
                wanted = self._wanted(account)
                mailboxes = [m for m in mailboxes if wanted is None or m in wanted]
                subs = self._subscriptions.active(account)
            else:
                subs = [self._subscriptions.get(account, sid)]
            for sub in subs:
                if sub is None or sub.state != model.ACTIVE or not mailboxes:
                    continue
                planned = self._sync_pushes(account, mailboxes)
                self.log.info("push: {account} {subscription}: {count} generic sync(s) owed"
                              " from before the restart", account=account,
                              subscription=sub.id, count=len(planned))
                if sub.is_silenced(now):
                    self._dropped(sub, planned)
                else:
                    self._run(sub, planned, fresh=True)

    def _sync_pushes(self, account, mailboxes):
        """One generic sync push per mailbox, each with its Topic (SPEC 3.5)."""
        planned = []
        for mailbox in mailboxes:
            for push in render([Section(mailbox)], self._budget):
                planned.append(_Planned(push, KIND_SYNC, decisions.URGENCY_OTHER,
                                        decisions.TTL_OTHER,
                                        topic_for(self._topic_key, account, mailbox)))
        return planned


def _names(planned):
    """The mailboxes a planned push tells of (LIST: the names that still exist)."""
    if planned.kind == KIND_LIST:
        return [item.name for section in planned.push.sections for item in section.items
                if not item.nonexistent]
    return list(planned.push.mailboxes)


def _note_owed(names, event):
    """Add the mailbox ``event`` leaves owed a sync to ``names`` (an OrderedDict)."""
    if not isinstance(event, MailboxDeleted):
        names[event.new if isinstance(event, MailboxRenamed) else event.mailbox] = True


def _merge(events):
    """Flag/expunge events per mailbox as Sections, and mailbox-tree changes.

    Returns (OrderedDict mailbox -> Section, OrderedDict name -> nonexistent).
    The last flags of a message win; an expunged message loses its flag
    update; renames of children that follow their parent's rename are implied
    by it (RFC 3501 6.3.5) and left out.
    """
    flags = OrderedDict()  # mailbox -> OrderedDict uid -> flags
    vanished = {}  # mailbox -> set of uids
    tree = OrderedDict()
    renames = []
    for event in events:
        if isinstance(event, FlagsChanged):
            per = flags.setdefault(event.mailbox, OrderedDict())
            for uid, new_flags, _modseq in event.changes:
                per.pop(uid, None)
                per[uid] = new_flags
        elif isinstance(event, MessagesExpunged):
            flags.setdefault(event.mailbox, OrderedDict())
            gone = vanished.setdefault(event.mailbox, set())
            gone.update(event.uids)
            per = flags[event.mailbox]
            for uid in event.uids:
                per.pop(uid, None)
        elif isinstance(event, MailboxCreated):
            tree.pop(event.mailbox, None)
            tree[event.mailbox] = False
        elif isinstance(event, MailboxDeleted):
            tree.pop(event.mailbox, None)
            tree[event.mailbox] = True
        elif isinstance(event, MailboxRenamed):
            implied = any(
                event.old.startswith(old + "/") and event.new == new + event.old[len(old):]
                for old, new in renames
            )
            renames.append((event.old, event.new))
            if implied:
                continue
            for name, gone in ((event.new, False), (event.old, True)):
                tree.pop(name, None)
                tree[name] = gone
    sections = OrderedDict()
    for mailbox, per in flags.items():
        items = []
        if vanished.get(mailbox):
            items.append(Vanished(tuple(sorted(vanished[mailbox]))))
        items.extend(FlagUpdate(uid, frozenset(f)) for uid, f in sorted(per.items()))
        if items:
            sections[mailbox] = Section(mailbox, tuple(items))
    return sections, tree
