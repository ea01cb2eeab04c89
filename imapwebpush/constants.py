"""Names and defaults every room shares, defined once.

The store, the IMAP server, the SMTP server and the push side all speak of the
same INBOX, the same hierarchy delimiter and the same system flags; a second
copy of any of these is a bug waiting for the day one of them changes.
"""

# RFC 3501 5.1: INBOX is case-insensitive; this is how we spell it everywhere.
INBOX = "INBOX"

# The hierarchy delimiter of every mailbox name the store and IMAP hand out.
DELIMITER = "/"

# RFC 3501 2.3.2: the system flags a client may set, in the order FLAGS lists them.
# \Recent is not among them: no client can set it.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
RECENT = "\\Recent"

# The largest message SMTP DATA or IMAP APPEND accepts unless an option says otherwise.
DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024

# The deepest nesting of parentheses, NOT and OR an IMAP command may use (SEARCH,
# STATUS, flag lists): deeper input is answered BAD, not parsed by recursion.
DEFAULT_MAX_NESTING = 64

# The MIME parts of a large message (over 256 KiB) FETCH describes and serves from the
# map of its file (imap/mime_map.py); the rest stay in the body of the last multipart.
DEFAULT_MAX_MIME_PARTS = 1000
