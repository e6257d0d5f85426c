# -*- test-case-name: tests.unit.test_storage_multi -*-
"""
Queries over several entries of a bucket: the I/O API's ``POST /io/:b/q``
and ``GET /io/:b/read`` (spec 1.20 §1.4, §1.5).

A :class:`MultiQuery` is one ordinary per-entry
:class:`~reduct_twisted.storage.query.Query` per selected entry, all built
by the engine's ``QueryRegistry`` from the same options (so ``limit``,
``each_n``, ``each_s`` and the stateful ``when`` operators act per entry,
as upstream), merged by a true k-way merge on (timestamp, entry name): each
entry offers its next match as the head of a heap, the smallest head is
taken and only that entry is stepped again.  Nothing is held but one head
per entry.

Ids come from the one query counter but live in their own table
(:class:`MultiRegistry`), so a v2 id is unknown to ``GET …/batch?q=`` and a
v1 id to ``/io/…/read``.  ``ttl`` applies to the merged query; the
engine's expiry loop drops expired ones (``StorageEngine.expire_queries``).
A non-continuous query is dropped as soon as it has delivered its end
(§5.6 allows it).

The engine methods are :class:`MultiMethods` (in ``multi_parts.py``), a mixin like ``ReadMethods``;
it uses the engine's ``_bucket``, ``_context``, ``_queries``, ``_multi`` and
``clock``.
"""

import heapq
from collections import deque
from itertools import repeat

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.meta import effective_exclude
from reduct_twisted.storage.multi_parts import (  # MultiMethods: the engine's mixin
    START_AFTER_STOP,
    MultiMethods,  # noqa: F401
    check_alone,
    select_entries,
)
from reduct_twisted.storage.query import _not_found
from reduct_twisted.storage.records import FINISHED, FULL, PENDING


class _Held:
    __slots__ = ()

    def __repr__(self) -> str:
        return "HELD"


#: Returned by ``multi_next`` when its ``accept`` refused the next record,
#: which stays the next one.
HELD = _Held()


#: Matches a part of a merge takes ahead at most (``MultiQuery._ahead``).
LOOKAHEAD = 64

#: Record tables a merge keeps loaded for its scans, at most (two per entry;
#: about half a MiB each at 1024 records a block).
SCAN_TABLES = 32


class MultiQuery:
    """
    The merged query (see the module docstring).

    :ivar qid: its id.
    :ivar bucket: the :class:`~reduct_twisted.storage.bucket.Bucket` (the
        query ends if it is removed).
    :ivar parts: ``[entry name, Entry, Query]`` per selected entry.
    :ivar ttl: seconds it survives without being read.
    :ivar last_access: ``now`` of its creation or last read.
    :ivar continuous: whether it waits for new records.
    :ivar only_metadata: readers send metadata only.
    :ivar io: the ``#batch_*`` directives (``IoOverrides``) of its ``when``, or None.
    :ivar select_labels: the ``#select_labels`` names, or None.
    """

    def __init__(self, qid, bucket, parts, ttl, now, continuous, only_metadata, io,
                 select_labels) -> None:
        self.qid = qid
        self.bucket = bucket
        self.parts = parts
        self.ttl = ttl
        self.last_access = now
        self.continuous = continuous
        self.only_metadata = only_metadata
        self.io = io
        self.select_labels = select_labels
        self.error = None
        #: A read-ahead: its ``readahead.MultiMark`` while it takes its batch, then
        #: ``(mark, batch, PlannedReader)`` until claimed (``readahead.py``).
        self.mark = self.kept = None
        #: Records the last :meth:`step` examined.
        self.used = 0
        self._heap: list = []
        #: Parts without a head in the heap (and not finished).
        self._empty = list(range(len(parts)))
        #: The next matches taken ahead of the merge, per part whose query
        #: has neither ``when`` nor ``limit`` (a record removed meanwhile is
        #: dropped as a head); the others step one record at a time.
        self._ahead = {i: deque() for i, (_, _, query) in enumerate(parts)
                       if query.condition is None and query.limit is None}

    def expired(self, now: float) -> bool:
        return now - self.last_access >= self.ttl

    def step(self, budget: int, accept=None):
        """
        The next record of the merge.

        :param budget: how many records the parts may examine.
        :param accept: ``accept(entry name) -> bool``, or None: a record
            refused stays the next one (:data:`HELD` is returned).
        :return: ``(entry name, block, record)``; None when nothing (more)
            matches now; :data:`PENDING` when the budget ran out first;
            :data:`HELD`.
        :raises ConditionEvalError: a strict ``when`` failed (every later
            step raises it too).
        """
        if self.error is not None:
            raise self.error
        self.used = used = 0
        heap = self._heap
        while True:
            empty, self._empty = self._empty, []
            for i, position in enumerate(empty):
                name, entry, query = self.parts[position]
                if entry.removed or entry.name != name:
                    continue  # finished: its entry is gone or renamed
                ahead = self._ahead.get(position)
                if ahead:
                    block, record = ahead.popleft()
                    heapq.heappush(heap, (record.ts, name, position, block, record))
                    continue
                if used >= budget:
                    self._empty.extend(empty[i:])
                    return PENDING
                before = query.examined
                try:
                    if ahead is None:
                        result = query.step(entry, budget - used)
                    else:
                        result = query.take(entry, budget - used, *_fillers(ahead))
                except Exception as exc:
                    if getattr(query, "error", None) is exc:
                        self.error = exc
                    self._empty.extend(empty[i:])
                    raise
                used += query.examined - before
                self.used = used
                if ahead:
                    block, record = ahead.popleft()
                    heapq.heappush(heap, (record.ts, name, position, block, record))
                    continue
                if result is PENDING:
                    self._empty.extend(empty[i:])
                    return PENDING
                if result is None:
                    if self.continuous:
                        self._empty.append(position)
                    continue
                block, record, _ = result
                heapq.heappush(heap, (record.ts, name, position, block, record))
            if not heap:
                return None
            ts, name, position, block, record = heap[0]
            if block.removed or record.state != FINISHED:
                heapq.heappop(heap)
                self._empty.append(position)
                continue
            if accept is not None and not accept(name):
                return HELD
            heapq.heappop(heap)
            self._empty.append(position)
            return name, block, record

    def take(self, budget: int, accept, visit, visit_run=None):
        """
        :meth:`step` for a batch: each next record goes to ``visit(block,
        record, entry name)`` until it returns true.

        :param visit_run: ``visit_run(block, records, entry name) -> (taken,
            full)``, or None: the matches of a part taken ahead that come
            before every other head and lie back to back in their block's
            shared segment (finished, uncompressed) go to it as one run
            instead of to ``visit`` one by one; it takes them all unless full.
        :return: ``FULL``; as :meth:`step` otherwise (``None``, ``PENDING``
            once ``budget`` records were examined in all, ``HELD``).
        """
        left, heap = budget, self._heap
        while True:
            result = self.step(left, accept)
            left -= self.used
            if result.__class__ is not tuple:
                return result
            name, block, record = result
            ahead = self._ahead.get(self._empty[-1])
            bound = _bound(heap, name)  # the heap stays as it is until the next step
            if (visit_run is not None and record.zsize is None
                    and record.segment == block.shared_segment):
                # The record and the matches its part has ahead of the next
                # head: one run (a refused entry gets the record alone).
                rows = [record]
                if ahead and (accept is None or accept(name)):
                    rows += _run_ahead(ahead, block, bound)
                taken, full = visit_run(block, rows, name)
                for _ in range(taken - 1):
                    ahead.popleft()
                if full:
                    return FULL
            elif visit(block, record, name):
                return FULL
            # The same part goes on while its next match taken ahead comes
            # before every other head (no heap push and pop for each).
            while ahead:
                block, record = ahead[0]
                if bound is not None and record.ts >= bound:
                    break
                if block.removed or record.state != FINISHED:
                    ahead.popleft()
                    continue
                if accept is not None and not accept(name):
                    return HELD
                if visit_run is not None:
                    rows = _run_ahead(ahead, block, bound)
                    if rows:
                        taken, full = visit_run(block, rows, name)
                        for _ in range(taken):
                            ahead.popleft()
                        if full:
                            return FULL
                        continue
                ahead.popleft()
                if visit(block, record, name):
                    return FULL
            if left <= 0:
                return PENDING


def _bound(heap, name):
    """
    The timestamp the records of part ``name`` must stay below to come
    before the head of ``heap`` ((ts, name) order), or None (no head).
    """
    if not heap:
        return None
    head_ts, head_name = heap[0][:2]
    return head_ts + 1 if name <= head_name else head_ts


def _fillers(ahead) -> tuple:
    """
    The ``visit`` and ``visit_run`` of a ``Query.take`` that takes matches
    ahead into ``ahead``: up to :data:`LOOKAHEAD` (a run may overshoot it),
    stopping after the first match of a second block.
    """

    def visit(block, record):
        ahead.append((block, record))
        return len(ahead) >= LOOKAHEAD or block is not ahead[0][0]

    def visit_run(block, records):
        if ahead and ahead[0][0] is not block:
            ahead.append((block, records[0]))
            return 1, True
        ahead.extend(zip(repeat(block), records))
        return len(records), len(ahead) >= LOOKAHEAD

    return visit, visit_run


def _run_ahead(ahead, block, bound) -> list:
    """
    The leading matches of ``ahead`` (``(block, record)`` pairs) that belong to
    ``block``, come before ``bound`` (a timestamp, or None) and are finished,
    uncompressed records of its shared segment (one run for ``add_run``).
    """
    rows, shared = [], block.shared_segment
    for owner, record in ahead:
        if (owner is not block or (bound is not None and record.ts >= bound)
                or record.state != FINISHED or record.zsize is not None
                or record.segment != shared):
            break
        rows.append(record)
    return rows


class MultiRegistry:
    """
    The live multi-entry queries, by id (their own table; ids from ``queries``).

    :param queries: the engine's ``QueryRegistry``: its id counter and
        whether continuous queries end now.
    :param tables: the engine's ``TableCache``, or None.
    """

    def __init__(self, queries, tables=None) -> None:
        self._queries = queries
        self._tables = tables
        self._live: dict = {}

    def create(self, bucket, patterns, now: float, *, ttl=60, continuous=False,
               only_metadata=False, **options) -> int:
        """
        Build and register a query over the entries ``patterns`` selects.

        :param options: the per-entry options of ``QueryRegistry.build``.
        :return: its id.
        :raises UnprocessableEntity: a bad option (for any entry): as
            ``QueryRegistry.build``; an entry whose default stop lies before
            an explicit ``start`` is left out instead.
        """
        queries = self._queries
        qid = queries.new_id()
        if options.get("limit") is not None:
            continuous = False  # limit wins, as in QueryRegistry.build
        parts = []
        for entry in select_entries(bucket, patterns):
            kwargs = dict(options)
            exclude = effective_exclude(entry.name, kwargs.get("include"), kwargs.get("exclude"))
            if exclude:
                kwargs["exclude"] = exclude
            try:
                query = queries.build(bucket.name, entry, now, ttl=ttl, continuous=continuous,
                                      only_metadata=only_metadata, qid=qid, **kwargs)
            except UnprocessableEntity as err:
                if err.message == START_AFTER_STOP and options.get("stop") is None:
                    continue  # this entry ends before start: nothing to return
                raise
            parts.append([entry.name, entry, query])
        if not parts:
            check_alone(qid, options)
        condition = parts[0][2].condition if parts else None
        self._live[qid] = MultiQuery(
            qid, bucket, parts, ttl, now, continuous, bool(only_metadata),
            None if condition is None else condition.io,
            None if condition is None else condition.select_labels,
        )
        return qid

    def find(self, bucket, qid: int):
        """:return: query ``qid`` of ``bucket`` (the object), or None (no TTL check)."""
        query = self._live.get(qid)
        if query is None or query.bucket is not bucket:
            return None
        return query

    def next(self, bucket, qid: int, now: float, budget: int, accept=None, visit=None,
             visit_run=None):
        """
        Step query ``qid`` (:meth:`MultiQuery.step`, or with ``visit``
        :meth:`MultiQuery.take`) and refresh its TTL; a non-continuous query
        (or any once continuous queries end) is dropped when it has nothing more.

        :return: as :meth:`MultiQuery.step` (``take``).
        :raises NotFound: no such query of this bucket, or it expired.
        """
        query = self.find(bucket, qid)
        if query is None:
            raise _not_found(qid)
        if query.expired(now):
            del self._live[qid]
            raise _not_found(qid)
        if query.kept is not None:
            query.kept[0].restore()  # a plan not claimed: the merge as it was before it
        query.last_access = now
        tables = self._tables
        run = query.step if visit is None else (lambda b, a: query.take(b, a, visit, visit_run))
        if tables is None:
            result = run(budget, accept)
        else:
            # Each entry's current table (and the one it just left) stays
            # loaded while the merge runs: scans evict by recency.  (What
            # TableCache.scans does, without a context manager per record.)
            kept = tables.scan_capacity
            tables.scan_capacity = max(kept, min(2 * len(query.parts), SCAN_TABLES))
            try:
                result = run(budget, accept)
            finally:
                tables.scan_capacity = kept
        if result is None and query.mark is None and (  # (a read-ahead's end: kept)
                not query.continuous or self._queries.ending):
            del self._live[qid]
        return result

    def discard(self, qid: int) -> None:
        """Drop query ``qid`` now, if it is still there."""
        self._live.pop(qid, None)

    def expire(self, now: float) -> int:
        """Drop every expired query (and those of removed buckets); :return: how many."""
        gone = [qid for qid, q in self._live.items() if q.expired(now) or q.bucket.removed]
        for qid in gone:
            del self._live[qid]
        return len(gone)
