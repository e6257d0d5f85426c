# -*- test-case-name: tests.unit.test_storage_cache, tests.unit.test_tablesize -*-
"""
The estimated memory of a block's loaded record table (``Block.table_bytes``,
which the ``TableCache`` bounds), cheap to keep up to date: no
``sys.getsizeof`` walk.

Records of a table may share one label ``dict`` (a table read from a
``.meta`` gives every record with the same labels the same ``dict``; a
batch's run of alike records gets one): a record's labels are never changed
in place, only replaced (``Block.relabel``).  A shared ``dict`` is counted
once, by the block's *sharing* map: ``id(labels) -> [labels, records using
it]``; a record whose labels are not in it owns them.
"""

from collections import Counter
from operator import attrgetter

__all__ = ["RECORD_OVERHEAD", "LABEL_OVERHEAD", "record_bytes", "labels_bytes",
           "table_estimate", "release"]

#: Estimated bytes of one loaded record besides its labels: the ``Record``,
#: its numbers and digest, its slots in the table and the sorted order
#: (measured with ``tracemalloc`` on CPython 3.11: about 400 bytes).
RECORD_OVERHEAD = 400
#: Estimated bytes of one label besides the characters of its name and
#: value: two ``str`` objects and its share of the ``dict`` (measured as
#: above for labels read one record at a time: about 180 bytes).
LABEL_OVERHEAD = 180

_labels_of = attrgetter("labels")
_type_of = attrgetter("content_type")


def labels_bytes(labels: dict) -> int:
    """The estimated memory of one label ``dict``."""
    size = 0
    for name, value in labels.items():
        size += LABEL_OVERHEAD + len(name) + len(value)
    return size


def record_bytes(record) -> int:
    """
    The memory a loaded record with labels of its own is estimated to take
    (its share of ``Block.table_bytes``).

    :param record: a record of a table.
    """
    return RECORD_OVERHEAD + len(record.content_type) + labels_bytes(record.labels)


def table_estimate(records) -> tuple:
    """
    The estimate of a whole table.

    :param records: its records (a list).
    :return: ``(bytes, sharing)``: each shared label ``dict`` counted once;
        ``sharing`` the map of those used by more than one record (None if
        there is none).
    """
    labels = list(map(_labels_of, records))
    users = Counter(map(id, labels))
    size = RECORD_OVERHEAD * len(records) + sum(map(len, map(_type_of, records)))
    if len(users) == len(labels):  # no sharing
        return size + sum(map(labels_bytes, labels)), None
    by_id = dict(zip(map(id, labels), labels))
    sharing = {}
    for key, count in users.items():
        found = by_id[key]
        size += labels_bytes(found)
        if count > 1:
            sharing[key] = [found, count]
    return size, sharing or None


def release(sharing, record) -> int:
    """
    A record leaves its table (removed, given up or relabelled): one user
    less of its labels if they are shared.

    :param sharing: the block's sharing map, or None.
    :return: the bytes to take off the table's estimate.
    """
    labels = record.labels
    if sharing:
        key = id(labels)
        found = sharing.get(key)
        if found is not None and found[0] is labels:
            found[1] -= 1
            if found[1]:
                return RECORD_OVERHEAD + len(record.content_type)
            del sharing[key]
    return record_bytes(record)


def share(sharing, labels: dict, users: int):
    """
    Count ``users`` more records using ``labels``.

    :return: the sharing map (a new one if ``sharing`` is None).
    """
    if sharing is None:
        sharing = {}
    key = id(labels)
    found = sharing.get(key)
    if found is not None and found[0] is labels:
        found[1] += users
    else:
        sharing[key] = [labels, users]
    return sharing
