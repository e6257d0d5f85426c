# -*- test-case-name: tests.unit.test_http_headers -*-
"""
Parsing of request headers and query parameters, and building of JSON
answers: the small, pure pieces shared by the routes and the streaming
request.  Everything here raises ``reduct_twisted.errors`` classes with the
exact texts ReductStore clients match.
"""

import json
import math
import sys
from typing import Dict, Mapping, Optional, Sequence

from reduct_twisted.errors import BadRequest, UnprocessableEntity
from reduct_twisted.wire import DEFAULT_CONTENT_TYPE, LABEL_PREFIX, U64_MAX, parse_u64
from reduct_twisted.wire.digest import batch_digests, request_digest


def query_arg(args: Mapping[bytes, Sequence[bytes]], name: str) -> Optional[str]:
    """
    The value of query parameter ``name`` (the last one wins), or None.

    :param args: ``request.args`` as parsed by twisted.web.
    """
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    return values[-1].decode("utf-8", "replace")


def parse_content_length(value: bytes) -> Optional[int]:
    """
    A ``Content-Length`` header value as a u64; None if it is not one.

    Plain ASCII digits as twisted.web takes them (leading zeros allowed);
    a value beyond u64, however long, is no number, as upstream (hyper)
    reads it.  Never hands Python's ``int()`` more digits than a u64 has.
    """
    if not value.isdigit():
        return None
    digits = value.lstrip(b"0") or b"0"
    if len(digits) > 20:
        return None
    length = int(digits)
    return length if length <= U64_MAX else None


#: Where a streamed upload whose framing cannot say its length (chunked,
#: from a browser or ``fetch``) announces it [1.20].
ANNOUNCED_LENGTH = b"x-reduct-content-length"


def announced_length(request, framed: Optional[int]) -> Optional[int]:
    """
    The content length an upload announces (spec 1.20 §5.2): its
    ``Content-Length``, or, only when that header is absent, its
    ``x-reduct-content-length``.  One rule for every write route (the single
    record, the v1 batch, the v2 batch).

    :param framed: the body length twisted.web framed the request with
        (``gotLength``'s argument: None for a chunked body, 0 for none).
    :return: the announced length; None for a chunked body that announces
        none (the caller decides whether that is allowed).
    :raises UnprocessableEntity: ``content-length header must be a number``,
        ``x-reduct-content-length header must be a number``, or, for a body
        neither framed nor announced, ``content-length header is required``.
    """
    if request.malformed_length:
        raise UnprocessableEntity("content-length header must be a number")
    headers = request.requestHeaders
    if headers.hasHeader(b"content-length"):
        return framed
    values = headers.getRawHeaders(ANNOUNCED_LENGTH)
    if values:
        length = parse_content_length(values[-1].strip())
        if length is None:
            raise UnprocessableEntity("x-reduct-content-length header must be a number")
        return length
    if framed is None:
        return None
    raise UnprocessableEntity("content-length header is required")


def announced_digest(request) -> Optional[bytes]:
    """
    The SHA-256 a single-record write announces (RFC 9530 ``content-digest``
    or ``repr-digest``, ``wire/digest.py``), checked when the body ends.

    :raises BadRequest: a malformed field (before the body is read).
    """
    try:
        return request_digest(request.requestHeaders.getAllRawHeaders())
    except ValueError as exc:
        raise BadRequest(f"Invalid content digest: {exc}") from None


def announced_digests(request, v2: bool) -> dict:
    """The per-record ``x-reduct-digest-*`` of a batched write (``wire/digest.py``).

    :raises BadRequest: a malformed one (before the body is read).
    """
    try:
        return batch_digests(request.requestHeaders.getAllRawHeaders(), v2)
    except ValueError as exc:
        raise BadRequest(f"Invalid content digest: {exc}") from None


def u64_param(
    args: Mapping[bytes, Sequence[bytes]],
    name: str,
    message: Optional[str] = None,
    required: Optional[str] = None,
) -> Optional[int]:
    """
    An optional u64 query parameter.

    :param message: the 422 text for a malformed value; defaults to
        ``'<name>' must be an unix timestamp in microseconds``.
    :param required: if given, the 422 text raised when the parameter is
        absent; otherwise an absent parameter gives None.
    """
    text = query_arg(args, name)
    if text is None:
        if required is not None:
            raise UnprocessableEntity(required)
        return None
    value = parse_u64(text)
    if value is None:
        raise UnprocessableEntity(
            message or f"'{name}' must be an unix timestamp in microseconds"
        )
    return value


def timestamp_param(args: Mapping[bytes, Sequence[bytes]]) -> int:
    """The mandatory ``ts`` parameter of a record write."""
    value = u64_param(args, "ts", required="'ts' parameter is required")
    assert value is not None
    return value


def record_labels(raw_headers) -> Dict[str, str]:
    """
    Labels from ``x-reduct-label-<name>`` request headers.

    Names are lowercased (upstream sees lowercased names); values are kept
    verbatim and must be UTF-8; when a header repeats, the last value wins.

    :param raw_headers: ``request.requestHeaders.getAllRawHeaders()``.
    """
    labels: Dict[str, str] = {}
    for name, values in raw_headers:
        lname = name.lower()
        if not lname.startswith(LABEL_PREFIX) or not values:
            continue
        label = lname[len(LABEL_PREFIX) :].decode("latin-1")
        try:
            labels[label] = values[-1].decode("utf-8")
        except UnicodeDecodeError:
            raise UnprocessableEntity(
                f"Label values for {lname.decode('latin-1')} must be valid UTF-8 strings"
            )
    return labels


def content_type(request) -> str:
    """The request's content type, verbatim, or the ReductStore default."""
    value = request.getHeader(b"content-type")
    if not value:
        return DEFAULT_CONTENT_TYPE
    return value.decode("latin-1")


#: Largest magnitude of a JSON number: serde_json reads an integer beyond
#: 64 bits as an f64, and one beyond the f64 range is "out of range".
#: Checking it also keeps ``int()`` away from literals longer than it
#: converts (4300 digits) and ``math.isfinite`` from ints it cannot take.
JSON_NUMBER_MAX = int(sys.float_info.max)


def _json_int(text: str) -> int:
    value = int(text) if len(text) <= 400 else JSON_NUMBER_MAX + 1
    if not -JSON_NUMBER_MAX <= value <= JSON_NUMBER_MAX:
        raise ValueError("number out of range")
    return value


def _json_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _json_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def loads_json(body):
    """
    ``json.loads`` for request bodies, as strict as upstream's serde_json
    (issue #12): a number no f64 holds (``1e400``, an integer beyond
    ``1.8e308``, or of more digits than Python converts) raises
    ``ValueError("number out of range")``, never the interpreter's own
    limit message; ``NaN`` and ``Infinity`` are no JSON (they would be
    stored, then answered as invalid JSON).
    """
    return json.loads(
        body, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant
    )


def json_body(request):
    """The request's JSON body, parsed (:func:`parse_json_body`)."""
    return parse_json_body(request.content.getvalue())


def parse_json_body(body: bytes):
    """
    Parse a JSON request body; an empty body is None.

    :raises UnprocessableEntity: ``Invalid JSON: ...`` for anything else.
    """
    if not body.strip():
        return None
    try:
        return loads_json(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnprocessableEntity(f"Invalid JSON: {exc}")
    except RecursionError:
        raise UnprocessableEntity("Invalid JSON: nested too deeply")


def json_bytes(obj) -> bytes:
    """Compact JSON encoding of a response body."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def respond_json(request, obj, code: int = 200) -> bytes:
    """
    Prepare ``request`` for a JSON answer and return the body bytes.

    Sets ``content-type: application/json`` exactly and a Content-Length, so
    Klein does not fall back to a chunked response.
    """
    body = json_bytes(obj)
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def respond_empty(request, code: int = 200) -> bytes:
    """An answer without body and without content type (writes, deletes)."""
    request.setResponseCode(code)
    request.setHeader(b"content-length", b"0")
    return b""
