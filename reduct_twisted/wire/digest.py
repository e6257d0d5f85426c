# -*- test-case-name: tests.unit.test_wire_digest -*-
"""
Content digests on the wire (issue #16): RFC 9530 ``Repr-Digest`` /
``Content-Digest`` fields and our per-record forms in batches.

* Single records: a read answers ``repr-digest: sha-256=:<base64>:`` when
  the record's digest is known; a write may carry ``content-digest`` or
  ``repr-digest`` (an RFC 8941 dictionary, one member per algorithm):
  ``sha-256`` is checked when the body ends, other algorithms are ignored.
  A record has no content coding here, so both name the same bytes.
* v1 batches (spec §3.4): ``x-reduct-digest-<ts>: sha-256=:<base64>:`` per
  record, the same dictionary syntax.
* v2 batches (spec 1.20 §1): ``x-reduct-digest-<entry index>-<delta>``
  beside that record's ``x-reduct-<entry index>-<delta>`` header, the same
  value (:data:`DIGEST_PREFIX` + the record's v2 name).

A malformed field (not an RFC 8941 dictionary, or a ``sha-256`` member that
is not a byte sequence of 32 bytes) is refused with ``ValueError``, before
the body is read.  Nothing here knows about twisted.web.
"""

import base64
import binascii
import re
from typing import Optional

#: The request fields of RFC 9530 a single-record write may carry.
CONTENT_DIGEST = b"content-digest"
REPR_DIGEST = b"repr-digest"
#: Per-record digest headers of the batch protocols (v1: ``<ts>``; v2:
#: ``<entry index>-<delta>``).
DIGEST_PREFIX = b"x-reduct-digest-"
#: The one algorithm checked (RFC 9530 §5 name).
SHA256 = "sha-256"

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*")
_NUMBER = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,3})?")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")


def _ows(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _bare_item(text: str, i: int):
    # Returns (value, next index); raises ValueError (RFC 8941 §4.2.3.1).
    if i >= len(text):
        raise ValueError("missing value")
    c = text[i]
    if c == ":":
        m = _BYTES.match(text, i)
        if m is None:
            raise ValueError("bad byte sequence")
        try:
            return base64.b64decode(m.group(1), validate=True), m.end()
        except (binascii.Error, ValueError):
            raise ValueError("bad base64") from None
    if c == '"':
        j = i + 1
        while j < len(text):
            if text[j] == "\\":
                j += 2
                continue
            if text[j] == '"':
                return text[i + 1:j], j + 1
            j += 1
        raise ValueError("unterminated string")
    if c == "?":
        if text[i + 1:i + 2] in ("0", "1"):
            return text[i + 1] == "1", i + 2
        raise ValueError("bad boolean")
    m = _NUMBER.match(text, i) if (c == "-" or c.isdigit()) else _TOKEN.match(text, i)
    if m is None:
        raise ValueError("bad item")
    return m.group(0), m.end()


def _params(text: str, i: int) -> int:
    while i < len(text) and text[i] == ";":
        i = _ows(text, i + 1)
        m = _KEY.match(text, i)
        if m is None:
            raise ValueError("bad parameter")
        i = m.end()
        if i < len(text) and text[i] == "=":
            i = _bare_item(text, i + 1)[1]
    return i


def parse_dictionary(text: str) -> dict:
    """
    An RFC 8941 dictionary, its members' bare values by key (inner lists
    and parameters are checked and dropped; a key without value is ``True``).

    :raises ValueError: not a dictionary.
    """
    members, i = {}, _ows(text, 0)
    while i < len(text):
        m = _KEY.match(text, i)
        if m is None:
            raise ValueError("bad key")
        key, i = m.group(0), m.end()
        value = True
        if i < len(text) and text[i] == "=":
            i += 1
            if i < len(text) and text[i] == "(":
                i, value = i + 1, None
                while True:
                    i = _ows(text, i)
                    if i >= len(text):
                        raise ValueError("unterminated inner list")
                    if text[i] == ")":
                        i += 1
                        break
                    i = _params(text, _bare_item(text, i)[1])
            else:
                value, i = _bare_item(text, i)
        i = _params(text, i)
        members[key] = value
        i = _ows(text, i)
        if i < len(text):
            if text[i] != ",":
                raise ValueError("expected ','")
            i = _ows(text, i + 1)
            if i >= len(text):
                raise ValueError("trailing ','")
    return members


def parse_digest(value) -> Optional[bytes]:
    """
    :param value: a ``Repr-Digest``/``Content-Digest``/``x-reduct-digest-*``
        field value (bytes or str; several field lines joined with ``,``).
    :return: the 32 bytes of its ``sha-256`` member, or ``None`` if it has none.
    :raises ValueError: malformed, or ``sha-256`` is not 32 bytes.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("not ASCII") from None
    digest = parse_dictionary(value.strip()).get(SHA256)
    if digest is None:
        return None
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise ValueError("sha-256 must be a byte sequence of 32 bytes")
    return digest


def format_digest(digest: bytes) -> bytes:
    """:return: ``sha-256=:<base64>:`` for the 32 bytes ``digest``."""
    return b"sha-256=:" + base64.b64encode(digest) + b":"


def request_digest(raw_headers) -> Optional[bytes]:
    """
    The SHA-256 a single-record write announces (``content-digest`` or
    ``repr-digest``; both must agree when both carry one).

    :param raw_headers: ``(name, [values])`` pairs (twisted.web ``Headers``).
    :raises ValueError: malformed, or the two disagree.
    """
    found = None
    for name, values in raw_headers:
        if name.lower() in (CONTENT_DIGEST, REPR_DIGEST):
            digest = parse_digest(b",".join(values))
            if digest is not None:
                if found is not None and digest != found:
                    raise ValueError("content-digest and repr-digest disagree")
                found = digest
    return found


def batch_digests(raw_headers, v2: bool = False) -> dict:
    """
    The per-record ``x-reduct-digest-*`` headers of a batched write.

    :param raw_headers: ``(name, [values])`` pairs (names in any case; the
        last of repeated headers wins).
    :param v2: the I/O API's names (``<entry index>-<delta>``) instead of v1's ``<ts>``.
    :return: ``{ts: digest}`` (v1) or ``{(index, delta): digest}`` (v2) of
        the headers with a ``sha-256`` member.
    :raises ValueError: a bad name or value.
    """
    found = {}
    for name, values in raw_headers:
        lname = name.lower()
        if not lname.startswith(DIGEST_PREFIX) or not values:
            continue
        suffix = lname[len(DIGEST_PREFIX):].decode("latin-1")
        parts = suffix.split("-") if v2 else [suffix]
        if len(parts) != (2 if v2 else 1) or not all(p.isascii() and p.isdigit() and
                                                      len(p) <= 20 for p in parts):
            raise ValueError(f"bad header name '{lname.decode('latin-1')}'")
        key = tuple(map(int, parts)) if v2 else int(parts[0])
        digest = parse_digest(values[-1])
        if digest is not None:
            found[key] = digest
    return found
