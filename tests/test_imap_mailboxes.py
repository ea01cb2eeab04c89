"""LIST/LSUB (CHILDREN, \\Noselect, SPECIAL-USE), CREATE, DELETE, RENAME, SUBSCRIBE."""

from tests.harness.imap import IMAPTestCase, message


class MailboxTests(IMAPTestCase):
    def test_list_attributes(self):
        account = self.account()
        account.create_mailbox("Work/Projects")
        account.create_mailbox("Caf\xe9")

        def client():
            w = self.session()
            every = w.cmd("l1", 'LIST "" "*"')
            top = w.cmd("l2", 'LIST "" %')
            under = w.cmd("l3", 'LIST "Work/" %')
            delim = w.cmd("l4", 'LIST "" ""')
            inbox = w.cmd("l5", 'LIST "" inbox')
            w.close()
            return every, top, under, delim, inbox

        def check(result):
            every, top, under, delim, inbox = result
            self.assertEqual(
                every,
                [
                    '* LIST (\\HasNoChildren) "/" "INBOX"',
                    '* LIST (\\HasNoChildren) "/" "Caf&AOk-"',
                    '* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
                    '* LIST (\\HasNoChildren \\Junk) "/" "Junk"',
                    '* LIST (\\HasNoChildren \\Sent) "/" "Sent"',
                    '* LIST (\\HasNoChildren \\Trash) "/" "Trash"',
                    '* LIST (\\HasChildren) "/" "Work"',
                    '* LIST (\\HasNoChildren) "/" "Work/Projects"',
                    "l1 OK LIST completed",
                ],
            )
            self.assertNotIn('* LIST (\\HasNoChildren) "/" "Work/Projects"', top)
            self.assertIn('* LIST (\\HasChildren) "/" "Work"', top)
            self.assertEqual(under, ['* LIST (\\HasNoChildren) "/" "Work/Projects"', "l3 OK LIST completed"])
            self.assertEqual(delim, ['* LIST (\\Noselect) "/" ""', "l4 OK LIST completed"])
            self.assertEqual(inbox[0], '* LIST (\\HasNoChildren) "/" "INBOX"')

        return self.in_thread(client).addCallback(check)

    def test_list_children_of_many_mailboxes_in_one_pass(self):
        # \\HasChildren from one set of parent names per LIST, not every name against
        # every other: the name list is walked a fixed number of times, whatever its size
        account = self.account()
        account.create_mailbox("Lists/a/b")
        account.create_mailbox("Listsx")
        for n in range(300):
            account.create_mailbox("Many/m%03d" % n)
        walks = []

        class Counted(list):
            def __iter__(self):
                walks.append(1)
                return super().__iter__()

        real = account.list_mailboxes
        self.patch(account, "list_mailboxes", lambda: Counted(real()))

        def client():
            w = self.session()
            lists = w.cmd("l1", 'LIST "" "Lists*"')
            walks.clear()
            many = w.cmd("l2", 'LIST "" "*"')
            w.close()
            return lists, many, len(walks)

        def check(result):
            lists, many, walked = result
            self.assertEqual(
                lists,
                [
                    '* LIST (\\HasChildren) "/" "Lists"',
                    '* LIST (\\HasChildren) "/" "Lists/a"',
                    '* LIST (\\HasNoChildren) "/" "Lists/a/b"',
                    '* LIST (\\HasNoChildren) "/" "Listsx"',
                    "l1 OK LIST completed",
                ],
            )
            self.assertEqual(len(many), 1 + 4 + 4 + 301 + 1)  # INBOX, specials, Lists*, Many*, tag
            self.assertIn('* LIST (\\HasChildren) "/" "Many"', many)
            self.assertIn('* LIST (\\HasNoChildren) "/" "Many/m299"', many)
            self.assertLessEqual(walked, 2)

        return self.in_thread(client).addCallback(check)

    def test_create_delete_rename(self):
        def client():
            w = self.session()
            r = {}
            r["create"] = w.cmd("c1", "CREATE Archive/2026")
            r["again"] = w.cmd("c2", "CREATE Archive/2026")
            r["inbox"] = w.cmd("c3", "CREATE inbox")
            r["rename"] = w.cmd("r1", "RENAME Archive Old")
            r["rename_missing"] = w.cmd("r2", "RENAME Nowhere Else")
            r["delete_parent"] = w.cmd("d1", "DELETE Old")
            r["list"] = w.cmd("l1", 'LIST "" Old*')
            r["delete_inbox"] = w.cmd("d2", "DELETE INBOX")
            r["delete_missing"] = w.cmd("d3", "DELETE Nowhere")
            r["select_noselect"] = w.cmd("s1", "SELECT Old")
            w.close()
            return r

        def check(r):
            self.assertEqual(r["create"], ["c1 OK CREATE completed"])
            self.assertTrue(r["again"][0].startswith("c2 NO [ALREADYEXISTS]"), r["again"])
            self.assertTrue(r["inbox"][0].startswith("c3 NO [ALREADYEXISTS]"))
            self.assertEqual(r["rename"], ["r1 OK RENAME completed"])
            self.assertTrue(r["rename_missing"][0].startswith("r2 NO [NONEXISTENT]"))
            self.assertEqual(r["delete_parent"], ["d1 OK DELETE completed"])
            self.assertEqual(
                r["list"],
                [
                    '* LIST (\\Noselect \\HasChildren) "/" "Old"',
                    '* LIST (\\HasNoChildren) "/" "Old/2026"',
                    "l1 OK LIST completed",
                ],
            )
            self.assertTrue(r["delete_inbox"][0].startswith("d2 NO"))
            self.assertTrue(r["delete_missing"][0].startswith("d3 NO [NONEXISTENT]"))
            self.assertTrue(r["select_noselect"][0].startswith("s1 NO"))

        return self.in_thread(client).addCallback(check)

    def test_store_error_texts_are_7bit(self):
        """A NO naming a mailbox names it as the client does, in modified UTF-7: response
        text is 7-bit (RFC 3501 TEXT-CHAR), never the name's UTF-8."""
        def client():
            w = self.session()
            out = [w.cmd("s1", 'STATUS "&Jjo-" (MESSAGES)'), w.cmd("c1", 'CREATE "&Jjo-/x"'),
                   w.cmd("c2", 'CREATE "&Jjo-/x"')]
            w.close()
            return out

        def check(out):
            self.assertEqual(out, [
                ["s1 NO [NONEXISTENT] Mailbox &Jjo- does not exist"],
                ["c1 OK CREATE completed"],
                ["c2 NO [ALREADYEXISTS] Mailbox &Jjo-/x already exists"],
            ])

        return self.in_thread(client).addCallback(check)

    def test_rename_inbox_moves_messages(self):
        self.inbox().add(message("x"))

        def client():
            c = self.imaplib()
            typ, _ = c.rename("INBOX", "Saved")
            typ2, data = c.status("Saved", "(MESSAGES)")
            typ3, data3 = c.status("INBOX", "(MESSAGES)")
            c.logout()
            return typ, data, data3

        def check(result):
            typ, data, data3 = result
            self.assertEqual(typ, "OK")
            self.assertEqual(data, [b'"Saved" (MESSAGES 1)'])
            self.assertEqual(data3, [b'"INBOX" (MESSAGES 0)'])

        return self.in_thread(client).addCallback(check)

    def test_subscribe_lsub(self):
        def client():
            c = self.imaplib()
            c.unsubscribe("Sent")
            c.subscribe("Sent")
            c.subscribe("Trash")
            c.unsubscribe("Trash")
            typ, data = c.lsub()
            c.logout()
            return data

        def check(data):
            # a new account starts subscribed to its default mailboxes
            self.assertIn(b'() "/" "Sent"', data)
            self.assertNotIn(b'() "/" "Trash"', data)
            self.assertIn("Sent", self.account().subscriptions())
            self.assertNotIn("Trash", self.account().subscriptions())

        return self.in_thread(client).addCallback(check)

    def test_namespace(self):
        def client():
            w = self.session()
            lines = w.cmd("n1", "NAMESPACE")
            w.close()
            return lines

        def check(lines):
            self.assertEqual(lines, ['* NAMESPACE (("" "/")) NIL NIL', "n1 OK NAMESPACE completed"])

        return self.in_thread(client).addCallback(check)
