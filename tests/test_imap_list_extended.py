"""LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), STATUS=SIZE (RFC 8438) on the wire.

The examples of RFC 5258 section 5 and RFC 5819 section 5, on the same hierarchies,
with what this server says differently: ``\\HasChildren``/``\\HasNoChildren`` always
(as Dovecot), ``\\Subscribed`` first, no ``\\Marked``/``\\NoInferiors``, no remote
mailboxes (REMOTE changes nothing), parents created as mailboxes of their own (the
RFC's "server that doesn't support missing mailbox hierarchy elements").
"""

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet.task import Clock
from twisted.trial import unittest

from imapwebpush.constants import INBOX
from imapwebpush.imap.factory import IMAPFactory
from imapwebpush.imap.realm import IMAPRealm
from imapwebpush.store.account import DEFAULT_MAILBOXES, MailStore
from tests.harness.wire import PASSWORD, USER, MemoryWire

# RFC 5258 5, example 1: the hierarchy of examples 1 to 6
FRUIT = ["Fruit", "Fruit/Apple", "Fruit/Banana", "Tofu", "Vegetable", "Vegetable/Broccoli", "Vegetable/Corn"]
# example 2: "Fruit/Peach" is subscribed but does not exist
FRUIT_SUBSCRIBED = [INBOX, "Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"]


class ListExtendedCase(unittest.TestCase):
    """An account with only INBOX and ``mailboxes``, subscribed to ``subscribed``."""

    mailboxes = FRUIT
    subscribed = FRUIT_SUBSCRIBED

    def setUp(self):
        self.clock = Clock()
        self.store = MailStore(self.mktemp(), clock=self.clock)
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER.encode(), PASSWORD.encode())
        self.factory = IMAPFactory(
            Portal(IMAPRealm(self.store), [checker]), self.store, allow_plaintext_auth=True, clock=self.clock
        )
        self.account = self.store.account(USER)
        for name, _ in DEFAULT_MAILBOXES:
            self.account.delete_mailbox(name)
        for name in self.account.subscriptions():
            self.account.unsubscribe(name)
        for name in self.mailboxes:
            self.account.create_mailbox(name)
        for name in self.subscribed:
            self.account.subscribe(name)
        self.wire = MemoryWire(self.factory)
        self.addCleanup(self.wire.close)
        self.assertEqual(self.wire.send(b'L1 LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))[-1][:5], b"L1 OK")

    def says(self, command, *lines):
        """``command`` is answered with exactly ``lines`` (text, tagged answer last)."""
        self.assertEqual(self.wire.send(command.encode()), [line.encode() for line in lines])


class RFC5258ExamplesTests(ListExtendedCase):
    """RFC 5258 section 5, examples 1 to 6."""

    def test_1_whole_hierarchy(self):
        self.says(
            'A01 LIST "" "*"',
            '* LIST (\\HasNoChildren) "/" "INBOX"',
            '* LIST (\\HasChildren) "/" "Fruit"',
            '* LIST (\\HasNoChildren) "/" "Fruit/Apple"',
            '* LIST (\\HasNoChildren) "/" "Fruit/Banana"',
            '* LIST (\\HasNoChildren) "/" "Tofu"',
            '* LIST (\\HasChildren) "/" "Vegetable"',
            '* LIST (\\HasNoChildren) "/" "Vegetable/Broccoli"',
            '* LIST (\\HasNoChildren) "/" "Vegetable/Corn"',
            "A01 OK LIST completed",
        )

    SUBSCRIBED_ANSWER = (
        '* LIST (\\Subscribed \\HasNoChildren) "/" "INBOX"',
        '* LIST (\\Subscribed \\HasNoChildren) "/" "Fruit/Banana"',
        '* LIST (\\Subscribed \\NonExistent \\HasNoChildren) "/" "Fruit/Peach"',
        '* LIST (\\Subscribed \\HasChildren) "/" "Vegetable"',
        '* LIST (\\Subscribed \\HasNoChildren) "/" "Vegetable/Broccoli"',
    )

    def test_2_subscribed(self):
        self.says('A02 LIST (SUBSCRIBED) "" "*"', *self.SUBSCRIBED_ANSWER, "A02 OK LIST completed")

    CHILDREN_ANSWER = (
        '* LIST (\\HasNoChildren) "/" "INBOX"',
        '* LIST (\\HasChildren) "/" "Fruit"',
        '* LIST (\\HasNoChildren) "/" "Tofu"',
        '* LIST (\\HasChildren) "/" "Vegetable"',
    )

    def test_3_children(self):
        self.says('A03 LIST () "" "%" RETURN (CHILDREN)', *self.CHILDREN_ANSWER, "A03 OK LIST completed")

    def test_4_remote_children(self):
        self.says('A04 LIST (REMOTE) "" "%" RETURN (CHILDREN)', *self.CHILDREN_ANSWER, "A04 OK LIST completed")

    def test_5_remote_subscribed(self):
        self.says('A05 LIST (REMOTE SUBSCRIBED) "" "*"', *self.SUBSCRIBED_ANSWER, "A05 OK LIST completed")

    def test_6_return_subscribed_lists_no_nonexistent_name(self):
        self.says(
            'A06 LIST (REMOTE) "" "*" RETURN (SUBSCRIBED)',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "INBOX"',
            '* LIST (\\HasChildren) "/" "Fruit"',
            '* LIST (\\HasNoChildren) "/" "Fruit/Apple"',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "Fruit/Banana"',
            '* LIST (\\HasNoChildren) "/" "Tofu"',
            '* LIST (\\Subscribed \\HasChildren) "/" "Vegetable"',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "Vegetable/Broccoli"',
            '* LIST (\\HasNoChildren) "/" "Vegetable/Corn"',
            "A06 OK LIST completed",
        )

    def test_options_in_any_case_and_repeated(self):
        self.says(
            'A07 list (subscribed Remote SUBSCRIBED) "" "Vegetable*" return (Children children)',
            '* LIST (\\Subscribed \\HasChildren) "/" "Vegetable"',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "Vegetable/Broccoli"',
            "A07 OK LIST completed",
        )


class SeveralPatternsTests(ListExtendedCase):
    """RFC 5258 section 5, example 7 (its own hierarchy), and what several patterns share."""

    mailboxes = ["Drafts", "Sent", "Sent/August2004", "Sent/December2003", "Sent/March2004", "Trash"]
    subscribed = []

    def test_7_several_patterns(self):
        self.says(
            'BBB LIST "" ("INBOX" "Drafts" "Sent/%")',
            '* LIST (\\HasNoChildren) "/" "INBOX"',
            '* LIST (\\HasNoChildren) "/" "Drafts"',
            '* LIST (\\HasNoChildren) "/" "Sent/August2004"',
            '* LIST (\\HasNoChildren) "/" "Sent/December2003"',
            '* LIST (\\HasNoChildren) "/" "Sent/March2004"',
            "BBB OK LIST completed",
        )

    def test_a_name_matching_several_patterns_is_listed_once(self):
        self.says(
            'B2 LIST "" ("Sent*" inbox "*2004" Sent/March2004)',
            '* LIST (\\HasNoChildren) "/" "INBOX"',
            '* LIST (\\HasChildren) "/" "Sent"',
            '* LIST (\\HasNoChildren) "/" "Sent/August2004"',
            '* LIST (\\HasNoChildren) "/" "Sent/December2003"',
            '* LIST (\\HasNoChildren) "/" "Sent/March2004"',
            "B2 OK LIST completed",
        )

    def test_reference_goes_before_each_pattern(self):
        self.says(
            'B3 LIST "Sent/" ("March*" "August2004")',
            '* LIST (\\HasNoChildren) "/" "Sent/August2004"',
            '* LIST (\\HasNoChildren) "/" "Sent/March2004"',
            "B3 OK LIST completed",
        )

    def test_a_pattern_as_a_literal_in_the_list(self):
        self.assertEqual(self.wire.send(b'B4 LIST "" ("Drafts" {5}'), [b"+ Ready for literal data"])
        self.assertEqual(
            self.wire.send_raw(b'Trash "nothing")\r\n'),
            [
                b'* LIST (\\HasNoChildren) "/" "Drafts"',
                b'* LIST (\\HasNoChildren) "/" "Trash"',
                b"B4 OK LIST completed",
            ],
        )

    def test_empty_and_invalid_patterns_match_nothing(self):
        self.says('B5 LIST "" ("" "&Jjo" "Trash")', '* LIST (\\HasNoChildren) "/" "Trash"', "B5 OK LIST completed")

    def test_only_the_rfc3501_form_asks_for_the_delimiter(self):
        self.says('B6 LIST "" ""', '* LIST (\\Noselect) "/" ""', "B6 OK LIST completed")
        self.says('B7 LIST () "" ""', "B7 OK LIST completed")
        self.says('B8 LIST "" "" RETURN (CHILDREN)', "B8 OK LIST completed")
        self.says('B9 LIST "" ("")', "B9 OK LIST completed")


class ChildInfoTests(ListExtendedCase):
    """RFC 5258 section 5, example 8: \\HasChildren against CHILDINFO."""

    mailboxes = ["Foo", "Foo/Bar", "Foo/Baz", "Moo"]
    subscribed = ["Foo/Baz"]

    def test_8_children(self):
        self.says(
            'CA3 LIST "" "%" RETURN (CHILDREN)',
            '* LIST (\\HasNoChildren) "/" "INBOX"',
            '* LIST (\\HasChildren) "/" "Foo"',
            '* LIST (\\HasNoChildren) "/" "Moo"',
            "CA3 OK LIST completed",
        )

    def test_8a_only_the_subscribed_child(self):
        self.says('C02 LIST (SUBSCRIBED) "" "*"', '* LIST (\\Subscribed \\HasNoChildren) "/" "Foo/Baz"', "C02 OK LIST completed")
        self.says('C03 LIST (SUBSCRIBED) "" "%"', "C03 OK LIST completed")
        self.says(
            'C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
            '* LIST (\\HasChildren) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))',
            "C04 OK LIST completed",
        )

    def test_8a1_parent_subscribed_too(self):
        self.account.subscribe("Foo")
        line = '* LIST (\\Subscribed \\HasChildren) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))'
        self.says('C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', line, "C04 OK LIST completed")
        self.says('C05 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)', line, "C05 OK LIST completed")

    def test_8a2_parent_that_does_not_exist(self):
        for name in ["Foo/Bar", "Foo/Baz", "Foo"]:
            self.account.delete_mailbox(name)
        self.says(
            'C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
            '* LIST (\\NonExistent \\HasNoChildren) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))',
            "C04 OK LIST completed",
        )

    def test_8b_nothing_subscribed(self):
        self.account.unsubscribe("Foo/Baz")
        self.says('C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', "C04 OK LIST completed")

    def test_8c_parents_subscribed_children_not(self):
        self.account.unsubscribe("Foo/Baz")
        self.account.subscribe("Foo")
        self.account.subscribe("Moo")
        self.says(
            'C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
            '* LIST (\\Subscribed \\HasChildren) "/" "Foo"',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "Moo"',
            "C04 OK LIST completed",
        )

    def test_childinfo_only_for_descendants_the_patterns_leave_out(self):
        self.says(
            'C06 LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "Foo/Baz"',
            "C06 OK LIST completed",
        )
        self.says(
            'C07 LIST (SUBSCRIBED RECURSIVEMATCH) "" ("Foo" "Foo/%")',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "Foo/Baz"',
            "C07 OK LIST completed",
        )
        self.account.create_mailbox("Foo/Baz/Deep")
        self.account.subscribe("Foo/Baz/Deep")
        self.says(
            'C08 LIST (SUBSCRIBED RECURSIVEMATCH) "" ("%" "Foo/%")',
            '* LIST (\\HasChildren) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))',
            '* LIST (\\Subscribed \\HasChildren) "/" "Foo/Baz" ("CHILDINFO" ("SUBSCRIBED"))',
            "C08 OK LIST completed",
        )


class ChildInfoWithoutChildrenTests(ListExtendedCase):
    """RFC 5258 section 5, example 9: CHILDINFO does not imply \\HasChildren."""

    mailboxes = ["foo"]
    subscribed = ["foo/bar"]

    def test_9(self):
        self.says('a1 LIST "" ("foo" "foo/*")', '* LIST (\\HasNoChildren) "/" "foo"', "a1 OK LIST completed")
        self.says(
            'a2 LIST (SUBSCRIBED) "" "foo/*"',
            '* LIST (\\Subscribed \\NonExistent \\HasNoChildren) "/" "foo/bar"',
            "a2 OK LIST completed",
        )
        self.says(
            'a3 LIST (SUBSCRIBED RECURSIVEMATCH) "" foo RETURN (CHILDREN)',
            '* LIST (\\HasNoChildren) "/" "foo" ("CHILDINFO" ("SUBSCRIBED"))',
            "a3 OK LIST completed",
        )


class HierarchyElementsTests(ListExtendedCase):
    """RFC 5258 section 5, example 11 (parents exist here: example 10 does not apply)."""

    mailboxes = ["music/rock", "sport/golf"]
    subscribed = ["music/rock"]

    def test_11(self):
        self.says(
            'a1 LIST (REMOTE) "" *',
            '* LIST (\\HasNoChildren) "/" "INBOX"',
            '* LIST (\\HasChildren) "/" "music"',
            '* LIST (\\HasNoChildren) "/" "music/rock"',
            '* LIST (\\HasChildren) "/" "sport"',
            '* LIST (\\HasNoChildren) "/" "sport/golf"',
            "a1 OK LIST completed",
        )
        self.says(
            'a2 LIST (REMOTE SUBSCRIBED) "" *',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "music/rock"',
            "a2 OK LIST completed",
        )
        self.says(
            'a3 LIST (REMOTE) "" %',
            '* LIST (\\HasNoChildren) "/" "INBOX"',
            '* LIST (\\HasChildren) "/" "music"',
            '* LIST (\\HasChildren) "/" "sport"',
            "a3 OK LIST completed",
        )
        self.says(
            'a4 LIST (REMOTE SUBSCRIBED RECURSIVEMATCH) "" %',
            '* LIST (\\HasChildren) "/" "music" ("CHILDINFO" ("SUBSCRIBED"))',
            "a4 OK LIST completed",
        )


class SpecialUseTests(ListExtendedCase):
    """RFC 6154 section 3 and 6: the SPECIAL-USE selection and return options."""

    mailboxes = ["Archive/2024", "Projects"]
    subscribed = ["Sent"]

    def setUp(self):
        super().setUp()
        for name, use in DEFAULT_MAILBOXES:
            self.account.create_mailbox(name)
            self.account.set_special_use(name, use)

    def test_selection_lists_only_special_use_mailboxes(self):
        lines = ['* LIST (\\HasNoChildren %s) "/" "%s"' % (use, name) for name, use in sorted(DEFAULT_MAILBOXES)]
        self.says('t1 LIST (SPECIAL-USE) "" "*"', *lines, "t1 OK LIST completed")

    def test_return_option_is_accepted_and_attributes_always_given(self):
        self.says(
            't2 LIST "" "[PT]*" RETURN (SPECIAL-USE)',
            "t2 OK LIST completed",
        )
        self.says(
            't3 LIST "" ("Projects" "Trash") RETURN (SPECIAL-USE)',
            '* LIST (\\HasNoChildren) "/" "Projects"',
            '* LIST (\\HasNoChildren \\Trash) "/" "Trash"',
            "t3 OK LIST completed",
        )

    def test_with_subscribed_both_must_hold(self):
        self.says(
            't4 LIST (SUBSCRIBED SPECIAL-USE) "" "*"',
            '* LIST (\\Subscribed \\HasNoChildren \\Sent) "/" "Sent"',
            "t4 OK LIST completed",
        )

    def test_recursivematch_needs_subscribed(self):
        self.says(
            't5 LIST (SPECIAL-USE RECURSIVEMATCH) "" "*"',
            "t5 BAD RECURSIVEMATCH needs the SUBSCRIBED selection option",
        )


class ListStatusTests(ListExtendedCase):
    """RFC 5819 section 5, on its hierarchy: INBOX, foo, and bar that cannot be selected."""

    mailboxes = ["foo", "bar/x"]
    subscribed = [INBOX, "foo/sub"]

    def setUp(self):
        super().setUp()
        self.account.delete_mailbox("bar")  # has a child: stays, \Noselect (RFC 3501 6.3.4)
        inbox = self.account.mailbox(INBOX)
        self.sizes = []
        for n in range(3):
            data = b"Subject: m%d\r\n\r\n%s\r\n" % (n, b"x" * n)
            inbox.add(data, ["\\Seen"] if n == 0 else [])
            self.sizes.append(len(data))
        self.account.mailbox("foo").add(b"Subject: f\r\n\r\nbody\r\n")

    def test_example_1(self):
        self.says(
            'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
            '* LIST (\\HasNoChildren) "/" "INBOX"',
            '* STATUS "INBOX" (MESSAGES 3 UNSEEN 2)',
            '* LIST (\\Noselect \\HasChildren) "/" "bar"',
            '* LIST (\\HasNoChildren) "/" "foo"',
            '* STATUS "foo" (MESSAGES 1 UNSEEN 1)',
            "A01 OK LIST completed",
        )

    def test_example_2_no_status_for_childinfo_only(self):
        self.says(
            'A02 LIST (SUBSCRIBED RECURSIVEMATCH) "" % RETURN (STATUS (MESSAGES))',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "INBOX"',
            '* STATUS "INBOX" (MESSAGES 3)',
            '* LIST (\\HasNoChildren) "/" "foo" ("CHILDINFO" ("SUBSCRIBED"))',
            "A02 OK LIST completed",
        )

    def test_no_status_for_a_nonexistent_name(self):
        self.says(
            'A03 LIST (SUBSCRIBED) "" "*" RETURN (STATUS (MESSAGES))',
            '* LIST (\\Subscribed \\HasNoChildren) "/" "INBOX"',
            '* STATUS "INBOX" (MESSAGES 3)',
            '* LIST (\\Subscribed \\NonExistent \\HasNoChildren) "/" "foo/sub"',
            "A03 OK LIST completed",
        )

    def test_every_status_item(self):
        inbox = self.account.mailbox(INBOX)
        self.says(
            "A04 LIST \"\" INBOX RETURN (CHILDREN STATUS (messages RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE))",
            '* LIST (\\HasNoChildren) "/" "INBOX"',
            '* STATUS "INBOX" (MESSAGES 3 RECENT 2 UIDNEXT 4 UIDVALIDITY %d UNSEEN 2 HIGHESTMODSEQ %d SIZE %d)'
            % (inbox.uidvalidity, inbox.highestmodseq, sum(self.sizes)),
            "A04 OK LIST completed",
        )

    def test_selected_mailbox_too(self):
        self.assertEqual(self.wire.send(b"s1 SELECT foo")[-1], b"s1 OK [READ-WRITE] SELECT completed")
        self.says(
            'A05 LIST "" foo RETURN (STATUS (MESSAGES RECENT))',
            '* LIST (\\HasNoChildren) "/" "foo"',
            '* STATUS "foo" (MESSAGES 1 RECENT 1)',
            "A05 OK LIST completed",
        )

    def test_bad_status_items_before_any_line(self):
        self.says('A06 LIST "" "*" RETURN (STATUS (MESSAGES FOO))', "A06 BAD Unknown STATUS item FOO")
        self.says(
            'A07 LIST "" "*" RETURN (STATUS (%s))' % (" ".join(["MESSAGES"] * 33),),
            "A07 BAD Too many STATUS items (more than 32)",
        )
        self.says('A08 LIST "" "*" RETURN (STATUS ())', "A08 BAD STATUS needs a list of STATUS items")
        self.says('A09 LIST "" "*" RETURN (STATUS)', "A09 BAD STATUS needs a list of STATUS items")
        self.says(
            'A10 LIST "" "*" RETURN (STATUS (MESSAGES) STATUS (UNSEEN))', "A10 BAD STATUS given twice"
        )
        self.says('A11 LIST "" "*" RETURN (STATUS ((MESSAGES)))', "A11 BAD Bad STATUS item")


class StatusSizeTests(ListExtendedCase):
    """RFC 8438: STATUS SIZE is the sum of the messages' RFC822.SIZE."""

    mailboxes = ["Empty"]
    subscribed = []

    def test_size(self):
        inbox = self.account.mailbox(INBOX)
        a = b"Subject: a\r\n\r\nfirst\r\n"
        b = b"Subject: b\r\n\r\n" + b"y" * 1000 + b"\r\n"
        inbox.add(a)
        inbox.add(b, ["\\Deleted"])
        self.says('t1 STATUS INBOX (SIZE)', '* STATUS "INBOX" (SIZE %d)' % (len(a) + len(b),), "t1 OK STATUS completed")
        self.says('t3 STATUS Empty (MESSAGES size)', '* STATUS "Empty" (MESSAGES 0 SIZE 0)', "t3 OK STATUS completed")
        inbox.expunge()
        self.says('t4 STATUS inbox (SIZE MESSAGES)', '* STATUS "INBOX" (SIZE %d MESSAGES 1)' % (len(a),), "t4 OK STATUS completed")

    def test_size_agrees_with_fetch(self):
        inbox = self.account.mailbox(INBOX)
        inbox.add(b"Subject: a\nbare LF lines\n\nbody\n")
        self.wire.send(b"s1 SELECT INBOX")
        fetched = self.wire.send(b"t1 FETCH 1 RFC822.SIZE")[0]
        size = int(fetched.split(b"RFC822.SIZE ")[1].rstrip(b")"))
        self.says('t2 STATUS INBOX (SIZE)', '* STATUS "INBOX" (SIZE %d)' % (size,), "t2 OK STATUS completed")

    def test_capabilities(self):
        caps = self.wire.send(b"c1 CAPABILITY")[0].split()
        for name in (b"LIST-EXTENDED", b"LIST-STATUS", b"STATUS=SIZE", b"SPECIAL-USE"):
            self.assertIn(name, caps)


class HostileListTests(ListExtendedCase):
    """Bad LIST-EXTENDED input gets a BAD (or NO [LIMIT]) saying what is wrong, never a traceback."""

    mailboxes = ["a"]
    subscribed = []

    def test_bad_options(self):
        cases = [
            ('LIST (FOO) "" "*"', "BAD Unknown LIST selection option FOO"),
            ('LIST (RECURSIVEMATCH) "" "*"', "BAD RECURSIVEMATCH needs the SUBSCRIBED selection option"),
            ('LIST (REMOTE RECURSIVEMATCH) "" "*"', "BAD RECURSIVEMATCH needs the SUBSCRIBED selection option"),
            ('LIST ((SUBSCRIBED)) "" "*"', "BAD Bad LIST selection option"),
            ('LIST (NIL) "" "*"', "BAD Bad LIST selection option"),
            ('LIST (SUBSCRIBED "" "*"', "BAD unbalanced parentheses"),
            ('LIST "" "*" RETURN (FOO)', "BAD Unknown LIST return option FOO"),
            ('LIST "" "*" RETURN (CHILDREN (X))', "BAD Bad LIST return option"),
            ('LIST "" "*" RETURN (\x01)', "BAD Unknown LIST return option"),
            ('LIST "" "*" RETURN', "BAD Expected a parenthesised list"),
            ('LIST "" "*" RETURN CHILDREN', "BAD Expected a parenthesised list"),
            ('LIST "" "*" RETURN () x', "BAD Too many arguments"),
            ('LIST "" "*" CHILDREN', "BAD Expected RETURN after the patterns"),
            ('LIST "" ()', "BAD Empty list of patterns"),
            ('LIST "" ("a" "b"', "BAD Malformed list item"),
            ('LIST "" ("a"b)', "BAD Malformed list item"),
            ('LIST "" ("a" (b))', "BAD Malformed list item"),
            ("LIST ()", "BAD Missing argument"),
            ('LIST () ""', "BAD Missing argument"),
            ('LIST "" "*" RETURN ' + "(" * 100 + ")" * 100, "BAD Nested too deeply (more than 64 levels)"),
        ]
        for i, (command, answer) in enumerate(cases):
            tag = "h%d" % (i,)
            self.says("%s %s" % (tag, command), "%s %s" % (tag, answer))

    def test_pattern_length_counts_every_pattern(self):
        self.factory.max_pattern_length = 20
        wire = MemoryWire(self.factory)
        self.addCleanup(wire.close)
        wire.send(b'L1 LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
        self.assertEqual(
            wire.send(b'p1 LIST "" ("%s" "a")' % (b"*" * 18 + b"a",)), [b'* LIST (\\HasNoChildren) "/" "a"', b"p1 OK LIST completed"]
        )
        self.assertEqual(
            wire.send(b'p2 LIST "x" ("%s" "a")' % (b"*" * 18,)), [b"p2 NO [LIMIT] pattern is 21 characters, more than 20"]
        )
        # empty patterns count as one character each while the list is read
        self.assertEqual(
            wire.send(b'p3 LIST "" (%s)' % (b" ".join([b'""'] * 21),)),
            [b"p3 NO [LIMIT] patterns are more than 20 characters"],
        )
        self.assertEqual(wire.send(b'p4 LIST "" ("%s" {10}' % (b"a" * 15,)), [
            b"p4 NO [TOOBIG] Literal of 10 octets is over the limit of 5"
        ])
        self.assertEqual(wire.send(b'p5 LIST "" ("%s" {10+}' % (b"a" * 15,)), [])
        self.assertEqual(
            wire.send_raw(b'0123456789")\r\np6 NOOP\r\n'),
            [b"p5 NO [TOOBIG] Literal of 10 octets is over the limit of 5", b"p6 OK NOOP completed"],
        )
