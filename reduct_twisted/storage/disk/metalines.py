# -*- test-case-name: tests.unit.test_metalines -*-
"""
A fast reading of the record lines of a ``.meta`` file (``blockfile.py``)
when every line is in the exact form this code writes them
(``blockfile.encode_record``, ``runlines.encode_records``): fields in their
order, integers without leading zeros, strings of printable ASCII without
escapes.  One regular expression over the whole body instead of a JSON
decoding and a replay per line (issue #17: a query reloading a table
parsed its 1,024 lines at about 5.5 µs each, most of it in ``json``; now
about 1.9): when every line has the first line's segment, content type and
labels (a block written by batches of one kind of record), a pattern with
those three spelled out, else one for any line in the written form.

Anything else (an escape, a kind of line or a key order it does not know, a
value the slow path would refuse) makes :func:`fast_table` answer ``None``
and the caller replays the lines one by one as before, which also says
what is wrong with a damaged file: the table is the same either way
(except that here records with the same labels share one ``dict``, which
is never changed in place: ``storage/tablesize.py``).
"""

import json
import re
from itertools import repeat

from reduct_twisted.storage.disk.packed import PACKED_SUFFIX
from reduct_twisted.storage.records import FINISHED, Record

__all__ = ["fast_table"]

#: A JSON string of printable ASCII without ``"`` or ``\\`` (no escapes).
_CHARS = rb'[\x20\x21\x23-\x5b\x5d-\x7e]*'
_STR = rb'"(' + _CHARS + rb')"'
_PAIR = rb'\["' + _CHARS + rb'","' + _CHARS + rb'"\]'
_INT = rb'(0|[1-9][0-9]*)'
#: One whole record line as written: groups ts, seg, off, size, ct, the
#: labels' JSON between the brackets, crc, z, n, sha256 (optional ones empty).
_LINE = re.compile(
    rb'^\{"k":"r","ts":' + _INT + rb',"seg":' + _STR + rb',"off":' + _INT + rb',"size":' + _INT
    + rb',"ct":' + _STR + rb',"labels":\[((?:' + _PAIR + rb'(?:,' + _PAIR + rb')*)?)\]'
    + rb'(?:,"crc":' + _INT + rb')?(?:,"z":' + _INT + rb')?(?:,"n":([1-9][0-9]*))?'
    + rb'(?:,"sha256":"([0-9a-f]{64})")?\}\n', re.M)
_CRC_MAX = 0xFFFFFFFF


#: ``(seg, ct, labels)`` of a block's first line -> the pattern of lines
#: with those three as they are (groups: ts, off, size, crc, z, n, sha256);
#: only for texts of at most :data:`_UNIFORM_TEXT` bytes (a pattern holds them).
_UNIFORM: dict = {}
_UNIFORM_MAX = 64
_UNIFORM_TEXT = 1024


def _all_alike(data: bytes, start: int, end: int, lines: int, seg: bytes, ct: bytes,
               labels: bytes) -> bool:
    """
    Whether every line may have the first one's segment, content type and
    labels (short enough to spell out): counted before a pattern is made,
    so blocks of records labelled one by one make none.
    """
    if len(seg) + len(ct) + len(labels) > _UNIFORM_TEXT:
        return False
    same = b'"seg":"%s","off":' % seg
    if data.count(same, start, end) != lines:
        return False
    return data.count(b'"ct":"%s","labels":[%s]' % (ct, labels), start, end) == lines


def _uniform(seg: bytes, ct: bytes, labels: bytes):
    pattern = _UNIFORM.get((seg, ct, labels))
    if pattern is None:
        if len(_UNIFORM) >= _UNIFORM_MAX:
            _UNIFORM.clear()
        pattern = _UNIFORM[seg, ct, labels] = re.compile(
            rb'^\{"k":"r","ts":' + _INT + rb',"seg":"' + re.escape(seg) + rb'","off":' + _INT
            + rb',"size":' + _INT + rb',"ct":"' + re.escape(ct) + rb'","labels":\['
            + re.escape(labels) + rb'\](?:,"crc":' + _INT + rb')?(?:,"z":' + _INT
            + rb')?(?:,"n":([1-9][0-9]*))?(?:,"sha256":"([0-9a-f]{64})")?\}\n', re.M)
    return pattern


def fast_table(data: bytes, start: int, end: int, block_id: int, classify, data_suffix: str):
    """
    The record table of the lines ``data[start:end]`` (whole lines, after
    the header), or ``None`` when a line is not in the written form or holds
    a value the line-by-line replay refuses (it then runs and says why).

    :param classify: ``blockfile.classify``.
    :param data_suffix: ``blockfile.DATA_SUFFIX``.
    """
    lines = data.count(b"\n", start, end)
    first = _LINE.match(data, start, end)
    if first is None:
        return None
    seg, ct, labels = first.group(2, 5, 6)
    if _all_alike(data, start, end, lines, seg, ct, labels):
        found = _uniform(seg, ct, labels).findall(data, start, end)
        if len(found) == lines:  # a block of one segment, content type and label set
            return _uniform_table(found, block_id, classify(seg.decode("ascii")), data_suffix,
                                  seg.decode("ascii"), ct.decode("ascii"),
                                  dict(json.loads(b"[%s]" % labels)))
    found = _LINE.findall(data, start, end)
    if len(found) != lines:
        return None
    table: dict = {}
    segments: dict = {}
    texts: dict = {}
    label_sets: dict = {}
    for ts, seg, off, size, ct, labels, crc, z, n, sha in found:
        ts = int(ts)
        spec = segments.get(seg)
        if spec is None:
            name = seg.decode("ascii")
            spec = segments[seg] = (name, classify(name))
        name, kind = spec
        if kind is None or kind[0] != block_id:
            return None
        if z:
            if kind[2] != PACKED_SUFFIX:
                return None
            z = int(z)
        elif kind[2] != data_suffix or kind[1] not in (None, ts):
            return None
        else:
            z = None
        crc = int(crc) if crc else None
        if crc is not None and crc > _CRC_MAX:
            return None
        content_type = texts.get(ct)
        if content_type is None:
            content_type = texts[ct] = ct.decode("ascii")
        label_set = label_sets.get(labels)
        if label_set is None:
            label_set = label_sets[labels] = dict(json.loads(b"[%s]" % labels))
        table[ts] = Record(ts, name, int(off), int(size), content_type, label_set, FINISHED,
                           crc, z, int(n) if n else None,
                           bytes.fromhex(sha.decode()) if sha else None)
    return table


def _uniform_table(found: list, block_id: int, kind, data_suffix: str, name: str,
                   content_type: str, label_set: dict):
    """
    :func:`fast_table` for lines of one segment ``name``, content type and
    label set: each field converted a column at a time (``map`` over the
    matches, one ``bytes.fromhex`` for every digest), not a record at a time.
    """
    if kind is None or kind[0] != block_id:
        return None
    packed, private = kind[2] == PACKED_SUFFIX, kind[1] is not None
    if not packed and (kind[2] != data_suffix):
        return None
    count = len(found)
    stamps, offsets, sizes, crcs, zs, numbers, shas = zip(*found)
    stamps = list(map(int, stamps))
    if packed:
        if not all(zs):
            return None
        zs = map(int, zs)
    elif any(zs) or (private and any(ts != kind[1] for ts in stamps)):
        return None
    else:
        zs = repeat(None, count)
    crcs = _column(crcs, count)
    if any(crc is not None and crc > _CRC_MAX for crc in crcs):
        return None
    if all(shas):
        joined = bytes.fromhex(b"".join(shas).decode())
        digests = [joined[i:i + 32] for i in range(0, 32 * count, 32)]
    else:
        digests = [bytes.fromhex(sha.decode()) if sha else None for sha in shas]
    return dict(zip(stamps, map(
        Record, stamps, repeat(name, count), map(int, offsets), map(int, sizes),
        repeat(content_type, count), repeat(label_set, count),
        repeat(FINISHED, count), crcs, zs, _column(numbers, count), digests)))


def _column(texts: tuple, count: int) -> list:
    # Optional integers of every line: all there, none, or some.
    if all(texts):
        return list(map(int, texts))
    if not any(texts):
        return [None] * count
    return [int(text) if text else None for text in texts]
