# -*- test-case-name: tests.unit.test_removedset -*-
"""
The entry numbers of one entry's removed records (issue #16), for the
record listing's positions: how many listed (stored) records come before
a number, and which number is the k-th listed one.  Records are removed
one by one (``DELETE``, a ``REMOVE`` query) or a block at a time (FIFO
eviction, lifecycle ``delete``); numbers of one block are mostly
consecutive, so the set is kept as sorted disjoint intervals
``[first, last]`` with running counts: ``rank`` and ``select`` cost
O(log intervals).

On disk: ``removed`` in the entry's log directory, a header line
``{"format": 1}`` then one line ``<first> <last>`` per removal, appended
(a torn last line, without its ``\\n``, is cut off at open).  Lines may
overlap or repeat (a crash may leave a removal logged twice); loading
merges them.  The file is advisory: whether a record is stored is always
decided by the entry itself (a record with that timestamp and that
number); this set only places pages.  Losing its newest lines to a crash
shifts page numbers, never drops or invents a record.

Blocking file I/O; the owner's ``DirtySet`` is told of every write.
"""

from __future__ import annotations

import bisect
import json
import os

__all__ = ["RemovedSet", "RemovedFormatError", "FORMAT", "FILE", "header_refusal"]

FORMAT = 1
FILE = "removed"


class RemovedFormatError(Exception):
    """The file is of a newer format, or malformed."""


def _intervals(numbers) -> list:
    """Sorted numbers as ``[first, last]`` runs."""
    out = []
    for n in sorted(set(numbers)):
        if out and out[-1][1] + 1 == n:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def header_refusal(directory: str):
    """
    The :class:`RemovedFormatError` :meth:`RemovedSet.open` would raise for
    the header of ``directory``'s file (a newer format, a bad header), or
    None; reads its first line only.

    :raises OSError: the file cannot be read.
    """
    path = os.path.join(directory, FILE)
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
    except FileNotFoundError:
        return None
    if not first.endswith(b"\n"):
        return None  # empty or torn: open() cuts it
    try:
        version = json.loads(first)["format"]
    except (ValueError, KeyError, TypeError):
        return RemovedFormatError(f"{path}: bad header")
    if not isinstance(version, int) or version > FORMAT:
        return RemovedFormatError(f"{path}: format {version!r} is newer than {FORMAT}")
    return None


class RemovedSet:
    def __init__(self, path: str, dirty=None) -> None:
        self.path = path
        self.dirty = dirty
        self._firsts: list = []
        self._lasts: list = []
        self._before: list = []  # removed numbers in the intervals before each one

    @classmethod
    def open(cls, directory: str, dirty=None) -> "RemovedSet":
        found = cls(os.path.join(directory, FILE), dirty)
        found._load()
        return found

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        whole = lines[:-1]  # the part after the last \n is a torn line (or empty)
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(len(data) - len(lines[-1]))
        if not whole:
            return
        try:
            header = json.loads(whole[0])
            version = header["format"]
        except (ValueError, KeyError, TypeError):
            raise RemovedFormatError(f"{self.path}: bad header") from None
        if not isinstance(version, int) or version > FORMAT:
            raise RemovedFormatError(f"{self.path}: format {version!r} is newer than {FORMAT}")
        runs = []
        for line in whole[1:]:
            try:
                first, last = (int(x) for x in line.split(b" "))
            except ValueError:
                raise RemovedFormatError(f"{self.path}: bad line {line[:40]!r}") from None
            if not 1 <= first <= last:
                raise RemovedFormatError(f"{self.path}: bad interval {first} {last}")
            runs.append((first, last))
        self._set(runs)

    def _set(self, runs) -> None:
        merged = []
        for first, last in sorted(runs):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        self._firsts = [a for a, _ in merged]
        self._lasts = [b for _, b in merged]
        self._before, total = [], 0
        for a, b in merged:
            self._before.append(total)
            total += b - a + 1

    # -- the API -------------------------------------------------------------------------

    def add(self, numbers) -> None:
        """Record the removal of these entry numbers (appended to the file)."""
        new = _intervals(numbers)
        if not new:
            return
        created = not os.path.exists(self.path)
        lines = "".join(f"{a} {b}\n" for a, b in new).encode("ascii")
        with open(self.path, "ab") as f:
            if created:
                f.write(json.dumps({"format": FORMAT}).encode("ascii") + b"\n")
            f.write(lines)
        if self.dirty is not None:
            (self.dirty.created if created else self.dirty.file)(self.path)
        self._set(list(zip(self._firsts, self._lasts)) + [tuple(x) for x in new])

    def __len__(self) -> int:
        return self._before[-1] + self._lasts[-1] - self._firsts[-1] + 1 if self._firsts else 0

    def __contains__(self, number: int) -> bool:
        i = bisect.bisect_right(self._firsts, number) - 1
        return i >= 0 and number <= self._lasts[i]

    def rank(self, number: int) -> int:
        """:return: how many removed numbers are below ``number``."""
        i = bisect.bisect_left(self._lasts, number)  # first interval ending at or after it
        if i == len(self._firsts):
            return len(self)
        return self._before[i] + max(0, number - self._firsts[i])

    def select(self, k: int, size: int):
        """
        :param k: 1-based position among the numbers 1..``size`` not removed.
        :return: the k-th such number, or None if there are fewer.
        """
        if k < 1:
            return None
        lo, hi = k, size  # the answer n satisfies n - rank(n + 1) == k
        while lo < hi:
            mid = (lo + hi) // 2
            if mid - self.rank(mid + 1) >= k:
                hi = mid
            else:
                lo = mid + 1
        if lo > size or lo in self or lo - self.rank(lo + 1) != k:
            return None
        return lo
