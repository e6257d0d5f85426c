# -*- test-case-name: tests.unit.test_wire_v2 -*-
"""
The batch protocol v2 of the I/O API (spec 1.20 §1.2): records of several
entries in one request or response.  Pure functions and small value types,
no twisted.web.

A batch names its entries once, ``x-reduct-entries: <e0>,<e1>,…``
(percent-encoded, :func:`encode_name`), gives a base timestamp
``x-reduct-start-ts`` and optionally a label table ``x-reduct-labels``;
then one header per record, ``x-reduct-<I>-<D>: <len>[,<ct>[,<delta>]]``,
``<I>`` the entry index and ``<D>`` the time delta.  Per entry, records are
taken in ascending delta order and each inherits what its previous record
of the same entry had (content type, labels) unless it says otherwise.

* :func:`parse_request` reads a request's headers into a
  :class:`V2Request`: its records in (entry index, timestamp) order, the
  order of their contents in a write's body, each with its resolved content
  type and labels (writes) or its cumulative label changes (updates,
  ``[1.18.5]``), raising the 422 texts of §1.2 in the check order of §1.3
  (§1.7 with ``start_first``).
* :class:`BatchEncoder` builds a response batch's headers record by record
  in the minimal forms of §1.2 (``<len>`` / ``<len>,<ct>`` /
  ``<len>,,<delta>`` / ``<len>,<ct>,<delta>``), label indexes allocated in
  order of first use.
* :func:`error_name` names a failed record's ``x-reduct-error-<I>-<D>``.

Limits of the format (no escaping exists): a content type holding a comma,
and a label value that starts with ``"`` without holding a comma, do not
survive a round trip (the first is cut at the comma, the second loses its
quotes); upstream and the clients share them.
"""

from operator import itemgetter
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import attr

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.wire import DEFAULT_CONTENT_TYPE, U64_MAX, parse_u64

PREFIX = "x-reduct-"
ENTRIES = b"x-reduct-entries"
START_TS = b"x-reduct-start-ts"
LABELS = b"x-reduct-labels"
ERROR_PREFIX = b"x-reduct-error-"

#: The bytes RFC 7230 calls ``tchar``, but ``%``: kept as they are by
#: :func:`encode_name`.  Upstream keeps ``%`` too, so a name holding one
#: does not come back; ``%25`` does, with every decoder.
TCHAR = frozenset(
    b"!#$&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ENCODED = tuple(chr(b) if b in TCHAR else "%%%02X" % b for b in range(256))


def _fail(message: str) -> UnprocessableEntity:
    return UnprocessableEntity(message)


# -- names ----------------------------------------------------------------------------


def encode_name(name: str) -> str:
    """``name`` percent-encoded: tchar bytes but ``%`` kept, every other byte ``%XX`` (uppercase)."""
    if name.isascii() and all(ord(c) in TCHAR for c in name):
        return name
    return "".join([_ENCODED[b] for b in name.encode("utf-8")])


def decode_name(raw: str, label: bool = False) -> str:
    """
    Decode a percent-encoded name (``%xx`` in either case).

    :param label: the name is a label's (another 422 text).
    :raises UnprocessableEntity: a ``%`` not followed by two hex digits, or
        bytes that are not UTF-8.
    """
    if "%" not in raw:
        return raw
    data = raw.encode("latin-1")
    out = bytearray()
    i, size = 0, len(data)
    while i < size:
        byte = data[i]
        if byte == 0x25:  # %
            if i + 2 >= size or data[i + 1] not in _HEX or data[i + 2] not in _HEX:
                raise _fail(f"Invalid label encoding in header value: '{raw}'" if label
                            else f"Invalid entry encoding in header name: '{raw}'")
            out.append(int(data[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(f"Invalid label encoding in header value: '{raw}'" if label
                    else f"Entry name is not valid UTF-8 in header '{raw}'") from None


def _visible(value: bytes) -> Optional[str]:
    # A header value as hyper's to_str takes it: visible ASCII, blanks, tabs.
    if all(0x20 <= b < 0x7F or b == 0x09 for b in value):
        return value.decode("ascii")
    return None


# -- requests -------------------------------------------------------------------------


@attr.s(slots=True)
class PlannedRecord:
    """
    One record of a v2 request (read-only by convention, not frozen: a
    frozen class's ``__init__`` cost 1 µs of every record).

    :ivar index: its entry index in the request (``<I>``).
    :ivar delta: its time delta (``<D>``).
    :ivar ts: ``start + delta``.
    :ivar entry: the entry name (decoded).
    :ivar length: its content length.
    :ivar content_type: resolved (the previous record's, or the default).
    :ivar labels: the complete label set (previous record's with the
        delta applied, removals dropped).
    :ivar changes: the entry's label changes accumulated over its records
        so far, this one included (name -> value, ``""`` removes): what a
        label update applies (``[1.18.5]``).
    """

    index: int = attr.ib()
    delta: int = attr.ib()
    ts: int = attr.ib()
    entry: str = attr.ib()
    length: int = attr.ib()
    content_type: str = attr.ib()
    labels: dict = attr.ib()
    changes: dict = attr.ib()


@attr.s(slots=True, frozen=True)
class V2Request:
    """
    A parsed v2 request.

    :ivar entries: the entry names, by index (decoded).
    :ivar entries_header: the ``x-reduct-entries`` echo (re-encoded).
    :ivar start_ts: the base timestamp.
    :ivar records: :class:`PlannedRecord` objects in (entry index, ts) order.
    """

    entries: tuple = attr.ib()
    entries_header: bytes = attr.ib()
    start_ts: int = attr.ib()
    records: tuple = attr.ib()

    @property
    def total_length(self) -> int:
        """The sum of the record lengths (what the body must hold)."""
        return sum(r.length for r in self.records)

    def echo_headers(self) -> List[Tuple[bytes, bytes]]:
        """``x-reduct-entries`` and ``x-reduct-start-ts`` of the answer."""
        return [(ENTRIES, self.entries_header), (START_TS, b"%d" % self.start_ts)]


def _single(raw_headers) -> Dict[bytes, bytes]:
    """``{lowercase name: last value}`` of the request's ``x-reduct-*`` headers."""
    found = {}
    for name, values in raw_headers:
        if values and name[:9].lower() == b"x-reduct-":
            found[name.lower()] = values[-1]
    return found


def _entries(headers: Dict[bytes, bytes]) -> Tuple[list, bool]:
    """The decoded entry list and whether its header was present but blank."""
    value = headers.get(ENTRIES)
    if value is None:
        return [], False
    text = _visible(value)
    if text is None:
        raise _fail("Invalid entries header")
    if not text.strip():
        return [], True
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise _fail("x-reduct-entries header must not contain empty entry names")
    return [decode_name(item) for item in items], False


def _start(headers: Dict[bytes, bytes]) -> int:
    value = headers.get(START_TS)
    if value is None:
        raise _fail("x-reduct-start-ts header is required")
    start = parse_u64(value.decode("latin-1").strip())
    if start is None:
        raise _fail("Invalid x-reduct-start-ts header")
    return start


def _label_names(headers: Dict[bytes, bytes]) -> Optional[list]:
    value = headers.get(LABELS)
    if value is None:
        return None
    text = _visible(value)
    if text is None:
        raise _fail("Invalid labels header")
    if not text.strip():
        raise _fail("x-reduct-labels header is empty")
    return [decode_name(item.strip(), label=True) for item in text.split(",")]


_INDEX_DELTA = itemgetter(0, 1)  # the sort key of located record headers


def _locate(headers: Dict[bytes, bytes], count: int, start: int) -> tuple:
    """
    The record headers among ``headers`` (``x-reduct-…`` names ending in
    ASCII digits or ``-``, but the digests ``x-reduct-digest-<I>-<D>`` of
    issue #16), checked (§1.2) against ``count`` entries and ``start``.

    :return: ``(located, problem, found)``: ``(index, delta, ts, value)``
        of each in (index, delta) order; the text of the first wrong one
        (the caller raises it after the checks §1.2 makes first) or None;
        whether there was any.
    """
    located = []
    skip = len(PREFIX)
    found = False
    for name, value in headers.items():
        head, _, delta_text = name.rpartition(b"-")
        if delta_text and not delta_text.isdigit():
            continue
        if name.startswith(b"x-reduct-digest-"):
            continue  # a record's digest (``wire/digest.py``), not a record
        found = True
        index_text = head[skip:]
        if not index_text.isdigit():
            return located, (f"Invalid header '{name.decode('latin-1')}': "
                             "entry index must be a number"), found
        delta = int(delta_text) if delta_text and len(delta_text) <= 20 else None
        if delta is None or start + delta > U64_MAX:
            return located, (f"Invalid header '{name.decode('latin-1')}': "
                             "must be an unix timestamp in microseconds"), found
        index = int(index_text) if len(index_text) <= 20 else count
        if index >= count:
            return located, (f"Invalid header '{name.decode('latin-1')}': "
                             "entry index out of range"), found
        located.append((index, delta, start + delta, value))
    located.sort(key=_INDEX_DELTA)
    return located, None, found


def parse_label_delta(text: str, names: Optional[list]) -> List[Tuple[str, str]]:
    """
    The ``key=value`` items of a label delta (§1.2), in order; an empty
    value means "remove".

    :param names: the ``x-reduct-labels`` table, or None without that header.
    :raises UnprocessableEntity: an item without ``=``, an unterminated
        quote, a label index out of range, a name starting with ``@``.
    """
    ops = []
    rest = text.strip()
    while rest:
        key, sep, value = rest.partition("=")
        if not sep:
            raise _fail("Invalid batched header")
        key = key.strip()
        value = value.lstrip()
        if value.startswith('"'):
            value, quote, rest = value[1:].partition('"')
            if not quote:
                raise _fail("Invalid batched header")
            rest = rest.strip()
            if rest:
                if rest[0] != ",":
                    raise _fail("Invalid batched header")
                rest = rest[1:].strip()
        else:
            value, _, rest = value.partition(",")
            rest = rest.strip()
        if names is not None and key.isascii() and key.isdigit():
            position = int(key) if len(key) <= 20 else len(names)
            if position >= len(names):
                raise _fail(f"Label index '{key}' is out of range")
            key = names[position]
        if key.startswith("@"):
            raise _fail("Label names must not start with '@': reserved for computed labels")
        ops.append((key, value.strip()))
    return ops


def parse_request(raw_headers, *, start_first: bool = False,
                  check_entries: Optional[Callable[[list], None]] = None,
                  values: bool = True) -> V2Request:
    """
    Parse the headers of a v2 write, update or removal.

    :param raw_headers: ``(name, [values])`` pairs of bytes
        (``request.requestHeaders.getAllRawHeaders()``); names in any case,
        the last of repeated headers wins.
    :param start_first: check ``x-reduct-start-ts`` before
        ``x-reduct-entries`` (removals, §1.7).
    :param check_entries: called with the decoded entry list before the
        record headers are looked at (a removal refuses ``$meta`` there).
    :param values: parse the record header values (False for removals,
        whose values mean nothing: lengths 0, no labels).
    :raises UnprocessableEntity: the texts of §1.2.
    """
    headers = _single(raw_headers)
    if start_first:
        start = _start(headers)
        entries, blank = _entries(headers)
    else:
        entries, blank = _entries(headers)
        start = _start(headers)
    located, problem, found = _locate(headers, len(entries), start)
    if blank and found:
        raise _fail("x-reduct-entries header is required")
    if check_entries is not None:
        check_entries(entries)
    names = _label_names(headers) if values else None
    if problem is not None:
        raise _fail(problem)
    records = []
    previous: Dict[int, tuple] = {}
    lengths: Dict[bytes, int] = {}  # bare ``<len>`` values seen, parsed
    for index, delta, ts, raw in located:
        entry = entries[index]
        if not values:
            records.append(PlannedRecord(index, delta, ts, entry, 0, DEFAULT_CONTENT_TYPE, {}, {}))
            continue
        state = previous.get(index)
        if state is not None:
            length = lengths.get(raw)
            if length is None and raw.isdigit() and len(raw) <= 20 and int(raw) <= U64_MAX:
                length = lengths[raw] = int(raw)
            if length is not None:
                # ``<len>`` alone, the usual form after an entry's first record:
                # its previous record's content type and labels (as _resolve).
                records.append(PlannedRecord(index, delta, ts, entry, length, *state))
                continue
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail("Invalid batched header") from None
        length, ctype, labels, changes = _resolve(value, state, names)
        previous[index] = (ctype, labels, changes)
        records.append(PlannedRecord(index, delta, ts, entry, length, ctype, labels, changes))
    header = ",".join(encode_name(e) for e in entries).encode("ascii")
    return V2Request(tuple(entries), header, start, tuple(records))


def _resolve(value: str, state, names):
    """One record header value with its entry's previous state (§1.2 table)."""
    length_text, sep, rest = value.partition(",")
    length = parse_u64(length_text.strip())
    if length is None:
        raise _fail("Invalid batched header")
    if not sep:
        if state is None:
            raise _fail("Content-type and labels must be provided for the first record "
                        "of an entry")
        return (length,) + state
    ctype, sep, delta = rest.partition(",")
    ctype = ctype.strip()
    if not ctype:
        ctype = state[0] if state is not None else DEFAULT_CONTENT_TYPE
    labels = dict(state[1]) if state is not None else {}
    changes = dict(state[2]) if state is not None else {}
    if sep:
        for key, label in parse_label_delta(delta, names):
            changes[key] = label
            if label:
                labels[key] = label
            else:
                labels.pop(key, None)
    return length, ctype, labels, changes


# -- responses ------------------------------------------------------------------------


def quote_value(value: str) -> str:
    """A label value as a delta item: in double quotes if it holds a comma."""
    return f'"{value}"' if "," in value else value


def error_name(index: int, delta: int) -> bytes:
    """The ``x-reduct-error-<I>-<D>`` header name of a failed record."""
    return b"x-reduct-error-%d-%d" % (index, delta)


class BatchEncoder:
    """
    The headers of a response batch (§1.2, §1.5), built record by record.

    Records must be added in ascending timestamp order (the first one's is
    ``x-reduct-start-ts``); an entry's index is its order of first
    appearance, a label's index its order of first use.  Each record header
    takes the shortest form that says what changed since the previous
    record of its entry.
    """

    __slots__ = ("start_ts", "_entries", "_labels", "_previous")

    def __init__(self) -> None:
        self.start_ts: Optional[int] = None
        self._entries: Dict[str, int] = {}
        self._labels: Dict[str, int] = {}
        self._previous: Dict[int, tuple] = {}

    @property
    def entry_count(self) -> int:
        return len(self._entries)

    def index_of(self, entry: str) -> Optional[int]:
        """The index ``entry`` has in this batch, or None."""
        return self._entries.get(entry)

    def add(self, entry: str, ts: int, size: int, content_type: str,
            labels: Dict[str, str]) -> Tuple[bytes, bytes]:
        """:return: the record's ``(header name, value)``."""
        if self.start_ts is None:
            self.start_ts = ts
        index = self._entries.get(entry)
        if index is None:
            index = self._entries[entry] = len(self._entries)
        name = b"x-reduct-%d-%d" % (index, ts - self.start_ts)
        previous = self._previous.get(index)
        if (previous is not None and (previous[1] is labels or previous[1] == labels)
                and previous[0] == content_type):
            return name, b"%d" % size  # nothing changed: the bare length (a table shares labels)
        self._previous[index] = (content_type, labels)
        if previous is None:
            delta = self._delta(labels, {})
            value = f"{size},{content_type},{delta}" if delta else f"{size},{content_type}"
        else:
            old_type, old_labels = previous
            delta = self._delta(labels, old_labels) if labels != old_labels else ""
            same_type = content_type == old_type
            if not delta:
                value = str(size) if same_type else f"{size},{content_type}"
            else:
                value = f"{size},{'' if same_type else content_type},{delta}"
        data = value.encode("utf-8")
        if "\n" in value or "\r" in value:
            data = b" ".join(data.splitlines())  # what twisted.web makes of a line break
        return name, data

    def add_record(self, entry: str, record) -> Tuple[bytes, bytes]:
        """:meth:`add` for a stored record (its ``ts``, ``size``, ``content_type``, ``labels``)."""
        return self.add(entry, record.ts, record.size, record.content_type, record.labels)

    def _delta(self, labels: Dict[str, str], old: Dict[str, str]) -> str:
        table = self._labels
        ops = []
        for key, value in labels.items():
            if old.get(key) != value:
                index = table.get(key)
                if index is None:
                    index = table[key] = len(table)
                ops.append((index, quote_value(value)))
        for key in old:
            if key not in labels:
                ops.append((table[key], ""))
        ops.sort()
        return ",".join([f"{index}={value}" for index, value in ops])

    def headers(self) -> List[Tuple[bytes, bytes]]:
        """
        ``x-reduct-entries``, ``x-reduct-start-ts`` and (when a label
        occurred) ``x-reduct-labels``; an empty batch gives an empty entry
        list and start 0.
        """
        found = [
            (ENTRIES, ",".join(encode_name(e) for e in self._entries).encode("ascii")),
            (START_TS, b"%d" % (self.start_ts or 0)),
        ]
        if self._labels:
            found.append((LABELS, ",".join(encode_name(n) for n in self._labels).encode("ascii")))
        return found


def encode_batch(records: Iterable[tuple]) -> List[Tuple[bytes, bytes]]:
    """
    Every header of a batch of ``(entry, ts, size, content_type, labels)``
    records in ascending timestamp order: the batch headers first, then the
    record headers in the order given.
    """
    encoder = BatchEncoder()
    rows = [encoder.add(*record) for record in records]
    return encoder.headers() + rows
