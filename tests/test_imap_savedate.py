"""SAVEDATE (RFC 8514): FETCH SAVEDATE, SEARCH SAVEDBEFORE/SAVEDON/SAVEDSINCE/SAVEDATESUPPORTED,
and the save date kept by the store across restarts."""

import json
import os

from twisted.trial import unittest

from imapwebpush.store import journal
from imapwebpush.store.account import MailStore
from tests.harness.imap import IMAPTestCase, message
from tests.harness.wire import USER

T0 = 1700000000  # 14-Nov-2023 22:13:20 +0000
DAY = 86400


class SettableClock:
    """The store's clock (it only asks ``seconds()``), moved by the test's client thread."""

    def __init__(self, now):
        self.now = now

    def seconds(self):
        return self.now


def strip_save_dates(mailbox_path):
    """Rewrite a mailbox's journal as a server from before save dates would have written it."""
    path = os.path.join(mailbox_path, journal.JOURNAL_NAME)
    records, _ = journal.Journal(path).load()
    for record in records:
        record.pop("w", None)
    journal.Journal(path).rewrite(records)


class SaveDateTests(IMAPTestCase):
    """Message 1 delivered on day 0 with an INTERNALDATE 30 days older, message 2 on day 1."""

    def make_store(self):
        self.clock = SettableClock(T0)
        return MailStore(self.mktemp(), self.clock)

    def setUp(self):
        super().setUp()
        self.inbox().add(message("first"), ["\\Seen"], internaldate=T0 - 30 * DAY)
        self.clock.now = T0 + DAY
        self.inbox().add(message("second"), ["\\Seen"], internaldate=T0 - 30 * DAY)
        self.account().create_mailbox("Other")

    def test_fetch_and_search(self):
        def client():
            w = self.session(select="INBOX")
            out = [w.cmd("c", "CAPABILITY")[0]]
            out.append(w.cmd("a1", "FETCH 1:2 (SAVEDATE INTERNALDATE)"))
            for tag, search in (
                ("a2", "SEARCH SAVEDON 14-Nov-2023"),
                ("a3", "SEARCH SAVEDSINCE 15-Nov-2023"),
                ("a4", "SEARCH SAVEDBEFORE 15-Nov-2023"),
                ("a5", "SEARCH SAVEDBEFORE 14-Nov-2023"),
                ("a6", "SEARCH SAVEDATESUPPORTED"),
                ("a7", "SEARCH ON 15-Oct-2023"),  # INTERNALDATE: both
                ("a8", "SEARCH SAVEDON 2023-11-14"),
                ("a9", "UID SEARCH RETURN (COUNT) SAVEDSINCE 1-Jan-2000 NOT SAVEDON 15-Nov-2023"),
            ):
                out.append(w.cmd(tag, search))
            w.close()
            return out

        def check(out):
            self.assertIn(" SAVEDATE", out[0])
            self.assertEqual(
                out[1:],
                [
                    [
                        '* 1 FETCH (SAVEDATE "14-Nov-2023 22:13:20 +0000" INTERNALDATE "15-Oct-2023 22:13:20 +0000")',
                        '* 2 FETCH (SAVEDATE "15-Nov-2023 22:13:20 +0000" INTERNALDATE "15-Oct-2023 22:13:20 +0000")',
                        "a1 OK FETCH completed",
                    ],
                    ["* SEARCH 1", "a2 OK SEARCH completed"],
                    ["* SEARCH 2", "a3 OK SEARCH completed"],
                    ["* SEARCH 1", "a4 OK SEARCH completed"],
                    ["* SEARCH", "a5 OK SEARCH completed"],
                    ["* SEARCH 1 2", "a6 OK SEARCH completed"],
                    ["* SEARCH 1 2", "a7 OK SEARCH completed"],
                    ["a8 BAD Bad date: 2023-11-14"],
                    ['* ESEARCH (TAG "a9") UID COUNT 1', "a9 OK SEARCH completed"],
                ],
            )

        return self.in_thread(client).addCallback(check)

    def test_append_copy_and_move_save_now(self):
        """COPY keeps INTERNALDATE but the copy's save date is the time of the COPY (RFC 8514 3)."""

        def client():
            w = self.session(select="INBOX")
            out = []
            self.clock.now = T0 + 2 * DAY
            out.append(w.cmd("a1", "COPY 1 Other")[-1])
            self.clock.now = T0 + 3 * DAY
            out.append(w.cmd("a2", "MOVE 2 Other")[-1])
            self.clock.now = T0 + 4 * DAY
            w.send('a3 APPEND Other (\\Seen) "01-Jan-2020 10:00:00 +0000" {%d+}\r\n' % len(message("third")))
            w.send(message("third") + b"\r\n")
            out.append(w.until("a3")[-1])
            w.cmd("s2", "SELECT Other")
            out.append(w.cmd("a4", "FETCH 1:* (UID SAVEDATE INTERNALDATE)"))
            out.append(w.cmd("a5", "SEARCH SAVEDSINCE 17-Nov-2023"))
            w.close()
            return out

        def check(out):
            self.assertRegex(out[0], r"^a1 OK \[COPYUID \d+ 1 1\] COPY completed$")
            self.assertEqual(out[1], "a2 OK MOVE completed")
            self.assertRegex(out[2], r"^a3 OK \[APPENDUID \d+ 3\] APPEND completed$")
            self.assertEqual(
                out[3],
                [
                    '* 1 FETCH (UID 1 SAVEDATE "16-Nov-2023 22:13:20 +0000" INTERNALDATE "15-Oct-2023 22:13:20 +0000")',
                    '* 2 FETCH (UID 2 SAVEDATE "17-Nov-2023 22:13:20 +0000" INTERNALDATE "15-Oct-2023 22:13:20 +0000")',
                    '* 3 FETCH (UID 3 SAVEDATE "18-Nov-2023 22:13:20 +0000" INTERNALDATE "01-Jan-2020 10:00:00 +0000")',
                    "a4 OK FETCH completed",
                ],
            )
            self.assertEqual(out[4], ["* SEARCH 2 3", "a5 OK SEARCH completed"])

        return self.in_thread(client).addCallback(check)


class UnknownSaveDateTests(IMAPTestCase):
    """A message whose journal line predates save dates and whose file another tool named:
    SAVEDATE is NIL, and the SAVED* keys use its INTERNALDATE (RFC 8514 4.2, 4.3)."""

    def setUp(self):
        super().setUp()
        before = MailStore(self.store.path).account(USER).mailbox("INBOX")  # the server's store has not looked yet
        with open(os.path.join(before.path, "cur", "1600000000.other-tool.host:2,S"), "wb") as f:
            f.write(message("foreign"))
        os.utime(os.path.join(before.path, "cur", "1600000000.other-tool.host:2,S"), (T0, T0))
        before.uids()  # adopted: a journal line for it
        strip_save_dates(before.path)

    def test_nil_and_internaldate(self):
        d = self.in_inbox(
            "FETCH 1 (SAVEDATE INTERNALDATE)",
            "SEARCH SAVEDON 14-Nov-2023",
            "SEARCH SAVEDBEFORE 14-Nov-2023",
            "SEARCH SAVEDATESUPPORTED",
        )
        return d.addCallback(
            self.assertEqual,
            [
                ['* 1 FETCH (SAVEDATE NIL INTERNALDATE "14-Nov-2023 22:13:20 +0000")', "a0 OK FETCH completed"],
                ["* SEARCH 1", "a1 OK SEARCH completed"],
                ["* SEARCH", "a2 OK SEARCH completed"],
                ["* SEARCH 1", "a3 OK SEARCH completed"],
            ],
        )


class StoredSaveDateTests(unittest.TestCase):
    """The save date is a field of the message's journal line: it survives a restart."""

    def setUp(self):
        self.path = self.mktemp()
        self.clock = SettableClock(T0 + 0.25)

    def inbox(self):
        return MailStore(self.path, self.clock).account(USER).mailbox("INBOX")

    def test_survives_restart_and_compaction(self):
        inbox = self.inbox()
        uid = inbox.add(message(), internaldate=T0 - DAY)
        self.assertEqual(inbox.message(uid).saved, T0 + 0.25)
        self.clock.now = T0 + DAY
        for n in range(300):  # flag changes enough for the journal to be rewritten from memory
            inbox.set_flags([uid], ["\\Flagged"], "add" if n % 2 else "remove")
        again = self.inbox().message(uid)
        self.assertEqual((again.saved, again.internaldate), (T0 + 0.25, T0 - DAY))
        with open(os.path.join(inbox.path, journal.JOURNAL_NAME), "rb") as f:
            lines = f.read().splitlines()
        self.assertLess(len(lines), 100)  # rewritten from memory: the field came through
        (added,) = [line for line in lines if b'"t":"a"' in line]
        self.assertIn(b'"w":1700000000.25', added)

    def test_old_journal_reads_our_file_names(self):
        """A line without the field: the time our own Maildir names begin with (``unique_name``)."""
        inbox = self.inbox()
        uid = inbox.add(message())
        strip_save_dates(inbox.path)
        self.clock.now = T0 + DAY
        self.assertEqual(self.inbox().message(uid).saved, T0 + 0.25)

    def test_adopted_file_saved_at_its_ctime(self):
        inbox = self.inbox()
        name = os.path.join(inbox.path, "new", "1600000000.other-tool.host")
        with open(name, "wb") as f:
            f.write(message())
        ctime = os.stat(name).st_ctime
        (uid,) = inbox.uids()
        self.assertEqual(inbox.message(uid).saved, ctime)
