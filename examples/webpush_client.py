"""A minimal WEBPUSH client on Python's imaplib: it stands for the client you test.

It logs in, subscribes (WEBPUSH) and acknowledges the verification push
(ACKWEBPUSH); see SPEC.md section 3. A real client gets the verification push
from the phone's push service; in a test, ``mail_server.wait_for_push`` hands it over.
"""

import imaplib


class WebPushClient:
    def __init__(self, host, port, user, password):
        self.imap = imaplib.IMAP4(host, port)
        self.imap.login(user, password)

    def command(self, name, *args):
        typ, data = self.imap.xatom(name, *args)
        if typ != "OK":
            raise RuntimeError("%s: %s %r" % (name, typ, data))
        return data

    def subscribe(self, subscription_id, endpoint, p256dh, auth):
        return self.command("WEBPUSH", subscription_id, endpoint, p256dh, auth)

    def acknowledge(self, verification):
        """``verification`` is the decrypted verification push: ``* ACKWEBPUSH <token>``."""
        token = verification.split()[2].decode("ascii")
        return self.command("ACKWEBPUSH", token)

    def close(self):
        self.imap.logout()
