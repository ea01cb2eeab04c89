"""IMAPServer: twisted's IMAP4Server with the commands real clients need, over our mail store.

twisted.mail.imap4 gives the line machinery and the nested-list helpers; the command
handlers are ours, because they work on per-session views
(imapwebpush.imap.view) of the store's UID-addressed mailboxes and must tell each client
about other sessions' changes only when RFC 3501 allows it.

The class only composes one mixin per job over L{IMAPCore} (dispatch, literals, answers,
output; imap/core.py); each mixin holds its commands as ``<state>_<NAME>`` tables:

* L{AuthCommandsMixin} (imap/auth.py): STARTTLS, LOGIN, AUTHENTICATE, ID, NAMESPACE,
  ENABLE, IDLE;
* L{MailboxCommandsMixin} (imap/mailboxes.py): CREATE, DELETE, RENAME, (UN)SUBSCRIBE,
  LIST (its extended arguments and answer in imap/list_extended.py), LSUB, STATUS;
* L{AppendCommandMixin} (imap/append.py): APPEND, with MULTIAPPEND and literal8;
* L{SelectedCommandsMixin} (imap/selected.py): SELECT, EXAMINE, CHECK, CLOSE, UNSELECT,
  EXPUNGE, UID, COPY, MOVE, STORE;
* L{FetchCommandMixin} (imap/fetch.py): FETCH, over the attribute parser of
  imap/fetch_attributes.py;
* L{SearchCommandMixin} (imap/search_command.py): SEARCH, over the pure compiler of
  imap/search.py;
* L{SortCommandMixin} (imap/sort_command.py): SORT and THREAD, over the same steps.

Subclasses (the WEBPUSH mixin, imap/webpush_commands.py) add commands the twisted way
(``auth_NAME = (handler, arg_parser, ...)``) and capabilities through ``capabilities()``.
IMAP text (strings, sequence sets, dates, mailbox names) is read and written by
L{imapwebpush.wire}.
"""

from imapwebpush.imap.append import AppendCommandMixin
from imapwebpush.imap.auth import AuthCommandsMixin
from imapwebpush.imap.core import Bad, IMAPCore, No  # noqa: F401 (the errors handlers raise)
from imapwebpush.imap.fetch import FetchCommandMixin
from imapwebpush.imap.mailboxes import MailboxCommandsMixin
from imapwebpush.imap.search_command import SearchCommandMixin
from imapwebpush.imap.selected import SelectedCommandsMixin
from imapwebpush.imap.sort_command import SortCommandMixin

# What every session announces, in CAPABILITY order (an extension adds its name here).
_CAPABILITIES = (
    b"LITERAL+",
    b"ID",
    b"ENABLE",
    b"IDLE",
    b"NAMESPACE",
    b"CHILDREN",
    b"SPECIAL-USE",
    b"LIST-EXTENDED",
    b"LIST-STATUS",
    b"STATUS=SIZE",
    b"UIDPLUS",
    b"MULTIAPPEND",
    b"MOVE",
    b"UNSELECT",
    b"CONDSTORE",
    b"QRESYNC",
    b"ESEARCH",
    b"SEARCHRES",
    b"SORT",
    b"ESORT",
    b"THREAD=ORDEREDSUBJECT",
    b"THREAD=REFERENCES",
    b"BINARY",
    b"SAVEDATE",
)


class IMAPServer(
    AuthCommandsMixin,
    MailboxCommandsMixin,
    AppendCommandMixin,
    SelectedCommandsMixin,
    FetchCommandMixin,
    SortCommandMixin,
    SearchCommandMixin,
    IMAPCore,
):
    """An IMAP4rev1 session over an IMailStore account (see factory.IMAPFactory)."""

    def capabilities(self):
        caps = {}
        if self.state == "unauth":
            if self.ctx and self.canStartTLS and not self.is_secure():
                caps[b"STARTTLS"] = None
            if self.auth_allowed():
                caps[b"AUTH"] = [b"PLAIN"]
                caps[b"SASL-IR"] = None
            else:
                caps[b"LOGINDISABLED"] = None
        for name in _CAPABILITIES:
            caps[name] = None
        caps[b"APPENDLIMIT=%d" % (self.max_message_size,)] = None  # RFC 7889
        return caps
