# -*- test-case-name: tests.unit.test_treelog -*-
"""
The per-entry integrity log on disk (issue #16): the leaves of an entry's
records in entry-number order and, for a ``merkle`` log, the RFC 9162 tree
over them, kept so that appending costs O(1) amortised writes and every
root or proof O(log n) reads.  The files and the crash-recovery rule are
described in ``treelog_files.py``.

Leaves are numbered like entry numbers, from 1: leaf ``n`` is record
number ``n``, RFC 9162 leaf index ``n - 1``.

Like the rest of the storage core this module never flushes to stable
storage: every file it changes (and every directory whose names it
changes) goes to the ``dirty`` set handed to :meth:`TreeLog.open`, which
the daemon's sync policy flushes with the records of the same group
commit; :meth:`TreeLog.paths` lists the files too.  One ``TreeLog`` is used
by one thread at a time.
"""

import os

from reduct_twisted.integrity import merkle as rfc9162
from reduct_twisted.integrity.merkle import EMPTY_ROOT, HASH_SIZE
from reduct_twisted.storage.disk.durability import DirtySet
from reduct_twisted.storage.disk.treelog_build import build, hash_leaves
from reduct_twisted.storage.disk.treelog_files import (
    HASHES_FILE, LEAVES_FILE, LogFiles, OFFSET, OFFSETS_FILE, TreeLogError, end_of, hash_index, nodes,
    pread_exact, pwrite_all, read_format, recover, write_format,
)

__all__ = ["TreeLog", "TreeLogError", "build"]

#: Leaves hashed per step when hashes are built for a log that had none.
_CATCH_UP = 1024


class TreeLog:
    """
    An open tree log.  Create or open one with :meth:`open`.

    :ivar directory: its directory.
    :ivar merkle: whether the tree hashes are kept (roots and proofs work).
    """

    def __init__(self, directory: str, merkle: bool, fds: dict, dirty: DirtySet) -> None:
        self.directory = directory
        self.merkle = merkle
        self._fds = fds
        self._dirty = dirty
        self._n = 0
        self._leaves_end = 0
        self._peaks: list = []
        #: Hashes are being built (:meth:`hash_steps`): ``_hashed`` leaves so far.
        self.building = False
        self._hashed = 0
        self._build_peaks: list = []

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, directory: str, merkle: bool, dirty: DirtySet = None,
             build_now: bool = True) -> "TreeLog":
        """
        Open the log in ``directory``, creating it (and the directory) if
        there is none; a torn tail is cut back (``treelog_files.py``).
        A log kept without hashes (or whose ``hashes`` file is gone) and
        opened with ``merkle=True`` gets them built from its leaves (O(n),
        once): now, or with ``build_now=False`` by the caller running
        :meth:`hash_steps` (see :attr:`building`).  One opened with
        ``merkle=False`` is marked so before anything is appended (its
        hashes are rebuilt when it is opened with ``merkle=True`` again).

        :raises TreeLogError: the directory holds a log of a newer format
            version, something that is not a tree log, or a log whose
            ``leaves`` or ``offsets`` file is gone (nothing is changed).
        :raises OSError: the files cannot be opened.
        """
        dirty = dirty if dirty is not None else DirtySet(enabled=False)
        if not os.path.isdir(directory):
            os.makedirs(directory)
            dirty.new_dir(directory)
        stored = read_format(directory)
        if stored is not None:
            for name in (LEAVES_FILE, OFFSETS_FILE):
                if not os.path.exists(os.path.join(directory, name)):
                    raise TreeLogError(f"tree log {directory} has lost its {name} file: refusing it")
            # a lost hashes file is rebuilt from the leaves, never a reason to cut them
            stored = stored and os.path.exists(os.path.join(directory, HASHES_FILE))
        fds = LogFiles(directory)
        try:
            for name in (LEAVES_FILE, OFFSETS_FILE, HASHES_FILE):
                path = os.path.join(directory, name)
                if not os.path.exists(path):
                    dirty.created(path)
                fds[name] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if stored is None:
                write_format(directory, merkle)
                dirty.dir(directory)
                dirty.file(os.path.join(directory, "format"))
                stored = merkle
            log = cls(directory, stored, fds, dirty)
            log._recover()
            if merkle and not stored:
                log._start_build()
                if build_now:
                    for _ in log.hash_steps():
                        pass
            elif stored and not merkle:
                log._stop_hashes()
            return log
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise

    def _recover(self) -> None:
        n = recover(self._fds[LEAVES_FILE], self._fds[OFFSETS_FILE], self._fds[HASHES_FILE], self.merkle)
        self._cut(n)

    def _cut(self, n: int) -> None:
        """Cut every file to ``n`` leaves' worth and reload what is kept in memory."""
        self._leaves_end = end_of(self._fds[OFFSETS_FILE], n)
        sizes = {LEAVES_FILE: self._leaves_end, OFFSETS_FILE: 8 * n}
        if self.merkle:
            sizes[HASHES_FILE] = nodes(n) * HASH_SIZE
        for name, size in sizes.items():
            fd = self._fds[name]
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
                self._dirty.file(self.path(name))
        self._n = n
        self._peaks = []
        if self.building and self._hashed > n:  # cut below the hashes built: build anew
            self._start_build()
        if self.merkle:
            start = 0
            for bit in reversed(range(n.bit_length())):
                if n >> bit & 1:
                    self._peaks.append(self.subtree(start, 1 << bit))
                    start += 1 << bit

    def _start_build(self) -> None:
        """Hashes are to be built from the leaves (``format`` still says none until they are)."""
        os.ftruncate(self._fds[HASHES_FILE], 0)
        self.building, self._hashed, self._build_peaks = True, 0, []

    def hash_steps(self, chunk: int = None):
        """
        Build the hashes of a log opened with ``build_now=False``: a
        generator, each step hashing at most ``chunk`` leaves (one read of
        them, one write).  Leaves appended meanwhile are hashed too; the
        last step marks the log as keeping hashes (``format``).  Until
        then :attr:`merkle` is false, and roots and proofs are answered for
        the first :attr:`hashed` leaves.  It ends early if the log is closed.
        """
        chunk = chunk or _CATCH_UP
        while self.building and self._fds:
            if self._hashed < self._n:
                first, last = self._hashed + 1, min(self._n, self._hashed + chunk)
                out: list = []
                hash_leaves(self.leaves(first, last), first - 1, self._build_peaks, out)
                pwrite_all(self._fds[HASHES_FILE], b"".join(out), nodes(first - 1) * HASH_SIZE)
                self._hashed = last
            if self._hashed == self._n:
                self.merkle, self._peaks, self.building = True, self._build_peaks, False
                self._dirty.file(self.path(HASHES_FILE))
                self._write_format()
                return
            yield None

    def _stop_hashes(self) -> None:
        self.merkle, self._peaks = False, []
        self._write_format()

    def _write_format(self) -> None:
        write_format(self.directory, self.merkle)
        self._dirty.file(self.path("format"))
        self._dirty.dir(self.directory)

    # -- state ---------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of leaves (the last leaf's number)."""
        return self._n

    @property
    def hashed(self) -> int:
        """How many leaves roots and proofs cover: :attr:`size`, less while hashes are built."""
        return self._n if self.merkle else self._hashed if self.building else 0

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def paths(self) -> list:
        """The files a sync must flush (the directory too, after :meth:`open` created them)."""
        names = [LEAVES_FILE, OFFSETS_FILE] + ([HASHES_FILE] if self.merkle else [])
        return [self.path(name) for name in names]

    def filenos(self) -> list:
        """The descriptors of :meth:`paths`, same order (valid until :meth:`close`)."""
        names = [LEAVES_FILE, OFFSETS_FILE] + ([HASHES_FILE] if self.merkle else [])
        return [self._fds[name] for name in names]

    def close(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def park(self) -> None:
        """Close the files, staying usable: each opens again when next used (not while :attr:`building`)."""
        fds = self._fds
        if isinstance(fds, LogFiles) and not self.building:
            fds.parked = True
            for fd in list(fds.values()):
                os.close(fd)
            fds.clear()

    def __enter__(self) -> "TreeLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------

    def append(self, leaves: list) -> int:
        """
        Append ``leaves`` (bytes each) as leaves ``size + 1 ...``: one
        write per file.  If a write fails the files are cut back to before
        the call and the error raised (the log is unchanged).

        :return: the new size.
        :raises OSError: a write failed (e.g. ``ENOSPC``).
        """
        if not leaves:
            return self._n
        return self.append_built(*build(leaves, self._n, self._peaks if self.merkle else None,
                                       self._leaves_end))

    @property
    def leaves_end(self) -> int:
        """Where the next leaf's bytes go in the leaves file (:func:`build` needs it)."""
        return self._leaves_end

    @property
    def frontier(self):
        """What :func:`build` needs to hash the next leaves: the peaks, or None without hashes."""
        return list(self._peaks) if self.merkle else None

    def append_built(self, joined: bytes, offsets: bytes, hashes: bytes, peaks) -> int:
        """
        :meth:`append` of leaves already made by :func:`build` from this
        log's :attr:`size`, :attr:`frontier` and :attr:`leaves_end` (possibly
        in another process): ``joined`` leaves, their packed ends
        ``offsets``, the new post-order ``hashes`` and the new peaks (both
        unused without hashes).

        :raises ValueError: they were not built from this log's end (the log is unchanged).
        :raises OSError: a write failed (the log is unchanged).
        """
        n, count = self._n, len(offsets) // OFFSET.size
        if not count:
            return n
        end = OFFSET.unpack_from(offsets, len(offsets) - OFFSET.size)[0]
        if len(offsets) % OFFSET.size or end != self._leaves_end + len(joined):
            raise ValueError("leaves not built from the end of this log")
        try:
            pwrite_all(self._fds[LEAVES_FILE], joined, self._leaves_end)
            pwrite_all(self._fds[OFFSETS_FILE], offsets, OFFSET.size * n)
            if self.merkle:
                pwrite_all(self._fds[HASHES_FILE], hashes, nodes(n) * HASH_SIZE)
        except BaseException:
            self._undo(n)
            raise
        for path in self.paths():
            self._dirty.file(path)
        self._n, self._leaves_end = n + count, end
        if self.merkle:
            self._peaks = list(peaks)
        return self._n

    def _undo(self, n: int) -> None:
        sizes = {LEAVES_FILE: self._leaves_end, OFFSETS_FILE: 8 * n, HASHES_FILE: nodes(n) * HASH_SIZE}
        for name in self.paths():
            name = os.path.basename(name)
            try:
                os.ftruncate(self._fds[name], sizes[name])
            except OSError:
                pass  # the next open cuts the torn tail

    def truncate(self, n: int) -> None:
        """
        Cut the log to its first ``n`` leaves (recovery: a log ahead of the
        records the daemon acknowledged).

        :raises ValueError: ``n`` is negative or beyond :attr:`size`.
        """
        if not 0 <= n <= self._n:
            raise ValueError(f"cannot truncate a log of {self._n} leaves to {n}")
        self._cut(n)

    # -- reading ---------------------------------------------------------------------

    def leaf(self, n: int) -> bytes:
        """The bytes of leaf ``n`` (1-based). :raises IndexError: no such leaf."""
        if not 1 <= n <= self._n:
            raise IndexError(f"no leaf {n} in a log of {self._n}")
        return self.leaves(n, n)[0]

    def leaves(self, first: int, last: int) -> list:
        """
        Leaves ``first`` to ``last``, both included (1-based): two reads.

        :raises IndexError: unless ``1 <= first <= last <= size``.
        """
        if not 1 <= first <= last <= self._n:
            raise IndexError(f"no leaves {first}..{last} in a log of {self._n}")
        count = last - first + 1
        offsets_fd = self._fds[OFFSETS_FILE]
        if first == 1:
            raw = pread_exact(offsets_fd, 8 * count, 0)
            start = 0
        else:
            raw = pread_exact(offsets_fd, 8 * (count + 1), 8 * (first - 2))
            start = OFFSET.unpack_from(raw)[0]
            raw = raw[8:]
        ends = [e for (e,) in OFFSET.iter_unpack(raw)]
        data = pread_exact(self._fds[LEAVES_FILE], ends[-1] - start, start)
        base, result = start, []
        for end in ends:  # each leaf cut out alone (never a copy of the rest: quadratic)
            result.append(data[start - base:end - base])
            start = end
        return result

    def _need_hashes(self, n: int) -> None:
        if not (self.merkle or self.building):
            raise TreeLogError(f"tree log {self.directory} keeps no hashes (opened with merkle=False)")
        if not 0 <= n <= self.hashed:
            raise ValueError(f"tree size {n} is beyond the log's {self.hashed} hashed leaves")

    def subtree(self, start: int, size: int) -> bytes:
        """
        The hash of the complete subtree of ``size`` (a power of two) leaves
        from 0-based ``start`` (a multiple of ``size``): one read.
        """
        if size < 1 or size & (size - 1) or start % size or start < 0 or start + size > self._n:
            raise ValueError(f"no complete subtree of {size} leaves at {start} in a log of {self._n}")
        return pread_exact(self._fds[HASHES_FILE], HASH_SIZE, hash_index(start, size) * HASH_SIZE)

    def root(self, n: int = None) -> bytes:
        """The RFC 9162 root of the first ``n`` leaves (default: all)."""
        n = self.hashed if n is None else n
        self._need_hashes(n)
        if n == self._n and self.merkle:
            if not self._peaks:
                return EMPTY_ROOT
            result = self._peaks[-1]
            for peak in reversed(self._peaks[:-1]):
                result = rfc9162.node_hash(peak, result)
            return result
        return rfc9162.root(self, n)

    def inclusion(self, n: int, tree_size: int) -> list:
        """The audit path of leaf ``n`` (1-based) in the tree of ``tree_size`` leaves."""
        self._need_hashes(tree_size)
        if not 1 <= n <= tree_size:
            raise ValueError(f"leaf {n} is not in a tree of {tree_size} leaves")
        return rfc9162.inclusion_path(self, n - 1, tree_size)

    def consistency(self, m: int, n: int) -> list:
        """The consistency proof from the tree of ``m`` leaves to that of ``n`` (``0 < m <= n``)."""
        self._need_hashes(n)
        return rfc9162.consistency_path(self, m, n)
