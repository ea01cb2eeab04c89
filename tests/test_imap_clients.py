"""The whole server (makeService via tap.start_server, port 0) as real client libraries see it.

Why here and not in the IMAP unit tests: these go through the same options,
user file, SMTP listener and store a deployment uses, and check what
imapclient and imaplib get back: SMTP delivery then FETCH, IDLE woken by an
SMTP delivery, MOVE, UIDPLUS (APPENDUID, UID EXPUNGE; COPYUID through imaplib), CONDSTORE.
The clients block, so they run in a thread; the server runs in the reactor.
"""

import imaplib
import os
import smtplib

import imapclient
from imapclient.exceptions import LoginError
from twisted.internet import error, reactor, threads
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from imapwebpush import tap
from imapwebpush.store.account import MailStore
from imapwebpush.store.users import UserDatabase

from tests.harness.dns import dns_server_option

USER = "carol@localhost"
PASSWORD = "client-Pass_1"
CHEAP_SCRYPT = {"n": 2**8, "r": 8, "p": 1}  # the stored parameters are what LOGIN verifies


def message(subject, body=b"Hello.\r\n"):
    return (
        b"From: Alice <alice@example.org>\r\n"
        b"To: Carol <carol@localhost>\r\n"
        b"Subject: " + subject + b"\r\n"
        b"Message-ID: <" + subject.replace(b" ", b"-") + b"@example.org>\r\n"
        b"\r\n" + body
    )


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):
    """A StringTransport that remembers TCP_NODELAY."""

    nodelay = False

    def setTcpNoDelay(self, enabled):
        self.nodelay = enabled

    def getTcpNoDelay(self):
        return self.nodelay


class TLSLike:
    """Stands for a TLS protocol wrapped around the TCP transport (it has ``.transport``)."""

    def __init__(self, transport):
        self.transport = transport

    def __getattr__(self, name):
        return getattr(self.transport, name)


class ServerClientTests(unittest.TestCase):
    def setUp(self):
        data = self.mktemp()
        os.mkdir(data)
        UserDatabase(data, mail_store=MailStore(data), scrypt_params=CHEAP_SCRYPT).add(USER, PASSWORD)
        d = tap.start_server(
            [
                "--data", data,
                "--imap", "tcp:0:interface=127.0.0.1",
                "--smtp", "tcp:0:interface=127.0.0.1",
                "--allow-plaintext-auth",
            ] + dns_server_option(self),
            reactor,
        )

        def started(running):
            self.running = running
            self.imap_port = running.ports["imap"]
            self.smtp_port = running.ports["smtp"]
            self.addCleanup(running.stop)

        return d.addCallback(started)

    # -- client helpers (run in a thread) ------------------------------------

    def imapclient(self, login=True):
        c = imapclient.IMAPClient("127.0.0.1", port=self.imap_port, ssl=False, timeout=10)
        self.open_clients.append(c)
        if login:
            c.login(USER, PASSWORD)
        return c

    def send(self, *messages):
        """Deliver over SMTP, one connection; the server answers 250 only once stored."""
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as s:
            for m in messages:
                refused = s.sendmail("alice@example.org", [USER], m)
                assert refused == {}, refused

    def in_thread(self, fn):
        """Run ``fn`` in a thread; close any client it left open (a failed step) before returning."""
        self.open_clients = []

        def run():
            try:
                return fn()
            finally:
                for c in self.open_clients:
                    try:
                        c.shutdown()
                    except Exception:
                        pass

        return threads.deferToThread(run)

    # -- tests ----------------------------------------------------------------

    def test_smtp_delivery_fetched_by_imapclient(self):
        sent = message(b"first", b".leading dot\r\n\xc3\xa9t\xc3\xa9 8-bit\r\n")

        def run():
            self.send(sent)
            c = self.imapclient()
            selected = c.select_folder("INBOX")
            got = c.fetch([1], ["UID", "RFC822.SIZE", "FLAGS", "BODY.PEEK[]", "ENVELOPE"])
            flags_after = c.get_flags([1])
            c.logout()
            return selected, got, flags_after

        def check(r):
            selected, got, flags_after = r
            self.assertEqual(selected[b"EXISTS"], 1)
            body = got[1][b"BODY[]"]
            # The server adds trace headers in front; the rest is what was sent.
            self.assertTrue(body.endswith(sent), body)
            self.assertTrue(body.startswith(
                b"Return-Path: <alice@example.org>\r\n"
                b"Authentication-Results: localhost;\r\n\tdkim=none\r\n"  # a loopback client: no SPF
                b"Received: "), body[:140])
            self.assertEqual(got[1][b"RFC822.SIZE"], len(body))
            self.assertEqual(got[1][b"ENVELOPE"].subject, b"first")
            self.assertEqual(flags_after[1], (b"\\Recent",))  # PEEK did not set \Seen

        return self.in_thread(run).addCallback(check)

    def test_idle_woken_by_smtp_delivery(self):
        def run():
            c = self.imapclient()
            c.select_folder("INBOX")
            c.idle()
            self.send(message(b"during idle"))
            responses = c.idle_check(timeout=10)
            done = c.idle_done()
            c.logout()
            return responses, done

        def check(r):
            responses, (text, untagged) = r
            self.assertIn((1, b"EXISTS"), responses + untagged)
            self.assertIn(b"IDLE", text.upper())

        return self.in_thread(run).addCallback(check)

    def test_move_and_uidplus(self):
        def run():
            self.send(message(b"one"), message(b"two"), message(b"three"))
            c = self.imapclient()
            r = {"select": c.select_folder("INBOX")}
            r["append"] = c.append("INBOX", message(b"four"), flags=[b"\\Seen"])
            r["copy"] = c.copy([2], "Drafts")
            r["move"] = c.move([3], "Trash")
            r["inbox"] = c.search(["ALL"])
            c.delete_messages([1])
            c.uid_expunge([1])
            r["inbox_after"] = c.search(["ALL"])
            r["trash"] = c.select_folder("Trash")
            r["trash_fetch"] = c.fetch(c.search(["ALL"]), ["UID", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
            r["drafts"] = c.folder_status("Drafts", ["MESSAGES", "UIDNEXT"])
            c.logout()
            return r

        def check(r):
            uidvalidity = r["select"][b"UIDVALIDITY"]
            self.assertEqual(r["select"][b"UIDNEXT"], 4)
            self.assertEqual(r["append"], b"[APPENDUID %d 4] APPEND completed" % uidvalidity)
            self.assertEqual(r["inbox"], [1, 2, 4])
            self.assertEqual(r["inbox_after"], [2, 4])
            self.assertEqual(list(r["trash_fetch"]), [1])
            self.assertEqual(r["trash_fetch"][1][b"BODY[HEADER.FIELDS (SUBJECT)]"], b"Subject: three\r\n\r\n")
            self.assertEqual(r["drafts"], {b"MESSAGES": 1, b"UIDNEXT": 2})

        return self.in_thread(run).addCallback(check)

    def test_condstore(self):
        def run():
            self.send(message(b"a"), message(b"b"))
            c = self.imapclient()
            r = {"enable": c.enable("CONDSTORE")}
            r["select"] = c.select_folder("INBOX")
            before = r["select"][b"HIGHESTMODSEQ"]
            r["store"] = c.add_flags([2], [b"\\Flagged"])
            r["changed"] = c.fetch([1, 2], ["FLAGS"], modifiers=["CHANGEDSINCE %d" % before])
            r["status"] = c.folder_status("INBOX", ["HIGHESTMODSEQ"])
            r["before"] = before
            c.logout()
            return r

        def check(r):
            self.assertEqual(r["enable"], [b"CONDSTORE"])
            self.assertEqual(list(r["changed"]), [2])
            modseq = r["changed"][2][b"MODSEQ"][0]
            self.assertGreater(modseq, r["before"])
            self.assertIn(b"\\Flagged", r["changed"][2][b"FLAGS"])
            self.assertEqual(r["status"][b"HIGHESTMODSEQ"], modseq)

        return self.in_thread(run).addCallback(check)

    def test_imaplib_session(self):
        def run():
            self.send(message(b"x"), message(b"y"))
            m = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
            self.open_clients.append(m)
            r = {"login": m.login(USER, PASSWORD)}
            r["select"] = m.select("INBOX")
            r["search"] = m.search(None, "SUBJECT", "y")
            r["fetch"] = m.fetch("2", "(BODY[HEADER.FIELDS (SUBJECT)])")
            r["flags"] = m.fetch("2", "(FLAGS)")
            r["copy"] = m.copy("2", "Drafts")
            r["uidvalidity"] = m.status("Drafts", "(UIDVALIDITY)")
            r["store"] = m.store("1", "+FLAGS", "(\\Deleted)")
            r["expunge"] = m.expunge()
            r["close"] = m.close()
            r["logout"] = m.logout()
            return r

        def check(r):
            self.assertEqual(r["login"][0], "OK")
            self.assertEqual(r["select"], ("OK", [b"2"]))
            self.assertEqual(r["search"], ("OK", [b"2"]))
            self.assertEqual(r["fetch"][1][0][1], b"Subject: y\r\n\r\n")
            # FETCH BODY[] (not PEEK) set \Seen on message 2.
            self.assertIn(b"\\Seen", r["flags"][1][0])
            v = int(r["uidvalidity"][1][0].split()[-1].rstrip(b")"))
            self.assertEqual(r["copy"], ("OK", [b"[COPYUID %d 2 1] COPY completed" % v]))
            self.assertEqual(r["expunge"], ("OK", [b"1"]))
            self.assertEqual(r["logout"][0], "BYE")

        return self.in_thread(run).addCallback(check)

    def test_wrong_password(self):
        def run():
            c = self.imapclient(login=False)
            try:
                c.login(USER, "wrong")
            except LoginError as e:
                err = str(e)
            else:
                err = None
            c.login(USER, PASSWORD)  # the connection is still usable
            c.logout()
            return err

        def check(err):
            self.assertIsNotNone(err)

        return self.in_thread(run).addCallback(check)

    def test_nagle_off(self):
        """Each IMAP connection turns Nagle off, also under TLS: otherwise a line written
        while the previous one is unacknowledged waits for the client's delayed ACK (the
        first EXISTS after "+ idling" came 30-40 ms late in benchmarks/imap_vs_dovecot.py)."""
        factory = self.running.service.getServiceNamed("imap").factory
        for wrap in (lambda t: t, TLSLike):
            tcp = TCPStringTransport()
            proto = factory.buildProtocol(None)
            proto.makeConnection(wrap(tcp))
            self.assertTrue(tcp.nodelay)
            self.assertTrue(tcp.value().startswith(b"* OK "), tcp.value())
            proto.connectionLost(Failure(error.ConnectionDone()))
