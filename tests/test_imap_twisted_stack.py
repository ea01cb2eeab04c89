"""Our store behind twisted's own, stock IMAP4Server (Avatar.select gives imap4.IMailbox)."""

from twisted.internet import protocol
from twisted.mail import imap4

from tests.harness.imap import MESSAGE, PASSWORD, USER, IMAPTestCase, message


class StockFactory(protocol.ServerFactory):
    def __init__(self, portal):
        self.portal = portal

    def buildProtocol(self, addr):
        p = imap4.IMAP4Server()
        p.factory = self
        p.portal = self.portal
        return p


class TwistedStackTests(IMAPTestCase):
    def make_factory(self):
        return StockFactory(self.portal)

    def test_stock_server_session(self):
        self.inbox().add(MESSAGE, ["\\Seen"])
        baseline = len(self.account().bus.listeners())

        def client():
            import imaplib

            c = imaplib.IMAP4("127.0.0.1", self.portno, timeout=10)
            c.login(USER, PASSWORD)
            r = {}
            typ, data = c.select("INBOX")
            r["select"] = (typ, list(data))
            r["fetch"] = c.fetch("1", "(FLAGS RFC822)")
            r["append"] = c.append("INBOX", "(\\Flagged)", None, message("appended"))
            self.deliver(message("delivered"))
            r["noop"] = c.noop()
            r["exists"] = list(c.untagged_responses.get("EXISTS", []))
            r["store"] = c.store("1", "+FLAGS", "(\\Deleted)")
            r["expunge"] = c.expunge()
            r["status"] = c.status("Trash", "(MESSAGES UIDNEXT)")
            r["list"] = c.list()
            c.logout()
            return r

        def check(r):
            self.assertEqual(r["select"], ("OK", [b"1"]))
            self.assertEqual(r["fetch"][1][0][1], MESSAGE)
            self.assertIn(b"FLAGS (\\Seen)", r["fetch"][1][0][0])
            self.assertEqual(r["append"][0], "OK")
            self.assertEqual(r["exists"][-1], b"3")  # the delivery, told to the stock session
            self.assertEqual(r["expunge"], ("OK", [b"1"]))
            self.assertEqual(r["status"][1], [b'Trash (MESSAGES 0 UIDNEXT 1)'])
            self.assertIn(b'"/" "INBOX"', r["list"][1][0])
            self.assertEqual(self.inbox().uids(), [2, 3])
            self.assertEqual(self.inbox().message(2).flags, frozenset(["\\Flagged"]))

        def closed(r):
            return self.connections.lost(0).addCallback(lambda _: r)

        def unsubscribed(_):
            # the stock server never closes its mailbox; the avatar's logout did
            self.assertEqual(len(self.account().bus.listeners()), baseline)

        d = self.in_thread(client).addCallback(check).addCallback(closed)
        return d.addCallback(unsubscribed)

    def test_stock_server_lists_noselect_parents(self):
        account = self.account()
        account.create_mailbox("Archive/2026")
        account.delete_mailbox("Archive")  # has a child: stays as a \Noselect name
        self.assertFalse(account.is_selectable("Archive"))

        def client():
            w = self.session()
            lines = w.cmd("l1", 'LIST "" Archive*')
            select = w.cmd("s1", "SELECT Archive")
            w.close()
            return lines, select

        def check(result):
            lines, select = result
            self.assertEqual(lines[0], '* LIST (\\Noselect) "/" "Archive"')
            # a selectable name: twisted's stock LIST shows getFlags() of the mailbox
            self.assertTrue(lines[1].endswith(') "/" "Archive/2026"'), lines)
            self.assertEqual(lines[2], "l1 OK LIST completed")
            self.assertEqual(len(lines), 3)
            self.assertTrue(select[-1].startswith("s1 NO"), select)

        return self.in_thread(client).addCallback(check)

    def test_avatar_list_mailboxes(self):
        from imapwebpush.imap.avatar import Avatar, NoselectName

        account = self.account()
        account.create_mailbox("A/B/C")
        account.delete_mailbox("A/B")
        avatar = Avatar(account)
        listed = avatar.listMailboxes("", "*")
        try:
            self.assertEqual([name for name, _ in listed], account.list_mailboxes())
            boxes = dict(listed)
            self.assertIsInstance(boxes["A/B"], NoselectName)
            self.assertEqual(boxes["A/B"].getFlags(), ["\\Noselect"])
            self.assertEqual(boxes["A/B"].getHierarchicalDelimiter(), "/")
            self.assertTrue(imap4.IMailbox.providedBy(boxes["A/B/C"]))
            self.assertEqual([name for name, _ in avatar.listMailboxes("A/", "%")], ["A/B"])
        finally:
            avatar.logout()
