"""RFC 8291 / RFC 8188 encryption: the published vectors, key parsing, the size limit."""

import json
import os

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial import unittest

from imapwebpush.webpush import crypto
from imapwebpush.webpush.limits import HEADER_LENGTH, MAX_BODY, MAX_PLAINTEXT

# The public RFC vectors, copied next to this file from /work/shared/vectors/.
VECTORS_PATH = os.environ.get(
    "WEBPUSH_VECTORS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "webpush_vectors.json")
)


def load_vectors():
    with open(VECTORS_PATH) as f:
        return json.load(f)


def d(text):
    return crypto.b64url_decode(text)


def private_key_from_raw(raw):
    """A P-256 private key from its 32-octet scalar (the vectors carry keys this way)."""
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


class RFC8291Tests(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(VECTORS_PATH):
            raise unittest.SkipTest("test vectors not found at %s" % (VECTORS_PATH,))
        self.v = load_vectors()["rfc8291_appendix_a"]

    def test_appendix_a_body_byte_for_byte(self):
        """With the RFC's ephemeral key and salt, encrypt() produces the RFC's body exactly."""
        v = self.v
        body = crypto.encrypt(
            v["plaintext"].encode(),
            d(v["ua_public"]),
            d(v["auth_secret"]),
            salt=d(v["salt"]),
            private_key=private_key_from_raw(d(v["as_private"])),
        )
        self.assertEqual(crypto.b64url_encode(body), v["body"])
        self.assertEqual(body[:HEADER_LENGTH], d(v["header"]))
        self.assertEqual(body[HEADER_LENGTH:], d(v["ciphertext"]))
        self.assertEqual(len(body), 144)

    def test_appendix_a_decrypts(self):
        v = self.v
        plaintext = crypto.decrypt(
            d(v["body"]), private_key_from_raw(d(v["ua_private"])), d(v["auth_secret"])
        )
        self.assertEqual(plaintext, v["plaintext"].encode())

    def test_fresh_salt_and_key_per_message(self):
        v = self.v
        a = crypto.encrypt(b"same", d(v["ua_public"]), d(v["auth_secret"]))
        b = crypto.encrypt(b"same", d(v["ua_public"]), d(v["auth_secret"]))
        self.assertNotEqual(a[:16], b[:16])  # salt
        self.assertNotEqual(a[21:86], b[21:86])  # ephemeral public key
        self.assertEqual(a[16:21], b"\x00\x00\x10\x00\x41")  # rs 4096, keyid length 65
        ua = private_key_from_raw(d(v["ua_private"]))
        self.assertEqual(crypto.decrypt(a, ua, d(v["auth_secret"])), b"same")
        self.assertEqual(crypto.decrypt(b, ua, d(v["auth_secret"])), b"same")

    def test_wrong_auth_does_not_decrypt(self):
        v = self.v
        ua = private_key_from_raw(d(v["ua_private"]))
        with self.assertRaises(crypto.DecryptError):
            crypto.decrypt(d(v["body"]), ua, b"\x00" * 16)

    def test_max_plaintext_fits_in_4096(self):
        v = self.v
        body = crypto.encrypt(b"x" * MAX_PLAINTEXT, d(v["ua_public"]), d(v["auth_secret"]))
        self.assertEqual(len(body), MAX_BODY)

    def test_larger_payload_refused(self):
        v = self.v
        with self.assertRaises(crypto.PayloadTooLarge) as e:
            crypto.encrypt(b"x" * (MAX_PLAINTEXT + 1), d(v["ua_public"]), d(v["auth_secret"]))
        self.assertIn("3994 octets exceeds the 3993-octet limit", str(e.exception))

    def test_empty_payload_refused(self):
        with self.assertRaises(ValueError) as e:
            crypto.encrypt(b"", d(self.v["ua_public"]), d(self.v["auth_secret"]))
        self.assertEqual(str(e.exception), "the push payload is empty")

    def test_truncated_body(self):
        with self.assertRaises(crypto.DecryptError):
            crypto.decrypt(b"short", private_key_from_raw(d(self.v["ua_private"])), b"a" * 16)


class RFC8188Tests(unittest.TestCase):
    """The plain RFC 8188 examples go through the same http_ece code path."""

    def setUp(self):
        if not os.path.exists(VECTORS_PATH):
            raise unittest.SkipTest("test vectors not found")
        self.vectors = load_vectors()

    def test_section_3_1(self):
        v = self.vectors["rfc8188_3_1"]
        body = http_ece.encrypt(v["plaintext"].encode(), salt=d(v["salt"]), key=d(v["ikm"]), keyid="", rs=v["rs"])
        self.assertEqual(crypto.b64url_encode(body), v["body"])
        self.assertEqual(http_ece.decrypt(d(v["body"]), key=d(v["ikm"])), v["plaintext"].encode())

    def test_section_3_2(self):
        v = self.vectors["rfc8188_3_2"]
        # The example pads its first record; check decryption, then our own round trip.
        self.assertEqual(http_ece.decrypt(d(v["body"]), key=d(v["ikm"])), v["plaintext"].encode())
        body = d(v["body"])
        again = http_ece.encrypt(
            v["plaintext"].encode(), salt=body[:16], key=d(v["ikm"]), keyid=v["keyid"], rs=v["rs"]
        )
        self.assertEqual(again[:16 + 4 + 1 + 2], body[:16 + 4 + 1 + 2])  # same header
        self.assertEqual(http_ece.decrypt(again, key=d(v["ikm"])), v["plaintext"].encode())


class KeyParsingTests(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(VECTORS_PATH):
            raise unittest.SkipTest("test vectors not found")
        self.v = load_vectors()["rfc8291_appendix_a"]

    def test_parse_valid_keys(self):
        self.assertEqual(len(crypto.parse_p256dh(self.v["ua_public"])), 65)
        self.assertEqual(crypto.parse_auth(self.v["auth_secret"]), d(self.v["auth_secret"]))

    def test_padding_optional(self):
        self.assertEqual(crypto.parse_auth(self.v["auth_secret"] + "=="), d(self.v["auth_secret"]))
        self.assertEqual(
            crypto.parse_p256dh(self.v["ua_public"] + "="), d(self.v["ua_public"])
        )

    def assertRefused(self, parse, text, message):
        with self.assertRaises(ValueError) as e:
            parse(text)
        self.assertIn(message, str(e.exception))

    def test_p256dh_wrong_length(self):
        self.assertRefused(crypto.parse_p256dh, crypto.b64url_encode(b"\x04" * 33), "got 33 octets")

    def test_p256dh_compressed(self):
        self.assertRefused(crypto.parse_p256dh, crypto.b64url_encode(b"\x02" + b"\x01" * 64), "first octet 0x04")

    def test_p256dh_off_curve(self):
        raw = bytearray(d(self.v["ua_public"]))
        raw[-1] ^= 1
        self.assertRefused(crypto.parse_p256dh, crypto.b64url_encode(bytes(raw)), "not a point on the P-256 curve")

    def test_p256dh_not_base64url(self):
        self.assertRefused(crypto.parse_p256dh, "BCVx+sr7/N", "not base64url")
        self.assertRefused(crypto.parse_p256dh, "a b", "not base64url")
        self.assertRefused(crypto.parse_p256dh, "AAAAA", "impossible base64url length")

    def test_auth_wrong_length(self):
        self.assertRefused(crypto.parse_auth, crypto.b64url_encode(b"x" * 15), "exactly 16 octets, got 15")
        self.assertRefused(crypto.parse_auth, "", "exactly 16 octets, got 0")

    def test_encrypt_checks_keys(self):
        with self.assertRaises(ValueError):
            crypto.encrypt(b"x", b"\x04" * 65, b"a" * 16)
        with self.assertRaises(ValueError):
            crypto.encrypt(b"x", d(self.v["ua_public"]), b"a" * 15)


class PropertyTests(unittest.TestCase):
    """Round trips and parser robustness over generated input."""

    def setUp(self):
        from cryptography.hazmat.primitives.asymmetric import ec

        self.ua = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def test_round_trip_and_size(self):
        from hypothesis import given, settings, strategies as st

        @settings(max_examples=60, deadline=None)
        @given(st.binary(min_size=1, max_size=MAX_PLAINTEXT))
        def check(plaintext):
            body = crypto.encrypt(plaintext, crypto.public_bytes(self.ua), self.auth)
            self.assertEqual(len(body), HEADER_LENGTH + len(plaintext) + 1 + 16)
            self.assertLessEqual(len(body), MAX_BODY)
            self.assertEqual(crypto.decrypt(body, self.ua, self.auth), plaintext)

        check()

    def test_parsers_only_raise_value_error(self):
        from hypothesis import given, settings, strategies as st

        @settings(max_examples=300, deadline=None)
        @given(st.one_of(st.text(max_size=120), st.text(alphabet="ABCDEFabcdef0123456789-_=", max_size=100)))
        def check(text):
            for parse, size in ((crypto.parse_p256dh, 65), (crypto.parse_auth, 16)):
                try:
                    raw = parse(text)
                except ValueError as e:
                    self.assertTrue(str(e))
                else:
                    self.assertEqual(len(raw), size)

        check()

    def test_round_trip_of_keys(self):
        text = crypto.b64url_encode(crypto.public_bytes(self.ua))
        self.assertEqual(len(text), 87)
        self.assertEqual(crypto.parse_p256dh(text), crypto.public_bytes(self.ua))
        self.assertEqual(crypto.parse_auth(crypto.b64url_encode(self.auth)), self.auth)
