"""
Value parsers of the daemon's settings (``config.py``): each takes the raw
value of one layer (a string, or for ``listen`` a string or a list of
strings) and returns the typed value, or raises ``ValueError`` whose text
completes ``"<name>=<value!r> ..."``; plus the byte-size and whole-number
parsers that provisioning (``RS_BUCKET_<ID>_QUOTA_SIZE``...) shares.

This module depends only on the standard library.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, Callable

#: Canonical log level names; ``WARNING`` is accepted and stored as ``WARN``.
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
_LEVEL_ALIASES = {"WARNING": "WARN"}


def normalise_base_path(value: str) -> str:
    """
    Give ``value`` a leading and a trailing slash, as ReductStore 1.15.5 does
    for ``RS_API_BASE_PATH`` (``reduct`` and ``/reduct`` become ``/reduct/``).
    """
    if not value.startswith("/"):
        value = "/" + value
    if not value.endswith("/"):
        value += "/"
    return value


def _canonical_level(value: str) -> str:
    upper = value.strip().upper()
    return _LEVEL_ALIASES.get(upper, upper)


_U64_MAX = 2**64 - 1

_BYTE_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+) *([A-Za-z]*)")


def _byte_units() -> dict:
    units = {"": 1, "b": 1}
    for power, prefix in enumerate("kmgtp", start=1):
        units[prefix] = units[prefix + "b"] = 1000**power
        units[prefix + "i"] = units[prefix + "ib"] = 1024**power
    return units


#: Lower-case unit to its factor.
_BYTE_UNITS = _byte_units()


def parse_byte_size(text: str) -> int:
    """
    Parse a byte size as upstream's ``RS_*`` variables accept it
    (``RS_IO_BATCH_MAX_SIZE``, ``RS_BUCKET_<ID>_QUOTA_SIZE``, ...).

    :param text: a whole number of bytes (``512``), or a number, possibly
        fractional, with a unit and optional spaces between: ``B``, SI ``KB``
        to ``PB`` (powers of 1000) or binary ``KiB`` to ``PiB`` (powers of
        1024), in any case; the trailing ``B`` may be left out (``10k``).
        A fractional result is rounded down.
    :return: the size in bytes.
    :raises ValueError: not a byte size, or larger than an unsigned 64-bit
        integer; the text says why, fit to follow ``"<variable>=<value> is "``.
    """
    match = _BYTE_SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError("not a byte size (such as 512, 10.4 MB or 1 GiB)")
    number, unit = match.groups()
    factor = _BYTE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError("not a byte size: unknown unit; use B, KB, MB, GB, TB, PB or KiB to PiB")
    if not unit and "." in number:
        raise ValueError("not a whole number of bytes")
    return _at_most_u64(int(Decimal(number) * factor))


def parse_whole_number(text: str) -> int:
    """
    :return: ``text`` as a whole number of at most 64 bits (digits only,
        white space around them ignored).
    :raises ValueError: anything else; the text fits after ``"... is "``.
    """
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError("not a whole number")
    return _at_most_u64(int(text))


def _at_most_u64(value: int) -> int:
    if value > _U64_MAX:
        raise ValueError("too large for 64 bits")
    return value


# Value parsers: take the raw value of one layer (a string, or for ``listen``
# a string or a list of strings) and return the typed value, or raise
# ValueError whose text completes "<name>=<value!r> ...".


def _text(raw: Any) -> str:
    value = str(raw).strip()
    if any(c.isspace() for c in value):
        raise ValueError("must not contain white space")
    return value


def _path(raw: Any) -> str:
    return str(raw).strip()


def _port(raw: Any) -> int:
    try:
        port = int(str(raw).strip())
    except ValueError:
        raise ValueError("is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError("is not a port number (0 to 65535)")
    return port


def _level(raw: Any) -> str:
    level = _canonical_level(str(raw))
    if level not in LOG_LEVELS:
        raise ValueError("is not a log level; expected one of TRACE, DEBUG, INFO, WARN, ERROR")
    return level


def _base_path(raw: Any) -> str:
    value = _text(raw)
    if "?" in value or "#" in value:
        raise ValueError("must be a URL path without '?' or '#'")
    return normalise_base_path(value)


def _seconds(raw: Any) -> float:
    try:
        seconds = float(str(raw).strip())
    except ValueError:
        raise ValueError("is not a number of seconds") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError("must be a positive number of seconds")
    return seconds


def _wait_seconds(raw: Any) -> float:
    try:
        seconds = float(str(raw).strip())
    except ValueError:
        raise ValueError("is not a number of seconds") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError("must be 0 or a positive number of seconds")
    return seconds


def _at_least_one(parse: Callable[[str], int], unit: str) -> Callable[[Any], int]:
    """A value parser: ``parse`` (whose errors follow "is "), then at least 1."""

    def parser(raw: Any) -> int:
        try:
            value = parse(str(raw))
        except ValueError as e:
            raise ValueError(f"is {e}") from None
        if value < 1:
            raise ValueError(f"must be at least 1{unit}")
        return value

    return parser


_positive_count = _at_least_one(parse_whole_number, "")


def _count(raw: Any) -> int:
    """A whole number, 0 included (``io_max_writers_in_flight``: 0 is no limit)."""
    try:
        return parse_whole_number(str(raw))
    except ValueError as e:
        raise ValueError(f"is {e}") from None
_bytes = _at_least_one(parse_byte_size, " byte")


def _origins(raw: Any) -> tuple[str, ...]:
    # Comma-separated, white space around each trimmed (upstream); an origin
    # is sent back verbatim as a header value, so only visible ASCII.
    origins: list[str] = []
    for item in str(raw).split(","):
        origin = item.strip()
        if not origin:
            continue
        if not all("!" <= c <= "~" for c in origin):
            raise ValueError(
                f"is not a comma-separated list of origins: {origin!r} "
                "has white space or a character outside printable ASCII"
            )
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _sync_policy(raw: Any) -> str:
    value = str(raw).strip().lower()
    if value not in ("always", "none"):
        raise ValueError("is not a sync policy; expected always or none")
    return value


def _secret(raw: Any) -> str:
    # Never raises: a ConfigError would print the value.
    return str(raw).strip()


def _endpoints(raw: Any) -> tuple[str, ...]:
    # One endpoint per line in the ini file, white-space separated in RS_LISTEN,
    # one per --listen on the command line.
    items = raw.split() if isinstance(raw, str) else [str(i).strip() for i in raw]
    items = [i for i in items if i]
    if len(set(items)) != len(items):
        raise ValueError("names the same endpoint twice")
    return tuple(items)
