"""DKIM (RFC 6376) with dkimpy: the keys under DATA/dkim/, signing outbound mail, checking inbound.

Why dkimpy: canonicalisation and the tag syntax are easy to get subtly wrong,
and dkimpy is the library the Python mail world (and its milter) uses. Its
DNS lookups are synchronous, so we never let it do one: the verifier fetches
the ``SELECTOR._domainkey.DOMAIN`` TXT records first, through the injected
twisted.names resolver and with a timeout, and hands dkimpy a ``dnsfunc``
that only reads those answers. Nor do we hand it a whole message: the body
hash (L{BodyHash}) is computed as the message streams past, in a thread
(``run``), and dkimpy only signs or checks the header fields.

Key files: ``DATA/dkim/DOMAIN.SELECTOR.pem`` (RSA 2048, 0600), one per domain.
"""

import hashlib
import os
import re

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from imapwebpush.durable import create_exclusive
from imapwebpush.interfaces import IMessageSigner
from imapwebpush.private import make_folders

DEFAULT_SELECTOR = "imapwebpush"
KEY_BITS = 2048
_SELECTOR = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# The headers we sign when present (RFC 6376 5.4.1), From first and always.
SIGNED_HEADERS = [
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"in-reply-to",
    b"references", b"mime-version", b"content-type", b"content-transfer-encoding",
]


class DKIMKeyError(Exception):
    """A key cannot be made or read; the message says which and why."""


def check_selector(selector):
    selector = selector.lower()
    if not _SELECTOR.match(selector):
        raise DKIMKeyError("not a DKIM selector (letters, digits, '-'): %r" % (selector,))
    return selector


def key_path(folder, domain, selector):
    return os.path.join(folder, "%s.%s.pem" % (domain.lower(), selector))


def generate_key(folder, domain, selector=DEFAULT_SELECTOR, replace=False):
    """Make and store a new RSA key for ``domain``; return the DNS (name, TXT value)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    selector = check_selector(selector)
    domain = domain.lower().rstrip(".")
    make_folders(folder)
    existing = [s for d, s, _ in _key_files(folder) if d == domain]
    if existing and not replace:
        raise DKIMKeyError("%s already has a DKIM key (selector %s); use --replace to make a new one"
                           % (domain, existing[0]))
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path = key_path(folder, domain, selector)
    if not create_exclusive(path, pem):
        raise DKIMKeyError("%s exists already" % (path,))
    for old in existing:
        if old != selector:
            os.unlink(key_path(folder, domain, old))
    return dns_record(domain, selector, key.public_key())


def dns_record(domain, selector, public_key):
    """``(name, value)`` of the TXT record that publishes ``public_key``."""
    import base64

    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ("%s._domainkey.%s" % (selector, domain),
            "v=DKIM1; k=rsa; p=%s" % (base64.b64encode(der).decode("ascii"),))


def _key_files(folder):
    """``(domain, selector, path)`` of every key file in ``folder``."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if not name.endswith(".pem") or name.count(".") < 2:
            continue
        domain, selector, _ = name.rsplit(".", 2)
        found.append((domain, selector, os.path.join(folder, name)))
    return found


def load_keys(folder):
    """``{domain: (selector, PEM bytes, public key)}``; DKIMKeyError for a bad file."""
    from cryptography.hazmat.primitives import serialization

    keys = {}
    for domain, selector, path in _key_files(folder):
        try:
            with open(path, "rb") as f:
                pem = f.read()
            public = serialization.load_pem_private_key(pem, password=None).public_key()
        except (OSError, ValueError, TypeError) as e:
            raise DKIMKeyError("cannot use DKIM key %s: %s" % (path, e))
        keys[domain] = (selector, pem, public)
    return keys


def _header_block(data):
    end = data.find(b"\r\n\r\n")
    return data[: end + 2] if end >= 0 else data


def _from_domain(data):
    """The domain of the (first) From: address, lower-cased, or None."""
    m = re.search(rb"(?im)^from:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", _header_block(data))
    if not m:
        return None
    found = re.findall(rb"[^\s<>@\"(),;:]+@([A-Za-z0-9.-]+)", m.group(1))
    return found[-1].decode("ascii").lower().rstrip(".") if found else None


SIGN_PIECE = 64 * 1024  # octets of the body read at a time while signing
MAX_SIGNED_HEADER = 256 * 1024  # a longer header block is not signed (nor held to sign it)

_WSP = re.compile(rb"[ \t]+")
_TAIL = re.compile(rb"[ \t]*\r?\Z")


class BodyHash:
    """The hash of a canonical body (RFC 6376 3.4.3 simple, 3.4.4 relaxed), fed in pieces of any size.

    The same octets as dkimpy's ``canonicalize_body`` of the whole body (LF
    line ends read as CRLF, as its parser does), without ever holding more
    than one piece: relaxed white space at a piece's end waits (as at most
    " \\r") for what follows it, and empty lines wait until a line with
    content comes, since empty lines at the end do not count. ``limit``: the
    ``l=`` tag, octets of canonical body hashed.
    """

    def __init__(self, relaxed=True, algorithm=hashlib.sha256, limit=None):
        self._hash = algorithm()
        self._relaxed = relaxed
        self._left = limit
        self._blank = 0  # empty lines not hashed yet
        self._carry = b""  # the end of the last piece: b"", b" ", b"\r" or b" \r"
        self._open = False  # part of the current line is hashed already
        self._any = False  # some content was hashed

    def _content(self, data):
        self._any = True
        if self._blank:
            data = b"\r\n" * self._blank + data
            self._blank = 0
        if self._left is not None:
            data = data[:self._left]
            self._left -= len(data)
        self._hash.update(data)

    def update(self, piece):
        text, self._carry = self._carry + piece, b""
        start = 0
        while True:
            end = text.find(b"\n", start) + 1
            if not end:
                break
            self._line(text[start:end])
            start = end
        if start < len(text):
            self._part(text[start:])

    def _line(self, text):
        """The rest of a line, with its line end."""
        line = text[:-2] if text.endswith(b"\r\n") else text[:-1]
        if self._relaxed:
            line = _WSP.sub(b" ", line).rstrip(b" ")
        if line or self._open:
            self._content(line + b"\r\n")
        else:
            self._blank += 1
        self._open = False

    def _part(self, text):
        """Part of a line: hashed but for what depends on the next piece (a CR, relaxed white space)."""
        if self._relaxed:
            cut = _TAIL.search(text).start()
            head, tail = _WSP.sub(b" ", text[:cut]), text[cut:]
            self._carry = (b" " if tail.rstrip(b"\r") else b"") + (b"\r" if tail.endswith(b"\r") else b"")
        else:
            cut = len(text) - 1 if text.endswith(b"\r") else len(text)
            head, self._carry = text[:cut], text[cut:]
        if head:
            self._content(head)
            self._open = True

    def digest(self):
        if self._carry or self._open:  # a last line without its line end: it gets one
            self._content(self._carry + b"\r\n")
            self._carry, self._open = b"", False
        if not self._any and not self._relaxed:
            self._blank = 0
            self._content(b"\r\n")  # simple: an empty (or all empty lines) body is one CRLF
        return self._hash.digest()


def _read_header_block(readable, limit):
    """The header block (with the blank line after it), or None when it is longer than ``limit``."""
    lines, size = [], 0
    while True:
        line = readable.readline(limit + 1 - size)
        lines.append(line)
        size += len(line)
        if size > limit:
            return None
        if not line or line in (b"\r\n", b"\n"):
            return b"".join(lines)


@implementer(IMessageSigner)
class DKIMSigner:
    """Signs with the key of the From: domain (DMARC alignment), else of the envelope sender's.

    The message is read once, as a stream: the header block (up to
    L{MAX_SIGNED_HEADER}) is kept, the body only goes through
    L{BodyHash}; dkimpy then signs the header fields with that body
    hash. So a 50 MB message costs a 64 KiB buffer here, not 50 MB and
    dkimpy's canonical copies of it.
    """

    log = Logger()

    def __init__(self, keys):
        self.keys = keys

    def sign(self, sender, message):
        """The DKIM-Signature header line(s) for ``message`` (bytes or a binary readable); b"" when none."""
        import base64
        import io
        import time

        import dkim
        from dkim.canonicalization import CanonicalizationPolicy
        from dkim.crypto import parse_pem_private_key

        readable = io.BytesIO(message) if isinstance(message, bytes) else message
        header = _read_header_block(readable, MAX_SIGNED_HEADER)
        if header is None:
            self.log.info("DKIM: header block over {limit} octets, not signed", limit=MAX_SIGNED_HEADER)
            return b""
        domain = _from_domain(header)
        if domain not in self.keys and sender and "@" in sender:
            domain = sender.rsplit("@", 1)[1].lower()
        if domain not in self.keys:
            return b""
        selector, pem, _ = self.keys[domain]
        present = {line.split(b":", 1)[0].strip().lower()
                   for line in header.split(b"\r\n") if b":" in line and line[:1] not in b" \t"}
        headers = tuple(h for h in SIGNED_HEADERS if h in present or h == b"from")
        body = BodyHash()
        for piece in iter(lambda: readable.readline(SIGN_PIECE), b""):
            body.update(piece)
        domain_bytes = domain.encode("ascii")
        # The tags dkimpy's DKIM.sign writes, with our body hash; gen_header
        # canonicalises and hashes the header fields and makes b=.
        fields = [
            (b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"), (b"d", domain_bytes),
            (b"i", b"@" + domain_bytes), (b"q", b"dns/txt"), (b"s", selector.encode("ascii")),
            (b"t", str(int(time.time())).encode("ascii")), (b"h", b" : ".join(headers)),
            (b"bh", base64.b64encode(body.digest())), (b"b", b"0" * 60),
        ]
        try:
            signer = dkim.DKIM(header, linesep=b"\r\n")
            signer.hasher = hashlib.sha256
            value = signer.gen_header(fields, headers, CanonicalizationPolicy.from_c_value(b"relaxed/relaxed"),
                                      b"DKIM-Signature", parse_pem_private_key(pem))
        except dkim.DKIMException as e:
            # A header dkimpy cannot parse: the mail goes out unsigned rather than not at all.
            self.log.info("DKIM: not signed: {error}", error=e)
            return b""
        return b"DKIM-Signature: " + value


# RFC 6376 6.1: a verifier may limit the signatures it checks; more are reported as "policy".
MAX_CHECKED_SIGNATURES = 5
_HASHES = {b"rsa-sha256": hashlib.sha256, b"ed25519-sha256": hashlib.sha256, b"rsa-sha1": hashlib.sha1}


def signatures(block):
    """``[(domain, selector, tags)]`` of the DKIM-Signature fields of a header block, in order.

    ``tags`` is the dict of the field's tags; (None, None, None) for a field
    that does not parse or lacks d= or s=.
    """
    from dkim.util import InvalidTagValueList, parse_tag_value

    found = []
    for m in re.finditer(rb"(?im)^dkim-signature:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", block):
        value = re.sub(rb"\r?\n[ \t]", b" ", m.group(1))
        try:
            tags = parse_tag_value(re.sub(rb"\s+", b"", value))
        except InvalidTagValueList:
            found.append((None, None, None))
            continue
        domain, selector = tags.get(b"d"), tags.get(b"s")
        if domain and selector:
            found.append((domain.decode("ascii", "replace").lower(), selector.decode("ascii", "replace"), tags))
        else:
            found.append((None, None, None))
    return found


def _opener(message):
    """``() -> binary readable`` of bytes or of a snapshot (anything with ``reader()``)."""
    import io

    if isinstance(message, bytes):
        return lambda: io.BytesIO(message)
    return message.reader


def _header_of(opened):
    """In a thread: ``(header block, whole)``, the block cut at L{MAX_SIGNED_HEADER} octets."""
    readable = opened()
    block = _read_header_block(readable, MAX_SIGNED_HEADER)
    if block is not None:
        return block, True
    return opened().read(MAX_SIGNED_HEADER), False


class DKIMVerifier:
    """Checks the DKIM signatures of a message: ``[(domain, selector, result)]``.

    ``result`` is one of RFC 8601's: pass, fail, neutral (unusable signature),
    temperror (DNS did not answer), permerror (no key, bad key), policy (not
    checked: past the first L{MAX_CHECKED_SIGNATURES}, or a header block over
    L{MAX_SIGNED_HEADER} octets).

    The message (bytes, or a snapshot whose ``reader()`` a thread may call)
    is read as a stream, as when signing: the header block is kept, the body
    goes once through one L{BodyHash} per kind of signature (c=, a=, l=),
    and dkimpy checks each header signature (b=) with the body hash already
    compared. So a 50 MB message from anyone costs a 64 KiB buffer, not the
    message and dkimpy's canonical copies of it.

    @param resolver: an IResolver (the same injected one as MX lookups).
    @param clock: bounds the lookups by ``timeout`` seconds.
    @param run: ``(f, *args) -> Deferred``: where the reading and hashing run (a thread).
    """

    def __init__(self, resolver, clock, run, timeout=10.0):
        self.resolver = resolver
        self.clock = clock
        self.run = run
        self.timeout = timeout

    def _txt(self, name):
        from imapwebpush.outbound.resolver import lookup_timeouts

        d = self.resolver.lookupText(name, timeout=lookup_timeouts(self.timeout))
        d.addTimeout(self.timeout + 1, self.clock)  # a backstop: the resolver gives up by then

        def found(result):
            answers, _, _ = result
            for a in answers:
                if getattr(a.payload, "data", None) is not None:
                    return b"".join(a.payload.data)
            return None

        def failed(failure):
            from twisted.names import error

            if failure.check(error.DNSNameError):
                return None  # no such key: a permerror, not a temperror
            return failure  # anything else: temperror

        return d.addCallbacks(found, failed)

    @defer.inlineCallbacks
    def verify(self, message):
        opened = _opener(message)
        block, whole = yield self.run(_header_of, opened)
        sigs = signatures(block)
        if not sigs:
            return []
        records = {}
        for domain, selector, _ in sigs[:MAX_CHECKED_SIGNATURES] if whole else ():
            if domain is None:
                continue
            name = "%s._domainkey.%s" % (selector, domain)
            if name in records:
                continue
            try:
                records[name] = ("ok", (yield self._txt(name)))
            except Exception:
                records[name] = ("temperror", None)
        results = yield self.run(_check_all, opened, block, whole, sigs, records)
        return results


def _body_hashes(opened, sigs):
    """In a thread: ``{(relaxed, algorithm, l): digest}`` for ``sigs``, reading the body once."""
    wanted = {}
    for _, _, tags in sigs:
        key = _body_key(tags)
        if key is not None:
            wanted[key] = BodyHash(key[0], _HASHES[key[1]], key[2])
    if wanted:
        readable = opened()
        _read_header_block(readable, MAX_SIGNED_HEADER)
        for piece in iter(lambda: readable.readline(SIGN_PIECE), b""):
            for hashed in wanted.values():
                hashed.update(piece)
    return {key: hashed.digest() for key, hashed in wanted.items()}


def _body_key(tags):
    """``(relaxed, a=, l=)`` of a signature's body hash, or None when dkimpy is to reject it."""
    if tags is None or tags.get(b"a") not in _HASHES:
        return None
    body_c = tags.get(b"c", b"simple/simple").split(b"/")
    relaxed = body_c[1] == b"relaxed" if len(body_c) == 2 else False
    length = tags.get(b"l")
    if length is not None and not length.isdigit():
        return None
    return relaxed, tags[b"a"], int(length) if length is not None else None


def _check_all(opened, block, whole, sigs, records):
    """In a thread: each signature's result; body hashes compared here, b= by dkimpy."""
    import base64

    import dkim

    class HeaderCheck(dkim.DKIM):
        """dkimpy's check without its body hash (compared while the body streamed past)."""

        def verify_sig_process(self, sig, include_headers, sig_header, dnsfunc):
            sig = {k: v for k, v in sig.items() if k != b"bh"}
            return dkim.DKIM.verify_sig_process(self, sig, include_headers, sig_header, dnsfunc)

    def dnsfunc(name, timeout=5):
        key = name.decode("ascii") if isinstance(name, bytes) else name
        return records.get(key.rstrip("."), ("ok", None))[1]

    checked = sigs[:MAX_CHECKED_SIGNATURES] if whole else []
    bodies = _body_hashes(opened, checked)
    results = []
    for index, (domain, selector, tags) in enumerate(sigs):
        if index >= len(checked):
            results.append((domain, selector, "policy"))
            continue
        if domain is None:
            results.append((None, None, "neutral"))
            continue
        status, record = records.get("%s._domainkey.%s" % (selector, domain), ("ok", None))
        if status == "temperror":
            results.append((domain, selector, "temperror"))
            continue
        if record is None:
            results.append((domain, selector, "permerror"))
            continue
        key = _body_key(tags)
        if key is not None and b"bh" in tags:
            try:
                expected = base64.b64decode(re.sub(rb"\s+", b"", tags[b"bh"]), validate=True)
            except ValueError:
                results.append((domain, selector, "neutral"))
                continue
            if expected != bodies[key]:
                results.append((domain, selector, "fail"))  # the body was changed
                continue
        try:
            ok = HeaderCheck(block, minkey=1024).verify(idx=index, dnsfunc=dnsfunc)
        except dkim.KeyFormatError:
            results.append((domain, selector, "permerror"))
            continue
        except dkim.ValidationError:
            results.append((domain, selector, "fail"))
            continue
        except dkim.DKIMException:
            results.append((domain, selector, "neutral"))
            continue
        results.append((domain, selector, "pass" if ok else "fail"))
    return results
