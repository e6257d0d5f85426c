"""
Directives of the ``when`` language (spec §3.11): top-level keys starting
with ``#``.  They are parsed and checked here; the query engine applies them.

Parsing runs in two steps, in upstream's order: :func:`collect` (unknown
directive, ``null``) before the expressions are parsed, :func:`interpret`
(the values) after.
"""

import re

import attr

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.when.parse import compact_json, integer_text
from reduct_twisted.storage.when.values import (
    I64_DIGITS,
    I64_MAX,
    I64_MIN,
    ConditionEvalError,
    Duration,
    as_int,
    excerpt,
    parse_digits,
    parse_duration,
)

DIRECTIVES = (
    "#ctx_before",
    "#ctx_after",
    "#select_labels",
    "#ext",
    "#batch_size",
    "#batch_records",
    "#batch_metadata_size",
    "#batch_timeout",
    "#record_timeout",
    "#io_timeout",
)

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\Z")
_SIZE_UNITS = {"": 1, "b": 1}
for _i, _p in enumerate("kmgtp", start=1):
    _SIZE_UNITS.update({_p: 1000**_i, _p + "b": 1000**_i, _p + "i": 1024**_i, _p + "ib": 1024**_i})


@attr.s(frozen=True)
class IoOverrides:
    """
    Per-query overrides of the ``RS_IO_*`` batch limits (``[1.17]``); ``None``
    where the query keeps the server's setting.
    """

    batch_size: int = attr.ib(default=None)
    batch_records: int = attr.ib(default=None)
    batch_metadata_size: int = attr.ib(default=None)
    batch_timeout_us: int = attr.ib(default=None)
    record_timeout_us: int = attr.ib(default=None)
    io_timeout_us: int = attr.ib(default=None)


def _primitive(key: str, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not I64_MIN <= value <= I64_MAX:
            raise UnprocessableEntity(
                f"Directive '{key}' contains integer value out of range: {integer_text(value)}"
            )
        return int(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        duration = parse_duration(value)
        return value if duration is None else duration
    raise UnprocessableEntity(
        f"Directive '{key}' contains unsupported value type: {compact_json(value)}"
    )


def _item(key: str, value):
    # One item of a directive's array: objects only in ``#ext`` (its pipeline).
    if isinstance(value, dict):
        if key != "#ext":
            raise UnprocessableEntity(f"Directive '{key}' does not support object items in arrays")
        return compact_json(value)
    return _primitive(key, value)


def collect(when: dict) -> dict:
    """
    :return: directive name → ``(raw JSON, values)`` for the ``#`` keys of
        ``when``; ``values`` is upstream's list of primitives (an object
        becomes its JSON text, a string that is a duration literal a duration).
    :raises UnprocessableEntity: an unknown directive, a ``null`` value, an
        object inside the array of a directive other than ``#ext``, a value
        of another type inside an array (``null``, an array), an integer
        beyond i64 (spec 1.20 §6.3 ``[1.19.10]``).
    """
    found = {}
    for key, raw in when.items():
        if not (isinstance(key, str) and key.startswith("#")):
            continue
        if key not in DIRECTIVES:
            raise UnprocessableEntity(f"Directive '{key}' is not supported")
        if raw is None:
            raise UnprocessableEntity(f"Directive '{key}' cannot be null")
        if isinstance(raw, dict):
            values = [compact_json(raw)]
        elif isinstance(raw, (list, tuple)):
            values = [_item(key, item) for item in raw]
        else:
            values = [_primitive(key, raw)]
        found[key] = (raw, values)
    return found


def _padding(key: str, values: list):
    """:return: ``(records, microseconds or None)`` of ``#ctx_before``/``#ctx_after``."""
    if len(values) != 1:
        raise UnprocessableEntity(f"{key} must be a single value")
    (value,) = values
    try:
        n = as_int(value)
    except ConditionEvalError as err:
        raise UnprocessableEntity(f"{key} must be an integer or duration: {err.message}") from None
    if n < 0:
        raise UnprocessableEntity(f"{key} must be non-negative")
    return (0, n) if value.__class__ is Duration else (n, None)


def _select_labels(raw) -> list:
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise UnprocessableEntity("#select_labels must contain only string values")
    if not names:
        raise UnprocessableEntity("#select_labels must contain at least one label")
    return list(dict.fromkeys(names))


def _size_value(number: str, unit: int):
    """:return: ``number`` (digits, maybe a fraction) times ``unit`` if it fits in an i64."""
    if "." in number:
        whole = number.split(".", 1)[0].lstrip("0")
        if len(whole) > I64_DIGITS:  # float() would give a huge or infinite value
            return None
        size = float(number) * unit
        return int(size) if size < 2.0**63 else None
    n = parse_digits(number)
    if n is None or n * unit > I64_MAX:
        return None
    return n * unit


def _size(key: str, values: list) -> int:
    if len(values) != 1:
        raise UnprocessableEntity(f"{key} must be a single integer or string value")
    (value,) = values
    if value.__class__ is int and value >= 0:
        return value
    if value.__class__ is str:
        match = _SIZE.match(value.strip())
        unit = match and _SIZE_UNITS.get(match.group(2).lower())
        if unit is None:
            raise UnprocessableEntity(
                f"{key} must be a positive integer or string: '{excerpt(value)}' is not a size"
            )
        size = _size_value(match.group(1), unit)
        if size is None:
            raise UnprocessableEntity(
                f"{key} must be a positive integer or string: '{excerpt(value)}' is out of "
                "the 64-bit integer range"
            )
        return size
    raise UnprocessableEntity(
        f"{key} must be a positive integer or string representing a positive integer"
    )


def _count(key: str, values: list) -> int:
    if len(values) != 1:
        raise UnprocessableEntity(f"{key} must be a single integer value")
    (value,) = values
    if value.__class__ is int and value >= 0:
        return value
    raise UnprocessableEntity(f"{key} must be a positive integer")


def _timeout_us(key: str, values: list) -> int:
    if len(values) != 1:
        raise UnprocessableEntity(f"{key} must be a single integer or duration value")
    (value,) = values
    if value.__class__ is int and value >= 0:
        return value * 1_000_000
    if value.__class__ is Duration and value >= 0:
        return int(value)
    raise UnprocessableEntity(f"{key} must be a positive integer or duration")


_IO = {
    "#batch_size": ("batch_size", _size),
    "#batch_records": ("batch_records", _count),
    "#batch_metadata_size": ("batch_metadata_size", _size),
    "#batch_timeout": ("batch_timeout_us", _timeout_us),
    "#record_timeout": ("record_timeout_us", _timeout_us),
    "#io_timeout": ("io_timeout_us", _timeout_us),
}


def interpret(found: dict) -> dict:
    """
    :param found: what :func:`collect` returned.
    :return: the keyword arguments of :class:`Condition` the directives set.
    :raises UnprocessableEntity: a value the directive cannot take.
    """
    fields = {}
    io = {}
    for key, (raw, values) in found.items():
        if key in ("#ctx_before", "#ctx_after"):
            records, us = _padding(key, values)
            fields[f"{key[1:]}_records"] = records
            fields[f"{key[1:]}_us"] = us
        elif key == "#select_labels":
            fields["select_labels"] = _select_labels(raw)
        elif key == "#ext":
            fields["ext"] = raw  # checked with the query's id (``extensions.py``)
        else:
            name, parse = _IO[key]
            io[name] = parse(key, values)
    fields["io"] = IoOverrides(**io)
    return fields
