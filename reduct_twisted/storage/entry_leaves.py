# -*- test-case-name: tests.unit.test_integrity_crosscheck -*-
"""
The leaves of an entry's integrity log (``entry_log.py``, issue #16
contract 4): a committed record's, and the gap leaf of a number no record
holds.
"""

from reduct_twisted.integrity import jcs
from reduct_twisted.integrity.merkle import MAX_SAFE_INTEGER, leaf_of

__all__ = ["record_leaf", "gap_leaf"]


def record_leaf(record) -> bytes:
    """
    The leaf of a committed record (its labels as they are now).  Two
    documented variants: ``"digest": null`` when no digest is known, and
    ``"timestamp"`` as a decimal string beyond 2**53 - 1 (RFC 8785 numbers
    are IEEE doubles).
    """
    if record.digest is not None and record.ts <= MAX_SAFE_INTEGER:
        return leaf_of(record.number, record.ts, record.size, record.content_type,
                       record.labels, record.digest)
    return jcs.canonical({
        "number": record.number, "size": record.size, "content_type": record.content_type,
        "timestamp": record.ts if record.ts <= MAX_SAFE_INTEGER else str(record.ts),
        "labels": dict(record.labels),
        "digest": None if record.digest is None else "sha-256:" + record.digest.hex()})


def gap_leaf(number: int) -> bytes:
    """The leaf of a number no record holds (skipped after a failure)."""
    return jcs.canonical({"number": number, "skipped": True})
