"""imapwebpush.webpush"""
