# -*- test-case-name: tests.unit.test_integrity_crosscheck -*-
"""
The leaves of an entry's integrity log (``entry_log.py``, issue #16
contract 4): a committed record's, and the gap leaf of a number no record
holds.
"""

from reduct_twisted.integrity import jcs
from reduct_twisted.integrity.merkle import MAX_SAFE_INTEGER, leaf_of

__all__ = ["record_fields", "fields_leaf", "record_leaf", "gap_leaf"]


def record_fields(record) -> tuple:
    """The fields of a committed record's leaf (plain values: they may go to another process)."""
    return (record.number, record.ts, record.size, record.content_type, dict(record.labels),
            record.digest)


def fields_leaf(number: int, ts: int, size: int, content_type: str, labels: dict, digest) -> bytes:
    """
    The leaf of a committed record from :func:`record_fields` (its labels
    as they were then).  Two documented variants: ``"digest": null`` when
    no digest is known, and ``"timestamp"`` as a decimal string beyond
    2**53 - 1 (RFC 8785 numbers are IEEE doubles).
    """
    if digest is not None and ts <= MAX_SAFE_INTEGER:
        return leaf_of(number, ts, size, content_type, labels, digest)
    return jcs.canonical({
        "number": number, "size": size, "content_type": content_type,
        "timestamp": ts if ts <= MAX_SAFE_INTEGER else str(ts),
        "labels": dict(labels),
        "digest": None if digest is None else "sha-256:" + digest.hex()})


def record_leaf(record) -> bytes:
    """The leaf of a committed record (its labels as they are now): :func:`fields_leaf`."""
    return fields_leaf(record.number, record.ts, record.size, record.content_type,
                       record.labels, record.digest)


def gap_leaf(number: int) -> bytes:
    """The leaf of a number no record holds (skipped after a failure)."""
    return jcs.canonical({"number": number, "skipped": True})
