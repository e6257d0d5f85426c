"""
Bounded caches: open descriptors (shared segments and block metadata) and loaded record tables.

Both are least-recently-used maps that skip entries in use when they evict,
so they may briefly hold more than their bound while everything is busy.
"""

import collections
import errno
import os

import attr

from reduct_twisted.storage.disk.packed import read_record
from reduct_twisted.storage.entry_log import LogBook
from reduct_twisted.storage.usage import Usage


class _Lru:
    """
    An ordered map that evicts its least recently used idle entries.

    Subclasses say what "idle" means (:meth:`_busy`) and what eviction does
    (:meth:`_drop`).

    :param capacity: how many entries to keep when all are idle.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _touch(self, key, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        # The entry just used is about to be used by the caller: keep it.
        self._shrink(keep=key)

    def _shrink(self, keep=None) -> None:
        items = self._items
        excess = len(items) - self.capacity
        if excess <= 0:
            return
        # From the least recently used end, without copying the keys: the
        # busy ones met on the way go back to the front in their order.
        skipped = []
        while excess > 0 and items:
            key, value = items.popitem(last=False)
            if key == keep or self._busy(value):
                skipped.append((key, value))
            else:
                self._drop(value)
                excess -= 1
        for key, value in reversed(skipped):
            items[key] = value
            items.move_to_end(key, last=False)

    def _busy(self, value) -> bool:
        raise NotImplementedError

    def _drop(self, value) -> None:
        raise NotImplementedError


@attr.s(eq=False, slots=True)
class FdSlot:
    """
    One cached descriptor.

    :ivar path: the file it refers to.
    :ivar fd: the descriptor (opened read-write).
    :ivar users: allocations currently holding it.
    :ivar dead: closed as soon as the last user releases it.
    """

    path: str = attr.ib()
    fd: int = attr.ib()
    users: int = attr.ib(default=0)
    dead: bool = attr.ib(default=False)


#: Of the descriptors opened while full, every this many goes in as most recent.
WARM_EVERY = 32


class FdCache(_Lru):
    """
    Descriptors of shared segments and ``.meta`` files by path; a descriptor
    with users stays open.  One opened while the cache is full goes in as the
    least recent (the next to close unless used again), every
    :data:`WARM_EVERY`-th as the most recent: writes cycling over more files
    than it holds (spread over 10,000 entries) keep most of it from one cycle
    to the next, where plain LRU closed each just before its next use.

    :param capacity: how many idle descriptors to keep open.
    """

    _opened = 0  # descriptors opened so far

    def acquire(self, path: str, create: bool = True) -> FdSlot:
        """
        Open (or reuse) ``path`` read-write (``create``: creating it, else
        ``FileNotFoundError``) and count one user.  :return: the slot; give
        it back with :meth:`release`.
        """
        items = self._items
        slot = items.get(path)
        cold = slot is None and len(items) >= self.capacity
        if slot is None:
            flags = os.O_RDWR | os.O_CREAT if create else os.O_RDWR
            slot = FdSlot(path, os.open(path, flags, 0o644))
            self._opened += 1
        slot.users += 1
        if cold and self._opened % WARM_EVERY:
            items[path] = slot
            items.move_to_end(path, last=False)  # the next one to close
            self._shrink(keep=path)
        else:
            self._touch(path, slot)
        return slot

    def release(self, slot: FdSlot) -> None:
        """
        Drop one user of ``slot``; close it if it was forgotten meanwhile.

        :param slot: a slot from :meth:`acquire`.
        """
        slot.users -= 1
        if slot.dead and slot.users == 0:
            os.close(slot.fd)
        else:
            self._shrink()

    def forget_under(self, directory: str) -> None:
        """
        Stop caching every descriptor of a file in or below ``directory``.

        Idle descriptors are closed now, busy ones on their last release.

        :param directory: an absolute directory path (e.g. a removed bucket).
        """
        prefix = directory.rstrip(os.sep) + os.sep
        for path in [p for p in self._items if p.startswith(prefix)]:
            self.forget(path)

    def forget(self, path: str) -> None:
        """Stop caching the descriptor of file ``path`` (see :meth:`forget_under`)."""
        slot = self._items.pop(path, None)
        if slot is not None:
            self._drop(slot)

    def close(self) -> None:
        """Close every cached descriptor that has no user."""
        for path in list(self._items):
            self.forget(path)

    def _busy(self, slot: FdSlot) -> bool:
        return slot.users > 0

    def _drop(self, slot: FdSlot) -> None:
        if slot.users:
            slot.dead = True
        else:
            os.close(slot.fd)


class TableCache(_Lru):
    """
    Which blocks have their record table in memory, by recency of use,
    bounded by bytes: the sum of the tables' estimated memory
    (``Block.table_bytes``: records × a per-record overhead plus their
    label and content-type characters) stays within :attr:`capacity`.

    Evicting a block drops its table (``block.unload()``); blocks with
    records being written are never evicted, but their tables count toward
    the total (so they push idle tables out first).  A table's size is
    taken when it is used and again when the engine changes it
    (:meth:`resized`: a record reserved, relabelled or removed).

    Scans (queries, removals, record lists) load tables through
    :meth:`scan` instead: such a table is kept apart, at most
    :attr:`scan_capacity` of them, and does not push the tables of blocks
    being written and read out of the LRU order.  A query over a cold
    entry thus holds one table at a time, whatever its length; the memory
    of loaded tables is about ``capacity`` plus those few scanned tables
    (plus tables being written beyond the bound, if ever).

    :param capacity: how many bytes of tables to keep loaded.
    :param scan_capacity: how many tables loaded only by scans to keep.
    :ivar total: the estimated bytes of the tables in the LRU (as of their
        last use or change; scanned tables are not counted).
    """

    def __init__(self, capacity: int, scan_capacity: int = 1) -> None:
        super().__init__(capacity)
        self.scan_capacity = scan_capacity
        self._scanned: collections.OrderedDict = collections.OrderedDict()
        #: block -> the bytes counted for it in ``total``.
        self._sizes: dict = {}
        self.total = 0
        #: The block last moved to the most recent end (``None``: not known).
        self._last = None

    def use(self, block) -> None:
        """Make sure ``block``'s table (a ``Block``'s) is loaded; mark it most recently used."""
        if block.table is None or block.partial:
            block.load()
        elif block is self._last:
            return  # the most recently used already (a batch writing into it)
        self._scanned.pop(block, None)
        self._touch(block, block)

    def append(self, block) -> None:
        """
        :meth:`use` for records after ``block``'s last: a table not loaded
        is not read, the records go into a partial one (``Block.open_for_append``).
        """
        if block.table is None:
            block.open_for_append()
        elif block is self._last:
            return
        self._scanned.pop(block, None)
        self._touch(block, block)

    def resized(self, block) -> None:
        """
        ``block``'s table changed (records added, relabelled or removed):
        count its new size, evicting other idle tables if over the bound.

        :param block: a block whose table is loaded.
        """
        if block in self._sizes:
            self._count(block)
            self._shrink(keep=block)

    def scan(self, block) -> None:
        """
        Make sure ``block``'s table is loaded for a scan: a table already
        cached stays where it is in the LRU order; one loaded now is kept
        with the last few scanned tables only.

        :param block: a :class:`~reduct_twisted.storage.block.Block`.
        """
        if block in self._items:
            if block.partial:  # the rest of its table, where it is in the LRU order
                block.load()
                self._count(block)
                self._shrink(keep=block)
            return
        if block.table is None:
            block.load()
        self._scanned[block] = block
        self._scanned.move_to_end(block)
        while len(self._scanned) > self.scan_capacity:
            oldest = next(iter(self._scanned))
            del self._scanned[oldest]
            if oldest.started:
                # Being written (a scan never gets here first; be safe).
                self._touch(oldest, oldest)
            else:
                oldest.unload()

    def discard(self, block) -> None:
        """
        Forget ``block`` (it was removed) and drop its table.

        :param block: a block that may or may not be cached.
        """
        self._forget(block)
        self._scanned.pop(block, None)
        block.unload()

    def _count(self, block) -> None:
        size = block.table_bytes
        self.total += size - self._sizes.get(block, 0)
        self._sizes[block] = size

    def _forget(self, block) -> None:
        if block is self._last:
            self._last = None
        if self._items.pop(block, None) is not None:
            self.total -= self._sizes.pop(block)

    def _touch(self, key, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        self._last = key
        self._count(key)
        # The table just used is about to be used by the caller: keep it.
        self._shrink(keep=key)

    def _shrink(self, keep=None) -> None:
        excess = self.total - self.capacity
        if excess <= 0:
            return
        victims = []
        # Oldest first; stop as soon as enough is found (no copy of the map).
        for block in self._items:
            if excess <= 0:
                break
            if block is not keep and not block.started:
                victims.append(block)
                excess -= self._sizes[block]
        for block in victims:
            self._forget(block)
            block.unload()


@attr.s(eq=False, slots=True)
class Context:
    """
    What every bucket and entry of one engine shares.

    :ivar tables: the loaded record tables.
    :ivar fds: the open shared-segment and metadata descriptors.
    :ivar trash: ``trash(paths)`` moves files or directories out of the way
        at once and has them deleted later (see ``StorageEngine``).
    :ivar dirty: the :class:`~reduct_twisted.storage.disk.durability.DirtySet`.
    :ivar recovery: the :class:`~reduct_twisted.storage.disk.recovery.Recovery` of the open.
    :ivar reserve: the :class:`~reduct_twisted.storage.disk.reserve.Reserve` (space
        for removals on a full disk).
    :ivar usage: the ``usage.Usage`` (running total, storage cap).
    :ivar space: the ``usage.FreeSpace`` of the data directory, or None.
    :ivar digests: records get a SHA-256 (``integrity`` is not ``off``).
    :ivar sync: the engine's ``sync`` (``numbers.py`` flushes counters), or None.
    :ivar logs: the entries' integrity logs (``entry_log.LogBook``).
    :ivar run: the pending small records of batched writes (``runs.WriteRun``), or None.
    """

    tables: TableCache = attr.ib()
    fds: FdCache = attr.ib()
    trash = attr.ib()
    dirty = attr.ib()
    recovery = attr.ib()
    reserve = attr.ib()
    usage = attr.ib(factory=Usage)
    space = attr.ib(default=None)
    digests: bool = attr.ib(default=True)
    sync = attr.ib(default=None)
    logs = attr.ib(default=None)
    run = attr.ib(default=None)

    def __attrs_post_init__(self) -> None:
        if self.logs is None:
            self.logs = LogBook(self.dirty, reserve=self.reserve)

    def settle(self) -> None:
        """
        Flush the pending run (``runs.py``): called first by every path
        that reads, rewrites, removes, renames or syncs block files.
        """
        run = self.run
        if run is not None and run.pending:
            run.flush()


def read_whole(fds: FdCache, view) -> bytes:
    """
    The whole content of a finished record, in one ``pread``.

    A compressed record's frame is read and decompressed (``disk/packed.py``).
    A shared segment is read through ``fds`` (no open/close per read); a
    private one (``<block>-<ts>.blk``: its path may be reused by a later
    record after a removal, so it is never cached) is opened for the read.

    :param fds: the engine's descriptor cache.
    :param view: a ``RecordView`` from the engine, used at once.
    :raises OSError: the file is missing or shorter than the record.
    """
    record = view.record
    size, offset = record.size, record.offset
    if record.zsize is not None:  # compressed: one frame, decompressed whole
        return read_record(view.path, offset, record.zsize, size)
    slot = None
    if "-" not in record.segment:
        try:
            slot = fds.acquire(view.path, create=False)
        except PermissionError:
            pass  # read-only file system or file: read it as a private one
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
    if slot is None:
        fd = os.open(view.path, os.O_RDONLY)
        try:
            data = os.pread(fd, size, offset)
        finally:
            os.close(fd)
    else:
        try:
            data = os.pread(slot.fd, size, offset)
        finally:
            fds.release(slot)
    if len(data) != size:
        raise OSError(f"short read from {view.path}: {len(data)} of {size} bytes")
    return data
