"""
The storage engine: buckets, record writes and reads, queries, quotas.

On-disk layout; everything lives below ``data_path`` and every directory
name below it comes from a checked name (``[A-Za-z0-9_-]{1,255}``)::

    <data_path>/
      .trash/                        things being removed: renamed here at once,
        <n>-<old name>               deleted later by ``discard`` (emptied on open)
      <bucket>/                      one directory per bucket
        settings.json                {"version": 1, "max_block_size": ..., ...}
                                     (written to settings.json.tmp, then renamed)
        <entry>/                     one directory per entry
          <block_id>.meta            block metadata: append-only JSON lines, one
                                     per finished record (format: blockfile.py)
          <block_id>.blk             shared segment: small records back to back
          <block_id>-<ts>.blk        private segment: one large or chunked record

A block is named after the timestamp of the record that opened it.  Only
finished records are on disk; records being written live in memory.  No file
is ever deleted in place: it is renamed into ``.trash`` first, so a new file
of the same name can be created at once while ``discard`` (a thread pool in
the daemon) unlinks the old one.
"""

import contextlib
import os
import shutil

from reduct_twisted import REDUCT_VERSION
from reduct_twisted.errors import Conflict, NotFound, TooEarly
from reduct_twisted.storage import writer
from reduct_twisted.storage.bucket import Bucket
from reduct_twisted.storage.cache import Context, FdCache, TableCache, read_whole
from reduct_twisted.storage.query import QueryRegistry
from reduct_twisted.storage.records import FINISHED, Allocation, RecordView
from reduct_twisted.storage.settings import (
    U64_MAX,
    BucketSettings,
    check_name,
    is_valid_name,
    parse_settings,
    parse_settings_fields,
)

#: Default cap of :meth:`StorageEngine.list_records` (no unbounded scans).
LIST_LIMIT = 10_000

#: Directory (below ``data_path``) where removed files wait for ``discard``.
TRASH_DIR = ".trash"


def remove_now(paths: list) -> None:
    """Delete files and directory trees at once (the default ``discard``); skip missing ones."""
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class StorageEngine:
    """
    The synchronous storage core; the HTTP layer calls it on the reactor thread.

    :param data_path: the data directory (created by :meth:`open`).
    :param clock: provides ``seconds()`` (a reactor or ``task.Clock``).
    :param defaults: settings of new buckets and fallback for missing fields.
    :param discard: ``discard(paths)`` deletes trashed files and directories,
        possibly later and in another thread; the default deletes at once.
    :param version: the version reported by :meth:`info`.
    :param table_cache_size: how many idle block record tables stay loaded.
    :param fd_cache_size: how many idle shared-segment descriptors stay open.
    """

    def __init__(self, data_path: str, clock, *, defaults: BucketSettings = BucketSettings(),
                 discard=None, version: str = REDUCT_VERSION, table_cache_size: int = 64,
                 fd_cache_size: int = 128) -> None:
        self.data_path = os.path.abspath(data_path)
        self.clock = clock
        self.defaults = defaults
        self.version = version
        self._discard = remove_now if discard is None else discard
        self._context = Context(TableCache(table_cache_size), FdCache(fd_cache_size), self._trash)
        self._buckets: dict = {}
        self._queries = QueryRegistry()
        self._trash_dir = os.path.join(self.data_path, TRASH_DIR)
        self._trash_seq = 0
        self._opened_at = None

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        """
        Create the data directory if needed, empty ``.trash`` and load every
        bucket (reading each block's metadata once).  Data files no metadata
        refers to are discarded.
        """
        os.makedirs(self._trash_dir, exist_ok=True)
        leftovers = sorted(os.listdir(self._trash_dir))
        # New trash names must not collide with leftovers still being deleted.
        numbers = [n.split("-", 1)[0] for n in leftovers]
        self._trash_seq = 1 + max((int(n) for n in numbers if n.isdecimal()), default=0)
        if leftovers:
            self._discard([os.path.join(self._trash_dir, n) for n in leftovers])
        for name in sorted(os.listdir(self.data_path)):
            directory = os.path.join(self.data_path, name)
            if is_valid_name(name) and os.path.isdir(directory):
                self._buckets[name] = Bucket.load(name, directory, self.defaults, self._context)
        self._opened_at = self.clock.seconds()

    def close(self) -> None:
        """Close the cached descriptors."""
        self._context.fds.close()

    def _trash(self, paths: list) -> None:
        moved = []
        for path in paths:
            # The sequence number makes the name unique; cut to the file name limit.
            name = f"{self._trash_seq}-{os.path.basename(path)}"[:255]
            target = os.path.join(self._trash_dir, name)
            self._trash_seq += 1
            try:
                os.rename(path, target)
            except FileNotFoundError:
                continue
            moved.append(target)
        if moved:
            self._discard(moved)

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

    # -- buckets -----------------------------------------------------------

    def _bucket(self, name: str, unless_provisioned: str = "") -> Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            raise NotFound(f"Bucket '{name}' is not found")
        if unless_provisioned and bucket.provisioned:
            raise Conflict(f"Can't {unless_provisioned} provisioned bucket '{name}'")
        return bucket

    def has_bucket(self, name: str) -> bool:
        """:return: whether bucket ``name`` exists."""
        return name in self._buckets

    def create_bucket(self, name: str, settings) -> None:
        """
        Create a bucket.

        :param name: the bucket name.
        :param settings: ``None`` or the decoded JSON settings; missing
            fields take the engine defaults.
        :raises UnprocessableEntity: bad settings or name.
        :raises Conflict: the bucket exists.
        """
        parsed = parse_settings(settings, self.defaults)
        check_name(name)
        if name in self._buckets:
            raise Conflict(f"Bucket '{name}' already exists")
        directory = os.path.join(self.data_path, name)
        os.makedirs(directory, exist_ok=True)
        bucket = Bucket(name, directory, parsed, self._context)
        bucket.save_settings()
        self._buckets[name] = bucket

    def bucket_info(self, name: str) -> dict:
        """
        :return: the ``GET /b/:bucket`` answer (settings, info, entries).
        :raises NotFound: no such bucket.
        """
        return self._bucket(name).full_info()

    def update_bucket(self, name: str, settings) -> None:
        """
        Change a bucket's settings; missing or null fields keep their values.

        New block limits apply to future rotations; a lowered FIFO quota is
        applied by :meth:`enforce_quotas`.

        :raises UnprocessableEntity: bad settings (checked first).
        :raises NotFound: no such bucket.
        :raises Conflict: the bucket is provisioned.
        """
        fields = parse_settings_fields(settings)
        self._bucket(name, "change settings of").update_settings(fields)

    def provision_bucket(self, name: str, settings: dict) -> None:
        """
        Create bucket ``name`` (as :meth:`create_bucket`) or overwrite the given
        settings (as :meth:`update_bucket`), then mark it ``provisioned`` (§3.14).

        :raises UnprocessableEntity: bad settings or name; nothing changes.
        """
        if name not in self._buckets:
            self.create_bucket(name, settings)
        else:
            self._buckets[name].update_settings(parse_settings_fields(settings))
        self._buckets[name].provisioned = True

    def remove_bucket(self, name: str) -> None:
        """
        Remove a bucket with all its data and queries.

        Writes still in flight fail on commit.

        :raises NotFound: no such bucket.
        :raises Conflict: the bucket is provisioned.
        """
        bucket = self._bucket(name, "remove")
        del self._buckets[name]
        bucket.detach()
        self._queries.drop_bucket(name)
        self._trash([bucket.directory])

    # -- writes ------------------------------------------------------------

    def allocate(self, bucket: str, entry: str, ts: int, length, content_type: str,
                 labels: dict) -> Allocation:
        """
        Reserve a new record in state STARTED.

        Checks, in order: bucket, entry name (if the entry would be created),
        quota, duplicate timestamp.

        :param bucket: the bucket name.
        :param entry: the entry name (created on first write).
        :param ts: the record's timestamp (µs).
        :param length: its content length, ``None`` if unknown (chunked).
        :param content_type: stored verbatim.
        :param labels: stored in insertion order.
        :return: where the caller writes the content; finish with
            :meth:`commit` or :meth:`abort`.
        :raises NotFound: no such bucket.
        :raises UnprocessableEntity: bad entry name.
        :raises BadRequest: a HARD quota would be exceeded.
        :raises InternalError: FIFO cannot keep the quota.
        :raises Conflict: a record with ``ts`` exists or is being written.
        """
        return writer.allocate(
            self._context, self._bucket(bucket), entry, ts, length, content_type, labels
        )

    def commit(self, alloc: Allocation) -> None:
        """
        Finish a record whose ``alloc.written`` bytes the caller has written.

        :param alloc: from :meth:`allocate`; a private segment must be closed.
        :raises BadRequest: ``written`` differs from the declared length (the
            record is aborted).
        :raises NotFound: the bucket or entry was removed meanwhile (the
            data is discarded).
        """
        writer.commit(self._context, alloc)

    def abort(self, alloc: Allocation) -> None:
        """
        Give up a record: it vanishes as if never written.  Idempotent.

        :param alloc: from :meth:`allocate`.
        """
        writer.abort(self._context, alloc)

    # -- reads -------------------------------------------------------------

    def read(self, bucket: str, entry: str, ts) -> RecordView:
        """
        Look up one finished record.

        :param ts: its timestamp, or ``None`` for the entry's latest record.
        :raises NotFound: no such bucket, entry or record.
        :raises TooEarly: the record is still being written.
        """
        series = self._bucket(bucket).entry(entry)
        if ts is None:
            ts = series.latest_record
        found = series.find(ts)
        if found is None:
            raise NotFound(f"No record with timestamp {ts}")
        block, record = found
        if record.state != FINISHED:
            raise TooEarly(f"Record with timestamp {ts} is still being written")
        return block.view(record)

    def read_content(self, view: RecordView) -> bytes:
        """The whole content of a small finished record, read at once (see ``read_whole``)."""
        return read_whole(self._context.fds, view)

    def list_records(self, bucket: str, entry: str, start: int, stop: int, *,
                     limit: int = LIST_LIMIT) -> list:
        """
        The finished records in ``[start, stop)`` (legacy v0 ``/list``).

        :param limit: return at most this many (the scan stops there).
        :return: ``(ts, size)`` pairs in ascending order.
        :raises NotFound: no such bucket or entry.
        """
        return self._bucket(bucket).entry(entry).finished_in(start, stop, limit)

    def block_stats(self, bucket: str, entry: str) -> list:
        """
        Per-block summaries of an entry, for diagnostics and compaction.

        :return: one mapping per block, ascending by id, with ``id``,
            ``record_count``, ``data_size``, ``meta_size``, ``dead_bytes``
            (reclaimable shared-segment bytes), ``started`` and ``loaded``
            (whether its record table is in memory).
        :raises NotFound: no such bucket or entry.
        """
        return [block.stats() for block in self._bucket(bucket).entry(entry).blocks]

    # -- queries -----------------------------------------------------------

    def create_query(self, bucket: str, entry: str, *, start=None, stop=None, ttl=60,
                     continuous=False, include=None, exclude=None, limit=None, each_n=None,
                     each_s=None) -> int:
        """
        Create a query over an existing entry (spec §2.3.4).

        :param start: inclusive lower bound; default the entry's oldest record.
        :param stop: exclusive upper bound; default latest record + 1;
            ignored for continuous queries.
        :param ttl: seconds the query survives without being read.
        :param continuous: wait for new records instead of ending (not
            together with ``limit``, which wins).
        :param include: labels that must all be equal.
        :param exclude: drop records where all of these are equal.
        :param limit: return at most this many records.
        :param each_n: return every n-th matching record.
        :param each_s: return matching records at least this many seconds apart.
        :return: the query id.
        :raises NotFound: no such bucket or entry.
        :raises UnprocessableEntity: ``start > stop`` (non-continuous),
            ``each_n`` or ``each_s`` not positive.
        """
        series = self._bucket(bucket).entry(entry)
        return self._queries.create(
            bucket, series, self.clock.seconds(), start=start, stop=stop, ttl=ttl,
            continuous=continuous, include=include, exclude=exclude, limit=limit,
            each_n=each_n, each_s=each_s,
        )

    def query_next(self, bucket: str, entry: str, qid: int, budget: int = 2000):
        """
        The next record of query ``qid``; refreshes its TTL.

        :param budget: how many records may be examined in this call.
        :return: a :class:`RecordView`; ``None`` if nothing (more) matches now
            (a non-continuous query is then dropped); ``PENDING`` if the
            budget ran out first (call again later).
        :raises NotFound: no such bucket, entry, or query of this entry.
        """
        series = self._bucket(bucket).entry(entry)
        result = self._queries.next(bucket, series, qid, self.clock.seconds(), budget)
        if not isinstance(result, tuple):
            return result
        block, record, last = result
        return block.view(record, last)

    def expire_queries(self) -> int:
        """:return: how many expired queries were dropped."""
        return self._queries.expire(self.clock.seconds())

    def enforce_quotas(self) -> int:
        """
        Bring every FIFO bucket back under its quota (after settings changes
        or chunked records), as far as blocks not being written allow.

        :return: the number of blocks removed.
        """
        removed = 0
        for bucket in list(self._buckets.values()):
            if bucket.settings.quota_type == "FIFO":
                removed += bucket.make_room(0, strict=False)
        return removed
