# -*- test-case-name: tests.unit.test_links -*-
"""
What a query link carries and how it is put into its URL (spec 1.20 §6.1).

A link's query string has four parameters, the names upstream uses:

* ``ct``: the link's :class:`LinkQuery` as compact JSON, zlib-compressed,
  base64url without padding.  Not secret (it holds the bucket, the entry
  and the query the creator chose, as upstream's ciphertext would once
  decrypted), but it cannot be changed: see ``s``;
* ``i``: the name of the token that created the link;
* ``n``: 16 random bytes (base64url), so that two links for the same query
  differ;
* ``s``: HMAC-SHA256, under the server's signing key (``key.py``), of
  ``ct``, ``i``, ``n`` and the issuing token's *binding* (what
  ``IAccessPolicy.link_key(i)`` returns: derived from the token's stored
  secret, so rotating or re-creating the token changes it and every link
  it made stops verifying).  Each part is length-prefixed, so no two
  different tuples sign alike.

:meth:`LinkCodec.decode` checks in the order of spec §6.2 and raises
``UnprocessableEntity`` with upstream's texts (``Invalid base64 in 'ct'
parameter: …``, ``Failed to decrypt query: …``).  Expiry and the token
checks are the route's (``http/links.py``): they need the clock and the
access policy.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import struct
import zlib
from typing import Callable, Optional

import attrs

from reduct_twisted.errors import UnprocessableEntity

#: The format of ``ct``'s JSON (its ``v``); a link of another version is refused.
LINK_VERSION = 1

#: Domain separation of the signed message.
_CONTEXT = b"reduct-twisted query link v1"

#: Most bytes a ``ct`` may inflate to (a query with a large ``when`` fits).
MAX_PAYLOAD = 1 << 20

#: Random bytes of ``n``.
NONCE_SIZE = 16

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    """``data`` in base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """
    The bytes of unpadded base64url ``text``.

    :raises ValueError: a character outside the alphabet, or a length no
        encoding produces; the message says which.
    """
    bad = _BASE64URL.fullmatch(text) is None
    if bad:
        offset = next(i for i, c in enumerate(text) if _BASE64URL.fullmatch(c) is None)
        raise ValueError(f"Invalid symbol {ord(text[offset])}, offset {offset}.")
    if len(text) % 4 == 1:
        raise ValueError("Invalid input length.")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@attrs.frozen(kw_only=True)
class LinkQuery:
    """
    The record a link serves (spec 1.20 §6.1, §10.4 b).

    :ivar bucket: the bucket.
    :ivar entry: the entry the query reads when ``query`` has no ``entries``.
    :ivar query: the ``QueryEntry`` as the creator sent it (checked then).
    :ivar expire_at: UNIX seconds after which the link is refused.
    :ivar record_entry: with ``record_timestamp``, the record's identity; or None.
    :ivar record_timestamp: µs; or None.
    :ivar index: the legacy selector (0-based position in the query's
        result) of a link created without identity; None with identity.
    """

    bucket: str
    entry: str
    query: dict
    expire_at: int
    record_entry: Optional[str] = None
    record_timestamp: Optional[int] = None
    index: Optional[int] = None

    def to_json(self) -> dict:
        out = {"v": LINK_VERSION, "b": self.bucket, "e": self.entry, "q": self.query,
               "x": self.expire_at}
        if self.record_entry is not None:
            out["re"], out["rt"] = self.record_entry, self.record_timestamp
        else:
            out["r"] = self.index
        return out

    @classmethod
    def from_json(cls, data) -> "LinkQuery":
        """:raises ValueError: not a version-1 link payload."""
        if not isinstance(data, dict) or data.get("v") != LINK_VERSION:
            raise ValueError("unsupported link version")
        try:
            link = cls(bucket=data["b"], entry=data["e"], query=data["q"], expire_at=data["x"],
                       record_entry=data.get("re"), record_timestamp=data.get("rt"),
                       index=data.get("r"))
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]}") from None
        strings = (link.bucket, link.entry)
        if (not all(isinstance(s, str) for s in strings) or not isinstance(link.query, dict)
                or type(link.expire_at) is not int):
            raise ValueError("malformed link payload")
        if link.record_entry is None:
            if type(link.index) is not int:
                raise ValueError("malformed link payload")
        elif not isinstance(link.record_entry, str) or type(link.record_timestamp) is not int:
            raise ValueError("malformed link payload")
        return link


def _message(ct: str, token_name: str, nonce: str, binding: bytes) -> bytes:
    parts = [_CONTEXT, ct.encode("ascii"), token_name.encode("utf-8"), nonce.encode("ascii"),
             binding]
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


class LinkCodec:
    """
    Encodes and checks links under one signing key.

    :param key: the server's signing key (``key.py``), 32 bytes or more.
    :param random: ``random(n) -> n bytes``, for the nonces.
    """

    def __init__(self, key: bytes, random: Callable[[int], bytes] = os.urandom) -> None:
        if len(key) < 32:
            raise ValueError("a link signing key needs at least 32 bytes")
        self._key = key
        self._random = random

    def _sign(self, ct: str, token_name: str, nonce: str, binding: bytes) -> bytes:
        return hmac.new(self._key, _message(ct, token_name, nonce, binding),
                        hashlib.sha256).digest()

    def encode(self, link: LinkQuery, token_name: str, binding: bytes) -> dict:
        """
        :param token_name: the issuing token (``i``).
        :param binding: ``IAccessPolicy.link_key(token_name)``.
        :return: ``{"ct", "s", "i", "n"}``, the link's parameters, in that order.
        """
        payload = json.dumps(link.to_json(), separators=(",", ":"), sort_keys=True,
                             ensure_ascii=False).encode("utf-8")
        ct = b64url(zlib.compress(payload, 9))
        nonce = b64url(self._random(NONCE_SIZE))
        signature = b64url(self._sign(ct, token_name, nonce, binding))
        return {"ct": ct, "s": signature, "i": token_name, "n": nonce}

    def decode(self, ct: str, s: str, i: str, n: str, binding: bytes) -> LinkQuery:
        """
        Check a link's parameters and return what it carries.

        :param binding: ``IAccessPolicy.link_key(i)`` now (the caller has
            refused an unknown ``i``).
        :raises UnprocessableEntity: ``Invalid base64 in 'ct' parameter: …``;
            ``Failed to decrypt query: …`` (a bad signature: another key,
            another token secret, a changed parameter; or a malformed one).
        """
        try:
            packed = unb64url(ct)
        except ValueError as exc:
            raise UnprocessableEntity(f"Invalid base64 in 'ct' parameter: {exc}") from None
        try:
            given = unb64url(s)
            unb64url(n)
        except ValueError as exc:
            raise _failed(str(exc)) from None
        if not hmac.compare_digest(given, self._sign(ct, i, n, binding)):
            raise _failed("the link's signature does not match (wrong key, or the issuing "
                          "token was rotated or re-created)")
        try:
            inflater = zlib.decompressobj()
            payload = inflater.decompress(packed, MAX_PAYLOAD)
            if inflater.unconsumed_tail or not inflater.eof:
                raise ValueError("payload too large or truncated")
            return LinkQuery.from_json(json.loads(payload))
        except (ValueError, zlib.error, RecursionError) as exc:
            raise _failed(str(exc)) from None


def _failed(reason: str) -> UnprocessableEntity:
    return UnprocessableEntity(f"Failed to decrypt query: {reason}")


@attrs.frozen
class Links:
    """
    What the link routes need (``ReductAPI.links``).

    :ivar codec: the :class:`LinkCodec` under the server's key.
    :ivar public_url: the base of the links handed out, ending in ``/``.
    """

    codec: LinkCodec
    public_url: str
