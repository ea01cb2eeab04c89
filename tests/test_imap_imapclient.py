"""The server as seen by imapclient, a stricter parser than imaplib."""

import imapclient

from tests.harness.imap import MESSAGE, PASSWORD, USER, IMAPTestCase, message


class IMAPClientTests(IMAPTestCase):
    def client(self):
        c = imapclient.IMAPClient("127.0.0.1", port=self.portno, ssl=False, timeout=10)
        c.login(USER, PASSWORD)
        return c

    def test_session(self):
        inbox = self.inbox()
        inbox.add(MESSAGE)
        inbox.add(message("second"), ["\\Seen"])

        def run():
            c = self.client()
            r = {}
            r["caps"] = c.capabilities()
            r["folders"] = c.list_folders()
            r["special"] = c.find_special_folder(imapclient.imapclient.SENT)
            r["select"] = c.select_folder("INBOX")
            r["unseen"] = c.search(["UNSEEN"])
            r["fetch"] = c.fetch([1, 2], ["FLAGS", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY.PEEK[HEADER]"])
            r["move"] = c.move([2], "Trash")
            r["status"] = c.folder_status("Trash", ["MESSAGES", "UIDNEXT", "HIGHESTMODSEQ"])
            r["namespace"] = c.namespace()
            r["id"] = c.id_({"name": "test"})
            c.unselect_folder()
            r["enable"] = c.enable("CONDSTORE", "X-NOTHING")
            c.logout()
            return r

        def check(r):
            self.assertIn(b"MOVE", r["caps"])
            names = [f[2] for f in r["folders"]]
            self.assertEqual(names[0], "INBOX")
            self.assertIn("Trash", names)
            self.assertEqual(r["special"], "Sent")
            self.assertEqual(r["select"][b"EXISTS"], 2)
            self.assertEqual(r["select"][b"UIDNEXT"], 3)
            self.assertIn(b"HIGHESTMODSEQ", r["select"])
            self.assertEqual(r["unseen"], [1])
            fetched = r["fetch"]
            self.assertEqual(fetched[1][b"RFC822.SIZE"], len(MESSAGE))
            self.assertEqual(fetched[1][b"ENVELOPE"].subject, b"Hello there")
            self.assertEqual(fetched[2][b"FLAGS"], (b"\\Seen",))
            self.assertTrue(fetched[1][b"BODY[HEADER]"].startswith(b"From: Carol"))
            self.assertEqual(r["status"][b"MESSAGES"], 1)
            self.assertEqual(r["namespace"].personal, (("", "/"),))
            self.assertEqual(r["id"], ((b"name", b"imapwebpush", b"vendor", b"imapwebpush"),))
            self.assertEqual(r["enable"], [b"CONDSTORE"])

        return self.in_thread(run).addCallback(check)

    def test_multiappend(self):
        import datetime

        date = datetime.datetime(2026, 11, 5, 10, 11, 12, tzinfo=datetime.timezone.utc)

        def run():
            c = self.client()
            caps = c.capabilities()
            answer = c.multiappend("INBOX", [MESSAGE, {"msg": message("two"), "flags": [b"\\Seen"], "date": date}])
            c.logout()
            return caps, answer

        def check(result):
            caps, answer = result
            self.assertIn(b"MULTIAPPEND", caps)
            self.assertEqual(answer, ("OK", [b"[APPENDUID %d 1:2] APPEND completed" % self.inbox().uidvalidity]))
            second = self.inbox().message(2)
            self.assertEqual(second.read(), message("two"))
            self.assertEqual((second.flags, second.internaldate), (frozenset(["\\Seen"]), date.timestamp()))

        return self.in_thread(run).addCallback(check)

    def test_idle(self):
        def run():
            c = self.client()
            c.select_folder("INBOX")
            c.idle()
            self.deliver(message("during idle"))
            responses = c.idle_check(timeout=10)
            c.idle_done()
            c.logout()
            return responses

        def check(responses):
            self.assertIn((1, b"EXISTS"), responses)

        return self.in_thread(run).addCallback(check)
