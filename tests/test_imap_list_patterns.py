"""LIST/LSUB patterns on the wire: hostile ones answer correctly, long ones get NO [LIMIT].

``LIST "" "*%*%*%*%*%x"`` against a 40-character mailbox name kept the reactor
busy for ~50 s when patterns were regular expressions; the matcher is linear
now (how fast is shown by benchmarks/abuse.py, not here). Beyond
``--max-pattern-length`` (reference and pattern together) the answer is NO.
"""

from imapwebpush.imap.factory import IMAPFactory

from tests.harness.imap import IMAPTestCase

LONG = "a" * 40


class HostilePatternTests(IMAPTestCase):
    def setUp(self):
        super().setUp()
        self.account().create_mailbox(LONG)
        self.account().subscribe(LONG)

    def talk(self, *commands):
        def client():
            w = self.session()
            answers = [w.cmd("t%d" % i, command) for i, command in enumerate(commands)]
            w.close()
            return answers

        return self.in_thread(client)

    def test_hostile_patterns_answer(self):
        d = self.talk(
            'LIST "" "*%*%*%*%*%x"',
            'LIST "" "*%*%*%*%*%a"',
            'LSUB "" "*%*%*%*%*%x"',
            'LSUB "%a%a%a" "%a*%a%"',
        )

        def check(answers):
            line = '"/" "%s"' % (LONG,)
            self.assertEqual(answers, [
                ["t0 OK LIST completed"],
                ['* LIST (\\HasNoChildren) ' + line, "t1 OK LIST completed"],
                ["t2 OK LSUB completed"],
                ["* LSUB () " + line, "t3 OK LSUB completed"],
            ])

        return d.addCallback(check)

    def test_pattern_length_limit(self):
        self.factory.max_pattern_length = 20
        d = self.talk(
            'LIST "" "%s"' % ("*" * 19 + "a",),
            'LIST "a" "%s"' % ("*" * 19 + "a",),
            'LSUB "" "%s"' % ("*" * 21,),
        )

        def check(answers):
            self.assertEqual(answers, [
                ['* LIST (\\HasNoChildren) "/" "%s"' % (LONG,), "t0 OK LIST completed"],
                ["t1 NO [LIMIT] pattern is 21 characters, more than 20"],
                ["t2 NO [LIMIT] pattern is 21 characters, more than 20"],
            ])

        return d.addCallback(check)

    def test_factory_default(self):
        from imapwebpush.wildcard import DEFAULT_MAX_PATTERN_LENGTH

        self.assertEqual(IMAPFactory(self.portal).max_pattern_length, DEFAULT_MAX_PATTERN_LENGTH)
