# -*- test-case-name: tests.unit.test_listing -*-
"""
What a record listing asks for (``GET /api/v1/records/:bucket/*entry``,
issue #16: GOV.UK Registers' numbered entries with Streams' filters) and
the label conditions it filters by.

A :class:`ListingSpec` is plain data: the HTTP layer parses it from the
query string (``http/listing_params.py``), the storage engine answers it.

Label conditions (``where[<label>]=<value>`` with ``constraint[<label>]=``
one of :data:`OPERATORS`, ``=`` by default) compare a record's label value
with the operand:

* ``=`` and ``!=`` compare the texts;
* ``<``, ``<=``, ``>``, ``>=`` compare as numbers when both sides are
  finite decimal numbers (``10 > 9``), else as texts by code point;
* ``like`` is SQL's: ``%`` stands for any run of characters, ``_`` for one,
  ``\\`` makes the next character literal; the whole value must match
  (case-sensitive).

A record without the label matches no condition on it (``!=`` included).
"""

from __future__ import annotations

import math
import re
from typing import Optional

import attr

__all__ = ["DEFAULT_PER_PAGE", "MAX_PER_PAGE", "OPERATORS", "ORDER_FIELDS", "Condition",
           "ListingSpec", "like_pattern", "matches"]

DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "like")
ORDER_FIELDS = ("number", "timestamp")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Condition:
    """``where[label]=value`` with its ``constraint[label]=operator``."""

    label: str
    operator: str
    value: str


@attr.s(frozen=True, slots=True, auto_attribs=True, kw_only=True)
class ListingSpec:
    """
    :ivar number: one record by entry number (``?number=``), or None.
    :ivar start: the Registers cursor: the first entry number of the page
        in ascending number order (the last in descending order), or None.
    :ivar page: the Streams page (1-based), used when ``start`` is None.
    :ivar per_page: items per page, 1 to :data:`MAX_PER_PAGE`.
    :ivar start_ts: only records at or after this timestamp (µs), or None.
    :ivar stop_ts: only records before this timestamp (µs), or None.
    :ivar where: the label conditions, all of which must hold.
    :ivar order_by: ``"number"`` or ``"timestamp"``.
    :ivar descending: the order's direction.
    :ivar include_removed: list removed (and evicted) records too.
    :ivar digest: only records whose content has this SHA-256 (32 bytes).
    """

    number: Optional[int] = None
    start: Optional[int] = None
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    start_ts: Optional[int] = None
    stop_ts: Optional[int] = None
    where: tuple = ()
    order_by: str = "number"
    descending: bool = False
    include_removed: bool = False
    digest: Optional[bytes] = None


def _number(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_LIKE_CACHE: dict = {}


def like_pattern(pattern: str):
    """:return: the compiled regular expression of an SQL ``LIKE`` pattern."""
    compiled = _LIKE_CACHE.get(pattern)
    if compiled is None:
        out, escaped = [], False
        for char in pattern:
            if escaped:
                out.append(re.escape(char))
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "%":
                out.append(".*")
            elif char == "_":
                out.append(".")
            else:
                out.append(re.escape(char))
        if escaped:  # a trailing backslash stands for itself
            out.append(re.escape("\\"))
        compiled = re.compile("".join(out), re.DOTALL)
        if len(_LIKE_CACHE) < 256:
            _LIKE_CACHE[pattern] = compiled
    return compiled


def _holds(value: str, condition: Condition) -> bool:
    op, operand = condition.operator, condition.value
    if op == "=":
        return value == operand
    if op == "!=":
        return value != operand
    if op == "like":
        return like_pattern(operand).fullmatch(value) is not None
    left, right = _number(value), _number(operand)
    if left is None or right is None:
        left, right = value, operand
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def matches(labels: dict, where) -> bool:
    """Whether ``labels`` (name to value) satisfy every condition of ``where``."""
    for condition in where:
        value = labels.get(condition.label)
        if value is None or not _holds(value, condition):
            return False
    return True
