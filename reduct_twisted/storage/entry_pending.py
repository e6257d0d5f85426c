# -*- test-case-name: tests.unit.test_entry_pending -*-
"""
An entry log's pending leaves (``entry_log.py``): number -> the leaf
fields of a committed record (``entry_leaves.record_fields``), kept as they
came so that a batch costs the request path next to nothing per record.

A record committed on its own brings its fields row.  The records of a
write run (``runs.py``) come as the ``.meta`` lines the run appended for
them, one ``bytes`` per block: the lines hold every field of the leaf
(labels as written: the same bytes are on disk), so they are kept as they
are and decoded only when the daemon makes the leaves itself
(:meth:`PendingLeaves.get`); the leaf worker gets them undecoded
(:meth:`PendingLeaves.parts`, ``leafjob.py``).
"""

import json

__all__ = ["PendingLeaves", "line_rows"]


def line_rows(lines: bytes) -> dict:
    """
    The fields rows of the records in ``.meta`` record lines
    (``blockfile.encode_record``), by number.

    :raises ValueError: a line is not a numbered record line.
    """
    rows = {}
    # One JSON text for all of them (a line never holds a raw newline).
    for obj in json.loads(b"[%s]" % lines.rstrip(b"\n").replace(b"\n", b",")):
        number, digest = obj["n"], obj.get("sha256")
        if type(number) is not int or obj.get("k") != "r":
            raise ValueError(f"not a numbered record line: {str(obj)[:80]}")
        rows[number] = (number, obj["ts"], obj["size"], obj["ct"], dict(obj["labels"]),
                        None if digest is None else bytes.fromhex(digest))
    return rows


class _Lines:
    """The lines of some pending records, decoded on first use."""

    __slots__ = ("lines", "_rows")

    def __init__(self, lines: bytes) -> None:
        self.lines = lines
        self._rows = None

    def row(self, number: int) -> tuple:
        if self._rows is None:
            self._rows = line_rows(self.lines)
        return self._rows[number]


class PendingLeaves:
    """
    number -> fields row, read like a ``dict`` (``in``, ``get``, ``[n]``,
    ``len``, iteration over the numbers); numbers go with :meth:`drop`.
    """

    __slots__ = ("_where",)

    def __init__(self) -> None:
        self._where: dict = {}  # number -> fields row (tuple) or _Lines

    def add(self, row: tuple) -> None:
        """A record's fields row (``record_fields``)."""
        self._where[row[0]] = row

    def add_lines(self, numbers, lines: bytes) -> None:
        """Records ``numbers`` as their ``.meta`` ``lines`` (one line each)."""
        self._where.update(dict.fromkeys(numbers, _Lines(lines)))

    def get(self, number: int, default=None):
        part = self._where.get(number)
        if part is None:
            return default
        return part if type(part) is tuple else part.row(number)

    def __getitem__(self, number: int) -> tuple:
        part = self._where[number]
        return part if type(part) is tuple else part.row(number)

    def covers(self, first: int, last: int) -> bool:
        """Whether every number ``first … last`` is pending."""
        where = self._where
        if len(where) == last - first + 1 and where and min(where) == first and max(where) == last:
            return True  # (the usual case, without a loop in Python)
        return sum(1 for n in where if first <= n <= last) == last - first + 1

    def parts(self, first: int, last: int) -> list:
        """
        What holds numbers ``first … last`` (all pending): rows and lines
        ``bytes`` (a part may hold other numbers too), each once.
        """
        where = self._where
        if len(where) == last - first + 1 and min(where) == first and max(where) == last:
            # Nothing else pending: every part, each once.
            return [part if type(part) is tuple else part.lines
                    for part in {id(part): part for part in where.values()}.values()]
        seen, out = set(), []
        for n in range(first, last + 1):
            part = where[n]
            if type(part) is tuple:
                out.append(part)
            elif id(part) not in seen:
                seen.add(id(part))
                out.append(part.lines)
        return out

    def drop(self, first: int, last: int) -> None:
        """Forget numbers ``first … last`` (appended)."""
        where = self._where
        if len(where) == last - first + 1 and min(where) == first and max(where) == last:
            where.clear()
            return
        pop = where.pop
        for n in range(first, last + 1):
            pop(n, None)

    def clear(self) -> None:
        self._where.clear()

    def __contains__(self, number) -> bool:
        return number in self._where

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __bool__(self) -> bool:
        return bool(self._where)
