"""The shared test harness: what more than one test module needs to talk to a server.

- ``wire``: the IMAP wire clients (a blocking one for client code run in a thread, a
  Deferred-based one for code on the reactor) that read exact lines.
- ``connections``: a ``ConnectionTracker`` that listens on 127.0.0.1:0, notes every
  connection a test's servers accept or its clients open, and closes them all.
- ``settle``: waiting without the wall clock: run a ``task.Clock`` world until it is
  quiet, or wait for an event (a push received, a delivery finished) on the reactor.
- ``imap``: ``IMAPTestCase``, a MailStore and our IMAP server on a tracked port.
- ``webpush``: ``WebPushTestBase``, a WEBPUSH IMAP server with a recording push sender
  (or the real delivery service and the testing PushService).
- ``smtp``: the SMTP world (users, store), in memory (``SMTPWorldMixin``; its connections are ``wire.MemoryWire``)
  or on loopback (``LoopbackSMTPMixin``).
- ``tls``: throw-away certificates and the client context that accepts them.
- ``logs``: ``LogWatch``, the log events of a test (for asserting none is an error).

docs/testing.rst describes how to use them.
"""
