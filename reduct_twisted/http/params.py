# -*- test-case-name: tests.unit.test_http_params -*-
"""
Query parameters parsed into the keyword arguments of
``StorageEngine.create_query``: the query string of ``GET .../q`` (spec
§2.3.4, upstream 1.10+ error texts) and the JSON body of ``POST .../q``
(spec §3.10); the query string of ``DELETE .../q`` and the body of a
rename (§3.7, §3.8; an entry rename's as API 1.19 reads it, spec 1.20 §2.4).
"""

import math
from typing import Mapping, Sequence

from reduct_twisted.errors import BadRequest, ReductError, UnprocessableEntity
from reduct_twisted.http.headers import loads_json, query_arg, u64_param
from reduct_twisted.storage import U64_MAX
from reduct_twisted.wire import parse_u64

DEFAULT_TTL = 60


def _bool_param(args, name: str, message: str) -> bool:
    text = query_arg(args, name)
    if text is None:
        return False
    if text not in ("true", "false"):
        raise UnprocessableEntity(message)
    return text == "true"


def _labels(args: Mapping[bytes, Sequence[bytes]], prefix: bytes) -> dict:
    found = {}
    for key, values in args.items():
        if key.startswith(prefix) and values:
            found[key[len(prefix) :].decode("utf-8", "replace")] = values[-1].decode(
                "utf-8", "replace"
            )
    return found


def _each_s(args) -> "float | None":
    text = query_arg(args, "each_s")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UnprocessableEntity("'each_s' must be a float value")
    if not math.isfinite(value) or value <= 0:
        raise UnprocessableEntity("Time must be greater than 0 seconds")
    return value


def _each_n(args) -> "int | None":
    text = query_arg(args, "each_n")
    if text is None:
        return None
    value = parse_u64(text)
    if value is None:
        raise UnprocessableEntity("'each_n' must unsigned integer")
    if value == 0:
        raise UnprocessableEntity("'each_n' must be greater than 0")
    return value


def query_kwargs(args: Mapping[bytes, Sequence[bytes]]) -> dict:
    """
    Keyword arguments for ``create_query`` from ``request.args``.

    Unknown parameters are ignored, as upstream does.
    """
    ttl = u64_param(args, "ttl", "'ttl' must be in seconds as an unsigned integer")
    return {
        "start": u64_param(args, "start"),
        "stop": u64_param(args, "stop"),
        "ttl": DEFAULT_TTL if ttl is None else ttl,
        "continuous": _bool_param(args, "continuous", "'continue' must be a bool value"),
        "include": _labels(args, b"include-"),
        "exclude": _labels(args, b"exclude-"),
        "limit": u64_param(args, "limit", "'limit' must unsigned integer"),
        "each_n": _each_n(args),
        "each_s": _each_s(args),
    }


#: The ``query_type`` values of a JSON query.
QUERY_TYPES = ("QUERY", "REMOVE")


def _invalid(message: str) -> UnprocessableEntity:
    # The texts mimic serde's loosely; clients compare only the status (§1.4).
    return UnprocessableEntity(f"Invalid JSON: {message}")


def _u64_field(name: str, value) -> int:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise _invalid(f"invalid value for `{name}`: expected u64")
    return value


def _float_field(name: str, value) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _invalid(f"invalid value for `{name}`: expected f64")
    return float(value)


def _bool_field(name: str, value) -> bool:
    if type(value) is not bool:
        raise _invalid(f"invalid value for `{name}`: expected a boolean")
    return value


def _labels_field(name: str, value) -> dict:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid(f"invalid value for `{name}`: expected a map of strings")
    return dict(value)


def _any_field(name: str, value):
    return value


#: JSON field → its checker, in upstream's ``QueryEntry`` (1.17).
_FIELDS = {
    "start": _u64_field,
    "stop": _u64_field,
    "include": _labels_field,
    "exclude": _labels_field,
    "each_s": _float_field,
    "each_n": _u64_field,
    "limit": _u64_field,
    "ttl": _u64_field,
    "continuous": _bool_field,
    "only_metadata": _bool_field,
    "when": _any_field,
    "strict": _bool_field,
    "ext": _any_field,  # object or pipeline array; checked with the query id (storage)
}

#: Fields of which a REMOVE query needs at least one (spec §3.7).
REMOVE_CRITERIA = ("start", "stop", "include", "exclude", "each_s", "each_n", "limit", "when")


def json_query(body) -> tuple:
    """
    Check the decoded body of ``POST .../q`` (a ``QueryEntry``).

    Unknown fields are ignored and ``null`` means "not set", as upstream.

    :param body: the decoded JSON body (``None`` if empty).
    :return: ``(query_type, kwargs)``: kwargs holds the fields that were
        set, under the names of ``StorageEngine.create_query``.
    :raises UnprocessableEntity: ``Invalid JSON: ...`` (not an object, no or
        unknown ``query_type``, a field of the wrong type).
    """
    if not isinstance(body, dict):
        raise _invalid("expected a query object")
    query_type = body.get("query_type")
    if query_type is None:
        raise _invalid("missing field `query_type`")
    if not isinstance(query_type, str) or query_type not in QUERY_TYPES:
        raise _invalid("unknown variant for `query_type`, expected `QUERY` or `REMOVE`")
    kwargs = {}
    for name, check in _FIELDS.items():
        value = body.get(name)
        if value is not None:
            kwargs[name] = check(name, value)
    return query_type, kwargs


def remove_kwargs(kwargs: dict) -> dict:
    """
    The arguments of ``StorageEngine.remove_records`` from those of a
    REMOVE query (``continuous``, ``ttl`` and ``only_metadata`` do not apply).

    :raises UnprocessableEntity: none of :data:`REMOVE_CRITERIA` is set.
    """
    if not any(name in kwargs for name in REMOVE_CRITERIA):
        raise UnprocessableEntity("Define at least one query parameter to delete records")
    return {k: v for k, v in kwargs.items() if k not in ("continuous", "ttl", "only_metadata")}


def delete_query_kwargs(args: Mapping[bytes, Sequence[bytes]]) -> dict:
    """
    The arguments of ``StorageEngine.remove_records`` from the query string
    of ``DELETE .../q`` (spec §3.7): the criteria of ``GET .../q`` that
    were given.

    :raises UnprocessableEntity: a bad parameter, or none given.
    """
    given = {
        name: value for name, value in query_kwargs(args).items()
        if name in REMOVE_CRITERIA and value not in (None, {})
    }
    return remove_kwargs(given)


def entry_rename_target(request) -> str:
    """
    The ``new_name`` of an entry rename's JSON body (spec 1.20 §2.4): read
    whatever the ``Content-Type``; a body that is not JSON or has no string
    ``new_name`` is ``422 "Invalid JSON: ..."``.
    """
    try:
        body = loads_json(request.content.getvalue())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _invalid(str(exc)) from None
    new_name = body.get("new_name") if isinstance(body, dict) else None
    if not isinstance(new_name, str):
        raise _invalid("missing field `new_name`")
    return new_name


def rename_target(request) -> str:
    """
    The ``new_name`` of a rename's JSON body (spec §3.8): an explicit
    non-JSON content type is 415, a syntax error 400, a body without a
    string ``new_name`` 422 (what upstream's JSON extractor answers).
    """
    ctype = request.getHeader(b"content-type")
    if ctype is not None and ctype.split(b";")[0].strip().lower() != b"application/json":
        raise ReductError("Expected request with `Content-Type: application/json`", 415)
    try:
        body = loads_json(request.content.getvalue())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"Invalid JSON: {exc}") from None
    new_name = body.get("new_name") if isinstance(body, dict) else None
    if not isinstance(new_name, str):
        raise _invalid("missing field `new_name`")
    return new_name
