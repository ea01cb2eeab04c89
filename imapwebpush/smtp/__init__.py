"""imapwebpush.smtp"""
