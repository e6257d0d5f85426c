"""
Queries: server-side iterators over one entry (spec §2.3.4, §3.5, §3.10,
§3.11, §4.8).

A query keeps only a cursor (the next timestamp to look at) and its filter
state, never a list of results (only the few records a ``when`` context
directive holds back); each step walks the entry's blocks from the cursor,
loading one block's record table at a time, and gives up after a budget of
examined records.  Time comes in as ``now`` values.

A ``when`` condition (``storage/when/``) is evaluated after the other
filters.  Non-strict, a record whose evaluation fails does not match;
strict, the error ends the query: the step that meets it raises it, and so
does every later step until the query's TTL lapses (a batched read that
already took records answers them first and the error on the next read).
``$limit`` running out ends the query as if out of data.
"""

import bisect
import collections
import itertools

import attr

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.storage.filters import MatchQueue, RecordFilter
from reduct_twisted.storage.records import FINISHED, FULL, PENDING
from reduct_twisted.storage.when import compile_condition
from reduct_twisted.storage.when.extensions import check_extensions

#: Records of a block a plain query hands its ``visit_run`` first (then
#: twice as many each time): a batch mostly takes fewer than a block holds.
RUN_FIRST = 32


@attr.s(eq=False)
class Query(MatchQueue):
    """
    The state of one query.

    Records pass the time range, the state check and the :class:`RecordFilter`,
    then the ``when`` condition (with its ``#ctx_before``/``#ctx_after``
    context), then ``limit`` (spec §3.5).  Records the condition lets out
    wait in a queue, so a match can release the context records before it.

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
    :ivar condition: the compiled ``when``
        (:class:`~reduct_twisted.storage.when.Condition`), or ``None``.
    :ivar only_metadata: readers send the records' metadata only.
    :ivar error: the evaluation error that ended a strict query; every
        later step raises it again.
    :ivar examined: how many records its steps examined in all.
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
    condition = attr.ib(default=None)
    only_metadata: bool = attr.ib(default=False)
    error = attr.ib(default=None)
    examined: int = attr.ib(default=0)
    _ready: collections.deque = attr.ib(factory=collections.deque)
    _before: collections.deque = attr.ib(factory=collections.deque)
    _after_count: int = attr.ib(default=0)
    _after_ts = attr.ib(default=None)
    #: A read-ahead's ``readahead.QueryMark`` while it takes its batch, then
    #: ``(mark, batch, PlannedReader)`` until claimed (``readahead.py``).
    mark = attr.ib(default=None)
    kept = attr.ib(default=None)

    @property
    def continuous(self) -> bool:
        """Whether the query waits for new records instead of ending."""
        return self.stop is None

    @property
    def select_labels(self):
        """The label names readers get (``#select_labels``), or ``None`` for all."""
        return None if self.condition is None else self.condition.select_labels

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
        :raises ConditionEvalError: a strict condition failed on a record
            (now or in an earlier step).
        """
        found = []
        result = self.take(entry, budget, lambda block, record: found.append((block, record)) or True)
        if found:
            block, record = found[0]
            return block, record, self.limit is not None and self.returned >= self.limit
        return result

    def _drain(self, visit) -> bool:
        """Hand ``visit`` the matches found ahead (``_take``); :return: True once it says full."""
        found = self._take()
        while found is not None:
            if visit(found[0], found[1]):
                return True
            found = self._take()
        return False

    def take(self, entry, budget: int, visit, visit_run=None):
        """
        Hand the next matching records to ``visit(block, record)``, in order,
        until it returns true (the batch is full), nothing more matches now
        or ``budget`` records were examined: :meth:`step` for a whole batch,
        working through a block's sorted timestamps in one slice.

        :param visit: called with each match (the stored record: read it,
            do not keep or change it); a true result stops the take after
            that record.
        :param visit_run: without filter, condition or limit: called with
            a run of finished records of a block's shared segment (a list)
            instead of ``visit`` for each; :return: ``(taken, full)``, all
            taken unless full.
        :return: :data:`FULL` (``visit`` said so), ``None`` (nothing more
            now; with a ``limit``, also after its last record) or
            :data:`PENDING` (the budget ran out first).
        :raises ConditionEvalError: as :meth:`step`; the records visited
            before it stay taken.
        """
        if self.error is not None:
            raise self.error
        if self._drain(visit):
            return FULL
        if self._done():
            return None
        stop, continuous = self.stop, self.stop is None
        # No filter, condition or limit: every finished record is a match.
        plain = (self.condition is None and self.limit is None and self.filter.passes_all
                 and not self._ready)
        run = visit_run if plain else None
        accept = self.filter.accept
        examined = handed = 0
        try:
            for block in entry.blocks_from(self.cursor):
                if stop is not None and block.block_id >= stop:
                    return None
                if block.latest_ts < self.cursor:
                    continue
                entry.scan_block(block)
                table, order = block.table, block.order
                first = bisect.bisect_left(order, self.cursor)
                end = len(order)
                ended = stop is not None and end and order[-1] >= stop
                if ended:
                    end = bisect.bisect_left(order, stop, first)
                over = end - first > budget - examined
                if over:
                    end = first + budget - examined
                k, chunk = first, RUN_FIRST
                while k < end:  # no slice: a step takes one record
                    if run is not None:
                        # A run of finished records in the shared segment goes at
                        # once, in chunks that double: a batch mostly wants fewer
                        # records than a block has left.
                        rows, shared = [], block.shared_segment
                        for ts in order[k:min(end, k + chunk)]:
                            record = table[ts]
                            if (record.state != FINISHED or record.zsize is not None
                                    or record.segment != shared):
                                break
                            rows.append(record)
                        if rows:
                            taken, full = run(block, rows)
                            if taken:
                                self.cursor = rows[taken - 1].ts + 1
                            examined += taken
                            handed += taken
                            if full:
                                return FULL
                            k += taken
                            if k >= end:
                                break
                            if taken == chunk:  # the chunk's end, not a record to step over
                                chunk *= 2
                                continue
                    ts = order[k]
                    k += 1
                    record = table[ts]
                    if record.state != FINISHED:
                        if continuous:
                            return None
                        self.cursor = ts + 1
                        examined += 1
                        continue
                    self.cursor = ts + 1
                    examined += 1
                    if plain:
                        handed += 1
                        if visit(block, record):
                            return FULL
                    elif accept(record):
                        self._offer(block, record)
                        if self._drain(visit):
                            return FULL
                        if self._done():
                            return None
                if over:
                    return PENDING
                if ended:
                    return None
            return None
        finally:
            self.examined += examined
            self.returned += handed


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
        #: Continuous queries end like plain ones (``end_continuous``).
        self._ending = False

    def __len__(self) -> int:
        return len(self._queries)

    def new_id(self) -> int:
        """A fresh query id from the one counter (the I/O API's queries, ``multi.py``, share it)."""
        return next(self._ids)

    @property
    def ending(self) -> bool:
        """Whether continuous queries now end like plain ones (:meth:`end_continuous`)."""
        return self._ending

    def build(self, bucket: str, entry, now: float, *, start=None, stop=None, ttl=60,
              continuous=False, include=None, exclude=None, limit=None, each_n=None,
              each_s=None, when=None, strict=False, only_metadata=False, ext=None,
              qid=None) -> Query:
        """
        Make a query over ``entry`` with a new id, without registering it
        (see ``StorageEngine.create_query`` for the parameters).

        :param bucket: the bucket name.
        :param entry: the existing :class:`~reduct_twisted.storage.entry.Entry`.
        :param now: the current time in seconds.
        :param qid: the id to give it (a part of a multi-entry query,
            ``multi.py``), or None for a new one.
        :return: the query.
        :raises UnprocessableEntity: ``start > stop``, ``each_n`` or ``each_s``
            not positive, a malformed ``when``, an extension asked for (none
            exists; the id is used up).
        """
        record_filter = RecordFilter(dict(include or {}), dict(exclude or {}), each_n, each_s)
        condition = None if when is None else compile_condition(when, strict)
        # limit wins over continuous: upstream builds a plain limited query.
        continuous = continuous and limit is None
        start = entry.oldest_record if start is None else start
        if continuous:
            stop = None
        else:
            stop = entry.latest_record + 1 if stop is None else stop
            if start > stop:
                raise UnprocessableEntity("Start time must be before stop time")
        if qid is None:
            qid = next(self._ids)
        check_extensions(ext, condition, qid)
        return Query(qid, bucket, entry.name, start, stop, ttl, now, record_filter, limit,
                     condition=condition, only_metadata=bool(only_metadata))

    def create(self, bucket: str, entry, now: float, **kwargs) -> int:
        """
        Register a query over ``entry`` (see :meth:`build`).

        :return: the new query's id.
        """
        query = self.build(bucket, entry, now, **kwargs)
        self._queries[query.qid] = query
        return query.qid

    def find(self, bucket: str, entry: str, qid: int):
        """:return: query ``qid`` of ``bucket``/``entry``, or ``None`` (no TTL check)."""
        query = self._queries.get(qid)
        if query is None or (query.bucket, query.entry) != (bucket, entry):
            return None
        return query

    def live(self, bucket: str, entry: str, qid: int, now: float) -> Query:
        """
        Query ``qid`` of ``bucket``/``entry`` about to be read: its TTL refreshed.

        :raises NotFound: no such query for this bucket and entry, or it expired.
        """
        query = self.find(bucket, entry, qid)
        if query is None:
            raise _not_found(qid)
        if query.expired(now):
            del self._queries[qid]
            raise _not_found(qid)
        if query.kept is not None:
            query.kept[0].restore()  # a plan not claimed: the query as it was before it
        query.last_access = now
        return query

    def settle(self, query: Query, result) -> None:
        """
        A read of ``query`` ended with ``result``: a query that is not
        continuous (or any, after :meth:`end_continuous`) is dropped when it
        has nothing more (``None``).
        """
        if result is None and query.mark is None and (  # (a read-ahead's end: kept)
                not query.continuous or self._ending):
            self._queries.pop(query.qid, None)

    def next(self, bucket: str, entry, qid: int, now: float, budget: int):
        """
        Step query ``qid`` of ``entry`` (see :meth:`live` and :meth:`settle`).

        :return: as :meth:`Query.step`, a match with the query's
            ``select_labels`` appended: ``(block, record, last, select_labels)``.
        :raises NotFound: no such query for this bucket and entry, or it expired.
        :raises ConditionEvalError: the query's strict condition failed; it
            stays (and answers so) until its TTL lapses.
        """
        query = self.live(bucket, entry.name, qid, now)
        result = query.step(entry, budget)
        self.settle(query, result)
        if isinstance(result, tuple):
            return result + (query.select_labels,)
        return result

    def end_continuous(self) -> None:
        """From now on a continuous query is dropped when it has nothing more."""
        self._ending = True

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

    def drop(self, bucket: str, entry=None) -> None:
        """
        Drop every query of ``bucket`` (or of one entry of it): it was
        removed or renamed.

        :param bucket: the bucket name.
        :param entry: an entry name, or ``None`` for all entries.
        """
        for qid, q in list(self._queries.items()):
            if q.bucket == bucket and entry in (None, q.entry):
                del self._queries[qid]
