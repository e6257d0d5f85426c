# -*- test-case-name: tests.unit.test_integrity_merkle -*-
"""
The RFC 9162 (Certificate Transparency 2.0) §2.1 Merkle tree over SHA-256,
and proof generation over a *hash source*.

Hashes (§2.1.1): ``MTH({}) = SHA-256()`` (:data:`EMPTY_ROOT`), a leaf
``SHA-256(0x00 || d)`` (:func:`leaf_hash`), an interior node
``SHA-256(0x01 || left || right)`` (:func:`node_hash`); the tree of ``n``
leaves splits at the largest power of two ``k < n``.

A hash source is any object with ``subtree(start, size) -> bytes``: the
32-byte hash of the complete subtree of ``size`` leaves (a power of two)
starting at 0-based leaf ``start`` (a multiple of ``size``).  The tree log
(``storage/disk/treelog.py``) answers it with one read.  Every range the
§2.1 recursion needs starts at a multiple of the largest power of two not
above its length, so a range of any length is the chain of its aligned
power-of-two pieces (one per 1-bit of the length, largest first), folded
right to left: :func:`root`, :func:`inclusion_path` and
:func:`consistency_path` each make O(log n) ``subtree`` calls.

Indices here are 0-based leaf indices, as in the RFC; the log's record
number ``n`` is leaf index ``n - 1``.
"""

import hashlib

from reduct_twisted.integrity.jcs import MAX_SAFE_INTEGER, string, utf16_key

#: ``MTH({})``, the root of the empty tree.
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: Size of every hash.
HASH_SIZE = 32


def leaf_hash(data: bytes) -> bytes:
    """``MTH({d}) = SHA-256(0x00 || d)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf_bytes(number: int, timestamp: int, size: int, content_type: str,
               labels: dict, digest: bytes) -> bytes:
    """
    The leaf of record ``number`` (issue #16 contract 4): the RFC 8785
    canonical JSON of ``{"number", "timestamp", "size", "content_type",
    "labels", "digest"}``, the digest written ``"sha-256:<64 lowercase hex>"``.

    :raises ValueError: a field of the wrong type or range, a digest that
        is not 32 bytes, a label name or value that is not a string.
    """
    for name, value in (("number", number), ("timestamp", timestamp), ("size", size)):
        if type(value) is not int or not 0 <= value <= MAX_SAFE_INTEGER:
            raise ValueError(f"{name} must be an int in 0..2**53-1, not {value!r}")
    if not isinstance(content_type, str):
        raise ValueError(f"content_type must be a str, not {content_type!r}")
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError("labels must map str to str")
    if not isinstance(digest, (bytes, bytearray)) or len(digest) != HASH_SIZE:
        raise ValueError("digest must be the 32 raw bytes of a SHA-256")
    return leaf_of(number, timestamp, size, content_type, labels, bytes(digest))


#: ``(content_type, labels...)`` -> the leaf's text around the digest and
#: number (:func:`leaf_of`): a batch repeats them.  Cleared when full.
_TEMPLATES: dict = {}
_TEMPLATES_MAX = 1024


def leaf_template(content_type: str, labels: dict) -> tuple:
    """
    The leaf's bytes before the digest's hex, and between it and the number
    (a leaf is ``parts[0] + hex + parts[1] + b'%d,"size":%d,"timestamp":%d}'``).

    :raises ValueError: a string holds a lone surrogate.
    """
    if labels:
        names = "".join(labels)
        # Below U+10000 code-point order is UTF-16 code-unit order (§3.2.3).
        names = sorted(labels) if max(names, default="") <= "\uffff" else sorted(labels, key=utf16_key)
        text = ",".join([string(name) + ":" + string(labels[name]) for name in names])
    else:
        text = ""
    return (f'{{"content_type":{string(content_type)},"digest":"sha-256:'.encode("utf-8"),
            f'","labels":{{{text}}},"number":'.encode("utf-8"))


def leaf_of(number: int, timestamp: int, size: int, content_type: str,
            labels: dict, digest: bytes) -> bytes:
    """
    :func:`leaf_bytes` without its argument checks, for fields the storage
    engine made (it runs once per record written: canonical() of the six
    fields, written out, the members in §3.2.3 order).  The text around the
    digest and the numbers is kept per content type and labels
    (:data:`_TEMPLATES`).

    :raises ValueError: a string holds a lone surrogate.
    """
    key = (content_type, *labels.items()) if labels else content_type
    parts = _TEMPLATES.get(key)
    if parts is None:
        parts = leaf_template(content_type, labels)
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        _TEMPLATES[key] = parts
    return b'%s%s%s%d,"size":%d,"timestamp":%d}' % (
        parts[0], digest.hex().encode(), parts[1], number, size, timestamp)


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(source, start: int, size: int) -> bytes:
    """``MTH(D[start:start+size])``, ``size >= 1``, from its power-of-two pieces."""
    pieces = []
    while size:
        piece = 1 << (size.bit_length() - 1)
        pieces.append(source.subtree(start, piece))
        start += piece
        size -= piece
    result = pieces.pop()
    while pieces:
        result = node_hash(pieces.pop(), result)
    return result


def root(source, n: int) -> bytes:
    """
    ``MTH(D[0:n])`` (§2.1.1): :data:`EMPTY_ROOT` for ``n == 0``.

    :raises ValueError: ``n < 0``.
    """
    if n < 0:
        raise ValueError(f"tree size {n} is negative")
    return _range_hash(source, 0, n) if n else EMPTY_ROOT


def inclusion_path(source, index: int, n: int) -> list:
    """
    ``PATH(index, D[0:n])`` (§2.1.3.1): the audit path of leaf ``index``
    (0-based) in the tree of ``n`` leaves, from the leaf's sibling upwards.

    :raises ValueError: unless ``0 <= index < n``.
    """
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is not in a tree of {n} leaves")
    path = []
    start = 0
    while n > 1:
        k = _split(n)
        if index < k:
            path.append(_range_hash(source, start + k, n - k))
            n = k
        else:
            path.append(source.subtree(start, k))
            start, index, n = start + k, index - k, n - k
    path.reverse()
    return path


def consistency_path(source, m: int, n: int) -> list:
    """
    ``PROOF(m, D[0:n])`` (§2.1.4.1): the consistency proof from the tree of
    ``m`` leaves to that of ``n``; empty when ``m == n``.

    :raises ValueError: unless ``0 < m <= n``.
    """
    if not 0 < m <= n:
        raise ValueError(f"no consistency proof from tree size {m} to {n}")
    path = []
    start = 0
    whole = True  # SUBPROOF's b: the current range is still the old tree's whole
    while m != n:
        k = _split(n)
        if m <= k:
            path.append(_range_hash(source, start + k, n - k))
            n = k
        else:
            path.append(source.subtree(start, k))
            start, m, n, whole = start + k, m - k, n - k, False
    if not whole:
        path.append(_range_hash(source, start, m))
    path.reverse()
    return path


class MemorySource:
    """A hash source over leaf hashes held in memory (tests, small trees)."""

    def __init__(self, leaf_hashes: list) -> None:
        self.leaf_hashes = leaf_hashes

    def subtree(self, start: int, size: int) -> bytes:
        if size == 1:
            return self.leaf_hashes[start]
        half = size // 2
        return node_hash(self.subtree(start, half), self.subtree(start + half, half))
