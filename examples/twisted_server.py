"""A stock twisted.mail IMAP server whose own mailboxes push: the integrator path.

Everything here but the marked block is what a Twisted IMAP server has anyway
(a realm, a checker, a factory, a mailbox class); the marked block is what
docs/integrating.rst says to add.

Run:  python examples/twisted_server.py --data /tmp/push-data [--port 1143] [--testing]
Users: alice and bob, password "secret". ``--testing`` allows http:// push
endpoints on loopback (a test push service); never use it in production.
It prints "listening on PORT" once it accepts connections.
"""

import argparse
import sys

from twisted.application import service
from twisted.cred import checkers, portal
from twisted.internet import protocol, reactor
from twisted.mail import imap4
from twisted.python import log
from zope.interface import implementer

from imapwebpush.testing.memory_mailbox import MemoryMailbox as MyMailbox  # your mailbox class


@implementer(portal.IRealm)
class Realm:
    def __init__(self, make_account):
        self.make_account = make_account
        self.accounts = {}

    def requestAvatar(self, avatar_id, mind, *interfaces):
        name = avatar_id.decode() if isinstance(avatar_id, bytes) else avatar_id
        if name not in self.accounts:
            self.accounts[name] = self.make_account(name)
            self.accounts[name].addMailbox("INBOX")
        return imap4.IAccount, self.accounts[name], lambda: None


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--port", type=int, default=1143)
    parser.add_argument("--testing", action="store_true")
    args = parser.parse_args(argv)
    DATA, TESTING = args.data, args.testing
    application = service.MultiService()

    # --- integrator path (docs/integrating.rst) ---
    from imapwebpush import WebPush
    from imapwebpush.imap.twisted_bridge import PushingMailboxMixin, PushingMemoryAccount
    from imapwebpush.imap.webpush_commands import webpush_server_class
    push = WebPush(DATA, reactor, subject="mailto:postmaster@example.org", insecure=TESTING)
    push.setServiceParent(application)
    class Mailbox(PushingMailboxMixin, MyMailbox): pass
    class Account(PushingMemoryAccount):
        def _emptyMailbox(self, name, id): return Mailbox()
    IMAPServer = webpush_server_class(imap4.IMAP4Server)
    # --- end ---

    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret", bob=b"secret")
    the_portal = portal.Portal(Realm(lambda name: Account(name, push)), [checker])
    factory = protocol.ServerFactory()
    factory.protocol = lambda: _with_portal(IMAPServer(), the_portal)
    log.startLogging(sys.stderr, setStdout=False)
    application.startService()
    port = reactor.listenTCP(args.port, factory, interface="127.0.0.1")
    print("listening on %d" % port.getHost().port, flush=True)
    reactor.addSystemEventTrigger("before", "shutdown", application.stopService)
    reactor.run()


def _with_portal(server, the_portal):
    server.portal = the_portal
    return server


if __name__ == "__main__":
    main(sys.argv[1:])
