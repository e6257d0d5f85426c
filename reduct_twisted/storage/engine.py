"""
The storage engine: buckets, record writes and reads, queries, quotas.

On-disk layout; everything lives below ``data_path`` and every directory
name below it comes from a checked name (``[A-Za-z0-9_-]{1,255}``, or
``$meta`` for an attachment entry)::

    <data_path>/
      .reduct-twisted                format marker {"format": "reduct-twisted", "version": 3}
                                     written at the first open (disk/layout.py)
      .lock                          flock of the daemon using it: PID, start (datadir.py)
      .running                       run marker: exists while the engine is open
                                     (an unclean stop leaves it; see disk/recovery.py)
      .reserve                       space reserve (a few MiB, no data): emptied for
                                     a removal's .meta rewrite on a full disk,
                                     allocated again later (disk/reserve.py)
      .trash/                        things being removed: renamed here at once,
        <n>-<old name>               deleted later by ``discard`` (emptied on open);
                                     new buckets are staged here too (disk/trash.py)
      .quarantine/<bucket>/<entry>/  files of damaged blocks, moved aside at open
      <bucket>/                      one directory per bucket
        settings.json                {"version": 1, "max_block_size": ..., ...}
                                     (written to settings.json.tmp, then renamed)
        <entry>/                     one directory per entry; entry a/b/c is the
                                     directory a/b/c (format v2): an entry directory
                                     holds its child entries' directories and, as
                                     $meta/, its attachment entry (spec 1.20 §2, §3)
          <block_id>.meta            block metadata: a versioned header, then one
                                     JSON line per finished record with its CRC-32,
                                     number and SHA-256 (disk/blockfile.py)
          .numbers                   the entry's number counter (numbers.py)
          .blocks                    its block index, a cache (disk/blockindex.py)
          .log/                      its integrity log, removed set, digest index (entry_log.py)
          <block_id>.blk             shared segment: small records back to back
          <block_id>-<ts>.blk        private segment: one large or chunked record
          <block_id>-<gen>.zst       packed segment: the block's compressed records,
                                     one zstd frame each (compress.py, disk/packed.py)

A block is named after the timestamp of the record that opened it.  Only
finished records are on disk; records being written live in memory.  The
engine writes and reads every byte itself: a record's content arrives
through its ``RecordWriter`` (``upload.py``) and leaves through a
``ContentReader`` (``content.py``) or ``read_content``.  Order
of file operations, so that a crash at any instant leaves no partial record
visible and the next open (``disk/recovery.py``) tidies up:

* A record's content is written first, then its ``.meta`` line is appended
  (the first append of a block writes header and line at once).  Content
  without a line (a block's segment without ``.meta`` included) is trashed
  at open; a torn last line is cut off; after an unclean stop, records of
  files changed during the run are checked against their size and CRC.
* The small records of a batched write are written per batch (``runs.py``):
  their contents with one ``pwritev`` per run of contiguous bytes, then
  their lines with one append per block; nothing reads, rewrites or removes
  a block's files before that flush (``Context.settle``).
* Removing a block (quota eviction, abort of its last record) trashes its
  ``.meta`` first: leftover segments are then orphans.  Removing records
  rewrites their block's ``.meta`` without them (a temporary file renamed
  over it, removal.py; on a full disk after the space reserve is released),
  then trashes their private segments.  Entries (with every
  entry below them) and buckets are removed by renaming their directory into
  ``.trash`` (atomic); an entry is renamed, with its descendants, by one
  ``rename`` after the target's missing parents are made (edits.py).
* Compressing a block (compress.py) writes its new packed segment first
  (flushed with ``sync``), then renames a new ``.meta`` over the old one,
  then trashes the old segments: before the rename the new file is an
  orphan, after it the old ones are.
* A new bucket is built in ``.trash`` and renamed into place; ``*.tmp``
  leftovers and everything in ``.trash`` are discarded at open (an entry
  directory without records is an empty entry, kept: spec 1.20 §5.9).
* Only names listed in ``disk/layout.py`` are ever moved or removed: a data
  directory not ours is refused; other unknown names are reported, left.

The engine flushes nothing by itself: :meth:`StorageEngine.take_dirty` hands what
changed to a sync policy (disk/durability.py); ``open``/``close`` call ``sync``.
"""

import os

from zope.interface import implementer

from reduct_twisted import REDUCT_VERSION
from reduct_twisted.interfaces import IEngineLifecycle, IStorageEngine
from reduct_twisted.storage import writer
from reduct_twisted.storage.backfill import BackfillMethods
from reduct_twisted.storage.bucket import Bucket
from reduct_twisted.storage.fdlimit import share
from reduct_twisted.storage.buckets import BucketMethods
from reduct_twisted.storage.cache import Context, FdCache, TableCache
from reduct_twisted.storage.compress import CompressMethods
from reduct_twisted.storage.disk import layout
from reduct_twisted.storage.disk.durability import DirtySet
from reduct_twisted.storage.disk.recovery import Recovery
from reduct_twisted.storage.disk.reserve import Reserve
from reduct_twisted.storage.disk.trash import TRASH_DIR, Trash, remove_now
from reduct_twisted.storage.edits import EditMethods
from reduct_twisted.storage.indexing import IndexMethods
from reduct_twisted.storage.log_api import LogMethods
from reduct_twisted.storage.multi import MultiMethods, MultiRegistry
from reduct_twisted.storage.query import QueryRegistry
from reduct_twisted.storage.reading import LIST_LIMIT, ReadMethods
from reduct_twisted.storage.runs import UploadMethods, WriteRun
from reduct_twisted.storage.records import Allocation
from reduct_twisted.storage.removal import RecordRemoval, start_removal
from reduct_twisted.storage.settings import U64_MAX, BucketSettings, is_bucket_name
from reduct_twisted.storage.traffic import Traffic
from reduct_twisted.storage.usage import FreeSpace, Usage

__all__ = ["LIST_LIMIT", "TRASH_DIR", "StorageEngine", "remove_now"]


@implementer(IStorageEngine, IEngineLifecycle)
class StorageEngine(BucketMethods, ReadMethods, EditMethods, MultiMethods, CompressMethods,
                    BackfillMethods, LogMethods, IndexMethods, UploadMethods):
    """
    The synchronous storage core; the HTTP layer calls it on the reactor thread.
    Bucket management comes from :class:`~reduct_twisted.storage.buckets.BucketMethods`,
    reads and queries from :class:`~reduct_twisted.storage.reading.ReadMethods`,
    the I/O API's multi-entry queries from :class:`~reduct_twisted.storage.multi.MultiMethods`,
    label updates, removals and renames from :class:`~reduct_twisted.storage.edits.EditMethods`,
    block compression from :class:`~reduct_twisted.storage.compress.CompressMethods`,
    the numbers and digests of older records from ``backfill.BackfillMethods``, the
    entry logs and listings from ``log_api.LogMethods``, the block indexes from ``indexing``.

    :param data_path: the data directory (created by :meth:`open`).
    :param clock: provides ``seconds()`` (a reactor or ``task.Clock``).
    :param defaults: settings of new buckets and fallback for missing fields.
    :param discard: ``discard(paths)`` deletes trashed files and directories,
        possibly later and in another thread; the default deletes at once.
    :param version: the version reported by :meth:`info`.
    :param table_cache_size: how many bytes of block record tables stay
        loaded (estimated, see ``cache.TableCache``; ``RS_TABLE_CACHE_SIZE``).
    :param fd_cache_size: how many idle shared-segment and ``.meta`` descriptors
        stay open (default: a quarter of the open-file limit, 128 to 16,384:
        writes spread over many entries reopen fewer files).
    :param sync: ``sync(files, directories)`` flushes them (each file, then
        each directory) before returning; called only by :meth:`open` and
        :meth:`close`, and in the pool for a compressed block's new file.
    :param reserve_size: bytes of ``.reserve`` kept for removals on a full
        disk (``disk/reserve.py``; the daemon's: ``DEFAULT_SIZE``); ``0``: none.
    :param track_dirty: record changed paths for :meth:`take_dirty`; pass
        ``False`` when nobody calls it (:meth:`close` then flushes every file
        changed during the run, found by modification time; a set never
        taken also stops by itself at ``durability.UNTAKEN_LIMIT`` files).
    """

    def __init__(self, data_path: str, clock, *, defaults: BucketSettings = BucketSettings(),
                 discard=None, version: str = REDUCT_VERSION, table_cache_size: int = 64 << 20,
                 fd_cache_size: int = None, sync=None, track_dirty: bool = True,
                 reserve_size: int = 0) -> None:
        self.data_path = os.path.abspath(data_path)
        self.clock = clock
        self.defaults = defaults
        self.version = version
        self._sync = sync
        self._dirty = DirtySet(track_dirty)
        self._trash = Trash(self.data_path, remove_now if discard is None else discard,
                            self._dirty)
        self._recovery = Recovery(self.data_path, self._dirty)
        self._reserve = Reserve(self.data_path, reserve_size)
        if fd_cache_size is None:
            fd_cache_size = share(4, 128, 16384)
        self._context = Context(TableCache(table_cache_size), FdCache(fd_cache_size),
                                self._trash, self._dirty, self._recovery, self._reserve,
                                Usage(), FreeSpace(self.data_path, clock), sync=sync)
        self._context.run = WriteRun(self._context, self._after_commit)  # batched small writes (runs.py)
        self._buckets: dict = {}
        self._queries = QueryRegistry()
        self._multi = MultiRegistry(self._queries, self._context.tables)
        self._opened_at = None
        self._running = False
        #: Told of every committed record: ``record_written(bucket, entry,
        #: record)`` runs right after the commit, on the calling thread; the
        #: ``Record`` is the engine's own (read it there, never keep or change
        #: it).  After a label update, ``labels_updated(bucket, entry, ts,
        #: changes)`` (name → new value, ``""`` removed).  A listener must not
        #: raise (replication, ``replication/manager.py``).
        self.listeners: list = []
        self.traffic = Traffic()  #: bytes and records written and read per bucket

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        """
        Check that the data directory is ours (``disk/layout.py``), create it
        and its format marker if needed, empty ``.trash``, load every
        bucket (reading each block's metadata once) and recover from an
        unclean stop (``disk/recovery.py``): data no metadata refers to is
        discarded, failing records are dropped, damaged blocks quarantined.

        :raises DataDirRefused: not ours, or newer; nothing was changed.
        :raises UnsupportedMeta, OSError: a newer block format; an unusable directory.
        """
        state = layout.classify(self.data_path)
        if not os.path.isdir(self.data_path):
            os.makedirs(self.data_path)
            self._dirty.new_dir(self.data_path)
        if state != layout.MARKED:
            layout.write_marker(self.data_path, self._sync, self._dirty)
        self._recovery.begin()
        self._trash.empty()
        self._reserve.open()
        unknown = []
        for name in sorted(os.listdir(self.data_path)):
            directory = os.path.join(self.data_path, name)
            if is_bucket_name(name) and os.path.isdir(directory) and not os.path.islink(directory):
                bucket = Bucket.load(name, directory, self.defaults, self._context)
                if bucket is not None:
                    self._buckets[name] = bucket
            elif not layout.is_top_level_name(name):
                unknown.append(name)
        if unknown:  # not ours: reported, left in place
            self._recovery.leave(self.data_path, unknown)
        self._context.usage.recount(self._buckets.values())
        self._recovery.start_run(self._sync)
        self._opened_at = self.clock.seconds()
        self._running = True

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` has loaded the storage and :meth:`close` not run yet."""
        return self._running

    def close(self) -> None:
        """
        Close the cached descriptors, flush everything written (``sync``), remove the
        run marker, write the changed block indexes; only the first call after :meth:`open` acts.
        """
        self._context.settle()
        self._context.fds.close()
        if self._running:
            self._context.logs.close_all(e for b in self._buckets.values() for e in b.entries.values())
            self._running = False
            self._recovery.end_run(self._sync)
            self.write_indexes()  # after the last flush: rows vouch for flushed files

    def end_continuous_queries(self) -> None:
        """
        From now on a continuous query ends like a plain one when it has no
        record left (the daemon is stopping): a batched read waiting for a
        new record is answered now (204), not after its ``record_timeout``.
        """
        self._queries.end_continuous()

    def take_dirty(self) -> tuple:
        """
        What changed since the last call, for a sync policy (``GroupSync``); call on the
        reactor thread.  Flushing each file (open read-only, flush, close; a vanished file
        is fine), then each directory makes every change made before this call durable.

        :return: ``(files, directories)``: sets of absolute paths of files
            whose content changed (segments, ``.meta``, settings) and of
            directories whose entries changed (created, renamed, removed).
        """
        self._context.settle()  # batched records pending (runs.py) are written first
        self._context.logs.flush_all()  # the entry logs' leaves go with their records
        return self._dirty.take()

    def recovery_report(self) -> dict:
        """
        What :meth:`open` found, to be logged by the caller.

        :return: ``{"unclean": bool`` (the last run did not close),
            ``"verified_records": int`` (CRCs checked), ``"dropped_records": int``
            (records that failed their check and were removed),
            ``"quarantined_blocks": [path of each moved .meta]``,
            ``"problems": [one message per dropped record, quarantined
            block or failed removal]``, ``"left_in_place": [one message per
            directory holding names that are not ours]}``.
        """
        return self._recovery.report(self._trash.problems)

    # -- server ------------------------------------------------------------

    def info(self) -> dict:
        """:return: the ``GET /info`` answer."""
        infos = [bucket.info() for bucket in self._buckets.values()]
        return {
            "version": self.version,
            "bucket_count": len(infos),
            "usage": sum(i["size"] for i in infos),
            "uptime": int(self.clock.seconds() - self._opened_at),
            "oldest_record": min((i["oldest_record"] for i in infos), default=U64_MAX),
            "latest_record": max((i["latest_record"] for i in infos), default=0),
            "license": None,
            "defaults": {"bucket": self.defaults.to_json()},
        }

    def list_buckets(self) -> list:
        """:return: the BucketInfo of every bucket, sorted by name."""
        return [self._buckets[name].info() for name in sorted(self._buckets)]

    # -- writes ------------------------------------------------------------

    def allocate(self, bucket: str, entry: str, ts: int, length, content_type: str,
                 labels: dict) -> Allocation:
        """
        Reserve a new record in state STARTED.

        Checks, in order: bucket, entry name (if the entry would be created),
        quota, duplicate timestamp.

        :param bucket: the bucket name; ``entry``: the entry name (created on first write).
        :param ts: the record's timestamp (µs).
        :param length: its content length, ``None`` if unknown (chunked).
        :param content_type: stored verbatim; ``labels``: stored in insertion order.
        :return: where the caller writes the content; finish with
            :meth:`commit` or :meth:`abort`.
        :raises NotFound: no such bucket.
        :raises UnprocessableEntity: bad entry name.
        :raises BadRequest: a HARD quota would be exceeded.
        :raises InternalError: FIFO cannot keep the quota.
        :raises Conflict: a record with ``ts`` exists or is being written.
        :raises ReductError: a file or directory could not be created (507
            on a full disk or one without room for the space reserve; else
            500); nothing is reserved.
        """
        return writer.allocate(
            self._context, self._bucket(bucket), entry, ts, length, content_type, labels
        )

    def claim(self, alloc: Allocation, size: int) -> None:
        """
        Count ``size`` more bytes of a chunked record (``length`` ``None``)
        against its bucket's quota before they are written; a no-op for a
        record of declared length (counted whole by :meth:`allocate`).

        :raises BadRequest: a HARD quota would be exceeded (nothing is
            counted; the caller aborts the record).
        """
        writer.claim(alloc, size, self._context)

    def commit(self, alloc: Allocation) -> None:
        """
        Finish a record whose ``alloc.written`` bytes the caller has written.

        :param alloc: from :meth:`allocate`; a private segment must be closed.
        :raises BadRequest: ``written`` differs from the declared length,
            unclaimed bytes exceed a HARD quota, or the content does not
            match the expected digest (the record is aborted).
        :raises NotFound: the bucket or entry was removed meanwhile.
        :raises ReductError: a disk error (507 full, else 500); the record
            is aborted, the ``.meta`` file left as it was.
        """
        writer.commit(self._context, alloc)
        self._after_commit(alloc)

    def abort(self, alloc: Allocation) -> None:
        """Give up a record (from :meth:`allocate`): it vanishes as if never written; idempotent."""
        writer.abort(self._context, alloc)

    def remove_records(self, bucket: str, entry: str, **query) -> RecordRemoval:
        """
        Prepare the removal of the records a query selects (spec §3.7,
        ``removal.py``); drive its ``step()`` until it returns the count.

        :param query: the keyword arguments of :meth:`create_query` but
            ``continuous``, ``ttl`` and ``only_metadata``.
        :raises NotFound: no such bucket (a missing entry is created empty).
        :raises UnprocessableEntity: a bad entry name or query parameter.
        """
        return start_removal(self._context, self._queries, self._bucket(bucket), entry,
                             self.clock.seconds(), query)

    def enforce_quotas(self) -> int:
        """
        Bring every FIFO bucket back under its quota (after settings changes
        or chunked records), as far as blocks not being written allow; then
        allocate the space reserve again if a removal used it.

        :return: the number of blocks removed.
        """
        removed = 0
        for bucket in list(self._buckets.values()):
            if bucket.settings.quota_type == "FIFO":
                removed += bucket.make_room(0, strict=False)
        self._reserve.ensure()
        self._context.usage.recount(self._buckets.values())
        return removed

    def limit_storage(self, cap: int) -> None:
        """Refuse records beyond ``cap`` bytes over all buckets (``0``: none; ``usage.py``)."""
        self._context.usage.cap = cap

    def compute_digests(self, on: bool) -> None:
        """Give new records a SHA-256 (``integrity`` ``log``/``digest``) or not (``off``)."""
        self._context.digests = on
