"""Push scope over the wire: INBOX and the SUBSCRIBEd mailboxes by default, all by option.

SUBSCRIBE and UNSUBSCRIBE take effect for the very next change. An absent push
is shown by a later INBOX push arriving with nothing before it.
"""

from twisted.internet import defer
from twisted.trial import unittest

from imapwebpush.webpush.scope import SubscribedMailboxes, check_scope
from tests.test_push_end_to_end import MESSAGE, ServerHarness


class ScopeBase(ServerHarness):
    def append(self, *commands):
        """Run IMAP commands (name, args...) over the wire; every answer must be OK."""
        def work():
            answers = []
            with self.imap() as client:
                for name, *args in commands:
                    typ, data = getattr(client, name)(*args)
                    assert typ == "OK", (name, typ, data)
                    answers.append(data)
            return answers
        return self.client(work)

    @defer.inlineCallbacks
    def mailboxes_pushed(self, count):
        """The ``* SELECT`` mailbox of each of the next ``count`` pushes."""
        pushes = yield self.pushes(count)
        return [p.plaintext.split(b"\r\n")[0] for p in pushes]


class DefaultScopeTests(ScopeBase):
    @defer.inlineCallbacks
    def test_subscribe_and_unsubscribe_take_effect_at_once(self):
        yield self.append(("create", "Lists"))
        [created] = yield self.pushes(1)
        self.assertEqual(created.plaintext, b'* LIST () "/" "Lists"\r\n')  # the tree: always

        # not subscribed: nothing; INBOX always
        yield self.append(("append", "Lists", None, None, MESSAGE),
                          ("append", "INBOX", None, None, MESSAGE))
        self.assertEqual((yield self.mailboxes_pushed(2))[1:], [b'* SELECT "INBOX"'])

        answers = yield self.append(("subscribe", "Lists"),
                                    ("append", "Lists", None, None, MESSAGE))
        self.assertEqual(answers[0], [b"SUBSCRIBE completed"])
        self.assertEqual((yield self.mailboxes_pushed(3))[2:], [b'* SELECT "Lists"'])

        answers = yield self.append(("unsubscribe", "Lists"),
                                    ("append", "Lists", None, None, MESSAGE),
                                    ("append", "INBOX", None, None, MESSAGE))
        self.assertEqual(answers[0], [b"UNSUBSCRIBE completed"])
        self.assertEqual((yield self.mailboxes_pushed(4))[3:], [b'* SELECT "INBOX"'])

    @defer.inlineCallbacks
    def test_flag_changes_outside_the_scope_are_not_pushed(self):
        def work():
            with self.imap() as client:
                assert client.create("Lists")[0] == "OK"
                assert client.append("Lists", None, None, MESSAGE)[0] == "OK"
                client.select("Lists")
                assert client.uid("STORE", "1", "+FLAGS", r"(\Seen)")[0] == "OK"
                client.select("INBOX")
                assert client.append("INBOX", None, None, MESSAGE)[0] == "OK"
                assert client.uid("STORE", "1", "+FLAGS", r"(\Seen)")[0] == "OK"
        yield self.client(work)
        pushes = yield self.pushes(3)
        self.assertEqual(sorted(p.plaintext.split(b"\r\n")[0] for p in pushes),
                         [b'* LIST () "/" "Lists"', b'* SELECT "INBOX"', b'* SELECT "INBOX"'])
        self.assertIn(b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS (\\Seen))\r\n',
                      [p.plaintext for p in pushes])


class AllScopeTests(ScopeBase):
    options = ("--push-scope", "all")

    @defer.inlineCallbacks
    def test_every_mailbox(self):
        yield self.append(("create", "Lists"), ("append", "Lists", None, None, MESSAGE))
        # the two pushes may arrive in either order (each its own POST)
        self.assertEqual(sorted((yield self.mailboxes_pushed(2))), [b'* LIST () "/" "Lists"', b'* SELECT "Lists"'])


class UnitTests(unittest.TestCase):
    def test_check_scope(self):
        self.assertEqual(check_scope(" ALL"), "all")
        self.assertRaises(ValueError, check_scope, "some")

    def test_accounts_not_in_the_store_get_every_mailbox(self):
        class Store:
            def exists(self, account):
                return False
        self.assertIsNone(SubscribedMailboxes(Store()).mailboxes("x@example.org"))
