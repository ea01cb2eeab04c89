"""imapwebpush.imap"""
