"""
RFC 8785 (JSON Canonicalization Scheme) for what the verifier signs and
hashes: the signed tree head without its signature and the record leaf of
issue #16 (contract 4).  Both hold strings, integers and objects, a leaf
``null`` (no digest) or ``true`` (a skipped number); the head may gain
fields later (arrays are accepted too).

Strings are escaped exactly as ECMAScript ``JSON.stringify`` does, which
is what ``json.dumps(..., ensure_ascii=False)`` produces for well-formed
strings; lone surrogates are refused (not I-JSON).  Integers print as
their decimal digits within IEEE 754's exact range and are refused
outside it.  Object members are sorted by the UTF-16 code units of their
names.
"""

import json

_EXACT = 2**53


class NotCanonicalizable(ValueError):
    """The value holds something RFC 8785 cannot represent exactly."""


def _string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NotCanonicalizable("a string holds a lone surrogate") from None
    return json.dumps(value, ensure_ascii=False)


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be")


def _write(value, out: list) -> None:
    if value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int):
        if not -_EXACT <= value <= _EXACT:
            raise NotCanonicalizable(f"integer {value} is beyond IEEE 754's exact range")
        out.append(str(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, name in enumerate(sorted(value, key=_utf16_key)):
            if not isinstance(name, str):
                raise NotCanonicalizable("object member names must be strings")
            if i:
                out.append(",")
            out.append(_string(name))
            out.append(":")
            _write(value[name], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise NotCanonicalizable(f"{type(value).__name__} has no canonical JSON form here")


def canonical(value) -> bytes:
    """The canonical JSON (UTF-8 bytes) of ``value``."""
    out: list = []
    _write(value, out)
    return "".join(out).encode("utf-8")


#: The largest integer every IEEE 754 double holds exactly (I-JSON): the
#: server writes a leaf's timestamp above it as a decimal string.
MAX_SAFE_INTEGER = 2**53 - 1


def record_leaf(item: dict) -> bytes:
    """
    The leaf bytes of a listed item (contract 4 and the server's documented
    variants):

    * a record: the six fields, the digest as its ``"sha-256:<hex>"``
      string or ``null`` (a record whose digest could not be computed), the
      timestamp (an integer here) as a decimal *string* when it is above
      2**53 - 1, a number otherwise;
    * a skipped number (``"state": "skipped"``: no record ever held it):
      ``{"number": n, "skipped": true}``.
    """
    if item.get("state") == "skipped":
        return canonical({"number": item["number"], "skipped": True})
    timestamp = item["timestamp"]
    return canonical(
        {
            "number": item["number"],
            "timestamp": timestamp if timestamp <= MAX_SAFE_INTEGER else str(timestamp),
            "size": item["size"],
            "content_type": item["content_type"],
            "labels": item["labels"],
            "digest": item["digest"],
        }
    )
