# -*- test-case-name: tests.unit.test_listing_plan -*-
"""
One page of a record listing (issue #16), computed from an entry's record
log and the entry itself, through three callables so that it can be
tested on its own:

* ``leaf(n)`` → the :class:`Leaf` of entry number ``n`` (1 ≤ n ≤ ``size``):
  the record as it was written (the log's leaf; labels as written);
* ``stored(leaf)`` → whether the entry still holds that record (its
  timestamp, with that number);
* ``removed``: the entry's :class:`~reduct_twisted.storage.disk.removedset.RemovedSet`
  (advisory: it places pages; ``stored`` decides what is listed).

Listed items are leaves: a label update does not show here (the leaf and
its proofs cover the record as written; ``GET`` of the record has today's
labels).

Three ways to a page:

* **By position** (number order, no filter but ``include_removed``): the
  page's first number comes from the cursor (``start``) or from the page
  number through ``removed.select``, then leaves are read one by one,
  skipping removed ones unless they are listed: work in proportion to the
  page (plus the removed numbers skipped).  ``total`` is ``size`` or
  ``size - len(removed)``.
* **By time** (timestamp order of stored records, optionally in a time
  range, no label or digest filter: :func:`plan_time_page`): the entry's
  blocks cut the time axis in order, so whole blocks are skipped by their
  record counts and only the page's blocks (and the two the range cuts)
  are read; ``total`` is exact.  Work: the blocks' summaries (one per
  1024 records by default) plus a page.
* **By scan** (any other filter, or timestamp order with removed records):
  every leaf is read, the matching ones kept as ``(number, timestamp,
  stored)``, sorted, and the page cut out (:func:`cut_scanned`); ``total``
  is exact.  The caller runs the reads and the cut in the thread pool, in
  slices (``log_api.py``).
"""

from __future__ import annotations

from typing import Callable, Optional

import attr

from reduct_twisted.storage.listing import ListingSpec, matches

__all__ = ["Leaf", "Page", "plan_page", "by_position", "by_time", "plan_time_page",
           "cut_scanned", "wanted"]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Leaf:
    """
    A log leaf as listed.  ``skipped``: the gap leaf of a number no record
    holds (``{"number": n, "skipped": true}``; the other fields are empty,
    never stored, listed only with ``include_removed`` and without filters).
    """

    number: int
    timestamp: int
    size: int
    content_type: str
    labels: dict
    digest: Optional[bytes]
    skipped: bool = False


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Page:
    """
    :ivar items: ``(leaf, stored)`` pairs, in the listing's order.
    :ivar next_start: the cursor of the next page (its first number in
        number order), or None; in timestamp order always None (pages).
    :ivar previous_start: the cursor of the previous page, or None.
    """

    items: list
    total: int
    current_page: int
    last_page: int
    next_start: Optional[int] = None
    previous_start: Optional[int] = None


def by_position(spec: ListingSpec) -> bool:
    """Whether ``spec`` is answered without a scan."""
    return (spec.order_by == "number" and not spec.where and spec.digest is None
            and spec.start_ts is None and spec.stop_ts is None)


def by_time(spec: ListingSpec) -> bool:
    """
    Whether ``spec`` may be answered by :func:`plan_time_page`: timestamp
    order, stored records only, no label or digest filter (a time range is
    fine).
    """
    return (spec.order_by == "timestamp" and not spec.where and spec.digest is None
            and not spec.include_removed and spec.start is None)


def _last_page(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


def plan_page(spec: ListingSpec, size: int, leaf: Callable, stored: Callable,
              removed, candidates=None) -> Page:
    """
    :param size: the log's size (the highest entry number given so far).
    :param candidates: for a ``digest`` listing, the numbers the digest
        index gives (each checked against its leaf's digest); None to scan.
    """
    if by_position(spec):
        return _positional(spec, size, leaf, stored, removed)
    return _scanned(spec, size, leaf, stored, candidates)


def _positional(spec, size, leaf, stored, removed) -> Page:
    every = spec.include_removed
    total = size if every else max(0, size - len(removed))
    per_page, down = spec.per_page, spec.descending

    def rank_of(n: int) -> int:
        """How many listed numbers come before ``n`` in the listing's order."""
        if down:
            return (size - n) if every else (size - n) - (len(removed) - removed.rank(n + 1))
        return (n - 1) if every else (n - 1) - removed.rank(n)

    def nth(k: int) -> Optional[int]:
        """The number at 1-based position ``k`` of the listing's order."""
        if k < 1 or k > total:
            return None
        if every:
            return size - k + 1 if down else k
        if down:
            return removed.select(total - k + 1, size)
        return removed.select(k, size)

    if spec.start is not None:
        first = min(spec.start, size) if down else spec.start
        position = rank_of(first) if 1 <= first <= size else (0 if down else total)
    else:
        position = (spec.page - 1) * per_page
        first = nth(position + 1) or (size + 1 if not down else 0)
    items, n, step = [], first, -1 if down else 1
    while len(items) < per_page and 1 <= n <= size:
        found = leaf(n)
        keep = stored(found)
        if keep or every:
            items.append((found, keep))
        n += step
    last_page = _last_page(total, per_page)
    more = 1 <= n <= size and nth(position + len(items) + 1) is not None
    next_start = n if more and items else None
    previous = None
    if position > 0 and total:
        previous = nth(max(0, min(position - per_page, (last_page - 1) * per_page)) + 1)
    return Page(items, total, position // per_page + 1, last_page, next_start, previous)


def plan_time_page(spec: ListingSpec, size: int, leaf: Callable, blocks, records: Callable):
    """
    A timestamp-ordered page of the stored records (:func:`by_time`), from
    the entry's blocks, which cut the time axis into ascending ranges: whole
    blocks are skipped by their counts, so a page costs the blocks'
    summaries, the tables of the (at most two) blocks the time range cuts
    and of the blocks the page is in, and its leaves.  The answer is the
    scan's (``plan_page``) when every stored record has a number of the log.

    :param blocks: ``(count, first_ts, latest_ts, handle)`` of each block in
        ascending time order, ``count`` its finished records.
    :param records: ``handle`` -> ``[(timestamp, number)]`` of the block's
        finished records, ascending.
    :return: the page, or None when a record of the page has no number
        ``1 … size`` or its leaf another timestamp (not logged yet: scan).
    """
    low, high, per_page = spec.start_ts, spec.stop_ts, spec.per_page
    parts, total = [], 0
    for count, first, latest, handle in blocks:
        if not count or (low is not None and latest < low) or (high is not None and first >= high):
            continue
        rows = None
        if (low is not None and first < low) or (high is not None and latest >= high):
            rows = [(ts, n) for ts, n in records(handle)
                    if (low is None or ts >= low) and (high is None or ts < high)]
            count = len(rows)
        if count:
            parts.append((count, handle, rows))
            total += count
    if spec.descending:
        parts.reverse()
    position = skip = (spec.page - 1) * per_page
    chosen = []
    for count, handle, rows in parts:
        if len(chosen) >= per_page:
            break
        if skip >= count:
            skip -= count
            continue
        rows = records(handle) if rows is None else rows
        if spec.descending:
            rows = rows[::-1]
        chosen += rows[skip:skip + per_page - len(chosen)]
        skip = 0
    items = []
    for ts, n in chosen:
        if n is None or not 1 <= n <= size:
            return None
        item = leaf(n)
        if item.timestamp != ts:
            return None
        items.append((item, True))
    return Page(items, total, position // per_page + 1, _last_page(total, per_page))


def _scanned(spec, size, leaf, stored, candidates) -> Page:
    numbers = range(1, size + 1) if candidates is None else sorted(
        n for n in set(candidates) if 1 <= n <= size)
    found = []
    leaves = {}
    for n in numbers:
        item = leaf(n)
        if not wanted(item, spec):
            continue
        keep = stored(item)
        if keep or spec.include_removed:
            found.append((n, item.timestamp, keep))
            leaves[n] = item
    page = cut_scanned(spec, found)
    return attr.evolve(page, items=[(leaves[n], keep) for n, keep in page.items])


def wanted(item: Leaf, spec: ListingSpec) -> bool:
    """
    Whether leaf ``item`` passes the filters of ``spec`` (digest, time range,
    labels).  A skipped number has no timestamp, labels or digest: a scan
    (filters, timestamp order) never lists it.
    """
    return (not item.skipped and (spec.digest is None or item.digest == spec.digest)
            and (spec.start_ts is None or item.timestamp >= spec.start_ts)
            and (spec.stop_ts is None or item.timestamp < spec.stop_ts)
            and (not spec.where or matches(item.labels, spec.where)))


def cut_scanned(spec: ListingSpec, found: list) -> Page:
    """
    The page of a scanned listing, from every listed match: no leaf read,
    no entry asked (plain lists: the caller may run it in the thread pool).

    :param found: ``(number, timestamp, stored)`` of each listed record
        (matching, and stored unless removed ones are listed), ascending
        numbers.
    :return: the page, its ``items`` as ``(number, stored)`` pairs.
    """
    if spec.order_by == "timestamp":
        found = sorted(found, key=lambda x: (x[1], x[0]), reverse=spec.descending)
    elif spec.descending:
        found = found[::-1]
    total = len(found)
    per_page = spec.per_page
    last_page = _last_page(total, per_page)
    if spec.start is not None:  # the cursor (number order only): the first item at or past it
        start = spec.start
        skip = sum(1 for x in found if (x[0] > start if spec.descending else x[0] < start))
    else:
        skip = (spec.page - 1) * per_page
    page = [(n, keep) for n, _, keep in found[skip:skip + per_page]]
    next_start = previous_start = None
    if spec.order_by == "number":
        after = found[skip + per_page:skip + per_page + 1]
        next_start = after[0][0] if after and page else None
        if skip > 0 and total:
            previous_start = found[max(0, min(skip - per_page, (last_page - 1) * per_page))][0]
    return Page(page, total, skip // per_page + 1, last_page, next_start, previous_start)
