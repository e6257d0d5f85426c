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

Two ways to a page:

* **By position** (number order, no filter but ``include_removed``): the
  page's first number comes from the cursor (``start``) or from the page
  number through ``removed.select``, then leaves are read one by one,
  skipping removed ones unless they are listed: work in proportion to the
  page (plus the removed numbers skipped).  ``total`` is ``size`` or
  ``size - len(removed)``.
* **By scan** (timestamp order, or any filter): every leaf is read, the
  matching ones sorted, and the page cut out; ``total`` is exact.  The
  caller runs this in the thread pool (it reads the whole log).
"""

from __future__ import annotations

from typing import Callable, Optional

import attr

from reduct_twisted.storage.listing import ListingSpec, matches

__all__ = ["Leaf", "Page", "plan_page", "by_position"]


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


def _scanned(spec, size, leaf, stored, candidates) -> Page:
    numbers = range(1, size + 1) if candidates is None else sorted(
        n for n in set(candidates) if 1 <= n <= size)
    found = []
    for n in numbers:
        item = leaf(n)
        if spec.digest is not None and item.digest != spec.digest:
            continue
        if spec.start_ts is not None and item.timestamp < spec.start_ts:
            continue
        if spec.stop_ts is not None and item.timestamp >= spec.stop_ts:
            continue
        if spec.where and not matches(item.labels, spec.where):
            continue
        keep = stored(item)
        if keep or spec.include_removed:
            found.append((item, keep))
    if spec.order_by == "timestamp":
        found.sort(key=lambda pair: (pair[0].timestamp, pair[0].number),
                   reverse=spec.descending)
    elif spec.descending:
        found.reverse()
    total = len(found)
    per_page = spec.per_page
    last_page = _last_page(total, per_page)
    if spec.start is not None:  # the cursor (number order only): the first item at or past it
        skip = sum(1 for item, _ in found if (item.number > spec.start if spec.descending
                                               else item.number < spec.start))
    else:
        skip = (spec.page - 1) * per_page
    page = found[skip:skip + per_page]
    next_start = previous_start = None
    if spec.order_by == "number":
        after = found[skip + per_page:skip + per_page + 1]
        next_start = after[0][0].number if after and page else None
        if skip > 0 and total:
            previous_start = found[max(0, min(skip - per_page, (last_page - 1) * per_page))][0].number
    return Page(page, total, skip // per_page + 1, last_page, next_start, previous_start)
