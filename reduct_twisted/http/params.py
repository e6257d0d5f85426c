# -*- test-case-name: tests.unit.test_http_params -*-
"""
Query-string parameters of ``GET .../q`` (spec §2.3.4), parsed into the
keyword arguments of ``StorageEngine.create_query`` with upstream 1.10+
error texts.
"""

import math
from typing import Mapping, Sequence

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.http.headers import parse_u64, query_arg, u64_param

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
