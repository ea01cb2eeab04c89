"""The mail store: accounts, Maildir mailboxes with persistent UIDs, the change bus.

One module per job; docs/store.rst lists them.
"""
