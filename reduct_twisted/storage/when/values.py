"""
Values of the ``when`` language (spec §3.11): typing, text forms, casts,
ordering and arithmetic, with upstream's error texts.  The decisions taken
where the spec is silent are listed in :mod:`reduct_twisted.storage.when`.

Values are plain Python objects: ``bool``, ``int``, ``float``, ``str`` and
:class:`Duration` (an ``int`` of microseconds that remembers it is one).
Python's ``==`` between them already is the language's equality (a bool is
0/1, numbers compare by value, a string never equals a number) and ``bool()``
is its truthiness; only ordering, arithmetic and casts need the helpers here.
"""

import functools
import json
import math
import re
from decimal import Decimal

from reduct_twisted.errors import NotFound, ReductError, UnprocessableEntity

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
#: Digits of the longest i64 (without sign or leading zeros).  Python refuses
#: ``int()`` of a string of more than 4300 digits (a ValueError): digit strings
#: are measured before they are converted, and a longer one is no i64.
I64_DIGITS = 19
#: Longest value quoted whole in an error text; a longer one is abbreviated.
QUOTE_LIMIT = 100


class ConditionEvalError(ReductError):
    """Evaluating a condition on one record failed: the record does not
    match, unless the condition is strict (then the query ends with it)."""


class ReferenceNotFound(ConditionEvalError, NotFound):
    """A ``&label``, ``@label`` or ``$ref`` names a label the record lacks (404)."""


class EvaluationError(ConditionEvalError, UnprocessableEntity):
    """A type error, a bad cast or a division by zero on one record (422)."""


class LimitReached(Exception):
    """Raised inside an evaluation by ``$limit`` once it ran out."""


class Duration(int):
    """A duration in microseconds (spec §3.11 ``[1.16]``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Duration({int(self)})"


_INT = re.compile(r"[+-]?[0-9]+\Z")
# Unambiguous (``[0-9]+(?:\.[0-9]*)?``, not ``[0-9]+\.?[0-9]*``): a long
# digit string that is no float fails in linear time, not quadratic.
_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\Z",
    re.IGNORECASE,
)
_DURATION_PART = re.compile(r"(-?[0-9]+)(us|ms|s|m|h|d)\Z")
_UNITS = {
    "us": 1,
    "ms": 1000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
}
_TEXT_UNITS = sorted(_UNITS.items(), key=lambda item: -item[1])
_TYPE_NAMES = {bool: "boolean", int: "integer", float: "float", str: "string", Duration: "duration"}


def wrap(n: int) -> int:
    """:return: ``n`` wrapped into i64 as upstream's release build does."""
    if I64_MIN <= n <= I64_MAX:
        return n
    return (n - I64_MIN) % 2**64 + I64_MIN


def excerpt(text: str) -> str:
    """:return: ``text`` for an error text, abbreviated if it is long."""
    if len(text) <= QUOTE_LIMIT:
        return text
    return f"{text[:40]}… ({len(text)} characters)"


def parse_digits(text: str):
    """
    :param text: an optional sign and ASCII digits (already matched).
    :return: their value if it fits in an i64, else ``None``; never
        converts more than :data:`I64_DIGITS` digits.
    """
    sign = "-" if text[:1] == "-" else ""
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > I64_DIGITS:
        return None
    n = int(sign + digits)
    return n if I64_MIN <= n <= I64_MAX else None


def _parse_int(text: str):
    """:return: ``text`` as an i64 (Rust's grammar), or ``None``."""
    return parse_digits(text) if _INT.match(text) else None


def _parse_float(text: str):
    """:return: ``text`` as an f64 (Rust's grammar, no blanks or ``_``), or ``None``."""
    return float(text) if _FLOAT.match(text) else None


#: Label values longer than this are typed afresh each time, not cached:
#: the cache holds at most 8192 × 256 characters, whatever is written.
CACHED_LABEL_LENGTH = 256


def parse_label(text: str):
    """
    Type a label value on the fly: ``"true"``/``"false"`` → bool, an i64
    literal → int, a float literal → float, anything else stays a string.
    Never a duration.
    """
    if len(text) > CACHED_LABEL_LENGTH:
        return _type_label(text)
    return cached_label(text)


def _type_label(text: str):
    if text == "true":
        return True
    if text == "false":
        return False
    n = _parse_int(text)
    if n is not None:
        return n
    x = _parse_float(text)
    return text if x is None else x


#: :func:`parse_label` of values up to :data:`CACHED_LABEL_LENGTH` characters.
cached_label = functools.lru_cache(maxsize=8192)(_type_label)


def parse_duration(text: str):
    """
    :return: the :class:`Duration` a literal such as ``"1h 30m"`` or
        ``"-500ms"`` stands for, or ``None`` if ``text`` is not one.
    """
    parts = text.split()
    if not parts:
        return None
    total = 0
    for part in parts:
        match = _DURATION_PART.match(part)
        if match is None:
            return None
        number = parse_digits(match.group(1))
        if number is None:  # upstream's i64 parse of the part fails: a string
            return None
        total += number * _UNITS[match.group(2)]
    return Duration(total) if I64_MIN <= total <= I64_MAX else None


def type_name(value) -> str:
    """:return: the word upstream's error texts use for ``value``'s type."""
    return _TYPE_NAMES[value.__class__]


def _float_text(x: float) -> str:
    # Rust's Display: shortest round-trip digits, never an exponent.
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = repr(x)
    if "e" in text:
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _duration_text(us: int) -> str:
    parts = []
    for unit, size in _TEXT_UNITS:
        if abs(us) >= size:
            q = abs(us) // size * (1 if us >= 0 else -1)
            parts.append(f"{q}{unit}")
            us -= q * size
    return " ".join(parts) or "0us"


def to_text(value) -> str:
    """:return: the string form of ``value`` (what upstream's ``to_string`` gives)."""
    cls = value.__class__
    if cls is str:
        return value
    if cls is bool:
        return "true" if value else "false"
    if cls is float:
        return _float_text(value)
    if cls is Duration:
        return _duration_text(value)
    return str(value)


def quoted(name: str) -> str:
    """:return: ``name`` as Rust's ``{:?}`` prints a string."""
    return json.dumps(name, ensure_ascii=False)


def float_to_int(x: float) -> int:
    """:return: ``x as i64`` in Rust: truncated, saturated, NaN → 0."""
    if x != x:
        return 0
    if x >= 2.0**63:
        return I64_MAX
    if x < -(2.0**63):
        return I64_MIN
    return int(x)


def as_int(value) -> int:
    """:raises EvaluationError: a string that is no integer literal."""
    cls = value.__class__
    if cls is str:
        n = _parse_int(value)
        if n is None:
            raise EvaluationError(f"Value '{excerpt(value)}' could not be parsed as integer")
        return n
    if cls is float:
        return float_to_int(value)
    return int(value)


def as_float(value) -> float:
    """:raises EvaluationError: a string that is no float literal."""
    if value.__class__ is str:
        x = _parse_float(value)
        if x is None:
            raise EvaluationError(f"Value '{excerpt(value)}' could not be parsed as float")
        return x
    return float(value)


def ordered(x, y) -> bool:
    """:return: whether ``x`` and ``y`` can be ordered (not string vs. non-string)."""
    return (x.__class__ is str) is (y.__class__ is str)


def add(a, b):
    """``a + b``: numbers add (float if one is), strings concatenate."""
    sa, sb = a.__class__ is str, b.__class__ is str
    if sa or sb:
        if sa and sb:
            return a + b
        raise EvaluationError(f"Cannot add {type_name(a)} to {type_name(b)}")
    if a.__class__ is float or b.__class__ is float:
        return float(a) + float(b)
    return wrap(int(a) + int(b))


def sub(a, b):
    sa, sb = a.__class__ is str, b.__class__ is str
    if sa and sb:
        raise EvaluationError("Cannot subtract string")
    if sa or sb:
        raise EvaluationError(f"Cannot subtract string from {type_name(b if sa else a)}")
    if a.__class__ is float or b.__class__ is float:
        return float(a) - float(b)
    return wrap(int(a) - int(b))


def mult(a, b):
    if a.__class__ is str or b.__class__ is str:
        raise EvaluationError(f"Cannot multiply {type_name(a)} by {type_name(b)}")
    if a.__class__ is float or b.__class__ is float:
        return float(a) * float(b)
    return wrap(int(a) * int(b))


def _no_strings(a, b) -> None:
    if a.__class__ is str:
        raise EvaluationError("Cannot divide string")
    if b.__class__ is str:
        raise EvaluationError("Cannot divide by string")


def div(a, b) -> float:
    """Float division."""
    _no_strings(a, b)
    d = float(b)
    if d == 0.0:
        raise EvaluationError("Cannot divide by zero")
    return float(a) / d


def div_num(a, b) -> int:
    """Integer division, truncated towards zero."""
    _no_strings(a, b)
    d = as_int(b)
    if d == 0:
        raise EvaluationError("Cannot divide by zero")
    n = as_int(a)
    q = abs(n) // abs(d)
    return wrap(q if (n < 0) == (d < 0) else -q)


def rem(a, b):
    """Remainder with the sign of the dividend (Rust's ``%``)."""
    sa, sb = a.__class__ is str, b.__class__ is str
    if sa and sb:
        raise EvaluationError("Cannot divide string")
    if sa or sb:
        raise EvaluationError(f"Cannot divide {type_name(a)} by {type_name(b)}")
    if a.__class__ is float or b.__class__ is float:
        x, y = float(a), float(b)
        if y == 0.0 or math.isinf(x):
            return math.nan
        return math.fmod(x, y)
    n, d = int(a), int(b)
    if d == 0:
        raise EvaluationError("Cannot divide by zero")
    r = abs(n) % abs(d)
    return -r if n < 0 else r


def absolute(a):
    cls = a.__class__
    if cls is str:
        raise EvaluationError("Cannot calculate absolute value of a string")
    if cls is float:
        return abs(a)
    return wrap(abs(int(a)))


def _to_duration(value) -> Duration:
    if value.__class__ is str:
        duration = parse_duration(value)
        if duration is not None:
            return duration
        n = _parse_int(value)
        return Duration(n if n is not None else float_to_int(as_float(value)))
    return Duration(as_int(value))


#: ``$cast`` targets.
CASTS = {
    "bool": bool,
    "int": as_int,
    "float": as_float,
    "string": to_text,
    "duration": _to_duration,
}


def caster(name: str):
    """:return: the function casting to type ``name``; 422 for an unknown one."""
    try:
        return CASTS[name]
    except KeyError:
        raise EvaluationError(f"Unknown type '{excerpt(name)}'") from None
