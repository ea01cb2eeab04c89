"""The cred realm: an authenticated address becomes an Avatar over its store account."""

from twisted.cred.portal import IRealm
from twisted.mail import imap4
from zope.interface import implementer

from imapwebpush.imap.avatar import Avatar
from imapwebpush.store.users import normalize_address


@implementer(IRealm)
class IMAPRealm:
    """``IMAPRealm(mail_store, avatar_factory=Avatar)``.

    ``mail_store`` provides IMailStore; ``avatar_factory(mail_account)`` builds the avatar
    (pass a subclass of Avatar to give it more, e.g. WEBPUSH services).
    """

    def __init__(self, mail_store, avatar_factory=Avatar):
        self.mail_store = mail_store
        self.avatar_factory = avatar_factory

    def requestAvatar(self, avatarId, mind, *interfaces):
        if imap4.IAccount not in interfaces:
            raise NotImplementedError("IMAPRealm only gives imap4.IAccount avatars")
        account = self.mail_store.account(normalize_address(avatarId))
        avatar = self.avatar_factory(account)
        return imap4.IAccount, avatar, getattr(avatar, "logout", lambda: None)
