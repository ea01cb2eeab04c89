"""What matching decoded text parts costs SEARCH BODY per message (imap/text_parts.py).

In process, no server: SearchItem.contains over N messages of each kind, against the
raw-only match SEARCH did before (``needle in item.text(False)``), both in this run:

    kind=plain raw_us=R decoded_us=D ratio=D/R

``plain``: a message with no MIME header (nothing decoded: one header parse more);
``qp_html``: multipart/alternative, QP text/plain and base64 text/html (both decoded);
``latin1_8bit``: one ISO-8859-1 part; ``large_b64``: one 1 MiB message, base64 text
read through the MIME map a piece at a time (a miss: every part read; its raw_us is
the in-memory raw match, the file path's is about the same). Measured on this machine
(2 shared cores, other work running)::

    kind=plain size=2876 raw_us=11 decoded_us=15 ratio=1.45
    kind=qp_html size=7329 raw_us=23 decoded_us=94 ratio=4.06
    kind=latin1_8bit size=2781 raw_us=11 decoded_us=27 ratio=2.45
    kind=large_b64 size=1554620 raw_us=1929 decoded_us=10756 ratio=5.58

So a miss on 20,000 such QP/base64 messages costs ~1.9 s instead of ~0.5 s, in the
Cooperator slices of imap/search_scan.py (other sessions are served meanwhile).
"""

import argparse
import base64
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imapwebpush.imap.message import split_header  # noqa: E402
from imapwebpush.imap.search import SearchItem  # noqa: E402

TEXT = ("Dear colleague, the quarterly figures are attached. Grüße aus Köln. " * 40).encode()


class Stored:
    flags = frozenset()
    modseq = 1

    def __init__(self, data, path):
        self.data = data
        self.size = len(data)
        self.file = path
        with open(path, "wb") as f:
            f.write(data)

    def read(self):
        return self.data

    def headers(self):
        return split_header(self.data)[0]

    def open(self):
        return open(self.file, "rb")


def kinds():
    plain = b"From: a@example.org\r\nSubject: hi\r\n\r\n" + TEXT
    qp = TEXT.replace("ü".encode(), b"=C3=BC").replace("ö".encode(), b"=C3=B6")
    html = base64.encodebytes(b"<p>" + TEXT + b"</p>").replace(b"\n", b"\r\n")
    alt = (
        b'From: a@example.org\r\nSubject: hi\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + qp
        + b"\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + html
        + b"\r\n--b--\r\n"
    )
    latin1 = b"Subject: hi\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n" + TEXT.decode().encode("latin-1")
    big = base64.encodebytes(TEXT * 400).replace(b"\n", b"\r\n")
    large = b"Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + big
    return [("plain", plain, 2000), ("qp_html", alt, 2000), ("latin1_8bit", latin1, 2000), ("large_b64", large, 5)]


def main():
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    tmp = tempfile.mkdtemp(prefix="search_decoded-")
    needle = "no such word".casefold()
    for name, data, n in kinds():
        stored = Stored(data, os.path.join(tmp, name))
        t = time.perf_counter()
        for _ in range(n):
            needle in SearchItem(1, 1, stored, False).text(False)
        raw = (time.perf_counter() - t) / n
        t = time.perf_counter()
        for _ in range(n):
            SearchItem(1, 1, stored, False).contains(needle, False)
        decoded = (time.perf_counter() - t) / n
        print("kind=%s size=%d raw_us=%.0f decoded_us=%.0f ratio=%.2f" % (name, len(data), raw * 1e6, decoded * 1e6, decoded / raw), flush=True)
        os.unlink(stored.file)
    os.rmdir(tmp)


if __name__ == "__main__":
    sys.exit(main())
