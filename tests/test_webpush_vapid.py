"""VAPID keys on disk and the Authorization header (RFC 8292)."""

import json
import os
import stat

from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from imapwebpush.decisions import VAPID_TOKEN_LIFETIME, VAPID_TOKEN_RENEW_BEFORE
from imapwebpush.interfaces import IVapidKeyring
from imapwebpush.testing import verify_vapid
from imapwebpush.webpush import crypto
from imapwebpush.webpush.vapid import VapidKeyring, check_subject, origin_of

from tests.test_webpush_crypto import VECTORS_PATH, load_vectors


def decode_jwt(header_value):
    token = header_value.split("t=", 1)[1].split(",", 1)[0]
    parts = token.split(".")
    return (
        json.loads(crypto.b64url_decode(parts[0])),
        json.loads(crypto.b64url_decode(parts[1])),
        parts,
    )


class KeyringTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.path = os.path.join(self.mktemp(), "vapid")

    def keyring(self):
        return VapidKeyring(self.path, "mailto:admin@example.org", self.clock)

    def test_interface(self):
        verifyObject(IVapidKeyring, self.keyring())

    def test_first_start_generates_a_key(self):
        ring = self.keyring()
        name = ring.current()
        self.assertEqual(len(name), 87)
        self.assertEqual(len(crypto.b64url_decode(name)), 65)
        self.assertEqual(ring.keys(), [name])
        pem = os.path.join(self.path, name + ".pem")
        self.assertEqual(stat.S_IMODE(os.stat(pem).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.path, "current")).st_mode), 0o600)
        self.assertEqual([f for f in os.listdir(self.path) if ".tmp" in f], [])

    def test_keys_survive_restart(self):
        ring = self.keyring()
        first = ring.current()
        second = ring.rotate()
        again = self.keyring()
        self.assertEqual(again.current(), second)
        self.assertEqual(sorted(again.keys()), sorted([first, second]))
        self.assertEqual(again.keys()[0], second)
        # the old key still signs, verifiably
        header = again.authorization(first, "https://push.example.net/x")
        claims, key, problems = verify_vapid(header, "https://push.example.net", self.clock.seconds())
        self.assertEqual((key, problems), (first, []))

    def test_rotation_by_another_process_is_picked_up(self):
        """`imapwebpush vapid rotate` while the server runs: no restart needed."""
        server = self.keyring()
        old = server.current()
        new = self.keyring().rotate()  # the admin command's own keyring
        self.assertEqual(server.current(), new)
        self.assertEqual(server.keys(), [new, old])
        header = server.authorization(new, "https://push.example.net/x")
        claims, key, problems = verify_vapid(header, "https://push.example.net", self.clock.seconds())
        self.assertEqual((key, problems), (new, []))

    def test_unreadable_rotation_keeps_the_keys_in_use(self):
        server = self.keyring()
        old = server.current()
        with open(os.path.join(self.path, "garbage.pem"), "wb") as f:
            f.write(b"not a key")
        with open(os.path.join(self.path, "current"), "w") as f:
            f.write("something else entirely\n")
        self.assertEqual(server.current(), old)

    def test_retire(self):
        ring = self.keyring()
        old = ring.current()
        new = ring.rotate()
        self.assertRaises(ValueError, ring.retire, new)
        ring.retire(old)
        self.assertEqual(ring.keys(), [new])
        self.assertFalse(os.path.exists(os.path.join(self.path, old + ".pem")))
        self.assertRaises(KeyError, ring.authorization, old, "https://push.example.net/")
        self.assertEqual(self.keyring().keys(), [new])
        self.assertRaises(KeyError, ring.retire, old)

    def test_bad_subject(self):
        self.assertRaises(ValueError, VapidKeyring, self.path, "admin@example.org", self.clock)
        self.assertRaises(ValueError, check_subject, "http://example.org")
        self.assertEqual(check_subject("https://example.org/contact"), "https://example.org/contact")

    def test_corrupt_key_file_is_a_clear_error(self):
        ring = self.keyring()
        with open(os.path.join(self.path, ring.current() + ".pem"), "wb") as f:
            f.write(b"garbage")
        with self.assertRaises(ValueError) as e:
            self.keyring()
        self.assertIn("cannot be read", str(e.exception))


class AuthorizationTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.ring = VapidKeyring(self.mktemp(), "mailto:admin@example.org", self.clock)
        self.key = self.ring.current()

    def test_header_format_and_claims(self):
        value = self.ring.authorization(self.key, "https://push.example.net/p/JzLQ3raZ?x=1")
        self.assertTrue(value.startswith("vapid t="))
        self.assertTrue(value.endswith(", k=" + self.key))
        header, claims, parts = decode_jwt(value)
        self.assertEqual(header, {"typ": "JWT", "alg": "ES256"})
        self.assertEqual(
            claims,
            {"aud": "https://push.example.net", "exp": 1_700_000_000 + VAPID_TOKEN_LIFETIME,
             "sub": "mailto:admin@example.org"},
        )
        self.assertEqual(len(crypto.b64url_decode(parts[2])), 64)
        _, key, problems = verify_vapid(value, "https://push.example.net", self.clock.seconds())
        self.assertEqual(problems, [])

    def test_origin(self):
        self.assertEqual(origin_of("https://Push.Example.NET:443/a"), "https://push.example.net")
        self.assertEqual(origin_of("https://push.example.net:8443/a"), "https://push.example.net:8443")
        self.assertEqual(origin_of("http://127.0.0.1:80/a"), "http://127.0.0.1")
        self.assertEqual(origin_of("https://[2001:db8::1]:444/a"), "https://[2001:db8::1]:444")
        self.assertRaises(ValueError, origin_of, "/relative")

    def test_cached_per_key_and_origin(self):
        a = self.ring.authorization(self.key, "https://push.example.net/one")
        self.assertIs(self.ring.authorization(self.key, "https://push.example.net/two"), a)
        other = self.ring.authorization(self.key, "https://other.example/one")
        self.assertNotEqual(other, a)
        new = self.ring.rotate()
        self.assertNotEqual(self.ring.authorization(new, "https://push.example.net/one"), a)

    def test_renewed_before_expiry(self):
        a = self.ring.authorization(self.key, "https://push.example.net/one")
        self.clock.advance(VAPID_TOKEN_LIFETIME - VAPID_TOKEN_RENEW_BEFORE - 1)
        self.assertIs(self.ring.authorization(self.key, "https://push.example.net/one"), a)
        self.clock.advance(1)
        b = self.ring.authorization(self.key, "https://push.example.net/one")
        self.assertNotEqual(a, b)
        self.assertEqual(decode_jwt(b)[1]["exp"], int(self.clock.seconds()) + VAPID_TOKEN_LIFETIME)

    def test_unknown_key(self):
        self.assertRaises(KeyError, self.ring.authorization, "B" * 87, "https://push.example.net/")


class RFC8292ExampleTests(unittest.TestCase):
    """The RFC 8292 2.4 example header verifies with our verifier (format and signature)."""

    def setUp(self):
        if not os.path.exists(VECTORS_PATH):
            raise unittest.SkipTest("test vectors not found")
        self.v = load_vectors()["rfc8292_2_4"]

    def test_example_verifies(self):
        exp = self.v["claims"]["exp"]
        claims, key, problems = verify_vapid(self.v["authorization"], "https://push.example.net", exp - 3600)
        self.assertEqual(problems, [])
        self.assertEqual(claims, self.v["claims"])
        self.assertEqual(key, "BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs")

    def test_example_tampered_fails(self):
        value = self.v["authorization"].replace("eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5uZXQi",
                                                "eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5jb20i")
        _, _, problems = verify_vapid(value, "https://push.example.net", self.v["claims"]["exp"] - 3600)
        self.assertIn("JWT signature does not verify with k=", problems)

    def test_example_expired(self):
        _, _, problems = verify_vapid(self.v["authorization"], "https://push.example.net", self.v["claims"]["exp"])
        self.assertEqual(problems, ["JWT has expired"])

    def test_our_header_has_the_same_shape(self):
        ring = VapidKeyring(self.mktemp(), "mailto:push@example.com", Clock())
        ours = ring.authorization(ring.current(), "https://push.example.net/")
        theirs = self.v["authorization"]
        self.assertEqual(ours.split("t=")[0], theirs.split("t=")[0])
        self.assertEqual(len(ours.split("k=")[1]), len(theirs.split("k=")[1]))
        self.assertEqual(ours.split(".")[0], theirs.split(".")[0])  # same JOSE header bytes
