"""Greeting, CAPABILITY, LOGIN, AUTHENTICATE PLAIN (with SASL-IR), STARTTLS, implicit TLS."""

import base64
import imaplib

from tests.harness.imap import PASSWORD, USER, IMAPTestCase, Wire
from tests.harness.tls import client_context, server_tls_options


def plain(user=USER, password=PASSWORD, authz=""):
    return base64.b64encode(("%s\0%s\0%s" % (authz, user, password)).encode()).decode()


class PlaintextAllowedTests(IMAPTestCase):
    def test_greeting_has_capabilities(self):
        def client():
            w = Wire(self.portno)
            w.close()
            return w.greeting

        d = self.in_thread(client)

        def check(greeting):
            self.assertTrue(greeting.startswith("* OK [CAPABILITY IMAP4rev1 "), greeting)
            caps = greeting.split("[CAPABILITY ")[1].split("]")[0].split()
            for cap in (
                "AUTH=PLAIN",
                "SASL-IR",
                "IDLE",
                "LITERAL+",
                "UIDPLUS",
                "MOVE",
                "CONDSTORE",
                "APPENDLIMIT=52428800",
            ):
                self.assertIn(cap, caps)
            self.assertNotIn("LOGINDISABLED", caps)
            self.assertNotIn("STARTTLS", caps)  # no TLS context factory given

        return d.addCallback(check)

    def test_login_ok_has_capabilities(self):
        def client():
            w = Wire(self.portno)
            lines = w.cmd("a1", 'LOGIN "%s" "%s"' % (USER, PASSWORD))
            w.cmd("a2", "LOGOUT")
            w.close()
            return lines

        def check(lines):
            self.assertEqual(len(lines), 1)
            self.assertRegex(lines[0], r"^a1 OK \[CAPABILITY IMAP4rev1 .*\] LOGIN completed$")
            self.assertNotIn("AUTH=PLAIN", lines[0])

        return self.in_thread(client).addCallback(check)

    def test_login_wrong_password(self):
        def client():
            w = Wire(self.portno)
            lines = w.cmd("a1", 'LOGIN "%s" "nope"' % (USER,))
            again = w.cmd("a2", "SELECT INBOX")
            w.close()
            return lines, again

        def check(result):
            lines, again = result
            self.assertEqual(lines, ["a1 NO [AUTHENTICATIONFAILED] Authentication failed"])
            self.assertEqual(again, ["a2 BAD SELECT is not allowed in this state"])

        return self.in_thread(client).addCallback(check)

    def test_login_with_literals(self):
        def client():
            w = Wire(self.portno)
            w.send("a1 LOGIN {%d}\r\n" % len(USER))
            cont = w.readline()
            w.send(USER + " {%d+}\r\n%s\r\n" % (len(PASSWORD), PASSWORD))
            lines = w.until("a1")
            w.close()
            return cont, lines

        def check(result):
            cont, lines = result
            self.assertTrue(cont.startswith("+"))
            self.assertTrue(lines[-1].startswith("a1 OK [CAPABILITY"), lines)

        return self.in_thread(client).addCallback(check)

    def test_authenticate_plain_continuation(self):
        def client():
            w = Wire(self.portno)
            w.send("a1 AUTHENTICATE PLAIN\r\n")
            cont = w.readline()
            w.send(plain() + "\r\n")
            lines = w.until("a1")
            w.close()
            return cont, lines

        def check(result):
            cont, lines = result
            self.assertEqual(cont, "+ ")
            self.assertRegex(lines[-1], r"^a1 OK \[CAPABILITY IMAP4rev1 .*\] AUTHENTICATE completed$")

        return self.in_thread(client).addCallback(check)

    def test_authenticate_sasl_ir_and_failures(self):
        def client():
            w = Wire(self.portno)
            bad = w.cmd("a0", "AUTHENTICATE PLAIN " + plain(password="wrong"))
            garbage = w.cmd("a1", "AUTHENTICATE PLAIN !!!notbase64")
            w.send("a2 AUTHENTICATE PLAIN\r\n")
            w.readline()
            w.send("*\r\n")
            cancelled = w.until("a2")
            other = w.cmd("a3", "AUTHENTICATE CRAM-MD5")
            ok = w.cmd("a4", "AUTHENTICATE PLAIN " + plain())
            w.close()
            return bad, garbage, cancelled, other, ok

        def check(result):
            bad, garbage, cancelled, other, ok = result
            self.assertEqual(bad, ["a0 NO [AUTHENTICATIONFAILED] Authentication failed"])
            self.assertEqual(garbage, ["a1 BAD Response is not valid base64"])
            self.assertEqual(cancelled, ["a2 BAD AUTHENTICATE cancelled"])
            self.assertEqual(other, ["a3 NO Unsupported authentication mechanism"])
            self.assertTrue(ok[-1].startswith("a4 OK [CAPABILITY"))

        return self.in_thread(client).addCallback(check)

    def test_imaplib_login_and_capability(self):
        def client():
            c = self.imaplib(login=False)
            caps = c.capabilities
            c.login(USER, PASSWORD)
            typ, data = c.capability()
            c.logout()
            return caps, typ, data

        def check(result):
            caps, typ, data = result
            self.assertIn("AUTH=PLAIN", caps)
            self.assertEqual(typ, "OK")
            self.assertIn(b"IDLE", data[0].split())

        return self.in_thread(client).addCallback(check)


class PlaintextRefusedTests(IMAPTestCase):
    allow_plaintext_auth = False

    def test_logindisabled_and_refusals(self):
        def client():
            w = Wire(self.portno)
            login = w.cmd("a1", 'LOGIN "%s" "%s"' % (USER, PASSWORD))
            auth = w.cmd("a2", "AUTHENTICATE PLAIN " + plain())
            caps = w.cmd("a3", "CAPABILITY")
            w.close()
            return w.greeting, login, auth, caps

        def check(result):
            greeting, login, auth, caps = result
            self.assertIn("LOGINDISABLED", greeting)
            self.assertNotIn("AUTH=PLAIN", greeting)
            self.assertEqual(login, ["a1 NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS"])
            self.assertEqual(
                auth, ["a2 NO [PRIVACYREQUIRED] Authentication is disabled before STARTTLS"]
            )
            self.assertIn("LOGINDISABLED", caps[0])

        return self.in_thread(client).addCallback(check)


class STARTTLSTests(IMAPTestCase):
    allow_plaintext_auth = False
    tls = server_tls_options()

    def test_starttls_then_login(self):
        def client():
            c = imaplib.IMAP4("127.0.0.1", self.portno, timeout=10)
            before = c.capabilities
            c.starttls(ssl_context=client_context())
            typ, data = c.capability()
            c.login(USER, PASSWORD)
            typ2, _ = c.select("INBOX")
            c.logout()
            return before, data[0].split(), typ2

        def check(result):
            before, after, typ = result
            self.assertIn("STARTTLS", before)
            self.assertIn("LOGINDISABLED", before)
            self.assertNotIn(b"STARTTLS", after)
            self.assertNotIn(b"LOGINDISABLED", after)
            self.assertIn(b"AUTH=PLAIN", after)
            self.assertEqual(typ, "OK")

        return self.in_thread(client).addCallback(check)


    def test_plaintext_after_starttls_is_dropped(self):
        def client():
            w = Wire(self.portno)
            w.send("a1 STARTTLS\r\na2 LOGIN injected command\r\n")
            ok = w.readline()
            tls = client_context().wrap_socket(w.sock, server_hostname="localhost")
            tls.sendall(b"a3 NOOP\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += tls.recv(1024)
            tls.close()
            return ok, reply

        def check(result):
            ok, reply = result
            self.assertEqual(ok, "a1 OK Begin TLS negotiation now")
            self.assertEqual(reply, b"a3 OK NOOP completed\r\n")

        return self.in_thread(client).addCallback(check)


class ImplicitTLSTests(IMAPTestCase):
    allow_plaintext_auth = False
    tls = server_tls_options()

    def serving_factory(self):
        return self.factory.implicit_tls_factory()

    def test_imaps_login(self):
        def client():
            c = imaplib.IMAP4_SSL("127.0.0.1", self.portno, ssl_context=client_context(), timeout=10)
            caps = c.capabilities
            c.login(USER, PASSWORD)
            typ, _ = c.select("INBOX")
            c.logout()
            return caps, typ

        def check(result):
            caps, typ = result
            self.assertIn("AUTH=PLAIN", caps)
            self.assertNotIn("STARTTLS", caps)
            self.assertNotIn("LOGINDISABLED", caps)
            self.assertEqual(typ, "OK")

        return self.in_thread(client).addCallback(check)



class RealUserDatabaseTests(IMAPTestCase):
    """LOGIN through the project's own users file and threaded scrypt checker."""

    def setUp(self):
        super().setUp()
        from twisted.cred.portal import Portal

        from imapwebpush.imap.realm import IMAPRealm
        from imapwebpush.store.users import UserChecker, UserDatabase

        import os

        data = self.mktemp()
        os.makedirs(data)
        users = UserDatabase(data, mail_store=self.store)
        users.add("Dave@Example.org", "pass word")
        self.factory.portal = Portal(IMAPRealm(self.store), [UserChecker(users)])

    def test_login_and_select(self):
        def client():
            w = Wire(self.portno)
            # the next commands are pipelined behind the threaded password check
            w.send('a1 LOGIN "dave@example.org" "pass word"\r\na2 SELECT INBOX\r\n')
            lines = w.until("a2")
            w.cmd("a3", "LOGOUT")
            w.close()
            return lines, None

        def check(result):
            lines, _ = result
            self.assertTrue(lines[0].startswith("a1 OK [CAPABILITY"), lines)
            self.assertEqual(lines[-1], "a2 OK [READ-WRITE] SELECT completed")
            self.assertTrue(self.store.exists("dave@example.org"))

        return self.in_thread(client).addCallback(check)
