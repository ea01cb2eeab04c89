"""Testing a WEBPUSH client with pytest: the client-testing path of docs/integrating.rst.

Run: python -m pytest examples/test_webpush_client.py
(the ``mail_server`` fixture comes from imapwebpush's pytest plugin).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from webpush_client import WebPushClient  # noqa: E402  the client under test


# --- client-testing path (docs/integrating.rst) ---
def test_new_mail_is_pushed(mail_server):
    mail_server.add_user("alice@example.org", "secret")
    phone = mail_server.push_service.new_subscription()
    client = WebPushClient(mail_server.host, mail_server.imap_port, "alice@example.org", "secret")
    client.subscribe("phone-1", phone.endpoint, phone.p256dh, phone.auth)
    client.acknowledge(mail_server.wait_for_push(phone).plaintext)
    mail_server.deliver("alice@example.org", b"From: bob@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
    push = mail_server.wait_for_push(phone, count=2)
    assert push.plaintext.startswith(b'* SELECT "INBOX"\r\n* 1 UIDFETCH (FLAGS () ENVELOPE (')
    client.close()
# --- end ---


def test_subscription_is_active(mail_server, push_service):
    mail_server.add_user("bob@example.org", "secret")
    phone = push_service.new_subscription()
    client = WebPushClient(mail_server.host, mail_server.imap_port, "bob@example.org", "secret")
    client.subscribe("laptop", phone.endpoint, phone.p256dh, phone.auth)
    client.acknowledge(push_service.wait_for(1, phone)[0].plaintext)
    [subscription] = mail_server.subscriptions("bob@example.org")
    assert (subscription.id, subscription.state) == ("laptop", "active")
    client.close()
