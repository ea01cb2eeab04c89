"""imapwebpush.testing"""
