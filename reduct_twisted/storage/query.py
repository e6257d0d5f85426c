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

import collections
import itertools

import attr

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.storage.when import ConditionEvalError, RecordContext, compile_condition
from reduct_twisted.storage.when.extensions import check_extensions
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
        if self.error is not None:
            raise self.error
        found = self._take()
        if found is not None or self._done():
            return found
        examined = 0
        for block in entry.blocks_from(self.cursor):
            if self.stop is not None and block.block_id >= self.stop:
                return None
            if block.latest_ts < self.cursor:
                continue
            for record in entry.scan_block(block).records_from(self.cursor):
                if self.stop is not None and record.ts >= self.stop:
                    return None
                if record.state != FINISHED and self.continuous:
                    return None
                self.cursor = record.ts + 1
                examined += 1
                self.examined += 1
                if record.state == FINISHED and self.filter.accept(record):
                    self._offer(block, record)
                    found = self._take()
                    if found is not None or self._done():
                        return found
                if examined >= budget:
                    return PENDING
        return None

    def _done(self) -> bool:
        # limit comes last in spec §3.5, after the filter; $limit ends the query.
        if self.limit is not None and self.returned >= self.limit:
            return True
        return self.condition is not None and self.condition.exhausted and not self._ready

    def _offer(self, block, record) -> None:
        # The when filter with its context (upstream's WhenFilter): the
        # record joins the "before" buffer; a match, or a record inside the
        # "after" window of a match, releases the whole buffer.
        condition = self.condition
        if condition is None:
            self._ready.append((block, record))
            return
        before = self._before
        before.append((block, record))
        if condition.ctx_before_us is not None:
            while record.ts - before[0][1].ts > condition.ctx_before_us:
                before.popleft()
        elif len(before) > condition.ctx_before_records + 1:
            before.popleft()
        try:
            matched = condition.evaluate(RecordContext(record.ts, record.labels))
        except ConditionEvalError as exc:
            self.error = exc
            raise
        if condition.ctx_after_us is not None:
            if matched:
                self._after_ts = record.ts
            after = self._after_ts
            keep = after is not None and after + condition.ctx_after_us >= record.ts
        else:
            self._after_count = condition.ctx_after_records if matched else self._after_count - 1
            keep = self._after_count >= 0
        if keep:
            self._ready.extend(before)
            before.clear()

    def _take(self):
        # The next queued record still stored, counted against the limit.
        while self._ready:
            if self.limit is not None and self.returned >= self.limit:
                return None
            block, record = self._ready.popleft()
            if block.removed or record.state != FINISHED:
                continue
            self.returned += 1
            return block, record, self.limit is not None and self.returned >= self.limit
        return None


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

    def next(self, bucket: str, entry, qid: int, now: float, budget: int):
        """
        Step query ``qid`` of ``entry`` and refresh its TTL.

        A query that is not continuous (or any, after :meth:`end_continuous`)
        is dropped when it has nothing more.

        :return: as :meth:`Query.step`, a match with the query's
            ``select_labels`` appended: ``(block, record, last, select_labels)``.
        :raises NotFound: no such query for this bucket and entry, or it expired.
        :raises ConditionEvalError: the query's strict condition failed; it
            stays (and answers so) until its TTL lapses.
        """
        query = self.find(bucket, entry.name, qid)
        if query is None:
            raise _not_found(qid)
        if query.expired(now):
            del self._queries[qid]
            raise _not_found(qid)
        query.last_access = now
        result = query.step(entry, budget)
        if result is None and (not query.continuous or self._ending):
            del self._queries[qid]
        elif isinstance(result, tuple):
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
