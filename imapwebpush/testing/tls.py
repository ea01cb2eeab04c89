"""Throw-away TLS certificates for tests of servers and clients on loopback.

One self-signed certificate (P-256, valid from a day ago for a day more) for
``127.0.0.1`` and ``localhost``: the testing push service serves HTTPS with
it, and tests of STARTTLS/implicit TLS use it as the server's certificate.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl

__all__ = ["self_signed_pem", "self_signed_tls", "write_self_signed"]


def self_signed_pem(common_name="localhost", hosts=("127.0.0.1", "localhost")):
    """``(key_pem, cert_pem)`` of a new self-signed certificate naming ``hosts``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def self_signed_tls(common_name="localhost", hosts=("127.0.0.1", "localhost")):
    """Twisted server TLS options and the L{twisted.internet.ssl.Certificate} clients may trust."""
    key_pem, cert_pem = self_signed_pem(common_name, hosts)
    server = ssl.PrivateCertificate.loadPEM(key_pem + cert_pem)
    return server.options(), ssl.Certificate.loadPEM(cert_pem)


def write_self_signed(folder, common_name="localhost", hosts=("127.0.0.1", "localhost")):
    """Write ``cert.pem`` and ``key.pem`` into ``folder``; returns their paths."""
    key_pem, cert_pem = self_signed_pem(common_name, hosts)
    cert_path = os.path.join(folder, "cert.pem")
    key_path = os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert_pem)
    with open(key_path, "wb") as f:
        f.write(key_pem)
    return cert_path, key_path
