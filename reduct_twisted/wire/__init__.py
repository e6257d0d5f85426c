# -*- test-case-name: tests.unit.test_wire -*-
"""
The wire formats shared by the server (``http/``) and the replication
client (``replication/remote.py``): u64 values, the ``x-reduct-error``
header value, and the v1 batch protocol (spec §3.3, §3.4) with its default
limits.  Nothing here knows about twisted.web: values in, values out.
The package is the one home of wire formats: the batch protocol v2 of the
I/O API (spec 1.20 §1) lives beside this in ``wire/v2.py``.

In the batch protocol, a record is announced by a header
``x-reduct-time-<ts>: <length>,<content type>[,<name>=<value>]…``.

Encoding (:func:`format_record_header`), as upstream: a content type or a
label value is written as it is unless it holds a comma; then it is wrapped
in double quotes.  Nothing is escaped: the protocol has no escape, so a
quote inside a value stays a plain quote.  Every encoder we know (the
upstream server, reduct-js, reduct-cpp) quotes only values with a comma;
reduct-py (up to 1.21) quotes nothing but values of labels whose *name*
holds ``,`` or ``=``, and writes other values, commas included, as they are.

Decoding (:func:`parse_record_header`) reads upstream's format and what
those clients send.  The text after the length is split at every comma
into fields; then:

* a value (the content type or the text after a label's first ``=``)
  that starts with ``"`` is a quoted one if a later field ends with ``"``
  and is followed by the end or by the start of a label (a field with a
  non-empty name before ``=`` that holds no ``"``): the shortest such run,
  quotes removed.  If the first field is already ``"..."`` the run must
  not cross the start of a label (reduct-py sends ``a="x",b="y"`` for the
  values ``"x"`` and ``"y"``).  A quoted value therefore always holds a
  comma, as the encoders make it; ``"x"`` without a comma is the literal
  text ``"x"`` (upstream would strip the quotes, but no encoder quotes such
  a value, and reduct-py and reduct-js send the value ``"x"`` that way);
* otherwise the value runs up to the next field that starts a label:
  fields without ``=`` continue the value before them (that is how
  reduct-py sends a value with a comma; upstream drops such fields);
* names and values are trimmed; a name starting with ``@`` (reserved for
  computed labels) is refused by default: the v1 batch endpoints accept
  it again since 1.19 and store it as an ordinary label (``at_labels``).

What cannot be told apart (README, "Limits"): a value sent unquoted whose
text after a comma looks like ``name=`` (reduct-py sends ``a=1,b=2`` for
the value ``1,b=2``, which reads as two labels); a quoted value where a
``"`` just before a comma is followed by ``name=`` (``a",b=c``, sent as
``k="a",b=c"``, reads as ``k`` = ``"a"`` and ``b`` = ``c"``); a content type
sent with a comma followed by ``name=``; and a value sent unquoted that
starts with ``"`` but does not end with one, followed by a field ending
with ``"`` and then a label (read as one quoted value; our encoder writes
such labels last, reduct-py in the caller's order).
"""

from typing import Dict, List, Mapping, Optional, Tuple

import attr

from reduct_twisted.config import Config
from reduct_twisted.errors import ReductError, UnprocessableEntity

U64_MAX = 2**64 - 1

DEFAULT_CONTENT_TYPE = "application/octet-stream"

LABEL_PREFIX = b"x-reduct-label-"
TIME_PREFIX = b"x-reduct-time-"
ERROR_PREFIX = b"x-reduct-error-"

_DEFAULTS = Config()
#: Records per batched read: upstream 1.17 stops at ``RS_IO_BATCH_MAX_RECORDS``
#: (85), which keeps a response under the 100 headers Python's http.client takes.
BATCH_MAX_RECORDS = _DEFAULTS.io_batch_max_records
#: A batched read (GET) is closed after the record that takes its body past
#: this many bytes (``RS_IO_BATCH_MAX_SIZE``).
BATCH_MAX_SIZE = _DEFAULTS.io_batch_max_size
#: ... or its record headers (name + value + 2 each) past this many bytes
#: (``RS_IO_BATCH_MAX_METADATA_SIZE``).
BATCH_MAX_METADATA_SIZE = _DEFAULTS.io_batch_max_metadata_size


def parse_u64(text: str) -> Optional[int]:
    """
    Parse an unsigned 64-bit decimal integer; None if ``text`` is not one.
    """
    # u64 has at most 20 digits; Python refuses to convert very long digit
    # strings (a ValueError), so never try.
    if not text or len(text) > 20 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    if value > U64_MAX:
        return None
    return value


def header_safe(message: str) -> bytes:
    """
    ``message`` as an ``x-reduct-error`` value, or ``Unparsable message`` if
    it cannot be one (control characters, newlines), as upstream 1.17 does.
    """
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in message):
        return b"Unparsable message"
    return message.encode("utf-8")


@attr.s(slots=True)
class BatchedRecord:
    """
    One record announced by a batched write: ``x-reduct-time-<ts>``.

    Read-only by convention, not frozen: a frozen class's ``__init__``
    (``object.__setattr__`` per field) cost 0.6 µs of every batched record.
    """

    ts: int = attr.ib()
    length: int = attr.ib()
    content_type: str = attr.ib()
    labels: dict = attr.ib()


# -- encoding -----------------------------------------------------------------------


def encode_value(value: str) -> str:
    """A content type or label value as a field: quoted if it holds a comma."""
    return f'"{value}"' if "," in value else value


def _place(value: str) -> int:
    # Written as it is, a value starting with " that nothing closes would
    # take a later field ending with " as its closing quote: such values go
    # last, a lone " (which also ends with one) just before them.
    if "," in value or not value.startswith('"'):
        return 0
    return 1 if value == '"' else 2 if not value.endswith('"') else 0


def format_record_header(size: int, content_type: str, labels: Mapping[str, str]) -> bytes:
    """
    An ``x-reduct-time-<ts>`` value: ``<size>,<content type>`` and the
    labels as ``name=value`` sorted by that text (upstream's order), UTF-8;
    labels whose value starts with an unclosed ``"`` go last, where no
    later field can close it.
    """
    fields = [str(size), encode_value(content_type)]
    fields += [text for _, text in sorted(
        (_place(value), f"{name}={encode_value(value)}") for name, value in labels.items()
    )]
    return ",".join(fields).encode("utf-8")


#: ``(content type, label items) -> text after the size`` of record headers
#: (:func:`record_header_value`); emptied when it reaches :data:`_TAILS_MAX`.
_TAILS: dict = {}
_TAILS_MAX = 4096
#: The labels, content type and text of the last value made.
_LAST: list = [None, None, b""]


def record_header_value(size: int, content_type: str, labels: Mapping[str, str]) -> bytes:
    """
    :func:`format_record_header` for a batch answer: the text after the
    size is formatted once per distinct content type and labels (a batch's
    records mostly share them), with any line break made a space as
    twisted.web does to a header value it is given (so it can be set raw).
    """
    last = _LAST
    if (labels is last[0] or labels == last[0]) and content_type == last[1]:
        # the record before's, mostly (the same dict: a table shares them)
        return b"%d%s" % (size, last[2])
    key = (content_type, tuple(labels.items())) if labels else content_type
    tail = _TAILS.get(key)
    if tail is None:
        if len(_TAILS) >= _TAILS_MAX:
            _TAILS.clear()
        tail = format_record_header(0, content_type, labels)[1:]
        if b"\r" in tail or b"\n" in tail:
            tail = b" ".join(tail.splitlines())
        _TAILS[key] = tail
    last[:] = (labels, content_type, tail)
    return b"%d%s" % (size, tail)


def error_header(err: ReductError) -> bytes:
    """An ``x-reduct-error-<ts>`` value: ``<status>,<message>``."""
    return b"%d," % err.status + header_safe(err.message)


# -- decoding -----------------------------------------------------------------------


def _starts_label(field: str) -> bool:
    name, sep, _ = field.partition("=")
    name = name.strip()
    return bool(sep) and bool(name) and '"' not in name


def _take_value(fields: List[str], i: int, first: str) -> Tuple[str, int]:
    """
    The value whose first field is ``fields[i]`` (``first`` is its part
    after the label's ``=``, or the whole content type field).

    :return: the value and the index of the field after it.
    """
    if first.lstrip().startswith('"'):
        opened = first.lstrip()[1:]
        # A first field closed on its own (``"x"``) is a whole value unless
        # the quotes run on to a later field before any label starts.
        whole = opened.rstrip().endswith('"')
        for j in range(i + 1, len(fields)):
            if whole and _starts_label(fields[j]):
                break
            if fields[j].rstrip().endswith('"') and (
                j + 1 == len(fields) or _starts_label(fields[j + 1])
            ):
                inner = ",".join([opened] + fields[i + 1:j + 1]).rstrip()[:-1]
                return inner.strip(), j + 1
    j = i + 1
    while j < len(fields) and not _starts_label(fields[j]):
        j += 1
    return ",".join([first] + fields[i + 1:j]).strip(), j


def parse_record_header(value: str, at_labels: bool = False) -> Tuple[int, str, Dict[str, str]]:
    """
    Parse ``<length>,<content type>[,<name>=<value>]…`` (see the module
    docstring); an empty content type is ``application/octet-stream``.

    :param at_labels: accept label names starting with ``@`` (the v1 batch
        endpoints since 1.19, spec 1.20 §5.8); refused otherwise (1.16–1.18,
        and the batch protocol v2).
    :return: ``(length, content_type, labels)``.
    :raises UnprocessableEntity: no comma, a bad length, a name with ``@``
        (unless ``at_labels``).
    """
    length_text, sep, rest = value.partition(",")
    if not sep:
        raise UnprocessableEntity("Invalid batched header")
    length = parse_u64(length_text.strip())
    if length is None:
        raise UnprocessableEntity("Invalid content length")
    fields = rest.split(",")
    ctype, i = _take_value(fields, 0, fields[0])
    labels: Dict[str, str] = {}
    while i < len(fields):
        # Every field reached here starts a label: _take_value stops at one.
        name, _, first = fields[i].partition("=")
        name = name.strip()
        if name.startswith("@") and not at_labels:
            raise UnprocessableEntity(
                "Label names must not start with '@': reserved for computed labels"
            )
        labels[name], i = _take_value(fields, i, first)
    return length, ctype or DEFAULT_CONTENT_TYPE, labels


def _u64_bytes(digits: bytes) -> Optional[int]:
    """:func:`parse_u64` of ASCII ``digits`` (``bytes.isdigit`` is ASCII only)."""
    if not digits.isdigit() or len(digits) > 20:
        return None
    value = int(digits)
    return value if value <= U64_MAX else None


def time_headers(raw_headers) -> list:
    """
    The ``x-reduct-time-<ts>`` headers of a request: ``(ts, raw value)``
    sorted by timestamp (names are matched case-insensitively, the last of
    repeated headers wins).

    :param raw_headers: ``request.requestHeaders.getAllRawHeaders()``.
    :raises UnprocessableEntity: a bad timestamp.
    """
    found = {}
    skip = len(TIME_PREFIX)
    for name, values in raw_headers:
        lname = name.lower()
        if not lname.startswith(TIME_PREFIX) or not values:
            continue
        digits = lname[skip:]
        # _u64_bytes, inline for up to 19 digits (always below 2**64)
        ts = int(digits) if digits.isdigit() and len(digits) < 20 else _u64_bytes(digits)
        if ts is None:
            raise UnprocessableEntity(
                f"Invalid header '{lname.decode('latin-1')}': "
                "must be an unix timestamp in microseconds"
            )
        found[ts] = values[-1]
    return sorted(found.items())


def parse_batch_headers(raw_headers, at_labels: bool = False) -> List[BatchedRecord]:
    """
    The records announced in a batched write's (or label update's) headers,
    sorted by timestamp (the order of their contents in the body).

    A batch repeats a few content type and label sets: each distinct text
    after a value's length is parsed once (:func:`parse_record_header`,
    errors included: a text is remembered only once parsed without one),
    the length of each record on its own.

    :param raw_headers: ``request.requestHeaders.getAllRawHeaders()``.
    :param at_labels: as for :func:`parse_record_header`.
    :raises UnprocessableEntity: a bad timestamp or header value.
    """
    records = []
    seen: Dict[bytes, Tuple[str, Dict[str, str]]] = {}
    for ts, raw in time_headers(raw_headers):
        length_text, comma, tail = raw.partition(b",")
        known = seen.get(tail) if comma else None
        if known is not None and length_text.isdigit() and len(length_text) < 20:
            # ``tail`` decoded and parsed before, and a value whose length
            # is ASCII digits (below 2**64: _u64_bytes) decodes and splits
            # the same way around it.
            records.append(BatchedRecord(ts, int(length_text), known[0], dict(known[1])))
            continue
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UnprocessableEntity("Invalid batched header") from None
        length, ctype, labels = parse_record_header(value, at_labels)
        seen[tail] = (ctype, labels)  # copied for the records after it
        records.append(BatchedRecord(ts, length, ctype, labels))
    return records
