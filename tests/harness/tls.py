"""TLS on loopback: throw-away server certificates and the client side that accepts them.

The certificates come from ``imapwebpush.testing.tls``; the client context does not
check them (the tests are about the protocol over TLS, not about trust; the push
delivery tests check real certificate verification).
"""

import ssl

from imapwebpush.testing import self_signed_tls
from imapwebpush.testing import tls as testing_tls


def server_tls_options():
    """Twisted server TLS options with a new throw-away certificate."""
    return self_signed_tls()[0]


def write_self_signed(folder, name="localhost"):
    """A throw-away certificate and key as PEM files in ``folder``; returns their paths."""
    return testing_tls.write_self_signed(folder, name, hosts=(name,))


def client_context():
    """A stdlib client SSLContext that accepts the throw-away certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
