# -*- test-case-name: tests.unit.test_integrity_crosscheck -*-
"""
The leaves of an entry's integrity log (``entry_log.py``, issue #16
contract 4): a committed record's, and the gap leaf of a number no record
holds.
"""

import json
import re

from reduct_twisted.integrity import jcs
from reduct_twisted.integrity.merkle import MAX_SAFE_INTEGER, leaf_of, leaf_template
from reduct_twisted.storage.entry_pending import line_rows

__all__ = ["record_fields", "fields_leaf", "record_leaf", "gap_leaf", "line_leaves", "run_leaves",
           "parts_leaves"]

#: A JSON integer (canonical: no leading zero).
_INT = rb'(0|[1-9][0-9]*)'
#: A JSON string without escapes (:func:`line_leaves` takes lines holding a
#: backslash the slow way).
_STR = rb'"[^"\\\n]*"'
#: A whole ``"r"`` line of ``blockfile.encode_record`` holding a number and
#: a SHA-256: its ``ts``, ``size``, ``ct`` (JSON), ``labels`` (the JSON
#: between the brackets), ``n`` and ``sha256`` (hex).  Any other line (a
#: format this pattern does not know) sends :func:`line_leaves` the slow way.
_RECORD_LINE = re.compile(
    rb'^\{"k":"r","ts":' + _INT + rb',"seg":' + _STR + rb',"off":\d+,"size":' + _INT + rb',"ct":(' + _STR
    + rb'),"labels":\[((?:\[' + _STR + rb',' + _STR + rb'\](?:,\[' + _STR + rb',' + _STR
    + rb'\])*)?)\](?:,"crc":\d+)?(?:,"z":\d+)?,"n":' + _INT + rb',"sha256":"([0-9a-f]{64})"\}\n', re.M)
#: ``(ct JSON, labels JSON)`` -> ``leaf_template`` of them (cleared when full).
_TEMPLATES: dict = {}
_TEMPLATES_MAX = 1024


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


def line_leaves(lines: bytes) -> dict:
    """
    number -> leaf of the records in ``.meta`` record lines (what
    ``fields_leaf(*row)`` makes of each row of ``entry_pending.line_rows``),
    made from the lines' text without decoding them: the leaf worker's
    per-record cost (``leafjob.py``).  The text around the digest and the
    numbers comes from :data:`_TEMPLATES`, by the lines' own JSON of the
    content type and labels.

    :raises ValueError: like ``line_rows`` and ``fields_leaf``.
    """
    found = None if b"\\" in lines else _RECORD_LINE.findall(lines)
    if found is None or len(found) != lines.count(b"\n"):
        return {number: fields_leaf(*row) for number, row in line_rows(lines).items()}
    templates, out = _TEMPLATES, {}
    for ts, size, ct, labels, number, sha in found:
        parts = templates.get((ct, labels))
        if parts is None:
            if len(templates) >= _TEMPLATES_MAX:
                templates.clear()
            parts = templates[ct, labels] = leaf_template(
                json.loads(ct), dict(json.loads(b"[%s]" % labels)))
        if len(ts) > 15 and int(ts) > MAX_SAFE_INTEGER:
            out[int(number)] = fields_leaf(int(number), int(ts), int(size), json.loads(ct),
                                           dict(json.loads(b"[%s]" % labels)), bytes.fromhex(sha.decode()))
            continue
        out[int(number)] = b'%s%s%s%s,"size":%s,"timestamp":%s}' % (
            parts[0], sha, parts[1], number, size, ts)
    return out


#: A timestamp below 9 * 10**15 (within 2**53 - 1: a JSON number in the leaf).
_SAFE_TS = rb'(0|[1-9][0-9]{0,14}|[1-8][0-9]{15})'
#: Where a record line's number is.
_NUMBER = re.compile(rb',"n":([0-9]+),"sha256":"')
#: ``(ct JSON, labels JSON)`` -> the pattern of record lines with them (its
#: groups: ts, size, number, sha256) and the leaf's text around the digest.
_UNIFORM: dict = {}
#: The longest content type and labels texts (together) a pattern spells out.
_UNIFORM_TEXT = 1024


def _uniform(ct: bytes, labels: bytes) -> tuple:
    spec = _UNIFORM.get((ct, labels))
    if spec is None:
        pattern = re.compile(
            rb'^\{"k":"r","ts":' + _SAFE_TS + rb',"seg":"[^"\\\n]*","off":[0-9]+,"size":' + _INT
            + rb',"ct":' + re.escape(ct) + rb',"labels":\[' + re.escape(labels)
            + rb'\](?:,"crc":[0-9]+)?(?:,"z":[0-9]+)?,"n":' + _INT + rb',"sha256":"([0-9a-f]{64})"\}\n',
            re.M)
        if len(_UNIFORM) >= _TEMPLATES_MAX:
            _UNIFORM.clear()
        spec = _UNIFORM[ct, labels] = (
            pattern, *leaf_template(json.loads(ct), dict(json.loads(b"[%s]" % labels))))
    return spec


def run_leaves(lines: bytes, first: int, last: int):
    """
    The leaves of records ``first … last`` in order when ``lines`` are
    exactly their ``.meta`` lines, in that order, all of one content type
    and label set, without escapes and with timestamps below 9 * 10**15
    (a batch's usual lines): one pattern of that content type and labels
    over all of them, one formatting per record.  ``None`` otherwise
    (:func:`line_leaves` then).
    """
    if not lines or b"\\" in lines:
        return None
    head = _RECORD_LINE.match(lines)
    if head is None:
        return None
    ct, labels = head.group(3, 4)
    # Counted before a pattern is made: lines labelled one by one make none,
    # and only short texts are spelled out in one (a pattern holds them).
    if (len(ct) + len(labels) > _UNIFORM_TEXT or lines.count(
            b'"ct":%s,"labels":[%s]' % (ct, labels)) != lines.count(b"\n")):
        return None
    pattern, before, middle = _uniform(ct, labels)
    found = pattern.findall(lines)
    if (len(found) != last - first + 1 or len(found) != lines.count(b"\n")
            or [int(row[2]) for row in found] != list(range(first, last + 1))):
        return None
    return [b'%s%s%s%s,"size":%s,"timestamp":%s}' % (before, sha, middle, number, size, ts)
            for ts, size, number, sha in found]


def parts_leaves(parts: list, first: int, last: int) -> list:
    """
    The leaves of records ``first … last`` in order, from ``parts``
    (``PendingLeaves.parts``: fields rows and ``.meta`` lines holding all
    of them): what the leaf worker makes of a job (``leafjob.run_job``) and
    the daemon of its own pending leaves (``EntryLog.flush``).

    :raises ValueError: like :func:`line_leaves`; ``KeyError``: a number is in no part.
    """
    if all(type(part) is bytes for part in parts):  # a batch's lines, usually
        leaves = run_leaves(b"".join(parts), first, last)
        if leaves is not None:
            return leaves
    made: dict = {}
    for part in parts:
        if type(part) is bytes:
            made.update(line_leaves(part))
        else:
            made[part[0]] = fields_leaf(*part)
    return [made[n] for n in range(first, last + 1)]
