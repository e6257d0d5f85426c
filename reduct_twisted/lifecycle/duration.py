# -*- test-case-name: tests.unit.test_lifecycle_settings -*-
"""
Duration literals of lifecycle settings (spec 1.20 §7.2): whitespace-separated
parts ``<integer><unit>`` with the units ``us``, ``ms``, ``s``, ``m``, ``h``
and ``d``, summed; a part may be negative (``"1h -30m"`` is 30 minutes).

The error texts are upstream's parser texts: ``Duration literal cannot be
empty``, ``Invalid duration value: <part>``, ``Invalid duration unit: <unit>``.
"""

import re

from reduct_twisted.errors import UnprocessableEntity

#: Microseconds per unit.
UNITS = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000,
         "d": 86_400_000_000}

#: The number of a part, and what follows it (the unit).
_PART = re.compile(r"(-?[0-9]*)(.*)", re.DOTALL)
#: A total (and each part) must fit an i64 of microseconds, as upstream's.
_I64 = 2 ** 63


def parse_duration(text: str) -> int:
    """
    :return: the duration ``text`` names, in microseconds (may be negative).
    :raises UnprocessableEntity: with one of the parser texts above.
    """
    parts = text.split()
    if not parts:
        raise UnprocessableEntity("Duration literal cannot be empty")
    total = 0
    for part in parts:
        number, unit = _PART.fullmatch(part).groups()
        # More digits than an i64 holds cannot be a valid value (and
        # int() of thousands of digits is not free).
        if number in ("", "-") or len(number.lstrip("-")) > 19:
            raise UnprocessableEntity(f"Invalid duration value: {part}")
        if unit not in UNITS:
            raise UnprocessableEntity(f"Invalid duration unit: {unit}")
        value = int(number) * UNITS[unit]
        if not -_I64 <= value < _I64:
            raise UnprocessableEntity(f"Invalid duration value: {part}")
        total += value
    if not -_I64 <= total < _I64:
        raise UnprocessableEntity(f"Invalid duration value: {text.strip()}")
    return total
