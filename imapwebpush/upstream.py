"""Every private API of Twisted and treq we rely on, in one place (tests/test_upstream.py checks each).

Why: a private name can change in any release without notice. Gathered here,
each use is one small function or class with a test that fails loudly (naming
what changed) when an upgrade breaks it, instead of a session misbehaving on
the wire. setup.cfg pins the Twisted and treq versions these tests passed on.

The SMTP room's uses:

* L{ESMTPHooks}: names of our own for the private hooks of
  ``twisted.mail.smtp.ESMTP`` that decide the answer to the final dot
  (``_messageHandled``) and to a failed AUTH (``_ebAuthenticated``), and for
  its record of the current transaction (``_from``, ``_to``).

The IMAP room's uses:

* L{send_now}: writes what a plain TCP transport buffered now instead of on the
  reactor's next turn (``tcp.Server``'s ``TLS``, ``producer`` and ``doWrite``).
"""

from twisted.internet import tcp


class ESMTPHooks:
    """Mix in before ``twisted.mail.smtp.ESMTP``; define the public names it calls.

    * ``message_handled(results)``: after the final dot, with the
      ``DeferredList`` result of every recipient message's ``eomReceived()``
      (a list of ``(succeeded, result)``); it must send the reply.
    * ``authentication_failed(reason)``: the cred login of an AUTH exchange
      failed (a Failure); it must send the reply.
    """

    def _messageHandled(self, resultList):
        return self.message_handled(resultList)

    def _ebAuthenticated(self, reason):
        return self.authentication_failed(reason)

    def sender_given(self):
        """True once MAIL FROM was accepted, until the transaction ends (DATA, RSET, HELO)."""
        return bool(self._from)

    def forget_transaction(self):
        """End the current transaction without a reply: what RSET does, silently."""
        self._from = None
        self._to = []


def send_now(transport):
    """Send what ``transport`` buffered now, not on the reactor's next turn (plain TCP only).

    ``doWrite`` is what the reactor would call on that turn; when the socket cannot take
    everything (or fails), the transport stays registered for writing and the reactor
    goes on (and reports a failure) exactly as it would have. Other transports (TLS,
    test transports) are left alone.
    """
    if (
        type(transport) is tcp.Server
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and transport.producer is None
    ):
        transport.doWrite()
