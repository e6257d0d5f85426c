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
from bisect import bisect_left, bisect_right

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
    ``len``, iteration over the numbers, ascending); numbers go with
    :meth:`drop`.

    Kept as sorted runs of consecutive numbers, each held by one part (a
    fields row, or the lines of a block of a write run), so that adding,
    checking and dropping a batch costs per run, not per record.
    """

    __slots__ = ("_firsts", "_lasts", "_parts", "_count")

    def __init__(self) -> None:
        self._firsts: list = []  # run i holds numbers _firsts[i] ... _lasts[i], from _parts[i]
        self._lasts: list = []
        self._parts: list = []   # fields row (tuple) or _Lines
        self._count = 0

    def add(self, row: tuple) -> None:
        """A record's fields row (``record_fields``)."""
        self._insert(row[0], row[0], row)

    def add_lines(self, numbers, lines: bytes) -> None:
        """Records ``numbers`` (each once, in any order) as their ``.meta`` ``lines`` (one line each)."""
        if not numbers:
            return
        part, low, high = _Lines(lines), min(numbers), max(numbers)
        if high - low + 1 == len(numbers):  # (the usual case: consecutive numbers)
            self._insert(low, high, part)
            return
        ordered = sorted(numbers)
        start = 0
        for i in range(1, len(ordered) + 1):
            if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
                self._insert(ordered[start], ordered[i - 1], part)
                start = i

    def _insert(self, first: int, last: int, part) -> None:
        lasts = self._lasts
        if lasts and first <= lasts[-1]:
            self.drop(first, last)  # (a number added again takes its new part, as in a dict)
            i = bisect_left(self._firsts, first)
        else:
            i = len(lasts)
        self._firsts.insert(i, first)
        lasts.insert(i, last)
        self._parts.insert(i, part)
        self._count += last - first + 1

    def _run(self, number: int) -> int:
        """The index of the run holding ``number``, or -1."""
        i = bisect_right(self._firsts, number) - 1
        return i if i >= 0 and self._lasts[i] >= number else -1

    def get(self, number: int, default=None):
        i = self._run(number)
        if i < 0:
            return default
        part = self._parts[i]
        return part if type(part) is tuple else part.row(number)

    def __getitem__(self, number: int) -> tuple:
        i = self._run(number)
        if i < 0:
            raise KeyError(number)
        part = self._parts[i]
        return part if type(part) is tuple else part.row(number)

    def covers(self, first: int, last: int) -> bool:
        """Whether every number ``first … last`` is pending."""
        i = self._run(first)
        if i < 0:
            return False
        firsts, lasts = self._firsts, self._lasts
        while lasts[i] < last:
            i += 1
            if i == len(firsts) or firsts[i] != lasts[i - 1] + 1:
                return False
        return True

    def parts(self, first: int, last: int) -> list:
        """
        What holds numbers ``first … last`` (all pending): rows and lines
        ``bytes`` (a part may hold other numbers too), each once.
        """
        firsts, lasts, parts = self._firsts, self._lasts, self._parts
        i, seen, out = max(bisect_right(firsts, first) - 1, 0), set(), []
        while i < len(firsts) and firsts[i] <= last:
            part = parts[i]
            if lasts[i] >= first and id(part) not in seen:
                seen.add(id(part))
                out.append(part if type(part) is tuple else part.lines)
            i += 1
        return out

    def drop(self, first: int, last: int) -> None:
        """Forget numbers ``first … last`` (those pending)."""
        firsts, lasts, parts = self._firsts, self._lasts, self._parts
        i = max(bisect_right(firsts, first) - 1, 0)
        if i < len(lasts) and lasts[i] < first:
            i += 1
        j = bisect_right(firsts, last)  # runs i ... j - 1 hold some of them
        if i >= j:
            return
        head = (firsts[i], first - 1, parts[i]) if firsts[i] < first else None
        tail = (last + 1, lasts[j - 1], parts[j - 1]) if lasts[j - 1] > last else None
        self._count -= sum(lasts[k] - firsts[k] + 1 for k in range(i, j))
        keep = [run for run in (head, tail) if run is not None]
        self._count += sum(b - a + 1 for a, b, _ in keep)
        firsts[i:j] = [a for a, _, _ in keep]
        lasts[i:j] = [b for _, b, _ in keep]
        parts[i:j] = [p for _, _, p in keep]

    def lowest(self) -> int:
        """The lowest pending number. :raises IndexError: none is."""
        return self._firsts[0]

    def clear(self) -> None:
        self._firsts, self._lasts, self._parts, self._count = [], [], [], 0

    def __contains__(self, number) -> bool:
        return self._run(number) >= 0

    def __iter__(self):
        for first, last in zip(self._firsts, self._lasts):
            yield from range(first, last + 1)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return bool(self._count)
