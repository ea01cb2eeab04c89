"""PushDispatcher: which subscription gets which push, when, and what happens after."""

import os
import re
import stat
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from imapwebpush import decisions
from imapwebpush.interfaces import IChangeListener, IPushDispatcher, IPushSender, ISubscriptionStore
from imapwebpush.events import (
    FlagsChanged,
    MailboxCreated,
    MailboxDeleted,
    MailboxRenamed,
    MessageAdded,
    MessagesExpunged,
)
from imapwebpush.webpush import model
from imapwebpush.webpush.dispatcher import PushDispatcher
from imapwebpush.webpush.limits import MAX_PLAINTEXT
from imapwebpush.webpush.topic import load_or_create_topic_key, topic

KEY = b"k" * 32
ALICE = "alice@example.org"
BOB = "bob@example.org"
VAPID = "B" * 87
HEADERS = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n\r\n"
)
ENVELOPE = (
    b'("Mon, 7 Feb 1994 21:52:25 -0800" "afternoon meeting" '
    b'(("Fred Foobar" NIL "foobar" "Blurdybloop.example")) (("Fred Foobar" NIL "foobar" '
    b'"Blurdybloop.example")) (("Fred Foobar" NIL "foobar" "Blurdybloop.example")) ((NIL NIL '
    b'"mooch" "owatagu.siam.edu.example")) NIL NIL NIL "<B27397-0100000@Blurdybloop.example>")'
)


def sub(account, sid, state=model.ACTIVE, **kw):
    return model.Subscription(
        account=account, id=sid, endpoint="https://push.example/" + sid, p256dh=b"\x04" * 65,
        auth=b"a" * 16, state=state, vapid_key=VAPID if state == model.ACTIVE else None,
        created=0.0, **kw)


@implementer(ISubscriptionStore)
class FakeSubscriptions:
    def __init__(self, *subs):
        self.subs = {(s.account, s.id): s for s in subs}
        self.active_calls = 0

    def put(self, s):
        self.subs[(s.account, s.id)] = s

    def delete(self, account, sid):
        self.subs.pop((account, sid), None)

    def get(self, account, subscription_id):
        return self.subs.get((account, subscription_id))

    def list(self, account):
        return sorted((s for s in self.subs.values() if s.account == account), key=lambda s: s.id)

    def active(self, account):
        self.active_calls += 1
        return [s for s in self.list(account) if s.state == model.ACTIVE]


@implementer(IPushSender)
class RecordingSender:
    """Records every send; answers DELIVERED, or the kinds scripted per subscription id."""

    running = True

    def __init__(self):
        self.sent = []
        self.script = {}  # subscription id -> list of outcome kinds, consumed in order
        self.hold = False
        self.waiting = []

    def send(self, target, payload, urgency, ttl, topic=None, context=None):
        assert isinstance(payload, bytes) and len(payload) <= MAX_PLAINTEXT
        self.sent.append((target.subscription_id, payload, urgency, ttl, topic, context))
        kinds = self.script.get(target.subscription_id)
        kind = kinds.pop(0) if kinds else model.DELIVERED
        outcome = model.PushOutcome(kind, target.account, target.subscription_id, context=context)
        if self.hold:
            d = defer.Deferred()
            self.waiting.append((d, outcome))
            return d
        return defer.succeed(outcome)

    def release(self):
        waiting, self.waiting = self.waiting, []
        for d, outcome in waiting:
            d.callback(outcome)

    def payloads(self, sid=None):
        return [p for s, p, *_ in self.sent if sid is None or s == sid]


def added(uid, mailbox="INBOX", account=ALICE, flags=(), headers=HEADERS):
    return MessageAdded(account, mailbox, uid, frozenset(flags), uid, 100, 0.0, headers)


class Base(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.subs = FakeSubscriptions(sub(ALICE, "phone"), sub(ALICE, "new", model.PENDING),
                                      sub(BOB, "bobs"))
        self.sender = RecordingSender()
        self.dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY)
        self.dispatcher.startService()
        self.addCleanup(self.dispatcher.stopService)

    def publish(self, *events):
        for event in events:
            self.dispatcher.changed(event)


class InterfaceTests(Base):
    def test_provides(self):
        verifyObject(IChangeListener, self.dispatcher)
        verifyObject(IPushDispatcher, self.dispatcher)


class NewMailTests(Base):
    def test_new_message_in_inbox(self):
        self.publish(added(4392))
        self.assertEqual(self.sender.sent, [])  # not inside the publisher's call stack
        self.clock.advance(0)
        self.assertEqual(self.sender.sent, [(
            "phone",
            b'* SELECT "INBOX"\r\n* 4392 UIDFETCH (FLAGS () ENVELOPE ' + ENVELOPE + b")\r\n",
            "high", decisions.TTL_NEW_MAIL, None, {"kind": "new", "mailboxes": ["INBOX"], "endpoint": "https://push.example/phone"},
        )])

    def test_new_message_elsewhere_is_normal(self):
        self.publish(added(5, "Lists/Twisted", flags=("\\Seen",)))
        self.clock.advance(0)
        [(sid, payload, urgency, ttl, topic_, _)] = self.sender.sent
        self.assertEqual((urgency, ttl, topic_), ("normal", decisions.TTL_NEW_MAIL, None))
        self.assertTrue(payload.startswith(
            b'* SELECT "Lists/Twisted"\r\n* 5 UIDFETCH (FLAGS (\\Seen) ENVELOPE ('))

    def test_only_active_subscriptions_of_the_account(self):
        self.subs.put(sub(ALICE, "laptop"))
        self.publish(added(1))
        self.clock.advance(0)
        self.assertEqual(sorted(s for s, *_ in self.sender.sent), ["laptop", "phone"])

    def test_one_turn_shares_pushes(self):
        self.publish(*[added(uid) for uid in range(1, 21)])
        self.clock.advance(0)
        [payload] = self.sender.payloads()
        uids = [int(u) for u in re.findall(rb"^\* (\d+) UIDFETCH", payload, re.M)]
        self.assertEqual(uids, list(range(1, 21)))
        self.assertIn(b"* 20 UIDFETCH (FLAGS () ENVELOPE (", payload)
        self.assertIn(b"* 1 UIDFETCH (FLAGS ())\r\n", payload)

    def test_burst_of_500_is_one_generic_sync(self):
        self.publish(*[added(uid) for uid in range(1, 501)])
        self.clock.advance(0)
        self.assertEqual(self.sender.sent, [(
            "phone", b'* SELECT "INBOX"\r\n', "high", decisions.TTL_NEW_MAIL, None,
            {"kind": "new", "mailboxes": ["INBOX"], "endpoint": "https://push.example/phone"})])
        self.assertEqual(self.subs.active_calls, 1)

    def test_two_mailboxes_in_one_push(self):
        self.publish(added(1, "Archive"), added(2, "INBOX"))
        self.clock.advance(0)
        [(_, payload, urgency, *_)] = self.sender.sent
        self.assertEqual(re.findall(rb"^\* SELECT (.*)\r$", payload, re.M), [b'"Archive"', b'"INBOX"'])
        self.assertEqual(urgency, "high")

    def test_later_turn_is_a_new_push(self):
        self.publish(added(1))
        self.clock.advance(0)
        self.publish(added(2))
        self.clock.advance(0)
        self.assertEqual(len(self.sender.sent), 2)

    def test_account_without_subscriptions(self):
        self.publish(added(1, account="carol@example.org"),
                     MessagesExpunged("carol@example.org", "INBOX", (1,), 2))
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        self.assertEqual(self.sender.sent, [])
        self.assertEqual(self.subs.active_calls, 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bad_event_does_not_raise(self):
        self.dispatcher.changed(object())
        self.clock.advance(10)
        self.assertEqual(self.sender.sent, [])


class CoalescingTests(Base):
    def test_flags_wait_the_window_and_merge(self):
        self.publish(
            FlagsChanged(ALICE, "INBOX", ((3, frozenset({"\\Seen"}), 10),)),
            FlagsChanged(ALICE, "INBOX", ((4, frozenset({"\\Flagged"}), 11),
                                          (3, frozenset({"\\Seen", "\\Answered"}), 12))),
            MessagesExpunged(ALICE, "INBOX", (7, 5, 6), 13),
            FlagsChanged(ALICE, "INBOX", ((5, frozenset({"\\Deleted"}), 9),)),
            MessagesExpunged(ALICE, "INBOX", (5, 9), 14),
        )
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW - 0.01)
        self.assertEqual(self.sender.sent, [])
        self.clock.advance(0.01)
        self.assertEqual(self.sender.sent, [(
            "phone",
            b'* SELECT "INBOX"\r\n* VANISHED 5:7,9\r\n'
            b"* 3 UIDFETCH (FLAGS (\\Answered \\Seen))\r\n* 4 UIDFETCH (FLAGS (\\Flagged))\r\n",
            "low", decisions.TTL_OTHER, topic(KEY, ALICE, "INBOX"),
            {"kind": "mailbox", "mailboxes": ["INBOX"], "endpoint": "https://push.example/phone"},
        )])

    def test_mailboxes_due_together_share_one_push(self):
        """SPEC 5.3: one push, one "* SELECT" per mailbox; about two mailboxes, so no Topic."""
        self.publish(
            MessagesExpunged(ALICE, "INBOX", (1,), 2),
            MessagesExpunged(ALICE, "Archive", (2,), 3),
            MessagesExpunged(ALICE, "INBOX", (3,), 4),
        )
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        self.assertEqual([(p, t) for _, p, _, _, t, _ in self.sender.sent], [
            (b'* SELECT "INBOX"\r\n* VANISHED 1,3\r\n* SELECT "Archive"\r\n* VANISHED 2\r\n', None),
        ])

    def test_one_mailbox_push_has_its_topic(self):
        self.publish(MessagesExpunged(ALICE, "INBOX", (1,), 2),
                     FlagsChanged(ALICE, "INBOX", ((4, frozenset(["\\Seen"]), 5),)))
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        self.assertEqual([t for _, _, _, _, t, _ in self.sender.sent], [topic(KEY, ALICE, "INBOX")])

    def test_split_pushes_of_one_mailbox_have_no_topic(self):
        """Pushes that each hold part of one mailbox's news must not replace each other."""
        dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY, budget=200)
        dispatcher.changed(FlagsChanged(ALICE, "INBOX", tuple(
            (uid, frozenset(["\\Seen", "$Label%d" % uid]), uid) for uid in range(1, 12))))
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        self.assertGreater(len(self.sender.sent), 1)
        self.assertEqual({t for _, _, _, _, t, _ in self.sender.sent}, {None})
        dispatcher.stop()

    def test_move_is_new_mail_now_and_vanished_later(self):
        self.publish(added(1, "Archive"), MessagesExpunged(ALICE, "INBOX", (8,), 5))
        self.clock.advance(0)
        self.assertEqual(len(self.sender.sent), 1)
        self.assertEqual(self.sender.sent[0][2], "normal")
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        self.assertEqual(self.sender.payloads()[1], b'* SELECT "INBOX"\r\n* VANISHED 8\r\n')

    def test_configurable_window(self):
        dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY, coalesce_window=0.5)
        dispatcher.changed(MessagesExpunged(ALICE, "INBOX", (1,), 2))
        self.clock.advance(0.5)
        self.assertEqual(len(self.sender.sent), 1)

    def test_mailbox_tree_changes(self):
        self.publish(
            MailboxCreated(ALICE, "Projects"),
            MailboxRenamed(ALICE, "Old", "New"),
            MailboxRenamed(ALICE, "Old/child", "New/child"),  # implied by its parent's rename
            MailboxDeleted(ALICE, "Trash/x"),
        )
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        [(_, payload, urgency, ttl, topic_, _)] = self.sender.sent
        self.assertEqual(payload, (
            b'* LIST () "/" "Projects"\r\n'
            b'* LIST () "/" "New"\r\n'
            b'* LIST (\\NonExistent) "/" "Old"\r\n'
            b'* LIST (\\NonExistent) "/" "Trash/x"\r\n'
        ))
        self.assertEqual((urgency, ttl, topic_), ("low", decisions.TTL_OTHER, None))

    def test_one_mailbox_change_has_its_topic(self):
        self.publish(MailboxCreated(ALICE, "Ä"), MailboxDeleted(ALICE, "Ä"))
        self.clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        [(_, payload, _, _, topic_, _)] = self.sender.sent
        self.assertEqual(payload, '* LIST (\\NonExistent) "/" "Ä"\r\n'.encode("utf-8"))
        self.assertEqual(topic_, topic(KEY, ALICE, "Ä"))


class SilenceTests(Base):
    def test_silenced_gets_nothing_then_one_sync_per_mailbox(self):
        self.subs.put(sub(ALICE, "phone", silenced_until=1100.0))
        self.publish(added(1), added(2, "Archive"), FlagsChanged(ALICE, "INBOX", ((1, frozenset(), 3),)))
        self.clock.advance(50)
        self.assertEqual(self.sender.sent, [])
        self.subs.put(sub(ALICE, "phone"))  # the store clears an expired silence
        self.clock.advance(50)
        self.assertEqual([(p, u, t) for _, p, u, _, t, _ in self.sender.sent], [
            (b'* SELECT "INBOX"\r\n', "low", topic(KEY, ALICE, "INBOX")),
            (b'* SELECT "Archive"\r\n', "low", topic(KEY, ALICE, "Archive")),
        ])
        self.clock.advance(1000)
        self.assertEqual(len(self.sender.sent), 2)

    def test_silence_until_the_end_time_even_if_not_cleared(self):
        self.subs.put(sub(ALICE, "phone", silenced_until=1010.0))
        self.publish(added(1))
        self.clock.advance(0)
        self.assertEqual(self.sender.sent, [])
        self.clock.advance(10)
        self.assertEqual(self.sender.payloads(), [b'* SELECT "INBOX"\r\n'])

    def test_connection_silence_ends_by_silence_ended(self):
        self.subs.put(sub(ALICE, "phone", silenced_connection="c1"))
        self.publish(MessagesExpunged(ALICE, "Sent", (1,), 2))
        self.clock.advance(100)
        self.dispatcher.silenceEnded(ALICE, "phone")  # still silenced: nothing
        self.assertEqual(self.sender.sent, [])
        self.subs.put(sub(ALICE, "phone"))
        self.dispatcher.silenceEnded(ALICE, "phone")
        self.dispatcher.silenceEnded(ALICE, "phone")  # nothing left to say
        self.assertEqual(self.sender.payloads(), [b'* SELECT "Sent"\r\n'])

    def test_extended_silence_waits_for_the_new_end(self):
        self.subs.put(sub(ALICE, "phone", silenced_until=1010.0))
        self.publish(added(1))
        self.clock.advance(0)
        self.subs.put(sub(ALICE, "phone", silenced_until=1500.0))
        self.clock.advance(10)
        self.assertEqual(self.sender.sent, [])
        self.clock.advance(490)
        self.assertEqual(self.sender.payloads(), [b'* SELECT "INBOX"\r\n'])

    def test_no_events_no_sync(self):
        self.subs.put(sub(ALICE, "phone", silenced_connection="c1"))
        self.subs.put(sub(ALICE, "phone"))
        self.dispatcher.silenceEnded(ALICE, "phone")
        self.dispatcher.silenceEnded(ALICE, "unknown")
        self.assertEqual(self.sender.sent, [])

    def test_deleted_during_silence_gets_nothing(self):
        self.subs.put(sub(ALICE, "phone", silenced_until=1010.0))
        self.publish(added(1))
        self.clock.advance(0)
        self.subs.delete(ALICE, "phone")
        self.clock.advance(100)
        self.assertEqual(self.sender.sent, [])

    def test_next_flush_resyncs_first_when_silence_ended_quietly(self):
        self.subs.put(sub(ALICE, "phone", silenced_connection="c1"))
        self.publish(added(1, "Archive"))
        self.clock.advance(0)
        self.subs.put(sub(ALICE, "phone"))
        self.publish(added(2))
        self.clock.advance(0)
        payloads = self.sender.payloads()
        self.assertEqual(payloads[0], b'* SELECT "Archive"\r\n')
        self.assertTrue(payloads[1].startswith(b'* SELECT "INBOX"\r\n* 2 UIDFETCH'))

    def test_renamed_mailbox_is_synced_under_its_new_name(self):
        self.subs.put(sub(ALICE, "phone", silenced_connection="c1"))
        self.publish(MailboxCreated(ALICE, "A"), MailboxRenamed(ALICE, "A", "B"))
        self.clock.advance(5)
        self.subs.put(sub(ALICE, "phone"))
        self.dispatcher.silenceEnded(ALICE, "phone")
        self.assertEqual(self.sender.payloads(), [b'* SELECT "B"\r\n'])


class OutcomeTests(Base):
    def setUp(self):
        Base.setUp(self)
        self.dispatcher = PushDispatcher(self.clock, self.subs, self.sender, KEY, budget=600)

    def test_gone_stops_the_burst(self):
        self.subs.put(sub(ALICE, "laptop"))
        self.sender.script["phone"] = [model.GONE]
        self.publish(*[added(uid) for uid in range(1, 40)])
        self.clock.advance(0)
        self.assertEqual(len(self.sender.payloads("phone")), 1)
        self.assertGreater(len(self.sender.payloads("laptop")), 1)

    def test_pushes_of_a_burst_go_one_after_the_other(self):
        self.sender.hold = True
        self.publish(*[added(uid) for uid in range(1, 40)])
        self.clock.advance(0)
        self.assertEqual(len(self.sender.sent), 1)
        self.sender.release()
        self.assertEqual(len(self.sender.sent), 2)
        self.subs.delete(ALICE, "phone")  # deleted meanwhile: nothing more
        self.sender.release()
        self.assertEqual(len(self.sender.sent), 2)

    def test_silenced_meanwhile_gets_the_sync_later(self):
        self.sender.hold = True
        self.publish(*[added(uid) for uid in range(1, 40)])
        self.clock.advance(0)
        self.subs.put(sub(ALICE, "phone", silenced_connection="c"))
        self.sender.release()
        self.assertEqual(len(self.sender.sent), 1)
        self.subs.put(sub(ALICE, "phone"))
        self.sender.hold = False
        self.dispatcher.silenceEnded(ALICE, "phone")
        self.assertEqual(self.sender.payloads()[-1], b'* SELECT "INBOX"\r\n')

    def test_too_large_resends_smaller_never_the_same(self):
        self.sender.script["phone"] = [model.TOO_LARGE]
        self.publish(added(1), added(2))
        self.clock.advance(0)
        first, *rest = self.sender.payloads()
        self.assertTrue(rest)
        for payload in rest:
            self.assertLessEqual(len(payload), len(first) // 2)
            self.assertNotEqual(payload, first)
        self.assertEqual(sorted(set(re.findall(rb"\* (\d+) UIDFETCH", b"".join(rest)))), [b"1", b"2"])
        self.assertEqual({u for _, _, u, *_ in self.sender.sent}, {"high"})

    def test_always_too_large_ends_with_the_generic_sync(self):
        self.sender.script["phone"] = [model.TOO_LARGE] * 100
        self.publish(*[added(uid) for uid in range(1, 6)])
        self.clock.advance(0)
        payloads = self.sender.payloads()
        self.assertEqual(len(payloads), len(set(payloads)))
        self.assertLess(len(payloads), 20)
        self.assertEqual(payloads[-1], b'* SELECT "INBOX"\r\n')

    def test_other_outcomes_go_on(self):
        self.sender.script["phone"] = [model.REJECTED, model.EXPIRED, model.FAILED]
        self.publish(*[added(uid) for uid in range(1, 40)])
        self.clock.advance(0)
        self.assertEqual(len(self.sender.payloads("phone")), 2)


class StopTests(Base):
    def test_stop_cancels_timers(self):
        self.subs.put(sub(ALICE, "phone", silenced_until=5000.0))
        self.publish(added(1), MessagesExpunged(ALICE, "INBOX", (1,), 2))
        self.clock.advance(0)
        self.publish(added(2), MessagesExpunged(ALICE, "INBOX", (2,), 2))
        self.assertTrue(self.clock.getDelayedCalls())
        self.dispatcher.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.publish(added(3))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class TopicTests(unittest.TestCase):
    def test_shape(self):
        value = topic(KEY, ALICE, "INBOX")
        self.assertLessEqual(len(value), decisions.MAX_TOPIC_LENGTH)
        self.assertRegex(value, r"\A[A-Za-z0-9_-]{32}\Z")
        self.assertEqual(value, topic(KEY, ALICE, "INBOX"))

    def test_reveals_nothing_and_separates(self):
        values = {topic(KEY, ALICE, "INBOX"), topic(KEY, ALICE, "Sent"), topic(KEY, BOB, "INBOX"),
                  topic(b"other" * 8, ALICE, "INBOX"), topic(KEY, ALICE + "I", "NBOX")}
        self.assertEqual(len(values), 5)
        self.assertNotIn("INBOX", topic(KEY, ALICE, "INBOX"))

    def test_key_file(self):
        path = os.path.join(self.mktemp())
        os.mkdir(path)
        path = os.path.join(path, "topic.key")
        key = load_or_create_topic_key(path)
        self.assertEqual(len(key), 32)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(load_or_create_topic_key(path), key)
        self.assertEqual(os.listdir(os.path.dirname(path)), ["topic.key"])

    def test_bad_key_file(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"short")
        self.assertRaises(ValueError, load_or_create_topic_key, path)


mailboxes = st.sampled_from(["INBOX", "Archive", "Ünïcode/Sub", 'q"uote', "x" * 300])
flag_sets = st.frozensets(st.sampled_from(["\\Seen", "\\Deleted", "$Label1", "bad flag"]))
header_bytes = st.one_of(
    st.just(HEADERS),
    st.binary(max_size=200).map(lambda b: b"Subject: " + b + b"\r\n\r\n"),
    st.builds(lambda t, n: b"From: " + t.encode("utf-8") + b" <a@b.example>\r\nSubject: "
              + (t * n).encode("utf-8") + b"\r\n\r\n",
              st.text(max_size=30), st.integers(0, 400)),
)
events = st.one_of(
    st.builds(lambda m, uid, f, h: MessageAdded(ALICE, m, uid, f, 1, 1, 0.0, h),
              mailboxes, st.integers(1, 10**6), flag_sets, header_bytes),
    st.builds(lambda m, changes: FlagsChanged(ALICE, m, tuple((u, f, 1) for u, f in changes)),
              mailboxes, st.lists(st.tuples(st.integers(1, 10**6), flag_sets), min_size=1,
                                  max_size=50)),
    st.builds(lambda m, uids: MessagesExpunged(ALICE, m, tuple(uids), 1),
              mailboxes, st.lists(st.integers(1, 10**6), min_size=1, max_size=400)),
    st.builds(lambda m: MailboxCreated(ALICE, m), mailboxes),
    st.builds(lambda a, b: MailboxRenamed(ALICE, a, b), mailboxes, mailboxes),
    st.builds(lambda m: MailboxDeleted(ALICE, m), mailboxes),
)


class PropertyTests(unittest.TestCase):
    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.lists(events, max_size=25), max_size=3), st.integers(200, MAX_PLAINTEXT))
    def test_any_events_make_whole_pushes_within_budget(self, turns, budget):
        """Whatever happens, every push fits the budget, is UTF-8 and made of whole lines,
        and every mailbox with news is named in some push."""
        clock = task.Clock()
        sender = RecordingSender()
        dispatcher = PushDispatcher(clock, FakeSubscriptions(sub(ALICE, "phone")), sender, KEY,
                                    budget=budget)
        selected, listed = set(), {}
        for turn in turns:
            for event in turn:
                dispatcher.changed(event)
                if isinstance(event, MailboxRenamed):
                    listed[event.new] = listed[event.old] = True
                elif isinstance(event, (MailboxCreated, MailboxDeleted)):
                    listed[event.mailbox] = True
                else:
                    selected.add(event.mailbox)
            clock.advance(0)
        clock.advance(decisions.DEFAULT_COALESCE_WINDOW)
        self.assertEqual(clock.getDelayedCalls(), [])
        told = b""
        for _, payload, urgency, ttl, topic_, _ in sender.sent:
            self.assertLessEqual(len(payload), budget)
            payload.decode("utf-8")
            self.assertTrue(payload.endswith(b"\r\n"))
            for line in payload[:-2].split(b"\r\n"):
                self.assertTrue(line.startswith((b"* SELECT ", b"* LIST ", b"* VANISHED "))
                                or re.match(rb"\* \d+ UIDFETCH \(FLAGS \(", line), line[:80])
            self.assertIn(urgency, ("high", "normal", "low"))
            told += payload
        for name in selected | set(listed):
            quoted = b'"' + name.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'
            longest = b"* LIST (\\NonExistent) " if name in listed else b"* SELECT "
            if len(longest + b'"/" ' + quoted + b"\r\n") <= budget:
                self.assertIn(quoted, told)
