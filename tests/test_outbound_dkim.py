"""DKIM signing as a stream: the same body hash as dkimpy, a signature dkimpy verifies, and
a submitted message read in bounded pieces (signed, then copied to the queue) instead of whole."""

import base64
import hashlib
import io
import os
import re

import dkim
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings, strategies as st
from twisted.internet import defer, task
from twisted.trial import unittest

from imapwebpush.outbound import dkim as our_dkim
from imapwebpush.outbound.queue import DiskQueue
from imapwebpush.outbound.service import OutboundService
from imapwebpush.spool import Spool

from tests.outbound_fakes import FakeMX, FakeRouter, settle

# Bodies made of the octets canonicalisation cares about: white space, CR, LF, text.
BODIES = st.lists(st.sampled_from([b"a", b"b", b" ", b"  ", b"\t", b"\r", b"\n", b"\r\n"]), max_size=40).map(
    b"".join)
HEADER = b"From: Alice <alice@local.test>\r\nTo: bob@remote.test\r\nSubject:  a  test \r\n\r\n"


def dkimpy_body_hash(body, canonicalization=Relaxed, limit=None):
    """What dkimpy hashes for the body of HEADER + body (its parser, then its canonicalisation, l=)."""
    canonical = canonicalization.canonicalize_body(dkim.rfc822_parse(HEADER + body)[1])
    return hashlib.sha256(canonical[:limit] if limit is not None else canonical).digest()


class BodyHashTests(unittest.TestCase):
    @settings(max_examples=500, deadline=None)
    @given(BODIES, st.integers(1, 7), st.booleans(), st.none() | st.integers(0, 30))
    def test_same_hash_as_dkimpy_in_any_pieces(self, body, size, relaxed, limit):
        by_line = our_dkim.BodyHash(relaxed, limit=limit)
        by_size = our_dkim.BodyHash(relaxed, limit=limit)
        readable = io.BytesIO(body)
        for piece in iter(lambda: readable.readline(size), b""):
            by_line.update(piece)
        for start in range(0, len(body), size):
            by_size.update(body[start:start + size])  # pieces across line ends too
        expected = dkimpy_body_hash(body, Relaxed if relaxed else Simple, limit)
        self.assertEqual(by_line.digest(), expected)
        self.assertEqual(by_size.digest(), expected)

    def test_examples(self):
        for body, canonical in [
            (b"", b""),
            (b"\r\n\r\n", b""),
            (b"a  b \t\r\n\r\n\r\n", b"a b\r\n"),
            (b"a\r\n\r\nb", b"a\r\n\r\nb\r\n"),  # an empty line before content counts
            (b"x\r\n  ", b"x\r\n \r\n"),  # a last line without CRLF keeps its (one) space
        ]:
            hashed = our_dkim.BodyHash()
            hashed.update(body)
            self.assertEqual(hashed.digest(), hashlib.sha256(canonical).digest(), body)


class Keys:
    """One RSA key for local.test, made once for the module (2048 bits take a moment)."""

    _made = None

    @classmethod
    def get(cls, case):
        if cls._made is None:
            folder = os.path.abspath(case.mktemp())
            name, value = our_dkim.generate_key(folder, "local.test")
            cls._made = (our_dkim.load_keys(folder), value)
        return cls._made


def verify(message, record):
    return dkim.verify(message, dnsfunc=lambda name, timeout=5: record.encode("ascii"))


class SignerTests(unittest.TestCase):
    def setUp(self):
        self.keys, self.record = Keys.get(self)
        self.signer = our_dkim.DKIMSigner(self.keys)

    @settings(max_examples=30, deadline=None)
    @given(BODIES)
    def test_dkimpy_verifies_and_agrees_on_the_body_hash(self, body):
        message = HEADER + body
        header = self.signer.sign("alice@local.test", io.BytesIO(message))
        self.assertTrue(verify(header + message, self.record))
        theirs = dkim.sign(message, b"imapwebpush", b"local.test", self.keys["local.test"][1],
                           canonicalize=(b"relaxed", b"relaxed"), include_headers=[b"from"])
        bh = re.compile(rb"bh=([^;]+);")
        self.assertEqual(bh.search(header).group(1), bh.search(theirs).group(1))

    def test_signed_fields_and_tags(self):
        header = self.signer.sign("alice@local.test", HEADER + b"Hi\r\n")
        self.assertTrue(header.startswith(
            b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=local.test;\r\n i=@local.test; "
            b"q=dns/txt; s=imapwebpush; t="), header)
        self.assertIn(b"h=from : to :\r\n subject;", header)
        self.assertTrue(header.endswith(b"\r\n"))

    def test_tampered_body_fails(self):
        message = HEADER + b"Pay 10 EUR\r\n"
        header = self.signer.sign("alice@local.test", message)
        self.assertFalse(verify(header + message.replace(b"10", b"99"), self.record))

    def test_other_domain_is_not_signed(self):
        message = b"From: x@elsewhere.test\r\n\r\nHi\r\n"
        self.assertEqual(self.signer.sign("x@elsewhere.test", message), b"")

    def test_huge_header_block_is_not_signed_nor_held(self):
        message = HEADER[:-2] + b"X-Filler: " + b"f" * our_dkim.MAX_SIGNED_HEADER + b"\r\n\r\nHi\r\n"
        self.assertEqual(self.signer.sign("alice@local.test", message), b"")


class CountingReader:
    """A readable that records the size of every read it is asked for."""

    def __init__(self, data):
        self.file = io.BytesIO(data)
        self.asked = []

    def readline(self, limit=-1):
        self.asked.append(limit)
        return self.file.readline(limit)

    def read(self, size=-1):
        self.asked.append(size)
        return self.file.read(size)


class CountingSource:
    """What the SMTP side hands to submit: ``reader()`` as often as needed."""

    def __init__(self, data):
        self.data = data
        self.readers = []

    def reader(self):
        self.readers.append(CountingReader(self.data))
        return self.readers[-1]


class StreamedSubmitTests(unittest.TestCase):
    """submit never asks for the whole message: it reads it once to sign, once to copy."""

    def test_signed_and_queued_in_bounded_pieces(self):
        keys, record = Keys.get(self)
        clock = task.Clock()
        mx = FakeMX(clock)
        mx.extensions = [b"SIZE 10000000"]
        path = os.path.abspath(self.mktemp())
        service = OutboundService(DiskQueue(path), FakeRouter(), clock, "mail.local.test", mx.connect,
                                  lambda address, data: True, signer=our_dkim.DKIMSigner(keys))
        service.startService()
        self.addCleanup(service.stopService)
        body = b"".join(b"line %d with  some   spaces \r\n" % i for i in range(20000))  # 600 KB
        source = CountingSource(HEADER + body)
        self.successResultOf(service.submit("alice@local.test", ["bob@remote.test"], source))
        settle(clock)
        self.assertEqual(len(source.readers), 2)  # one pass to sign, one to copy
        for reader in source.readers:
            self.assertEqual(reader.file.tell(), len(HEADER + body))
            self.assertTrue(all(0 < n <= our_dkim.MAX_SIGNED_HEADER + 1 for n in reader.asked), set(reader.asked))
        [(_, _, sent)] = mx.messages
        self.assertTrue(sent.startswith(b"DKIM-Signature: ") and sent.endswith(HEADER + body))
        self.assertTrue(verify(sent, record))


class SnapshotTests(unittest.TestCase):
    """A spool's snapshot: read from another thread while the spool is read, and after it is closed."""

    def check(self, in_memory):
        spool = Spool(in_memory=in_memory)
        data = b"".join(b"line %d\r\n" % i for i in range(5000))
        spool.write(data)
        snapshot = spool.snapshot(b"Received: x\r\n")
        self.addCleanup(snapshot.close)
        first = snapshot.reader()
        self.assertEqual(first.readline(), b"Received: x\r\n")
        self.assertEqual(first.readline(), b"line 0\r\n")
        own = spool.reader(b"")
        self.assertEqual(own.read(8), b"line 0\r\n")  # its own position, untouched by the snapshot's
        spool.close()
        self.assertEqual(first.read(), data[8:])
        self.assertEqual(snapshot.reader().read(), b"Received: x\r\n" + data)
        self.assertEqual(snapshot.size, len(data) + 13)

    def test_on_disk(self):
        self.check(in_memory=1024)

    def test_in_memory(self):
        self.check(in_memory=1 << 20)


class VerifierTests(unittest.TestCase):
    """Inbound DKIM: dkimpy's verdicts, with the body read as a stream."""

    def setUp(self):
        from imapwebpush.testing.dns import Zone

        self.keys, self.record = Keys.get(self)
        self.zone = Zone()
        self.zone.add("imapwebpush._domainkey.local.test", "TXT", self.record)
        self.verifier = our_dkim.DKIMVerifier(self.zone, task.Clock(), lambda f, *a: defer.maybeDeferred(f, *a))
        self.pem = self.keys["local.test"][1]

    def verify(self, message):
        return self.successResultOf(self.verifier.verify(message))

    def dkimpy_sign(self, message, **kw):
        return dkim.sign(message, b"imapwebpush", b"local.test", self.pem, include_headers=[b"from", b"subject"],
                         **kw) + message

    def test_ours_pass_and_tampering_fails(self):
        message = HEADER + b"Pay 10 EUR\r\n"
        signed = our_dkim.DKIMSigner(self.keys).sign("alice@local.test", message) + message
        self.assertEqual(self.verify(signed), [("local.test", "imapwebpush", "pass")])
        self.assertEqual(self.verify(signed.replace(b"10 EUR", b"99 EUR")), [("local.test", "imapwebpush", "fail")])
        self.assertEqual(self.verify(signed.replace(b"a  test", b"a test!")), [("local.test", "imapwebpush", "fail")])

    def test_dkimpy_signatures_of_every_kind(self):
        message = HEADER + b"Hello  \r\n\r\n"
        for kw in [{}, {"canonicalize": (b"simple", b"simple")}, {"canonicalize": (b"relaxed", b"relaxed")},
                   {"signature_algorithm": b"rsa-sha1"}, {"length": True}]:
            self.assertEqual(self.verify(self.dkimpy_sign(message, **kw)),
                             [("local.test", "imapwebpush", "pass")], kw)
        # l= covers what was signed: a line added after it does not fail the signature.
        self.assertEqual(self.verify(self.dkimpy_sign(message, length=True) + b"P.S. added\r\n"),
                         [("local.test", "imapwebpush", "pass")])
        self.assertEqual(self.verify(self.dkimpy_sign(message) + b"P.S. added\r\n"),
                         [("local.test", "imapwebpush", "fail")])

    def test_no_key_is_permerror_unparsable_is_neutral(self):
        message = HEADER + b"Hi\r\n"
        signed = dkim.sign(message, b"gone", b"local.test", self.pem, include_headers=[b"from"]) + message
        self.assertEqual(self.verify(signed), [("local.test", "gone", "permerror")])
        self.assertEqual(self.verify(b"DKIM-Signature: v=1; nonsense\r\n" + message), [(None, None, "neutral")])

    def test_signatures_past_the_limit_are_not_checked(self):
        message = self.dkimpy_sign(HEADER + b"Hi\r\n")
        for _ in range(our_dkim.MAX_CHECKED_SIGNATURES):
            message = self.dkimpy_sign(message)
        results = self.verify(message)
        self.assertEqual([r for _, _, r in results], ["pass"] * our_dkim.MAX_CHECKED_SIGNATURES + ["policy"])

    def test_header_block_over_the_limit_is_not_checked(self):
        message = self.dkimpy_sign(HEADER[:-2] + (b"X-Filler: " + b"f" * 900 + b"\r\n") * 300 + b"\r\nHi\r\n")
        self.assertEqual(self.verify(message), [("local.test", "imapwebpush", "policy")])

    def test_read_as_a_stream(self):
        body = b"".join(b"line %d\r\n" % i for i in range(50000))
        source = CountingSource(self.dkimpy_sign(HEADER + body))
        self.assertEqual(self.verify(source), [("local.test", "imapwebpush", "pass")])
        for reader in source.readers:
            self.assertTrue(all(0 < n <= our_dkim.MAX_SIGNED_HEADER + 1 for n in reader.asked), set(reader.asked))
