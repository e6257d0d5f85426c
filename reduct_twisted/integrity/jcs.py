# -*- test-case-name: tests.unit.test_integrity_jcs -*-
"""
RFC 8785 (JSON Canonicalization Scheme) serialisation.

:func:`canonical` turns ``None``, ``bool``, ``int``, ``float``, ``str``,
``list``/``tuple`` and ``dict`` (string keys) into the canonical UTF-8
bytes: no whitespace, object members sorted by the UTF-16 code units of
their names (§3.2.3), strings escaped as §3.2.2.2 says (``\\"``, ``\\\\``,
the five short escapes ``\\b \\t \\n \\f \\r``, every other control
character below U+0020 as ``\\u00xx`` in lowercase hex, everything else as
itself), numbers as ECMAScript's ``Number.prototype.toString`` writes the
IEEE 754 double (§3.2.2.3).

I-JSON limits are enforced, never silently bent: NaN and the infinities,
an ``int`` that is not exactly a double in the safe range
(``|i| > 2**53 - 1``, which ECMAScript would round), a string with a lone
surrogate, a non-string key or any other type raise ``ValueError``.  The
log's leaves and heads only hold such small ints and strings.
"""

import json.encoder
import math

#: The largest integer every double represents exactly (I-JSON §2.2).
MAX_SAFE_INTEGER = 2 ** 53 - 1

#: A string in quotes, escaped exactly as §3.2.2.2 says: ``\"``, ``\\``,
#: ``\b \t \n \f \r``, ``\u00xx`` (lowercase) for the other controls,
#: every other character as itself.  The standard library's JSON string
#: encoder (``ensure_ascii=False``) does precisely that (the unit tests
#: check every code point); its C version is fast.
string = json.encoder.encode_basestring


def canonical(obj) -> bytes:
    """
    :return: the RFC 8785 canonical form of ``obj`` as UTF-8 bytes.
    :raises ValueError: ``obj`` holds something I-JSON cannot carry exactly
        (see the module docstring).
    """
    parts: list = []
    _write(obj, parts, 0)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate: not valid Unicode") from None


def utf16_key(name: str) -> bytes:
    # Big-endian UTF-16 bytes compare like their 16-bit code units.
    try:
        return name.encode("utf-16-be")
    except UnicodeEncodeError:
        raise ValueError("a property name holds a lone surrogate: not valid Unicode") from None


def _write(obj, parts: list, depth: int) -> None:
    if depth > 1000:
        raise ValueError("nested too deeply")
    if obj is None:
        parts.append("null")
    elif obj is True:
        parts.append("true")
    elif obj is False:
        parts.append("false")
    elif isinstance(obj, int):
        if not -MAX_SAFE_INTEGER <= obj <= MAX_SAFE_INTEGER:
            raise ValueError(f"integer {obj} is outside the I-JSON range (|i| <= 2**53 - 1)")
        parts.append(str(int(obj)))
    elif isinstance(obj, float):
        parts.append(number(obj))
    elif isinstance(obj, str):
        parts.append(string(obj))
    elif isinstance(obj, (list, tuple)):
        parts.append("[")
        for i, item in enumerate(obj):
            if i:
                parts.append(",")
            _write(item, parts, depth + 1)
        parts.append("]")
    elif isinstance(obj, dict):
        for name in obj:
            if not isinstance(name, str):
                raise ValueError(f"property name {name!r} is not a string")
        parts.append("{")
        for i, name in enumerate(sorted(obj, key=utf16_key)):
            if i:
                parts.append(",")
            parts.append(string(name))
            parts.append(":")
            _write(obj[name], parts, depth + 1)
        parts.append("}")
    else:
        raise ValueError(f"{type(obj).__name__} is not a JSON value")


def number(value: float) -> str:
    """
    :return: ``value`` as ECMAScript's ``Number.prototype.toString``
        (ECMA-262 7.1.12.1) writes it, which RFC 8785 §3.2.2.3 requires.
    :raises ValueError: NaN or an infinity.
    """
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{value} is not a JSON number")
    if value == 0:
        return "0"  # minus zero too
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digit string that reads back as the same
    # double, the nearest such when several are shortest: ECMAScript's s and k.
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    # value = int(digits) * 10**scale, then without leading/trailing zeros
    digits = (whole + fraction).lstrip("0")
    scale = int(exponent or 0) - len(fraction)
    stripped = digits.rstrip("0")
    scale += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = k + scale  # value = 0.<digits> * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        text = (digits[0] + ("." + digits[1:] if k > 1 else "")
                + "e" + ("+" if e >= 0 else "-") + str(abs(e)))
    return sign + text
