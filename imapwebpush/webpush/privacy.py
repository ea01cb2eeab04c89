"""Privacy levels: how much a push tells the push service's device about the mail.

The push body is end-to-end encrypted to the device, but it sits on the
device, in its notification logs and backups, and whoever holds the device
reads it. Three levels:

* ``full``: new messages with their ENVELOPE (sender, subject, date...) and an
  RFC 8970 PREVIEW of the text when there is room; flag changes and expunges
  with UIDs. The client can show a notification without connecting.
* ``minimal``: UIDs and FLAGS only (``* 7 UIDFETCH (FLAGS (\\Seen))``,
  ``* VANISHED 3:5``): the client knows what changed but has to connect to
  show who wrote and what.
* ``sync``: ``* SELECT "mbox"`` only, for every change: the client learns in
  which mailbox something happened and resyncs it. Least revealing, most
  traffic.

In every level mailbox names are sent (``* SELECT``, and LIST responses when
the mailbox tree changes). The server default is ``--push-privacy``; an
account's own level is set by ``imapwebpush push privacy ADDRESS LEVEL``
and kept in the subscription database, where a running server reads it at
its next push.
"""

from imapwebpush.choices import one_of

FULL = "full"
MINIMAL = "minimal"
SYNC = "sync"
LEVELS = (FULL, MINIMAL, SYNC)
DEFAULT_PRIVACY = FULL


def check_level(text):
    """The level named by ``text`` (any case), or ValueError."""
    return one_of(text, LEVELS, "privacy level")


class AccountPrivacy:
    """The level of each account: its own (set by the admin), else the server default.

    @param store: the subscription store (its ``privacy(account)``).
    """

    def __init__(self, store, default=DEFAULT_PRIVACY):
        self._store = store
        self.default = check_level(default)

    def level(self, account):
        return self._store.privacy(account) or self.default
