"""Which mailboxes' changes are pushed: INBOX and the subscribed ones, or all of them.

The WEBPUSH draft pushes changes of the account (the mailbox tree) and of its
*subscribed* mailboxes: a client subscribes (IMAP SUBSCRIBE) to what it wants
to hear about, and a busy mailing-list folder nobody watches stays quiet. The
subscriptions are read at every flush, so SUBSCRIBE and UNSUBSCRIBE take effect
for the very next change. INBOX is always in scope, subscribed or not.

``--push-scope all`` pushes every mailbox, as before this was configurable.
Mailbox tree changes (CREATE, RENAME, DELETE) are pushed in both scopes.
"""

from imapwebpush.choices import one_of
from imapwebpush.constants import INBOX

SUBSCRIBED = "subscribed"
ALL = "all"
SCOPES = (SUBSCRIBED, ALL)
DEFAULT_SCOPE = SUBSCRIBED


def check_scope(text):
    """The scope named by ``text`` (any case), or ValueError."""
    return one_of(text, SCOPES, "scope")


class SubscribedMailboxes:
    """INBOX and the LSUB subscriptions of each account of a L{MailStore}."""

    def __init__(self, mail_store):
        self._store = mail_store

    def mailboxes(self, account):
        """The names in scope (a set), or None (every mailbox) for an account not in the store."""
        if not self._store.exists(account):
            return None
        return frozenset(self._store.account(account).subscriptions()) | {INBOX}
