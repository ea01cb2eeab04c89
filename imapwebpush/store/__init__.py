"""imapwebpush.store"""
