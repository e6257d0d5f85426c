"""
An entry: the ordered blocks of one time series, block rotation and the
placement of belated records (spec §4.2, §4.3).
"""

import bisect
import contextlib
import os

from reduct_twisted.errors import Conflict
from reduct_twisted.storage.block import Block
from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.disk.holes import punch_hole
from reduct_twisted.storage.entry_open import load_entry
from reduct_twisted.storage.numbers import Numbers
from reduct_twisted.storage.records import FINISHED

#: Records up to this many declared bytes share their block's data file.
SMALL_RECORD_MAX = 1 << 20

#: The fields of the EntryInfo object, in answer order; an entry has an
#: attribute or property of each name, so the object is read off the entry.
INFO_FIELDS = ("name", "size", "record_count", "block_count", "oldest_record", "latest_record",
               "status")


class Tally:
    """A bucket's running sum of its entries' ``size`` (kept by ``Entry.size``)."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0


class Entry:
    """
    The blocks of one entry, ordered by block id, with running totals.

    :param name: the entry name.
    :param directory: the entry directory.
    :param context: the engine-wide :class:`~reduct_twisted.storage.cache.Context`.
    :ivar blocks: the blocks in ascending id order.
    :ivar size: the ``size`` statistics (data plus metadata bytes).
    :ivar record_count: records of any state.
    :ivar removed: the entry was dropped from its bucket.
    :ivar numbers: its entry-number counter (``numbers.py``).
    :ivar index: block id -> ``(block, version, row)`` of its block index
        (``indexing.py``); ``index_stale``: the file does not hold them.
    """

    def __init__(self, name: str, directory: str, context) -> None:
        self.name = name
        self.directory = directory
        self.context = context
        self.blocks: list = []
        self._ids: list = []
        self.removed = False
        self._size = 0
        self.record_count = 0
        self.numbers = Numbers()
        self.index, self.index_stale = {}, False

    @property
    def size(self) -> int:
        """The ``size`` statistics; each change reaches the engine's ``usage.Usage``."""
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        if not self.removed:
            delta = value - self._size
            self.context.usage.stored += delta
            if self.tally is not None:  # the bucket's sum (Bucket.size)
                self.tally.size += delta
        self._size = value

    #: The bucket's running sum of its entries' sizes (a ``Tally``), or None.
    tally = None

    #: ``READY``: removal is synchronous, nothing is ever seen ``DELETING``
    #: (spec 1.20 §5.4).
    status = "READY"

    @classmethod
    def load(cls, name: str, directory: str, context, tally=None, children=None) -> "Entry":
        """
        Build an entry from its directory: each block from its row of the
        block index (``indexing.py``), else by reading its ``.meta`` file.

        Block files no metadata refers to (data of records whose write never
        finished, halves of an interrupted removal), blocks without records
        and ``<block file>.tmp`` leftovers are trashed; damaged blocks are
        quarantined (see :mod:`~reduct_twisted.storage.disk.recovery`).  Child
        entry directories are skipped (the bucket loads them).  Any other
        name is not ours (``disk/layout.py``): it is reported and left.

        :param name: the entry name (``directory``: its directory; ``context``: the engine's).
        :param children: a list the names of the child entry directories
            found are appended to (in listing order), or None.
        :return: the entry, possibly without blocks.
        :raises UnsupportedMeta: a block has a newer format version.
        """
        entry = cls(name, directory, context)
        entry.tally = tally
        return load_entry(entry, children)

    @property
    def block_count(self) -> int:
        """The number of blocks."""
        return len(self.blocks)

    @property
    def oldest_record(self) -> int:
        """The first block's id (spec §4.5); ``0`` without blocks."""
        return self.blocks[0].block_id if self.blocks else 0

    @property
    def latest_record(self) -> int:
        """The greatest timestamp of the last block; ``0`` without blocks."""
        return self.blocks[-1].latest_ts if self.blocks else 0

    def info(self) -> dict:
        """:return: the EntryInfo object of a bucket answer."""
        return {field: getattr(self, field) for field in INFO_FIELDS}

    def block_for(self, ts: int):
        """:return: the block whose range holds ``ts`` (greatest id ≤ ``ts``), or ``None``."""
        index = bisect.bisect_right(self._ids, ts) - 1
        return self.blocks[index] if index >= 0 else None

    def blocks_from(self, ts: int):
        """:return: the blocks that may hold records at ``ts`` or later, ascending."""
        index = max(bisect.bisect_right(self._ids, ts) - 1, 0)
        return self.blocks[index:]

    def load_block(self, block: Block) -> Block:
        """Load ``block``'s record table (bounded by the table cache); :return: ``block``."""
        self.context.settle()  # pending batched records are written first (``runs.py``)
        self.context.tables.use(block)
        return block

    def scan_block(self, block: Block) -> Block:
        """Load ``block``'s record table for a scan (``TableCache.scan``); :return: ``block``."""
        self.context.settle()
        self.context.tables.scan(block)
        return block

    def finished_in(self, start: int, stop: int, limit: int) -> list:
        """:return: ``(ts, size)`` of at most ``limit`` finished records in ``[start, stop)``."""
        found = []
        for block in self.blocks_from(start):
            if block.block_id >= stop:
                break
            for record in self.scan_block(block).records_from(start):
                if record.ts >= stop or len(found) >= limit:
                    return found
                if record.state == FINISHED:
                    found.append((record.ts, record.size))
        return found

    def find(self, ts: int):
        """:return: ``(block, record)`` of the record at ``ts``, or ``None``."""
        block = self.block_for(ts)
        if block is None or not block.first_ts <= ts <= block.latest_ts:
            return None
        record = self.load_block(block).get(ts)
        return None if record is None else (block, record)

    def reserve(self, ts: int, length, content_type: str, labels: dict, settings):
        """
        Choose the block for a new record (creating one if needed) and add
        the record to it in state STARTED.

        :param ts: the record's timestamp.
        :param length: its declared length, ``None`` if unknown.
        :param content_type: its content type; ``labels``: its labels.
        :param settings: the bucket's current ``settings.BucketSettings``.
        :return: ``(block, record)``.
        :raises Conflict: a record (finished or not) already has ``ts``.
        """
        block = self._place(ts, length or 0, settings)
        if block is None:
            block = Block.new(self.directory, ts)
            self._insert(bisect.bisect_left(self._ids, ts), block)
        # Not load_block: a batch's run stays pending.  After the last record
        # no timestamp can clash: the table is not read (Block.open_for_append).
        if ts > block.latest_ts:
            self.context.tables.append(block)
        else:
            self.context.tables.use(block)
        if block.get(ts) is not None:
            raise Conflict(f"A record with timestamp {ts} already exists")
        small = length is not None and length <= SMALL_RECORD_MAX
        size, count = block.size, block.record_count
        try:
            record = block.reserve(ts, length, content_type, labels, small)
        finally:
            # What _accounting does, inline: this runs for every record.
            self.size += block.size - size
            self.record_count += block.record_count - count
        self.context.tables.resized(block)
        return block, record

    def _place(self, ts: int, content_size: int, settings):
        # Returns the existing block for ``ts`` or None for "open a new block at ts".
        if not self.blocks:
            return None
        last = self.blocks[-1]
        if ts > last.latest_ts:
            full = last.record_count + 1 > settings.max_block_records
            if full or last.data_size + content_size > settings.max_block_size:
                return None
            return last
        if ts < self.blocks[0].block_id:
            return None
        return self.block_for(ts)

    def finish(self, block: Block, record, size: int, crc=None, digest=None) -> None:
        """
        Commit a STARTED record with ``size`` content bytes, ``zlib.crc32``
        ``crc`` and SHA-256 ``digest`` (or ``None``); it gets its number.

        :raises OSError: the ``.meta`` append failed (see ``Block.finish``).
        """
        before, count = block.size, block.record_count
        record.crc, record.digest, record.number = crc, digest, self.numbers.take()
        try:
            line = block.finish(record, size, self.context.fds)
        except OSError:
            self.numbers.give_back(record.number)
            record.number = None
            raise
        finally:
            # What _accounting does, inline: this runs for every record.
            self.size += block.size - before
            self.record_count += block.record_count - count
        # The leaf's fields as written: the line (the worker makes leaves from lines).
        self.context.logs.committed(self, None, line, (record.number,))

    def forget(self, block: Block, record) -> None:
        """
        Make a STARTED record vanish; a block left empty is removed.

        Its private segment (if any) is trashed; a shared segment shrinks
        when the record was at its tail, and otherwise gets a hole punched
        where the record was (see :mod:`~reduct_twisted.storage.disk.holes`).

        :param block: its block (``record``: the record).
        """
        self.context.settle()
        shared = block.path(blockfile.shared_name(block.block_id))
        with self._accounting(block):
            block.forget(record)
        self.context.tables.resized(block)
        if record.segment != blockfile.shared_name(block.block_id):
            self.context.trash([block.path(record.segment)])
        elif record.size:
            # Best effort: the bytes are unreferenced either way.
            with contextlib.suppress(OSError):
                slot = self.context.fds.acquire(shared)
                try:
                    if block.tail < record.offset + record.size:
                        os.ftruncate(slot.fd, block.tail)
                    else:
                        punch_hole(slot.fd, record.offset, record.size)
                finally:
                    self.context.fds.release(slot)
        if not block.record_count:
            self.remove_block(block)

    def drop_records(self, block: Block, records, meta_length: int) -> None:
        """
        Account for FINISHED ``records`` removed from ``block``, whose
        ``.meta`` was just rewritten without them (``meta_length`` bytes):
        they leave the table and the statistics, and their private
        segments are trashed (shared-segment bytes stay, unreferenced).

        :param block: a block of this entry.
        :param records: records of its loaded table.
        :param meta_length: the length of the new ``.meta``.
        """
        self.context.settle()
        self.context.fds.forget(block.meta_path)
        block.meta_length = meta_length
        with self._accounting(block):
            block.drop(records)
        self.context.tables.resized(block)
        shared = block.shared_segment  # shared and packed bytes stay, unreferenced
        self.context.trash([block.path(r.segment) for r in records
                            if r.segment != shared and r.zsize is None])

    def relabel_records(self, block: Block, labels: dict, meta_length: int) -> None:
        """
        Give FINISHED records of ``block`` new label sets; its ``.meta`` was
        just rewritten with them (``meta_length`` bytes).

        :param block: a block of this entry, its table loaded.
        :param labels: ts -> the complete new label set.
        :param meta_length: the length of the new ``.meta``.
        """
        self.context.settle()
        self.context.fds.forget(block.meta_path)
        block.meta_length = meta_length
        with self._accounting(block):
            for ts, new in labels.items():
                block.relabel(block.table[ts], new)
        self.context.tables.resized(block)

    def relocate(self, name: str, directory: str) -> None:
        """The entry's directory was renamed: take the new ``name`` and ``directory``."""
        self.context.settle()
        self.name, self.directory = name, directory
        for block in self.blocks:
            row = self.index.get(block.block_id, (None, None, None))
            block.relocate(directory)
            if row[:2] == (block, block.version - 1):  # its files are the same: the row holds
                self.index[block.block_id] = (block, block.version, row[2])

    def remove_oldest_block(self):
        """:return: the first block, removed unless a record of it is being written; or ``None``."""
        self.context.settle()  # FIFO eviction: a batch's pending records are stored first
        if not self.blocks or self.blocks[0].started:
            return None
        block = self.blocks[0]
        try:
            self.remove_block(block)
        except OSError:  # the number counter could not be saved: kept
            return None
        return block

    def remove_block(self, block: Block) -> None:
        """
        Remove ``block`` and trash its files, the ``.meta`` first: once it is
        gone the block no longer exists, and leftover segments of an
        interrupted removal are orphans the next open trashes.

        :param block: a block of this entry without STARTED records.
        :raises OSError: the number counter could not be saved (nothing removed).
        """
        self.context.settle()
        self.context.logs.before_remove(self, block=block)
        self.numbers.keep(self.directory, block.top_number, self.context)
        index = self.blocks.index(block)
        del self.blocks[index], self._ids[index]
        self.size -= block.size
        self.record_count -= block.record_count
        self._release(block)
        self.context.trash(block.files())

    def detach(self) -> None:
        """Mark the entry and its blocks removed, release their tables and descriptors
        (the caller trashes the whole directory)."""
        self.context.settle()
        if not self.removed:
            self.context.usage.stored -= self._size
            if self.tally is not None:
                self.tally.size -= self._size
        self.removed = True
        self.context.logs.close(self)
        for block in self.blocks:
            self._release(block)

    def _release(self, block: Block) -> None:
        block.removed = True
        self.context.tables.discard(block)
        for name in (blockfile.shared_name(block.block_id), blockfile.meta_name(block.block_id)):
            self.context.fds.forget(block.path(name))

    def _insert(self, index: int, block: Block) -> None:
        self.blocks.insert(index, block)
        self._ids.insert(index, block.block_id)
        self.size += block.size
        self.record_count += block.record_count

    @contextlib.contextmanager
    def _accounting(self, block: Block):
        # Carries a block's size and count changes over to the entry totals.
        size, count = block.size, block.record_count
        try:
            yield
        finally:
            self.size += block.size - size
            self.record_count += block.record_count - count
