"""Which envelope senders a logged-in submission user may use.

Why a rule at all: without it any user of the server can send mail as any
other user (and, with outbound mail, as anyone at our domains to the world).
A user may always send as their own address; ``--submission-allow-sender
LOGIN=SENDER`` grants more (SENDER is an address or ``@domain``, LOGIN may be
``*`` for every user), ``--submission-allow-any-sender`` lifts the rule.
"""


class SenderPolicy:
    """``allowed(login, sender) -> bool``; addresses compared lower-cased."""

    def __init__(self, grants=(), allow_any=False):
        self.allow_any = allow_any
        self.grants = {}
        for login, sender in grants:
            self.grants.setdefault(login.lower(), set()).add(sender.lower())

    @staticmethod
    def parse(text):
        """``LOGIN=SENDER`` -> (login, sender); ValueError with a reason."""
        login, sep, sender = text.strip().partition("=")
        login, sender = login.strip().lower(), sender.strip().lower()
        if not sep or not login or not sender:
            raise ValueError("expected LOGIN=SENDER, got %r" % (text,))
        if login != "*" and "@" not in login:
            raise ValueError("LOGIN must be an address or *: %r" % (login,))
        if "@" not in sender:
            raise ValueError("SENDER must be an address or @domain: %r" % (sender,))
        return login, sender

    def allowed(self, login, sender):
        if self.allow_any:
            return True
        login, sender = login.lower(), sender.lower()
        if sender == login:
            return True
        domain = "@" + sender.rsplit("@", 1)[-1]
        for who in (login, "*"):
            granted = self.grants.get(who, ())
            if sender in granted or domain in granted:
                return True
        return False
