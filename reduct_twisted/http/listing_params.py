# -*- test-case-name: tests.unit.test_listing_params -*-
"""
The query string of a record listing (``GET /api/v1/records/:bucket/*entry``,
issue #16) parsed into a ``storage.listing.ListingSpec``.

Every malformed parameter is a 422 naming it: numbers must be unsigned
decimal integers (``start``, ``page`` and ``number`` at least 1,
``per_page`` 1 to 1000), ``orderBy[<field>]`` takes ``number`` or
``timestamp`` with ``asc`` or ``desc`` (one field at most),
``constraint[<label>]`` one of the operators of ``storage/listing.py`` and
needs its ``where[<label>]``, ``include_removed`` is ``true`` or ``false``
and ``digest`` is ``sha-256:<64 hex digits>``.  ``start`` and ``page``
exclude each other (``start`` is the cursor the ``next`` links carry, in
number order only).
Unknown parameters are ignored, as elsewhere in the API.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional, Sequence

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.http.headers import query_arg
from reduct_twisted.storage.listing import (
    DEFAULT_PER_PAGE, MAX_PER_PAGE, OPERATORS, ORDER_FIELDS, Condition, ListingSpec,
)
from reduct_twisted.wire import parse_u64

__all__ = ["parse_listing", "parse_digest"]

_BRACKETED = re.compile(rb"^(where|constraint|orderBy)\[(.*)\]$", re.DOTALL)
_DIGEST = re.compile(r"^sha-256:([0-9a-fA-F]{64})$")


def _count(args, name: str, low: int = 0, high: Optional[int] = None) -> Optional[int]:
    text = query_arg(args, name)
    if text is None:
        return None
    value = parse_u64(text)
    if value is None or value < low or (high is not None and value > high):
        bound = f" between {low} and {high}" if high is not None else \
            (f" of at least {low}" if low else "")
        raise UnprocessableEntity(f"'{name}' must be an unsigned integer{bound}")
    return value


def parse_digest(text: str) -> bytes:
    """``sha-256:<hex>`` as 32 bytes; :raises UnprocessableEntity:"""
    found = _DIGEST.match(text)
    if found is None:
        raise UnprocessableEntity("'digest' must be sha-256:<64 hexadecimal digits>")
    return bytes.fromhex(found.group(1))


def _bracketed(args: Mapping[bytes, Sequence[bytes]]) -> tuple:
    where, constraints, order = {}, {}, {}
    for key, values in args.items():
        found = _BRACKETED.match(key)
        if found is None or not values:
            continue
        kind = found.group(1)
        name = found.group(2).decode("utf-8", "replace")
        value = values[-1].decode("utf-8", "replace")
        {b"where": where, b"constraint": constraints, b"orderBy": order}[kind][name] = value
    return where, constraints, order


def _conditions(where: dict, constraints: dict) -> tuple:
    for label in constraints:
        if label not in where:
            raise UnprocessableEntity(f"'constraint[{label}]' needs 'where[{label}]'")
    out = []
    for label in sorted(where):
        operator = constraints.get(label, "=")
        if operator not in OPERATORS:
            raise UnprocessableEntity(
                f"'constraint[{label}]' must be one of {', '.join(OPERATORS)}"
            )
        if not label:
            raise UnprocessableEntity("'where[]' needs a label name")
        out.append(Condition(label, operator, where[label]))
    return tuple(out)


def _order(order: dict) -> tuple:
    if not order:
        return "number", False
    if len(order) > 1:
        raise UnprocessableEntity("'orderBy' takes one field")
    (field, direction), = order.items()
    if field not in ORDER_FIELDS:
        raise UnprocessableEntity(f"'orderBy[{field}]': records are ordered by "
                                  f"{' or '.join(ORDER_FIELDS)}")
    if direction not in ("asc", "desc"):
        raise UnprocessableEntity(f"'orderBy[{field}]' must be asc or desc")
    return field, direction == "desc"


def parse_listing(args: Mapping[bytes, Sequence[bytes]]) -> ListingSpec:
    """
    :param args: ``request.args``.
    :raises UnprocessableEntity: a malformed parameter (see the module).
    """
    number = _count(args, "number", low=1)
    start = _count(args, "start", low=1)
    page = _count(args, "page", low=1)
    if start is not None and page is not None:
        raise UnprocessableEntity("'start' and 'page' exclude each other")
    per_page = _count(args, "per_page", low=1, high=MAX_PER_PAGE)
    start_ts = _count(args, "start_ts")
    stop_ts = _count(args, "stop_ts")
    removed = query_arg(args, "include_removed")
    if removed not in (None, "true", "false"):
        raise UnprocessableEntity("'include_removed' must be true or false")
    digest = query_arg(args, "digest")
    where, constraints, order = _bracketed(args)
    order_by, descending = _order(order)
    if start is not None and order_by != "number":
        raise UnprocessableEntity("'start' is a cursor of number order; use 'page' with "
                                  f"'orderBy[{order_by}]'")
    return ListingSpec(
        number=number, start=start, page=page or 1,
        per_page=DEFAULT_PER_PAGE if per_page is None else per_page,
        start_ts=start_ts, stop_ts=stop_ts, where=_conditions(where, constraints),
        order_by=order_by, descending=descending, include_removed=removed == "true",
        digest=None if digest is None else parse_digest(digest),
    )
