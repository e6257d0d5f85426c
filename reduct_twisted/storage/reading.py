"""
The read side of :class:`~reduct_twisted.storage.engine.StorageEngine`:
record reads, the legacy record list, block statistics and queries.

A mixin, so the engine module stays small; it uses the engine's
``_bucket``, ``_context``, ``_queries`` and ``clock``.  Reads never write:
they keep working while the disk is full or read-only.
"""

from reduct_twisted.errors import InternalError, NotFound, TooEarly
from reduct_twisted.storage.cache import read_whole
from reduct_twisted.storage.content import ContentReader
from reduct_twisted.storage.records import FINISHED, RecordView
from reduct_twisted.storage.meta import effective_exclude
from reduct_twisted.storage.readahead import QueryMark, claim, read_ahead

#: Default cap of ``list_records`` (no unbounded scans).
LIST_LIMIT = 10_000


def _not_found(series, bucket: str, entry: str, ts: int) -> str:
    """
    The 1.18 text of a read of a missing record (spec 1.20 §5.5): the block
    form when a block starts at or before ``ts`` (the greatest such id),
    else the entry form.
    """
    block = series.block_for(ts)
    if block is None:
        return f"Record {ts} not found in entry {bucket}/{entry}"
    return f"Record {ts} not found in block {bucket}/{entry}/{block.block_id}"


class ReadMethods:
    """Reads and queries of a ``StorageEngine`` (see the module docstring)."""

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
            raise NotFound(_not_found(series, bucket, entry, ts))
        block, record = found
        if record.state != FINISHED:
            raise TooEarly(f"Record with timestamp {ts} in {bucket}/{entry} is still being written")
        self.traffic.read(bucket, record.size)
        return block.view(record)

    def read_content(self, view: RecordView) -> bytes:
        """The whole content of a small finished record, read at once (see ``read_whole``)."""
        return read_whole(self._context.fds, view)

    def open_reader(self, views=()) -> ContentReader:
        """
        A reader over the contents of the records of ``views`` (more may be
        added with its ``add``), their data files open until its ``close``.

        :raises OSError: a data file cannot be opened (none is left open).
        """
        return ContentReader.of(views, self.run_in_thread, self._context.fds)

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
                     each_s=None, when=None, strict=False, only_metadata=False,
                     ext=None) -> int:
        """
        Create a query over an existing entry (spec §2.3.4, §3.10).

        :param start: inclusive lower bound; default the entry's oldest record.
        :param stop: exclusive upper bound; default latest record + 1;
            ignored for continuous queries.
        :param ttl: seconds the query survives without being read.
        :param continuous: wait for new records instead of ending (not
            together with ``limit``, which wins).
        :param include: labels that must all be equal.
        :param exclude: drop records where all of these are equal (an
            attachment entry adds ``remove=true`` unless ``include`` names
            ``remove``: ``meta.effective_exclude``, spec 1.20 §3.1).
        :param limit: return at most this many records.
        :param each_n: return every n-th matching record.
        :param each_s: return matching records at least this many seconds apart.
        :param when: a ``when`` condition (decoded JSON, spec §3.11), or ``None``.
        :param strict: an evaluation error of ``when`` ends the query with it.
        :param only_metadata: readers send the records' metadata only.
        :param ext: extension parameters; any makes a 422 (there are none).
        :return: the query id.
        :raises NotFound: no such bucket or entry.
        :raises UnprocessableEntity: ``start > stop`` (non-continuous),
            ``each_n`` or ``each_s`` not positive, a malformed ``when``, ``ext``.
        """
        series = self._bucket(bucket).entry(entry)
        return self._queries.create(
            bucket, series, self.clock.seconds(), start=start, stop=stop, ttl=ttl,
            continuous=continuous, include=include,
            exclude=effective_exclude(entry, include, exclude), limit=limit,
            each_n=each_n, each_s=each_s, when=when, strict=strict,
            only_metadata=only_metadata, ext=ext,
        )

    def query_next(self, bucket: str, entry: str, qid: int, budget: int = 2000):
        """
        The next record of query ``qid``; refreshes its TTL.

        :param budget: how many records may be examined in this call.
        :return: a :class:`RecordView` (with only the ``#select_labels``
            labels, if the query has them); ``None`` if nothing (more)
            matches now (a non-continuous query is then dropped); ``PENDING``
            if the budget ran out first (call again later).
        :raises NotFound: no such bucket, entry, or query of this entry.
        :raises ConditionEvalError: the query's strict ``when`` failed on a
            record (404 ``Reference 'x' not found``, 422 otherwise); every
            later read answers the same until the query's TTL lapses.
        """
        series = self._bucket(bucket).entry(entry)
        result = self._queries.next(bucket, series, qid, self.clock.seconds(), budget)
        if not isinstance(result, tuple):
            return result
        block, record, last, select = result
        self.traffic.read(bucket, record.size)
        view = block.view(record, last)
        if select is not None:
            labels = view.record.labels
            view.record.labels = {k: v for k, v in labels.items() if k in select}
        return view

    def query_take(self, bucket: str, entry: str, qid: int, visit, reader=None,
                   budget: int = 2000, visit_run=None):
        """
        The next records of query ``qid`` for a batched read, handed to
        ``visit(ts, size, content_type, labels)`` in order until it returns
        true (the batch is full); refreshes the query's TTL.  ``labels`` are
        the stored ones (only the ``#select_labels`` ones, if the query has
        them): read them, do not change them.

        :param reader: a ``ContentReader`` (:meth:`open_reader`) each
            record's content is added to before ``visit`` sees it, or None.
        :param budget: how many records may be examined in this call.
        :param visit_run: ``visit_run(records) -> (taken, full)``, or None:
            for a query without filter, condition, limit or selected labels,
            called with runs of a block's stored records (read their ``ts``,
            ``size``, ``content_type`` and ``labels``) instead of ``visit``
            for each; it takes them all unless the batch is full.
        :return: ``FULL`` (``visit`` said so), ``None`` (nothing more now;
            a non-continuous query is then dropped) or ``PENDING`` (the
            budget ran out; call again later).
        :raises NotFound: no such bucket, entry, or query of this entry.
        :raises ConditionEvalError: as :meth:`query_next`; the records
            visited before it stay taken.
        :raises InternalError: a record's data file cannot be opened (the
            record is taken but not visited).
        """
        series = self._bucket(bucket).entry(entry)
        queries = self._queries
        query = queries.live(bucket, entry, qid, self.clock.seconds())
        select = query.select_labels
        emit, counted = self._emitter(select, visit, reader)
        run = None
        if visit_run is not None and select is None:
            run = self._run_emitter(visit_run, reader, counted)
        mark = query.mark
        if mark is not None:
            emit, run = mark.noting(emit, run)
        try:
            result = query.take(series, budget, emit, run)
        finally:
            if mark is None:
                self._count_read(bucket, counted)
            else:  # a read-ahead: its traffic counts once it is used
                mark.count(counted)
        queries.settle(query, result)
        return result

    def query_read_ahead(self, bucket: str, entry: str, qid: int, take) -> bool:
        """
        :meth:`query_take`'s next batch of query ``qid`` taken now, for its
        next read, as ``multi_read_ahead`` (``readahead.py``).

        :return: whether a batch is kept (for :meth:`query_claim`).
        """
        query = self._queries.find(bucket, entry, qid) if self.is_open else None
        if query is None or query.kept is not None or not QueryMark.plannable(query):
            return False
        return read_ahead(query, QueryMark(query), take)

    def query_claim(self, bucket: str, entry: str, qid: int, use: bool = True):
        """
        The batch :meth:`query_read_ahead` kept for query ``qid``, as
        ``multi_claim``: ``(what take returned, ContentReader)`` or None.
        """
        queries = self._queries
        query = queries.find(bucket, entry, qid)
        if query is None or query.kept is None:
            return None
        now = self.clock.seconds()
        if query.expired(now):
            return None  # the read drops it (QueryRegistry.live)
        return claim(query, now, use, self._open_planned,
                     lambda counted: self._count_read(bucket, counted))

    def _open_planned(self, planned) -> ContentReader:
        """A read-ahead's ``PlannedReader`` made a ``ContentReader`` (its files opened)."""
        return planned.open(self.run_in_thread, self._context.fds)

    def _count_read(self, bucket: str, counted: list) -> None:
        """Count the records an emitter handed out (``[records, bytes]``) as read traffic."""
        if counted[0]:
            self.traffic.read(bucket, counted[1], counted[0])

    @staticmethod
    def _emitter(select, visit, reader):
        """
        The ``visit(block, record, *head)`` of a storage take around a
        reader's ``visit(*head, ts, size, content_type, labels)``, and the
        ``[records, bytes]`` it handed out.
        """
        add = None if reader is None else reader.add_stored
        counted = [0, 0]

        def emit(block, record, *head):
            size = record.size
            if add is not None and size:
                try:
                    add(block, record)
                except OSError as exc:
                    raise InternalError(
                        f"Failed to read record {record.ts}: {exc.strerror or exc}"
                    ) from None
            counted[0] += 1
            counted[1] += size
            labels = record.labels
            if select is not None:
                labels = {k: v for k, v in labels.items() if k in select}
            return visit(*head, record.ts, size, record.content_type, labels)

        return emit, counted

    @staticmethod
    def _run_emitter(visit_run, reader, counted):
        """
        The ``visit_run(block, records, *head)`` of a storage take around a
        reader's ``visit_run(*head, records)``.
        """

        def emit_run(block, records, *head):
            if reader is not None:
                try:
                    reader.open_shared(block)  # before any header is made
                except OSError as exc:
                    raise InternalError(
                        f"Failed to read record {records[0].ts}: {exc.strerror or exc}"
                    ) from None
            taken, full = visit_run(*head, records)
            if taken:
                if taken < len(records):
                    records = records[:taken]
                if reader is not None:
                    reader.add_run(block, records)
                counted[0] += taken
                counted[1] += sum([record.size for record in records])
            return taken, full

        return emit_run

    def query_options(self, bucket: str, entry: str, qid: int):
        """
        What readers of query ``qid`` must know before reading it.

        :return: ``None`` if there is no such query (the read reports it),
            else ``{"only_metadata": bool, "io":`` the
            :class:`~reduct_twisted.storage.when.IoOverrides` of its
            ``when`` or ``None}``.
        """
        query = self._queries.find(bucket, entry, qid)
        if query is None:
            return None
        condition = query.condition
        return {"only_metadata": query.only_metadata,
                "io": None if condition is None else condition.io}

    def expire_queries(self) -> int:
        """:return: how many expired queries (v1 and multi-entry) were dropped."""
        now = self.clock.seconds()
        return self._queries.expire(now) + self._multi.expire(now)
