# -*- test-case-name: tests.unit.test_digestindex -*-
"""
The digest index of one entry (issue #16: ``?digest=sha-256:<hex>`` lists
the records with that content "from an index, not a scan"): entry numbers
by content digest, kept in a directory of its own.

It is derived data, always rebuildable from the entry's record log (each
leaf holds the number and the digest), so it is made for cheap appends and
cheap lookups, not for durability of its newest part:

* Entries are 16 bytes: the first 8 bytes of the SHA-256 and the entry
  number, both big-endian, so that a run sorts by digest then number.  A
  prefix may match another content: the caller checks each number's full
  digest (one leaf read each), which also makes the index safe against
  any stale entry.
* New entries wait in memory (the *tail*, at most :data:`TAIL` of them);
  a full tail is written as a sorted *run* file ``run-<seq>.idx`` (temporary
  file renamed; the owner's ``DirtySet`` is told, the sync policy flushes), and the ``manifest`` (``{"format", "runs",
  "covered"}``: the run files and the highest number they hold) is
  replaced the same way.  the newest run is merged into the one
  before it while it is at least half that one's size (a streaming merge:
  bounded memory), so an entry is rewritten O(log n) times over its life and a lookup reads O(log n) runs
  with a binary search each: O(log² n) reads of 16 bytes, through ``mmap``.
* After a crash, or a restart without :meth:`DigestIndex.close`, the tail
  is gone: :attr:`covered` says the highest number the runs hold, and the
  owner adds the records above it again (:meth:`add` ignores nothing: it
  is the owner who knows which numbers exist).  Run files the manifest does
  not name (a merge or flush cut short) are removed at open; only names this
  module makes (``run-<digits>.idx``, ``*.tmp``) are touched.
* A manifest of a newer format is refused (:class:`IndexFormatError`); the
  owner then lists digests by a scan, or rebuilds the index elsewhere.

Blocking file I/O throughout: the daemon calls it in the thread pool.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import itertools
import json
import mmap
import os
import re
import struct

__all__ = ["DigestIndex", "IndexFormatError", "FORMAT", "TAIL"]

FORMAT = 1
#: Entries kept in memory before a run is written.
TAIL = 8192

_ENTRY = struct.Struct(">QQ")
_RUN = re.compile(r"^run-(\d{1,12})\.idx$")
MANIFEST = "manifest"


class IndexFormatError(Exception):
    """The manifest is of a newer format, or unreadable."""


def _key(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big")


def _replace(path: str, pieces, dirty) -> None:
    """
    Write the byte strings ``pieces`` to ``path`` through a temporary file
    renamed over it; flushing is the group sync's (``dirty``: a ``DirtySet``).
    """
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            for piece in pieces:
                f.write(piece)
        os.replace(tmp, path)
        if dirty is not None:
            dirty.created(path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _chunks(entries, size: int = 65536):
    """The packed bytes of the sorted ``entries``, ``size`` at a time (bounded memory)."""
    pack = _ENTRY.pack
    iterator = iter(entries)
    while True:
        piece = b"".join(pack(k, n) for k, n in itertools.islice(iterator, size))
        if not piece:
            return
        yield piece


class _Run:
    """One sorted run file, mapped read-only."""

    __slots__ = ("name", "count", "_map", "_keys")

    def __init__(self, directory: str, name: str) -> None:
        self.name = name
        with open(os.path.join(directory, name), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size % _ENTRY.size:
                raise IndexFormatError(f"{name}: size {size} is not a whole number of entries")
            self.count = size // _ENTRY.size
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self._keys = _Keys(self)

    def entry(self, i: int) -> tuple:
        return _ENTRY.unpack_from(self._map, i * _ENTRY.size)

    def numbers(self, key: int) -> list:
        if not self.count:
            return []
        i = bisect.bisect_left(self._keys, key)
        out = []
        while i < self.count:
            found, number = self.entry(i)
            if found != key:
                break
            out.append(number)
            i += 1
        return out

    def __iter__(self):
        """The entries ``(key, number)`` in order, unpacked lazily."""
        return _ENTRY.iter_unpack(self._map) if self._map is not None else iter(())

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class _Keys:
    """The keys of a run as a sequence, for ``bisect`` (one read per probe)."""

    __slots__ = ("_run",)

    def __init__(self, run: _Run) -> None:
        self._run = run

    def __len__(self) -> int:
        return self._run.count

    def __getitem__(self, i: int) -> int:
        return self._run.entry(i)[0]


class DigestIndex:
    """
    :ivar covered: the highest entry number held by the runs (0: none);
        records above it that are not in the tail must be added again.
    """

    def __init__(self, directory: str, tail_size: int = TAIL, dirty=None) -> None:
        self.directory = directory
        self.dirty = dirty
        self.tail_size = tail_size
        self.covered = 0
        self._runs: list = []  # oldest first
        self._tail: list = []
        self._seq = 0

    @classmethod
    def open(cls, directory: str, tail_size: int = TAIL, dirty=None) -> "DigestIndex":
        """:param dirty: the ``DirtySet`` told of every file written (None: nobody)."""
        index = cls(directory, tail_size, dirty)
        os.makedirs(directory, exist_ok=True)
        index._load()
        return index

    # -- files ---------------------------------------------------------------------------

    def _load(self) -> None:
        path = os.path.join(self.directory, MANIFEST)
        names = []
        try:
            with open(path, "rb") as f:
                manifest = json.loads(f.read())
            version = manifest["format"]
            if not isinstance(version, int) or version > FORMAT:
                raise IndexFormatError(f"{path}: format {version!r} is newer than {FORMAT}")
            names = [str(n) for n in manifest["runs"]]
            covered = manifest["covered"]
            if not all(_RUN.match(n) for n in names) or type(covered) is not int:
                raise IndexFormatError(f"{path}: malformed")
            self.covered = covered
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexFormatError(f"{path}: {exc}") from None
        for name in os.listdir(self.directory):
            found = _RUN.match(name)
            if found:
                self._seq = max(self._seq, int(found.group(1)) + 1)
            if (found and name not in names) or name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))
        self._runs = [_Run(self.directory, name) for name in names]

    def _write_manifest(self, covered: int) -> None:
        data = json.dumps({"format": FORMAT, "runs": [r.name for r in self._runs],
                           "covered": covered}).encode("ascii")
        _replace(os.path.join(self.directory, MANIFEST), (data,), self.dirty)
        self.covered = covered

    def _write_run(self, pieces) -> _Run:
        """Write ``pieces`` (packed bytes of sorted entries) as a new run."""
        name = f"run-{self._seq}.idx"
        self._seq += 1
        _replace(os.path.join(self.directory, name), pieces, self.dirty)
        return _Run(self.directory, name)

    # -- the API ---------------------------------------------------------------------------

    def add(self, pairs) -> None:
        """Index ``(digest, number)`` pairs (digest: 32 bytes); writes a run when the tail is full."""
        self._tail.extend((_key(digest), number) for digest, number in pairs)
        if len(self._tail) >= self.tail_size:
            self.flush()

    def flush(self) -> None:
        """Write the tail as a run (if any), merge runs of similar size, save the manifest."""
        if not self._tail:
            return
        covered = max(self.covered, max(n for _, n in self._tail))
        self._runs.append(self._write_run(_chunks(sorted(self._tail))))
        self._tail = []
        old = []
        while len(self._runs) > 1 and self._runs[-1].count * 2 >= self._runs[-2].count:
            merging = self._runs[-2:]
            del self._runs[-2:]
            self._runs.append(self._write_run(_chunks(heapq.merge(*merging))))
            old += merging
        self._write_manifest(covered)
        for run in old:  # only once the manifest no longer names them
            run.close()
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.directory, run.name))

    def lookup(self, digest: bytes) -> list:
        """:return: the entry numbers whose digest may be ``digest`` (same first 8 bytes), sorted."""
        key = _key(digest)
        found = [n for k, n in self._tail if k == key]
        for run in self._runs:
            found += run.numbers(key)
        return sorted(set(found))

    @property
    def run_sizes(self) -> list:
        """Entries per run, oldest first (for tests and diagnostics)."""
        return [run.count for run in self._runs]

    def close(self) -> None:
        """Flush the tail and release the runs."""
        self.flush()
        for run in self._runs:
            run.close()
        self._runs = []
