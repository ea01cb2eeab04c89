"""Property: whatever other sessions do, what a view tells keeps the client's list right."""

import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from imapwebpush.imap.view import SessionView
from imapwebpush.store.account import MailStore
from tests.harness.imap import USER, message

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.booleans()),
        st.tuples(st.just("flag"), st.integers(0, 20)),
        st.tuples(st.just("expunge"), st.integers(0, 20)),
        st.tuples(st.just("flush"), st.booleans()),
    ),
    max_size=12,
)


class ViewPropertyTests(unittest.TestCase):
    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(initial=st.integers(0, 4), ops=operations)
    def test_client_list_follows_the_store(self, initial, ops):
        path = tempfile.mkdtemp()
        try:
            self.check(path, initial, ops)
        finally:
            shutil.rmtree(path)

    def check(self, path, initial, ops):
        account = MailStore(path).account(USER)
        inbox = account.mailbox("INBOX")
        for n in range(initial):
            inbox.add(message("m%d" % n))
        view = SessionView(account, inbox, object(), False)
        client = list(view.uids)

        def apply(updates):
            for event in updates:
                if event[0] == "expunge":
                    del client[event[1] - 1]
                elif event[0] == "flags":
                    self.assertEqual(client[event[1] - 1], event[2])
                elif event[0] == "exists":
                    self.assertGreaterEqual(event[1], len(client))
                    client.extend(view.uids[len(client) : event[1]])

        for op, arg in ops:
            uids = inbox.uids()
            if op == "add":
                inbox.add(message("new"), ["\\Seen"] if arg else [], origin="other")
            elif op == "flag" and uids:
                inbox.set_flags([uids[arg % len(uids)]], ["\\Flagged"], "add", origin="other")
            elif op == "expunge" and uids:
                victim = uids[arg % len(uids)]
                inbox.set_flags([victim], ["\\Deleted"], "add", origin="other")
                inbox.expunge(uids=[victim], origin="other")
            elif op == "flush":
                apply(view.take_updates(allow_expunge=arg))
                # between commands, numbers the client knows never move
                self.assertEqual(client, view.uids)
                self.assert_numbers(view, client)
        apply(view.take_updates(allow_expunge=True))
        self.assertEqual(client, view.uids)
        self.assert_numbers(view, client)
        self.assertEqual(client, inbox.uids())
        view.close()

    def assert_numbers(self, view, client):
        """seq() and resolve() (found by bisection) say what the client's own list says."""
        self.assertEqual(client, sorted(client))
        for n, uid in enumerate(client, 1):
            self.assertEqual(view.seq(uid), n)
        top = (client[-1] if client else 0) + 2
        for uid in range(1, top):
            if uid not in client:
                self.assertRaises(KeyError, view.seq, uid)
        everything = [(n, u) for n, u in enumerate(client, 1)]
        self.assertEqual(view.resolve([(1, None)], uid=False), everything)
        self.assertEqual(view.resolve([(1, None)], uid=True), everything)
        for lo in range(1, top):
            for hi in range(lo, top):
                by_uid = [(n, u) for n, u in everything if lo <= u <= hi]
                self.assertEqual(view.resolve([(lo, hi)], uid=True), by_uid)
                if hi <= len(client):
                    self.assertEqual(view.resolve([(lo, hi)], uid=False), everything[lo - 1 : hi])
                else:
                    self.assertRaises(ValueError, view.resolve, [(lo, hi)], False)
