"""Everything the server and the admin command write under the data folder is private.

The data folder holds password hashes, mail, and push endpoint URLs (capability
URLs: whoever knows one can push to the device). Every file must be 0600 and
every folder 0700, whatever the umask the server was started with: the test
runs with umask 022 and looks at every path after real traffic (a user added,
mail delivered by SMTP, mailboxes made over IMAP, a Web Push subscription and
its verification push through the outbox), while the server still runs, so
SQLite's -wal and -shm files are there too.
"""

import imaplib
import io
import os
import smtplib
import sqlite3
import stat

from twisted.internet import defer, reactor, threads
from twisted.logger import capturedLogs
from twisted.trial import unittest

from imapwebpush import cli, datadir
from imapwebpush.private import connect_sqlite
from imapwebpush.store.account import MailStore
from imapwebpush.tap import start_server
from imapwebpush.testing import PushService

from tests.harness.connections import track_server
from tests.harness.dns import dns_server_option
from tests.harness.settle import OutcomeWatch
from tests.harness.wire import imaplib_session

ALICE = "alice@example.org"
PASSWORD = "secret"
MESSAGE = b"From: fred@elsewhere.example\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


def modes(top):
    """{relative path: (is a folder, permission bits)} of every path below ``top``."""
    found = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            found[os.path.relpath(path, top)] = (stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode))
    return found


class PermissionsTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        imaplib.Commands.setdefault("WEBPUSH", ("AUTH", "SELECTED"))
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        self.data = os.path.abspath(self.mktemp())
        out, err = io.StringIO(), io.StringIO()
        status = cli.main(["--data", self.data, "user", "add", "--password-stdin", ALICE],
                          stdin=io.StringIO(PASSWORD + "\n"), stdout=out, stderr=err)
        self.assertEqual((status, err.getvalue()), (0, ""))
        self.pushservice = PushService(reactor)
        yield self.pushservice.start()
        self.addCleanup(self.pushservice.stop)
        with capturedLogs():
            self.server = yield start_server([
                "--data", self.data, "--domain", "example.org",
                "--smtp", "tcp:0:interface=127.0.0.1", "--imap", "tcp:0:interface=127.0.0.1",
                "--allow-plaintext-auth", "--insecure-push-endpoints",
            ] + dns_server_option(self), reactor)
        self.connections = track_server(self.server)
        self.outcomes = OutcomeWatch(self.server.components.webpush.sender)
        self.addCleanup(self.stop)

    @defer.inlineCallbacks
    def stop(self):
        yield self.outcomes.idle()  # no push left in flight
        yield self.server.stop()
        yield self.connections.close(abort=False)

    @defer.inlineCallbacks
    def client(self, work):
        """Run blocking client code in a thread; wait until the server closed its side."""
        result = yield threads.deferToThread(work)
        yield self.connections.idle()
        return result

    @defer.inlineCallbacks
    def test_every_path_is_private(self):
        ports = self.server.ports
        device = self.pushservice.new_subscription()

        def send():
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as smtp:
                smtp.sendmail("fred@elsewhere.example", [ALICE], MESSAGE)

        def imap():
            with imaplib_session(ports["imap"], ALICE, PASSWORD) as client:
                assert client.create("Archive/2026")[0] == "OK"
                assert client.append("Archive/2026", r"(\Seen)", None, MESSAGE)[0] == "OK"
                assert client.select("INBOX")[0] == "OK"
                assert client.uid("STORE", "1", "+FLAGS", r"(\Flagged)")[0] == "OK"
                assert client.subscribe("Archive/2026")[0] == "OK"
                typ, data = client.xatom(
                    "WEBPUSH", "phone", device.endpoint, device.p256dh, device.auth)
                assert typ == "OK", data

        yield self.client(send)
        yield self.client(imap)
        yield self.pushservice.wait_for(1, device)  # the verification push went out

        found = modes(self.data)
        # The traffic reached every kind of file this test is about.
        for path in [datadir.USERS_FILE, datadir.MAIL_FOLDER, os.path.join(datadir.MAIL_FOLDER, ALICE),
                     datadir.VAPID_FOLDER, datadir.SUBSCRIPTIONS_FILE, datadir.OUTBOX_FILE,
                     datadir.OUTBOX_FILE + "-wal", datadir.OUTBOX_FILE + "-shm"]:
            self.assertIn(path, found)
        self.assertTrue(any(p.startswith(os.path.join(datadir.MAIL_FOLDER, ALICE, ".Archive.2026", "cur"))
                            for p in found), sorted(found))
        loose = {path: oct(mode) for path, (is_dir, mode) in found.items()
                 if mode != (0o700 if is_dir else 0o600)}
        self.assertEqual(loose, {})


class OlderDataFolderTests(unittest.TestCase):
    """What an older version left 0644/0755 is tightened when it is opened again."""

    def setUp(self):
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        self.dir = os.path.abspath(self.mktemp())
        os.mkdir(self.dir)

    def test_sqlite_side_files(self):
        path = os.path.join(self.dir, "db.sqlite")
        older = sqlite3.connect(path, isolation_level=None)  # the way older versions opened it
        self.addCleanup(older.close)
        older.execute("PRAGMA journal_mode=WAL")
        older.execute("CREATE TABLE t (x)")
        older.execute("INSERT INTO t VALUES (1)")
        self.assertEqual(modes(self.dir)["db.sqlite-wal"], (False, 0o644))
        db = connect_sqlite(path, isolation_level=None)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT x FROM t").fetchall(), [(1,)])
        self.assertEqual(
            modes(self.dir),
            {name: (False, 0o600) for name in ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"]},
        )

    def test_new_sqlite_file_and_its_wal(self):
        db = connect_sqlite(os.path.join(self.dir, "new.sqlite"), isolation_level=None)
        self.addCleanup(db.close)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        self.assertEqual(
            modes(self.dir),
            {name: (False, 0o600) for name in ["new.sqlite", "new.sqlite-wal", "new.sqlite-shm"]},
        )

    def test_mail_folder(self):
        path = datadir.mail(self.dir)
        os.mkdir(path, 0o755)
        MailStore(path)
        self.assertEqual(modes(self.dir), {datadir.MAIL_FOLDER: (True, 0o700)})
