"""
Opening entries from their block index, and keeping the index current
(issue #17; the file format is ``disk/blockindex.py``).

**Opening** (:class:`IndexOpener`, used by ``Entry.load``): a block whose
index row's key matches its files (``.meta`` size, modification time and
inode, shared segment size) is built from the row without reading its
``.meta``; any other block is read by ``Block.from_disk`` as without an
index (recovery included: after ``kill -9`` the blocks the last run
changed after the index was written have other keys).  The shared segment
is cut back to the tail in both cases.  Which files the entry keeps or
trashes is then decided from the blocks exactly as before.

**Writing** (:class:`IndexMethods`, mixed into the engine): each entry
remembers the row of each of its blocks with the block's ``version`` it
belongs to (``Entry.index``).  A block changed since (another version,
another block object, a block gone) gets a new row computed from its
records, as ``Block.from_disk`` would: from its loaded table, or, where
allowed, by reading its ``.meta``; a block with records being written
gets none now (its old row stays: rows are always checked against the
files).  :meth:`IndexMethods.index_snapshot` computes the rows (on the
reactor thread) and names the block files they describe;
:meth:`IndexMethods.index_write` writes the indexes of the entries whose
rows still belong to the current versions.  The service flushes the named
files in between when the sync policy flushes, so a row never vouches for
bytes that were not flushed (``service.py``); :meth:`IndexMethods.write_indexes`
does both at a clean close, after the engine's last flush.
"""

import os

from reduct_twisted.storage.block import Block
from reduct_twisted.storage.disk import blockfile, blockindex
from reduct_twisted.storage.records import FINISHED

#: Records summarised at most per periodic pass (rows computed from loaded tables).
PASS_RECORDS = 50_000
#: Entries whose index a periodic pass writes at most (each a small file write).
PASS_ENTRIES = 500


def _stat(path: str):
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def row_of(block: Block, meta_stat, shared_stat) -> list:
    """:return: the index row of ``block``, whose summary is that of its files."""
    return [
        block.block_id, *blockindex.key_of(meta_stat, shared_stat),
        block.meta_length, block.record_count, block.data_size, block.meta_size,
        block.first_ts, block.latest_ts, block.tail, block.shared_live, block.packed_count,
        block.top_number, block.unnumbered[0], block.unnumbered[1],
        sorted(block.private_ts), sorted(block.packed),
    ]


def block_from_row(directory: str, row: list, shared: bool) -> Block:
    """:return: the block (no table) a row describes; ``shared``: its shared segment exists."""
    (block_id, _, _, _, _, meta_length, count, data_size, meta_size, first_ts, latest_ts, tail,
     shared_live, packed_count, top, without_number, without_digest, private, packed) = row
    return Block(directory, block_id, record_count=count, data_size=data_size,
                 meta_size=meta_size, first_ts=first_ts, latest_ts=latest_ts, tail=tail,
                 shared_live=shared_live, private_ts=set(private), meta_length=meta_length,
                 shared_known=shared, packed=set(packed), packed_count=packed_count,
                 top_number=top, unnumbered=[without_number, without_digest])


def summarise(directory: str, block_id: int, records) -> Block:
    """:return: a block summarising finished ``records`` as ``Block.from_disk`` does."""
    block = Block(directory, block_id)
    for record in records:
        block._count(record, +1)
        block.unnumbered[0] += record.number is None
        block.unnumbered[1] += record.digest is None
    return block


def current_row(block: Block, read: bool):
    """
    :param read: read the ``.meta`` if the table is not loaded.
    :return: a row for ``block`` as its files are now, or ``None`` (records
        being written, table not loaded and not ``read``, files changed
        underneath or unreadable).
    """
    if block.started or block.removed or not block.meta_length:
        return None
    if block.table is not None and not block.partial:
        records = block.table.values()
    elif read:
        try:
            records = blockfile.read_meta(block.meta_path, block.block_id)[0].values()
        except (OSError, blockfile.DamagedMeta, blockfile.UnsupportedMeta):
            return None
    else:
        return None
    if any(r.state != FINISHED for r in records):
        return None
    fresh = summarise(block.directory, block.block_id, records)
    meta_stat = _stat(block.meta_path)
    if meta_stat is None or meta_stat.st_size != block.meta_length:
        return None
    fresh.meta_length = block.meta_length
    return row_of(fresh, meta_stat, _stat(block.shared_path))


class IndexOpener:
    """
    Opens the blocks of one entry directory, from its index where it can.

    :param directory: the entry directory.
    :param present: it holds an index file.
    :param recovery: the engine's ``Recovery`` (told what was used and ignored).
    :param files: ``blockfile.classify`` of each block file name found.
    :param items: the ``os.DirEntry`` of the ``.meta`` and shared segment files by name.
    """

    def __init__(self, directory: str, present: bool, recovery, files: dict, items: dict) -> None:
        self.directory = directory
        self.recovery = recovery
        self.present = present
        self.items = items
        self.names: dict = {}  # block id -> the names of its files found
        for name, found in files.items():
            self.names.setdefault(found[0], []).append(name)
        self.rows: dict = {}
        self.index: dict = {}
        self.stale = not present
        if present:
            try:
                self.rows = blockindex.read_index(directory)
            except blockindex.IndexIgnored as exc:
                recovery.index_ignored(directory, str(exc))
                self.stale = True

    def open(self, block_id: int, stats: dict) -> Block:
        """
        :param stats: as ``Block.from_disk``'s.
        :return: the block.
        :raises DamagedMeta, UnsupportedMeta: as ``Block.from_disk`` (row not used).
        """
        meta_item = self.items[blockfile.meta_name(block_id)]
        shared_item = self.items.get(blockfile.shared_name(block_id))
        row = self.rows.pop(block_id, None)
        if row is not None and blockindex.valid_row(row):
            shared_stat = None if shared_item is None else shared_item.stat(follow_symlinks=False)
            key = blockindex.key_of(meta_item.stat(follow_symlinks=False), shared_stat)
            block = block_from_row(self.directory, row, shared_stat is not None)
            named = set(block.file_names())
            if tuple(row[1:blockindex.SUMMARY]) == key and named.issuperset(self.names[block_id]):
                self.recovery.index_rows += 1
                if shared_stat is None or shared_stat.st_size <= block.tail:
                    self.index[block_id] = (block, block.version, row)
                    return block
                # Bytes past the tail (an aborted record): cut off, as from_disk does.
                os.truncate(block.shared_path, block.tail)
                self._fresh(block)
                return block
        self.recovery.index_reads += 1
        block = Block.from_disk(self.directory, block_id, self.recovery, stats)
        self._fresh(block)
        return block

    def _fresh(self, block: Block) -> None:
        # A block just read (or its shared segment cut): its row as its files are now.
        self.stale = True
        meta_stat = _stat(block.meta_path)
        if meta_stat is not None and meta_stat.st_size == block.meta_length:
            row = row_of(block, meta_stat, _stat(block.shared_path))
            self.index[block.block_id] = (block, block.version, row)

    def finish(self, entry) -> list:
        """
        Give ``entry`` the rows of its blocks (``Entry.index``) and whether
        its file is stale (does not hold exactly these rows).

        :return: the names to trash: the index of an entry left without blocks.
        """
        kept = {b.block_id for b in entry.blocks}
        entry.index = {k: v for k, v in self.index.items() if k in kept}
        entry.index_stale = bool(entry.blocks) and (
            self.stale or bool(self.rows) or len(entry.index) != len(self.index))
        return [blockindex.INDEX_FILE] if self.present and not entry.blocks else []


def _changed(entry) -> bool:
    # The file is not what ``entry.index`` holds, or a row is not for its block's version.
    if entry.index_stale or len(entry.index) != len(entry.blocks):
        return True
    index = entry.index
    for block in entry.blocks:
        found = index.get(block.block_id)
        if found is None or found[0] is not block or found[1] != block.version:
            return True
    return False


class IndexMethods:
    """The block index passes of ``StorageEngine`` (see the module docstring)."""

    _index_cursor = 0

    def _all_entries(self) -> list:
        return [e for b in self._buckets.values() for e in b.entries.values()]

    def index_snapshot(self, budget: int = PASS_RECORDS, read: bool = False) -> tuple:
        """
        Compute new rows for the entries whose blocks changed, summarising
        at most about ``budget`` records for at most :data:`PASS_ENTRIES`
        entries (``budget`` ``None``: no bound); entries are taken in turn over passes.

        :param read: read the ``.meta`` of a changed block whose table is not loaded.
        :return: ``(pending, paths)``: what :meth:`index_write` writes, and the
            block files the new rows describe (to flush before).
        """
        entries = self._all_entries()
        start = self._index_cursor % len(entries) if entries else 0
        pending, paths, spent = [], [], 0
        for n in range(len(entries)):
            entry = entries[(start + n) % len(entries)]
            if entry.removed or not _changed(entry):
                continue
            if budget is not None and (spent >= budget or len(pending) >= PASS_ENTRIES):
                self._index_cursor = start + n
                break
            rows, computed = {}, 0
            for block in entry.blocks:
                found = entry.index.get(block.block_id)
                if found is not None and found[0] is block and found[1] == block.version:
                    rows[block.block_id] = found
                    continue
                row = current_row(block, read)
                if row is None:
                    if found is not None:
                        rows[block.block_id] = (found[0], -1, found[2])  # still to redo
                    continue
                spent += block.record_count
                computed += 1
                rows[block.block_id] = (block, block.version, row)
                paths += block.files()
            if computed or entry.index_stale or len(rows) != len(entry.index):
                pending.append((entry, rows))
        return pending, paths

    def index_write(self, pending) -> int:
        """
        Write the indexes computed by :meth:`index_snapshot`; a row whose
        block changed again meanwhile is left for the next pass (its old
        row, if any, is written).  A failed write is ignored (a cache).

        :return: the number of entries whose index was written.
        """
        written = 0
        for entry, rows in pending:
            if entry.removed:
                continue
            current = {b.block_id: b for b in entry.blocks}
            keep = {}
            for block_id, (block, version, row) in rows.items():
                if current.get(block_id) is block and block.version == version:
                    keep[block_id] = (block, version, row)
                else:
                    old = entry.index.get(block_id)
                    if old is not None and current.get(block_id) is old[0]:
                        keep[block_id] = (old[0], -1, old[2])
            try:
                if keep:
                    blockindex.write_index(entry.directory, [v[2] for v in keep.values()])
                else:  # no blocks left: no index (as at open)
                    self._context.trash([os.path.join(entry.directory, blockindex.INDEX_FILE)])
            except OSError:
                entry.index_stale = True
                continue
            entry.index, entry.index_stale = keep, False
            written += 1
        return written

    def write_indexes(self) -> int:
        """Write every changed entry's index now, reading what is not loaded (clean close)."""
        pending, _ = self.index_snapshot(budget=None, read=True)
        return self.index_write(pending)
