"""
Compressing finished blocks (spec 1.20 §7.4, the ``compress`` lifecycle
action): ``StorageEngine.compress_blocks`` and ``entry_names``.

A block is compressed by writing all its records into a new packed
segment (``disk/packed.py``: one zstd frame per record, level 3) and then
replacing its ``.meta`` by one whose lines point into it; its old data
files are trashed after that.  The packing runs in the thread pool in
slices of :data:`SLICE` source bytes; between slices and before the swap
the block is looked at again on the reactor thread: if it was changed
meanwhile (a record written, removed or relabelled, the entry renamed or
removed, the block evicted) the compression of that block gives up and
trashes its new file, and the block stays as it was.

Crash safety: until the rename of the new ``.meta`` over the old one the
block is the old one (the new packed file is unreferenced: the next open
trashes it, like any leftover ``.tmp``); after it, the block is the new
one (its old segments are unreferenced and trashed at the latest by the
next open).  The packed file is flushed with the engine's ``sync`` before
the rename, so a power loss cannot leave a ``.meta`` pointing at bytes
that never reached the disk.  Never both, never neither.

Writes, label updates and removals need no decompression: a block's
``.meta`` may hold compressed and plain records side by side (a belated
record written into a compressed block goes into its shared or a private
segment as usual); a later compression packs the plain ones too.
"""

from twisted.internet.defer import fail, inlineCallbacks, maybeDeferred, succeed

from reduct_twisted.errors import ReductError
from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.disk.packed import Packer, packed_name
from reduct_twisted.storage.disk.reserve import rewrite_meta
from reduct_twisted.storage.upload import run_now

#: Source bytes packed per thread-pool call.
SLICE = 8 << 20


def _eligible(block, stop: int) -> bool:
    """A finished block, not all compressed, whose newest record is older than ``stop``."""
    return (not block.removed and not block.started and not block.compressing
            and 0 < block.record_count and block.packed_count < block.record_count
            and block.latest_ts < stop)


def _read_records(meta_path: str, block_id: int) -> list:
    table = blockfile.read_meta(meta_path, block_id)[0]
    return [table[ts] for ts in sorted(table)]


class CompressMethods:
    """Block compression of a ``StorageEngine`` (see the module docstring)."""

    #: ``run_in_thread(f, *args)``: where packing, and the decompression of
    #: streamed reads (``ContentReader``), run (Deferred or plain result);
    #: ``StorageService`` sets its thread pool, tests keep ``run_now``.
    run_in_thread = staticmethod(run_now)

    def entry_names(self, bucket: str) -> list:
        """
        :return: the names of the bucket's entries but attachment
            (``$meta``) ones, sorted (byte order).
        :raises NotFound: no such bucket.
        """
        return [entry.name for entry in self._bucket(bucket).visible()]

    def compress_blocks(self, bucket: str, entry: str, stop: int, dry_run: bool = False):
        """
        Compress every finished block of entry ``entry`` (exactly that
        entry) that still has an uncompressed record and whose newest
        record is older than ``stop`` (µs); a block with a record being
        written is skipped.

        :param dry_run: only count what would be compressed.
        :return: a Deferred firing ``(records, blocks)``: the records of the
            blocks compressed (would be, for ``dry_run``) and their number.
            It fails with ``NotFound`` for a missing bucket or entry.
        """
        try:
            series = self._bucket(bucket).entry(entry)
        except ReductError:
            return fail()
        self._context.settle()  # a batch's pending records are not "being written"
        blocks = [b for b in series.blocks if _eligible(b, stop)]
        if dry_run:
            return succeed((sum(b.record_count for b in blocks), len(blocks)))
        return _Compression(self._context, series, stop, self.run_in_thread, self._sync).run(blocks)


class _Compression:
    """One ``compress_blocks`` run over the blocks of one entry."""

    def __init__(self, context, series, stop: int, run_in_thread, sync) -> None:
        self.context, self.series, self.stop = context, series, stop
        self._run = run_in_thread
        self._sync = sync

    def _thread(self, f, *args):
        return maybeDeferred(self._run, f, *args)

    @inlineCallbacks
    def run(self, blocks):
        records = count = 0
        for block in blocks:
            if self.series.removed or not _eligible(block, self.stop):
                continue
            block.compressing = True
            try:
                done = yield self._block(block)
            finally:
                block.compressing = False
            if done:
                records, count = records + done, count + 1
        return records, count

    @inlineCallbacks
    def _block(self, block):
        version = block.version
        gens = [blockfile.classify(name)[1] for name in block.packed]
        name = packed_name(block.block_id, max(gens, default=0) + 1)
        packer = None
        try:
            records = yield self._thread(_read_records, block.meta_path, block.block_id)
            packer = Packer(block.directory, name, records)
            while not packer.done and block.version == version and not block.removed:
                yield self._thread(packer.step, SLICE)
            packer.close()
            if packer.done and self._sync is not None:
                yield self._thread(self._sync, [packer.path], [])
        except (OSError, ReductError):
            packer = packer or Packer(block.directory, name, [])
            self._give_up(block, packer)
            return 0
        if block.version != version or block.removed or not packer.packed:
            self._give_up(block, packer)
            return 0
        return self._swap(block, packer.packed)

    def _give_up(self, block, packer) -> None:
        packer.close()
        if not block.removed:
            # Ours and unreferenced (an entry renamed meanwhile took it along).
            self.context.trash([block.path(packer.name)])

    def _swap(self, block, records: list) -> int:
        """On the reactor thread: the new ``.meta`` replaces the old one."""
        context = self.context
        try:
            length = rewrite_meta(context, block, records, "compress records")
        except ReductError:
            context.trash([block.path(records[0].segment)])
            return 0
        old = [path for path in block.files() if path != block.meta_path]
        context.fds.forget(block.meta_path)
        context.fds.forget(block.shared_path)
        context.tables.discard(block)
        size, count = block.size, block.record_count
        block.repack(records)
        block.meta_length = length
        self.series.size += block.size - size
        self.series.record_count += block.record_count - count
        context.dirty.created(block.path(records[0].segment))
        context.trash(old)
        return len(records)
