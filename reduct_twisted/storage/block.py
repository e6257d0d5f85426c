"""
A block: an always-present summary plus a record table loaded on demand.

The summary is what statistics, rotation, quotas and query planning need;
the table (records by timestamp plus their sorted timestamps) is read from
the block's ``.meta`` file only when a record of the block is looked up,
and is dropped again by the engine's :class:`~reduct_twisted.storage.cache.TableCache`.
Records after the block's last go to a partial table, the rest not read
(:meth:`Block.open_for_append`: spread writes reloaded a table a record).
"""

import bisect
import contextlib
import os

import attr

from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.records import FINISHED, REMOVED, STARTED, Record, RecordView
from reduct_twisted.storage.tablesize import (  # noqa: F401 (importable from here)
    LABEL_OVERHEAD,
    RECORD_OVERHEAD,
    record_bytes,
    release,
    table_estimate,
)


def _meta_size(record: Record) -> int:
    return blockfile.record_meta_size(
        record.ts, record.offset, record.offset + record.size, record.content_type, record.labels
    )


@attr.s(eq=False, slots=True)
class Block:
    """
    One block of an entry.

    :ivar directory: the entry directory holding the block's files.
    :ivar block_id: the timestamp that opened the block.
    :ivar record_count: records of any state.
    :ivar data_size: content bytes of all records (a compressed record's frame).
    :ivar meta_size: the metadata part of the ``size`` statistics.
    :ivar first_ts: smallest record timestamp.
    :ivar latest_ts: greatest record timestamp.
    :ivar tail: end of the used part of the shared segment.
    :ivar shared_live: content bytes of the records in the shared segment.
    :ivar private_ts: timestamps of the records that have a private segment.
    :ivar started: records still being written (they pin the table).
    :ivar meta_length: bytes in the ``.meta`` file (``0``: not created yet).
    :ivar table: records by timestamp, or ``None`` when not loaded.
    :ivar partial: the table holds only records added after the block's last
        (:meth:`open_for_append`: those numbered above ``partial_from``).
    :ivar table_bytes: the estimated memory of the loaded table
        (``tablesize.py``; ``0`` when not loaded), kept up to date as
        records are added, relabelled and removed.
    :ivar sharing: the table's label ``dict`` objects that several records
        use (``tablesize.py``), or None.
    :ivar order: the table's timestamps in ascending order.
    :ivar removed: the block was removed from its entry.
    :ivar shared_known: the shared segment's creation was already reported
        to the dirty set (or it existed at load).
    :ivar packed: names of the packed segments its compressed records are in.
    :ivar packed_count: records that are compressed (``compress.py``).
    :ivar version: grows with every change of the block's records or
        paths (a compression started before a change gives up).
    :ivar compressing: a compression of the block is under way.
    :ivar top_number: the greatest entry number of its records (``0``: none).
    :ivar unnumbered: ``[without number, without digest]`` records at load (``backfill.py``).
    """

    directory: str = attr.ib()
    block_id: int = attr.ib()
    record_count: int = attr.ib(default=0)
    data_size: int = attr.ib(default=0)
    meta_size: int = attr.ib(default=0)
    first_ts: int = attr.ib(default=0)
    latest_ts: int = attr.ib(default=0)
    tail: int = attr.ib(default=0)
    shared_live: int = attr.ib(default=0)
    private_ts: set = attr.ib(factory=set)
    started: int = attr.ib(default=0)
    meta_length: int = attr.ib(default=0)
    table = attr.ib(default=None)
    order = attr.ib(default=None)
    partial: bool = attr.ib(default=False)
    partial_from: int = attr.ib(default=0)
    table_bytes: int = attr.ib(default=0)
    sharing = attr.ib(default=None)
    removed: bool = attr.ib(default=False)
    shared_known: bool = attr.ib(default=False)
    packed: set = attr.ib(factory=set)
    packed_count: int = attr.ib(default=0)
    version: int = attr.ib(default=0)
    compressing: bool = attr.ib(default=False)
    top_number: int = attr.ib(default=0)
    unnumbered: list = attr.ib(factory=lambda: [0, 0])
    # Derived from directory and block_id, computed once (hot paths use them).
    shared_segment: str = attr.ib(init=False, default=None, repr=False)
    shared_path: str = attr.ib(init=False, default=None, repr=False)
    meta_path: str = attr.ib(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self.shared_segment = blockfile.shared_name(self.block_id)
        self.shared_path = os.path.join(self.directory, self.shared_segment)
        self.meta_path = os.path.join(self.directory, blockfile.meta_name(self.block_id))

    def relocate(self, directory: str) -> None:
        """The entry directory was renamed to ``directory``: recompute the paths."""
        self.directory = directory
        self.version += 1
        self.__attrs_post_init__()

    @classmethod
    def new(cls, directory: str, block_id: int) -> "Block":
        """
        :return: an empty block with an (empty) loaded table; no file exists yet.
        """
        return cls(directory, block_id, table={}, order=[])

    @classmethod
    def from_disk(cls, directory: str, block_id: int, recovery=None, stats=None) -> "Block":
        """
        Build the summary of a block from its ``.meta`` file.

        A torn last metadata line and shared-segment bytes past the last
        committed record (writes cut short by a crash) are cut off; after
        an unclean stop ``recovery`` drops records that fail their check.
        The record table is not kept.

        :param directory: the entry directory.
        :param block_id: the id in the file name.
        :param recovery: the engine's :class:`~reduct_twisted.storage.disk.recovery.Recovery`.
        :param stats: ``os.stat`` results of the entry's block files by name
            (needed after an unclean stop).
        :return: the block; its ``record_count`` may be ``0``.
        :raises DamagedMeta: the metadata file is damaged.
        :raises UnsupportedMeta: it has a newer format version.
        """
        block = cls(directory, block_id)
        meta_path = block.meta_path
        table, valid = blockfile.read_meta(meta_path, block_id)
        if os.path.getsize(meta_path) > valid:
            os.truncate(meta_path, valid)
        if recovery is not None and table:
            valid = recovery.check_block(block, table, valid, stats or {})
        block.meta_length = valid
        for record in table.values():
            block._count(record, +1)
            block.unnumbered[0] += record.number is None
            block.unnumbered[1] += record.digest is None
        shared = block.shared_path
        if os.path.exists(shared):
            block.shared_known = True
            if os.path.getsize(shared) > block.tail:
                os.truncate(shared, block.tail)
        return block

    @property
    def size(self) -> int:
        """The block's share of the ``size`` statistics (data plus metadata)."""
        return self.data_size + self.meta_size

    @property
    def dead_bytes(self) -> int:
        """Unreferenced bytes inside the shared segment (left by aborted records)."""
        return self.tail - self.shared_live

    def stats(self) -> dict:
        """:return: the summary as shown by ``StorageEngine.block_stats``."""
        return {
            "id": self.block_id,
            "record_count": self.record_count,
            "data_size": self.data_size,
            "meta_size": self.meta_size,
            "dead_bytes": self.dead_bytes,
            "compressed": self.packed_count,
            "started": self.started,
            "loaded": self.table is not None and not self.partial,
        }

    def path(self, name: str) -> str:
        """:return: the absolute path of the block file ``name``."""
        return os.path.join(self.directory, name)

    def files(self) -> list:
        """:return: the paths of every file the block may have."""
        return [self.path(name) for name in self.file_names()]

    def file_names(self) -> list:
        """:return: the names (in the entry directory) of every file the block may have."""
        block_id = self.block_id
        return [blockfile.meta_name(block_id), blockfile.shared_name(block_id)] + [
            blockfile.private_name(block_id, ts) for ts in sorted(self.private_ts)] + sorted(self.packed)

    def load(self) -> None:
        """Read the record table from the ``.meta`` file (a partial table's records stay as they are)."""
        table = blockfile.read_meta(self.meta_path, self.block_id)[0] if self.meta_length else {}
        if self.partial:
            table.update(self.table)  # the same objects: writers hold them
            self.partial = False
        self.table, self.order = table, sorted(table)
        self.table_bytes, self.sharing = table_estimate(list(table.values()))

    def open_for_append(self) -> None:
        """An empty partial table (for records after :attr:`latest_ts`) if none is loaded."""
        if self.table is None:
            self.table, self.order, self.partial, self.partial_from = {}, [], True, self.top_number

    def unload(self) -> None:
        """Drop the record table (the summary stays)."""
        self.table = self.order = self.sharing = None
        self.table_bytes, self.partial = 0, False

    def get(self, ts: int):
        """:return: the loaded record ``ts``, or ``None``."""
        return self.table.get(ts)

    def records_from(self, ts: int):
        """:return: an iterator over the loaded records from ``ts`` on, ascending."""
        table = self.table
        return (table[t] for t in self.order[bisect.bisect_left(self.order, ts) :])

    def view(self, record: Record, last: bool = False) -> RecordView:
        """:return: a reader's view of ``record``."""
        segment = record.segment
        path = self.shared_path if segment == self.shared_segment else self.path(segment)
        return RecordView(record.copy(), path, last)

    def reserve(self, ts: int, length, content_type: str, labels: dict, small: bool) -> Record:
        """:return: a new STARTED record at ``ts`` (``length`` declared or None; ``small``: shared)."""
        if small:
            segment, offset = self.shared_segment, self.tail
        else:
            segment, offset = blockfile.private_name(self.block_id, ts), 0
        record = Record(ts, segment, offset, length or 0, content_type, dict(labels), STARTED)
        self.version += 1
        self.table[ts] = record
        bisect.insort(self.order, ts)
        self.table_bytes += record_bytes(record)
        self._count(record, +1)
        return record

    def finish(self, record: Record, size: int, fds) -> bytes:
        """
        Mark a STARTED record FINISHED with its final size and append its
        line (its ``crc``, ``number`` and ``digest`` set by the caller).

        :param size: the number of content bytes received.
        :param fds: the engine's descriptor cache (the ``.meta`` file stays open).
        :return: the line appended (``blockfile.encode_record``).
        :raises OSError: the append failed; the record stays STARTED and the
            ``.meta`` file is as before (a partial line is cut off).
        """
        line = blockfile.encode_record(record, size)
        self.append_lines(((record, size),), line, fds)
        return line

    def append_lines(self, finished, data: bytes, fds) -> None:
        """
        :meth:`finish` for several records with one write: ``data`` holds the
        lines of the ``(record, size)`` pairs of ``finished``, in order.

        :raises OSError: as :meth:`finish`; every record stays STARTED.
        """
        if not self.meta_length:
            data = blockfile.encode_header(self.block_id) + data
        # Disk first: if the append fails the records stay STARTED and a
        # partly written line is cut off so later appends stay readable.
        meta_path = self.meta_path
        try:
            blockfile.write_at(fds, meta_path, self.meta_length, data)
        except OSError:
            with contextlib.suppress(OSError):
                # If this fails too, the next append overwrites the rest.
                os.truncate(meta_path, self.meta_length)
            raise
        self.meta_length += len(data)
        self.version += 1
        for record, size in finished:
            self.top_number = max(self.top_number, record.number or 0)
            if size == record.size:
                record.state = FINISHED
                self.started -= 1
            else:
                self._count(record, -1)
                record.size, record.state = size, FINISHED
                self._count(record, +1)

    def forget(self, record: Record) -> None:
        """
        Remove a STARTED record as if it never existed.

        The shared tail moves back to the end of the last remaining record,
        so an aborted record at the tail leaves no dead bytes.

        :param record: a record of this block.
        """
        if self.partial:
            self.load()  # (the tail and the first timestamp need them all)
        self.version += 1
        del self.table[record.ts]
        self.order.remove(record.ts)
        self.table_bytes -= release(self.sharing, record)
        self._count(record, -1)
        shared = self.shared_segment
        self.tail = max(
            (r.offset + r.size for r in self.table.values() if r.segment == shared), default=0
        )
        if self.order:
            self.first_ts, self.latest_ts = self.order[0], self.order[-1]

    def drop(self, records) -> None:
        """
        Take FINISHED ``records`` out of the loaded table and the summary
        (their ``.meta`` lines are already gone) and mark them REMOVED.
        The shared tail stays where it is: a reader may still be sending
        their bytes, which must not be overwritten by a new record.

        :param records: records of this block.
        """
        self.version += 1
        for record in records:
            del self.table[record.ts]
            self.table_bytes -= release(self.sharing, record)
            self._count(record, -1)
            record.state = REMOVED
        self.order = sorted(self.table)
        if self.order:
            self.first_ts, self.latest_ts = self.order[0], self.order[-1]

    def relabel(self, record: Record, labels: dict) -> None:
        """
        Give a FINISHED ``record`` new ``labels`` (its ``.meta`` line was
        already rewritten); the metadata statistics follow.

        :param record: a record of the loaded table.
        :param labels: the complete new label set, in order.
        """
        self.version += 1
        self.meta_size += blockfile.record_meta_size(
            record.ts, record.offset, record.offset + record.size, record.content_type, labels
        ) - _meta_size(record)
        self.table_bytes -= release(self.sharing, record)
        record.labels = labels
        self.table_bytes += record_bytes(record)

    def repack(self, records) -> None:
        """
        The block's ``.meta`` was replaced by one holding ``records`` (all
        finished, some compressed: ``compress.py``): rebuild the summary
        from them; the table is dropped by the caller.
        """
        self.version += 1
        self.record_count = self.data_size = self.meta_size = 0
        self.tail = self.shared_live = self.packed_count = 0
        self.private_ts, self.packed = set(), set()
        self.shared_known = False
        for record in records:
            self._count(record, +1)

    def _count(self, record: Record, sign: int) -> None:
        # Adds (+1) or subtracts (-1) a record's share of the summary.
        self.record_count += sign
        self.data_size += sign * record.stored
        self.meta_size += sign * _meta_size(record)
        if record.state == STARTED:
            self.started += sign
        if record.zsize is not None:
            self.packed_count += sign
            if sign > 0:
                self.packed.add(record.segment)
        elif record.segment == self.shared_segment:
            self.shared_live += sign * record.size
            if sign > 0:
                self.tail = max(self.tail, record.offset + record.size)
        elif sign > 0:
            self.private_ts.add(record.ts)
        else:
            self.private_ts.discard(record.ts)
        if sign > 0:
            if record.number is not None and record.number > self.top_number:
                self.top_number = record.number
            first = self.record_count == 1
            self.first_ts = record.ts if first else min(self.first_ts, record.ts)
            self.latest_ts = record.ts if first else max(self.latest_ts, record.ts)
