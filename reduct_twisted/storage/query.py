"""
Queries: server-side iterators over one entry (spec §2.3.4, §3.5, §4.8).

A query keeps only a cursor (the next timestamp to look at) and its filter
state, never a list of results; each step walks the entry's blocks from the
cursor, loading one block's record table at a time, and gives up after a
budget of examined records.  Time comes in as ``now`` values.
"""

import itertools

import attr

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.storage.records import FINISHED, PENDING


@attr.s(eq=False)
class RecordFilter:
    """
    Which records of a time-ordered stream to keep: by labels, then by
    sampling (spec §3.5).  Stateful: sampling depends on what was kept
    before, so one filter serves one stream.

    :ivar include: labels that must all be equal.
    :ivar exclude: labels that drop a record when all are equal.
    :ivar each_n: keep every n-th record left by the other filters, or ``None``.
    :ivar each_s: minimal distance in seconds between kept records, or ``None``.
    :raises UnprocessableEntity: ``each_n`` or ``each_s`` not positive.
    """

    include: dict = attr.ib(factory=dict)
    exclude: dict = attr.ib(factory=dict)
    each_n = attr.ib(default=None)
    each_s = attr.ib(default=None)
    _each_n_seen: int = attr.ib(default=0)
    _each_s_last = attr.ib(default=None)

    def __attrs_post_init__(self) -> None:
        if self.each_n is not None and self.each_n <= 0:
            raise UnprocessableEntity("'each_n' must be greater than 0")
        if self.each_s is not None and self.each_s <= 0:
            raise UnprocessableEntity("Time must be greater than 0 seconds")

    def accept(self, record) -> bool:
        """
        :param record: the next record of the stream (ascending timestamps).
        :return: whether to keep it; a kept record counts for sampling.
        """
        # Filter order of spec §3.5: include, exclude, each_s, each_n.
        labels = record.labels
        if any(labels.get(k) != v for k, v in self.include.items()):
            return False
        if self.exclude and all(labels.get(k) == v for k, v in self.exclude.items()):
            return False
        if self.each_s is not None:
            if self._each_s_last is not None and record.ts - self._each_s_last < self.each_s * 1e6:
                return False
            self._each_s_last = record.ts
        if self.each_n is not None:
            self._each_n_seen += 1
            if (self._each_n_seen - 1) % self.each_n:
                return False
        return True


@attr.s(eq=False)
class Query:
    """
    The state of one query.

    :ivar qid: its id.
    :ivar bucket: the bucket name it was created for.
    :ivar entry: the entry name it was created for.
    :ivar cursor: the smallest timestamp not yet examined.
    :ivar stop: exclusive upper bound, ``None`` for a continuous query.
    :ivar ttl: seconds the query survives without being read.
    :ivar last_access: ``now`` of its creation or its last read.
    :ivar filter: the :class:`RecordFilter` records must pass.
    :ivar limit: how many records to return at most, or ``None``.
    :ivar returned: how many records were returned so far.
    """

    qid: int = attr.ib()
    bucket: str = attr.ib()
    entry: str = attr.ib()
    cursor: int = attr.ib()
    stop = attr.ib()
    ttl: float = attr.ib()
    last_access: float = attr.ib()
    filter: RecordFilter = attr.ib(factory=RecordFilter)
    limit = attr.ib(default=None)
    returned: int = attr.ib(default=0)

    @property
    def continuous(self) -> bool:
        """Whether the query waits for new records instead of ending."""
        return self.stop is None

    def expired(self, now: float) -> bool:
        """:return: whether the query was not read for ``ttl`` seconds."""
        return now - self.last_access >= self.ttl

    def step(self, entry, budget: int):
        """
        Find the next matching record, examining at most ``budget`` records.

        A continuous query stops in front of a record still being written
        (and resumes there), so it neither skips nor reorders records; other
        queries skip such records.

        :param entry: the :class:`~reduct_twisted.storage.entry.Entry` to scan.
        :param budget: how many records may be examined.
        :return: ``(block, record, last)``; ``None`` when nothing (more)
            matches now; :data:`PENDING` when the budget ran out first.
        """
        if self.limit is not None and self.returned >= self.limit:
            return None
        examined = 0
        for block in entry.blocks_from(self.cursor):
            if self.stop is not None and block.block_id >= self.stop:
                return None
            if block.latest_ts < self.cursor:
                continue
            for record in entry.load_block(block).records_from(self.cursor):
                if self.stop is not None and record.ts >= self.stop:
                    return None
                if record.state != FINISHED and self.continuous:
                    return None
                self.cursor = record.ts + 1
                examined += 1
                if record.state == FINISHED and self._accept(record):
                    last = self.limit is not None and self.returned >= self.limit
                    return block, record, last
                if examined >= budget:
                    return PENDING
        return None

    def _accept(self, record) -> bool:
        # limit comes last in spec §3.5, after the filter.
        if not self.filter.accept(record):
            return False
        self.returned += 1
        return True


def _not_found(qid: int) -> NotFound:
    return NotFound(
        f"Query {qid} not found and it might have expired. Check TTL in your query request."
    )


class QueryRegistry:
    """
    All live queries, by id; ids come from one counter starting at 1.
    """

    def __init__(self) -> None:
        self._queries: dict = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._queries)

    def create(self, bucket: str, entry, now: float, *, start, stop, ttl, continuous,
               include, exclude, limit, each_n, each_s) -> int:
        """
        Register a query over ``entry`` (see ``StorageEngine.create_query``).

        :param bucket: the bucket name.
        :param entry: the existing :class:`~reduct_twisted.storage.entry.Entry`.
        :param now: the current time in seconds.
        :return: the new query's id.
        :raises UnprocessableEntity: ``start > stop``, ``each_n`` or ``each_s`` not positive.
        """
        record_filter = RecordFilter(dict(include or {}), dict(exclude or {}), each_n, each_s)
        # limit wins over continuous: upstream builds a plain limited query.
        continuous = continuous and limit is None
        start = entry.oldest_record if start is None else start
        if continuous:
            stop = None
        else:
            stop = entry.latest_record + 1 if stop is None else stop
            if start > stop:
                raise UnprocessableEntity("Start time must be before stop time")
        qid = next(self._ids)
        self._queries[qid] = Query(
            qid, bucket, entry.name, start, stop, ttl, now, record_filter, limit
        )
        return qid

    def next(self, bucket: str, entry, qid: int, now: float, budget: int):
        """
        Step query ``qid`` of ``entry`` and refresh its TTL.

        A query that is not continuous is dropped when it has nothing more.

        :return: as :meth:`Query.step`.
        :raises NotFound: no such query for this bucket and entry, or it expired.
        """
        query = self._queries.get(qid)
        if query is None or (query.bucket, query.entry) != (bucket, entry.name):
            raise _not_found(qid)
        if query.expired(now):
            del self._queries[qid]
            raise _not_found(qid)
        query.last_access = now
        result = query.step(entry, budget)
        if result is None and not query.continuous:
            del self._queries[qid]
        return result

    def expire(self, now: float) -> int:
        """
        Drop every expired query.

        :param now: the current time in seconds.
        :return: how many were dropped.
        """
        expired = [qid for qid, q in self._queries.items() if q.expired(now)]
        for qid in expired:
            del self._queries[qid]
        return len(expired)

    def drop_bucket(self, bucket: str) -> None:
        """
        Drop every query of ``bucket`` (it was removed).

        :param bucket: the bucket name.
        """
        for qid in [qid for qid, q in self._queries.items() if q.bucket == bucket]:
            del self._queries[qid]
