"""Size limits of one push body (SPEC 5.2), derived from the aes128gcm layout.

A push body is one RFC 8188 record: header (salt, record size, key-id length,
key-id = the 65-byte ephemeral public key), then the ciphertext of the
plaintext plus one padding delimiter octet, then the 16-octet GCM tag. Push
services must accept 4096-octet bodies (RFC 8030 7.2).
"""

SALT_LENGTH = 16
RECORD_SIZE_FIELD = 4
KEYID_LENGTH_FIELD = 1
KEYID_LENGTH = 65  # uncompressed P-256 point
HEADER_LENGTH = SALT_LENGTH + RECORD_SIZE_FIELD + KEYID_LENGTH_FIELD + KEYID_LENGTH  # 86
PADDING_DELIMITER = 1
TAG_LENGTH = 16
RECORD_SIZE = 4096  # the rs we announce in the header
MAX_BODY = 4096  # what every push service must accept

# The largest plaintext that fits in one MAX_BODY body: 3993 octets.
MAX_PLAINTEXT = MAX_BODY - HEADER_LENGTH - PADDING_DELIMITER - TAG_LENGTH

assert HEADER_LENGTH == 86 and MAX_PLAINTEXT == 3993
