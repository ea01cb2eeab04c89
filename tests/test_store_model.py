"""A model-based test of one mailbox: random operations and restarts against a dict model."""

import shutil
import tempfile

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.task import Clock
from twisted.trial import unittest

from imapwebpush.store.account import MailStore

FLAGS = ["\\Seen", "\\Deleted", "\\Flagged", "\\Answered", "\\Draft", "work", "$Later"]
flag_sets = st.sets(st.sampled_from(FLAGS), max_size=3)


class MailboxMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.path = tempfile.mkdtemp(prefix="imapwebpush-model-")
        self.clock = Clock()
        self.clock.advance(1700000000)
        self.events = []
        self.open()
        self.model = {}  # uid -> (flags, data)
        self.uidnext = 1
        self.modseq = self.box.highestmodseq
        self.validity = self.box.uidvalidity

    def open(self):
        self.store = MailStore(self.path, self.clock)
        self.store.bus.subscribe(self.events.append)
        self.account = self.store.account("m@example.org")
        self.box = self.account.mailbox("INBOX")
        self.other = self.account.mailbox("Trash")

    def teardown(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def uids(self):
        return sorted(self.model)

    @rule(flags=flag_sets, body=st.binary(max_size=40))
    def add(self, flags, body):
        data = b"Subject: m\r\n\r\n" + body.replace(b"\r", b"").replace(b"\n", b"\r\n")
        uid = self.box.add(data, flags=flags)
        assert uid == self.uidnext
        self.uidnext += 1
        self.model[uid] = (frozenset(flags), data)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), flags=flag_sets, mode=st.sampled_from(["add", "remove", "replace"]))
    def store_flags(self, data, flags, mode):
        uids = data.draw(st.lists(st.sampled_from(self.uids()), max_size=4))
        self.box.set_flags(uids, flags, mode)
        for uid in set(uids):
            old, body = self.model[uid]
            if mode == "add":
                new = old | flags
            elif mode == "remove":
                new = old - flags
            else:
                new = frozenset(flags)
            self.model[uid] = (new, body)

    @rule()
    def expunge(self):
        gone = [u for u, (f, _) in self.model.items() if "\\Deleted" in f]
        assert self.box.expunge() == sorted(gone)
        for uid in gone:
            del self.model[uid]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def move_out(self, data):
        uid = data.draw(st.sampled_from(self.uids()))
        (pair,) = self.box.move([uid], self.other)
        assert pair[0] == uid
        assert self.other.message(pair[1]).read() == self.model[uid][1]
        del self.model[uid]

    @rule()
    def claim(self):
        self.box.claim_recent()

    @rule()
    def restart(self):
        self.open()

    @invariant()
    def matches_model(self):
        assert self.box.uids() == self.uids()
        assert self.box.uidnext == self.uidnext
        assert self.box.uidvalidity == self.validity
        assert self.box.highestmodseq >= self.modseq
        self.modseq = self.box.highestmodseq
        # kept as flags change (STATUS UNSEEN), not recomputed
        assert self.box.unseen() == sorted(u for u, (f, _) in self.model.items() if "\\Seen" not in f)
        for uid, (flags, data) in self.model.items():
            msg = self.box.message(uid)
            assert msg.flags == flags, (uid, msg.flags, flags)
            assert msg.modseq <= self.modseq
            assert msg.read() == data


MailboxMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=15, deadline=None
)


class ModelTests(unittest.TestCase):
    def test_model(self):
        MailboxMachine.TestCase("runTest").runTest()
