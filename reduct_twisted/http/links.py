# -*- test-case-name: tests.integration.test_links -*-
"""
Query links (spec 1.20 §6.1, §6.2, §10.4 b): ``POST /api/v1/links/*file``
makes a signed, expiring URL for one record of a query; ``GET`` (and
``HEAD``) of that URL serves the record to anyone, without a token.

* Create: the body is parsed before the token is looked at (``422 "Invalid
  body"``, ``"Invalid JSON: …"``), then the caller needs Read on the body's
  bucket.  The record is named by identity (``record_entry`` +
  ``record_timestamp``, API 1.19.2+) or, when both are absent, by the
  legacy 0-based ``index`` (default 0) that clients before 1.19.3 send.
  The query is checked by building it once (bad options, a missing bucket
  answer now).  The link is ``<base>api/v1/links/<file>?ct=…&s=…&i=…&n=…``
  (``links/codec.py``), ``<base>`` the body's ``base_url`` or the server's
  public URL (``public_url``, ``RS_PUBLIC_URL``).
* Download: parameters, then the issuing token (``404 "Token '<i>' doesn't
  exist"``; a rotated or re-created token no longer verifies: ``422
  "Failed to decrypt query: …"``), the link's expiry, the token's expiry and
  its Read permission (skipped with authentication off).  The query then
  runs as a multi-entry query (``storage/multi.py``) in bounded slices on
  the reactor (``drive``), stopping at the record (identity: as soon as the
  merge passes its timestamp; index: at that position), and is dropped.
  A query without options that depend on earlier records (``when``,
  ``each_n``, ``each_s``, ``limit``) is looked up from the record's own
  timestamp, so a link to the newest record of a long entry costs no scan.
  The record goes out as a single-record read does, streamed from storage
  (``producers.py``), plus ``content-disposition: attachment;
  filename="<file>"`` and ``accept-ranges: bytes``.
* ``Range: bytes=a-b`` / ``a-`` / ``-n``: ``206`` with ``content-range:
  bytes a-b/len``; none satisfiable: ``416`` with ``content-range: bytes
  */len``.  Of several ranges only the first satisfiable one is served
  (upstream concatenates them without framing and reports only the first:
  no client can tell the parts apart either way).  A ``Range`` header that
  does not parse is ignored (the whole record, ``200``), as RFC 9110 says.
"""

from typing import Optional
from urllib.parse import quote, urlencode, urlsplit

from reduct_twisted.auth.policy import Policy
from reduct_twisted.errors import (
    Forbidden,
    NotFound,
    ReductError,
    Unauthorized,
    UnprocessableEntity,
)
from reduct_twisted.http.authz import authorize
from reduct_twisted.http.headers import loads_json, query_arg, respond_json
from reduct_twisted.http.io import _entries_field
from reduct_twisted.http.params import json_query
from reduct_twisted.http.producers import INLINE_MAX, RangeSender, send_record
from reduct_twisted.http.ratelimit import charge_egress
from reduct_twisted.http.routes_records import drive, record_headers
from reduct_twisted.links import LinkQuery
from reduct_twisted.storage import PENDING, U64_MAX
from reduct_twisted.wire import parse_u64

#: Records a lookup examines between two returns to the reactor.
SLICE = 500


# -- create (spec 1.20 §6.1) -------------------------------------------------------------------


def _invalid(message: str) -> UnprocessableEntity:
    return UnprocessableEntity(f"Invalid JSON: {message}")


def _field(body: dict, name: str, kind: str, required: bool = False):
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(f"missing field `{name}`")
        return None
    if kind == "string" and not isinstance(value, str):
        raise _invalid(f"invalid type for `{name}`: expected a string")
    if kind == "u64" and (type(value) is not int or not 0 <= value <= U64_MAX):
        raise _invalid(f"invalid value for `{name}`: expected u64")
    if kind == "i64" and (type(value) is not int or not -(2**63) <= value < 2**63):
        raise _invalid(f"invalid value for `{name}`: expected i64")
    if kind == "object" and not isinstance(value, dict):
        raise _invalid(f"invalid type for `{name}`: expected a query object")
    return value


def link_body(request) -> dict:
    """
    The create body, decoded and type-checked (before the token, as
    upstream's extractor does).

    :return: the fields, ``query_type`` and the query's keyword arguments.
    :raises UnprocessableEntity: ``Invalid body``, ``Invalid JSON: …``.
    """
    raw = request.content.getvalue()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnprocessableEntity("Invalid body") from None
    try:
        body = loads_json(text)
    except (ValueError, RecursionError) as exc:
        raise _invalid(str(exc)) from None
    if not isinstance(body, dict):
        raise _invalid("expected a query link object")
    fields = {
        "bucket": _field(body, "bucket", "string", True),
        "entry": _field(body, "entry", "string", True),
        "query": _field(body, "query", "object", True),
        "expire_at": _field(body, "expire_at", "i64", True),
        "record_entry": _field(body, "record_entry", "string"),
        "record_timestamp": _field(body, "record_timestamp", "u64"),
        "index": _field(body, "index", "u64"),
        "base_url": _field(body, "base_url", "string"),
    }
    fields["query_type"], fields["kwargs"] = json_query(fields["query"])
    fields["entries"] = _entries_field(fields["query"])
    return fields


def _base_url(text: str) -> str:
    def invalid(reason: str) -> UnprocessableEntity:
        return UnprocessableEntity(f"Invalid base_url provided for query link: {reason}")

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if not parts.scheme:
        raise invalid("relative URL without a base")
    if not parts.hostname:
        raise invalid("missing host")
    return text if text.endswith("/") else text + "/"


def _lookup_options(kwargs: dict) -> dict:
    # A link reads records: never continuous, never metadata only; the
    # lookup's query lives as long as the lookup (not the link's ``ttl``).
    return {k: v for k, v in kwargs.items() if k not in ("continuous", "only_metadata", "ttl")}


#: Options whose outcome for a record depends on the records before it.
_STATEFUL = ("when", "each_n", "each_s", "limit")


def _narrowed(kwargs: dict, ts: int) -> dict:
    """
    The lookup of the record at ``ts``: when no option depends on earlier
    records (no ``when``, ``each_n``, ``each_s``, ``limit``), whether the
    query produces it is decided by ``[start, stop)`` and the labels alone,
    so the scan starts at ``ts`` and stops after it.
    """
    if any(kwargs.get(name) is not None for name in _STATEFUL):
        return kwargs
    start, stop = kwargs.get("start"), kwargs.get("stop")
    if (start is not None and ts < start) or (stop is not None and ts >= stop):
        return kwargs  # not in the range: the whole (empty-handed) lookup says so
    return dict(kwargs, start=ts, stop=ts + 1)


def _entries(link: LinkQuery) -> list:
    entries = link.query.get("entries")
    return entries if entries else [link.entry]


def create_link(api, request, file_name):
    fields = link_body(request)
    token = authorize(api, request, Policy.READ, fields["bucket"])
    record_entry, record_ts = fields["record_entry"], fields["record_timestamp"]
    if (record_entry is None) != (record_ts is None):
        raise UnprocessableEntity(
            "Both 'record_entry' and 'record_timestamp' must be provided in payload")
    if fields["query_type"] != "QUERY":
        raise UnprocessableEntity("Only 'Query' type is supported for query links")
    base = api.links.public_url if fields["base_url"] is None else _base_url(fields["base_url"])
    link = LinkQuery(
        bucket=fields["bucket"], entry=fields["entry"], query=fields["query"],
        expire_at=fields["expire_at"], record_entry=record_entry, record_timestamp=record_ts,
        index=None if record_entry is not None else (fields["index"] or 0),
    )
    # Build the query once: a missing bucket or a bad option answers now.
    qid = api.engine.create_multi_query(link.bucket, _entries(link),
                                        **_lookup_options(fields["kwargs"]))
    api.engine.discard_multi_query(qid)
    name = token["name"]
    params = api.links.codec.encode(link, name, api.auth.link_key(name))
    url = f"{base}api/v1/links/{quote(file_name, safe='/')}?{urlencode(params)}"
    return respond_json(request, {"link": url})


# -- download (spec 1.20 §6.2) -----------------------------------------------------------------


def _param(args, name: str) -> str:
    value = query_arg(args, name)
    if value is None:
        raise UnprocessableEntity(f"Missing '{name}' parameter")
    return value


def _override(args) -> Optional[tuple]:
    entry, ts = query_arg(args, "e"), query_arg(args, "ts")
    if entry is None and ts is None:
        return None
    if entry is None or ts is None:
        raise UnprocessableEntity("Both 'e' and 'ts' parameters must be provided together")
    stamp = parse_u64(ts)
    if stamp is None:
        raise UnprocessableEntity(f"Invalid 'ts' parameter: '{ts}' is not a u64 timestamp")
    return entry, stamp


def checked_link(api, request) -> tuple:
    """
    The link of a download request, every check of §6.2 passed.

    :return: ``(LinkQuery, identity)``, identity ``(entry, ts)`` or None
        (the legacy index).
    """
    args = request.args
    ct, s, i, n = (_param(args, p) for p in ("ct", "s", "i", "n"))
    override = _override(args)
    auth = api.auth
    binding = auth.link_key(i)
    if binding is None:
        raise NotFound(f"Token '{i}' doesn't exist")
    link = api.links.codec.decode(ct, s, i, n, binding)
    if link.expire_at < api.reactor.seconds():
        raise UnprocessableEntity("Query link has expired")
    if auth.enabled:
        if auth.get_token(i).get("is_expired"):
            raise Unauthorized("Token has expired")
        if not auth.may_read({"name": i}, link.bucket):
            raise Forbidden(f"Token '{i}' doesn't have read access to bucket '{link.bucket}'")
    if override is not None:
        return link, override
    if link.record_entry is not None:
        return link, (link.record_entry, link.record_timestamp)
    return link, None


class RecordSearch:
    """
    Steps a link's multi-entry query to its record, :data:`SLICE` records
    at a time (driven by ``drive``): by identity, or the ``index``-th.
    """

    def __init__(self, engine, bucket: str, qid: int, identity, index) -> None:
        self.engine = engine
        self.bucket = bucket
        self.qid = qid
        self.identity = identity
        self.index = index
        self.seen = 0

    def _missing(self):
        if self.identity is None:
            return NotFound("Record number out of range")
        entry, ts = self.identity
        return NotFound(f"Record {entry}/{ts} not found in query result")

    def step(self):
        for _ in range(SLICE):
            result = self.engine.multi_next(self.bucket, self.qid)
            if result is PENDING:
                return PENDING
            if result is None:
                raise self._missing()
            name, view = result
            if self.identity is None:
                if self.seen == self.index:
                    return name, view
                self.seen += 1
                continue
            entry, ts = self.identity
            if view.record.ts == ts and name == entry:
                return name, view
            if view.record.ts > ts:  # the merge is in time order: passed it
                raise self._missing()
        return PENDING


def _disposition(file_name: str) -> bytes:
    if not file_name:
        return b"attachment"
    plain = file_name.isascii() and file_name.isprintable() and not any(
        c in file_name for c in '"\\')
    if plain:
        return b'attachment; filename="%s"' % file_name.encode("ascii")
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in file_name)
    return ('attachment; filename="%s"; filename*=UTF-8\'\'%s'
            % (fallback, quote(file_name, safe=""))).encode("ascii")


def read_link(api, request, file_name):
    link, identity = checked_link(api, request)
    engine = api.engine
    kwargs = _lookup_options(json_query(link.query)[1])
    if identity is not None and identity[1] < U64_MAX:
        kwargs = _narrowed(kwargs, identity[1])
    qid = engine.create_multi_query(link.bucket, _entries(link), **kwargs)
    search = RecordSearch(engine, link.bucket, qid, identity, link.index)

    def done(result):
        engine.discard_multi_query(qid)
        return result

    d = drive(api.reactor, search.step).addBoth(done)
    return d.addCallback(_answer, api, request, file_name)


def byte_range(header: Optional[bytes], size: int) -> Optional[tuple]:
    """
    The first satisfiable range of a ``Range`` header.

    :return: ``(first, last)`` (inclusive), or None: no header, or one that
        does not parse (ignored).
    :raises ReductError: 416, no range is satisfiable.
    """
    if header is None:
        return None
    text = header.decode("latin-1").strip()
    unit, _, specs = text.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return None
    spans = []
    for spec in specs.split(","):
        first, dash, last = spec.strip().partition("-")
        if not dash or not (first.isdigit() or last.isdigit()):
            return None
        if (first and not first.isdigit()) or (last and not last.isdigit()):
            return None
        if not first:  # suffix: the last n bytes
            n = int(last)
            spans.append((max(0, size - n), size - 1) if n > 0 and size > 0 else None)
            continue
        start = int(first)
        end = size - 1 if not last else min(int(last), size - 1)
        if last and int(last) < start:
            return None
        spans.append((start, end) if start < size else None)
    for span in spans:
        if span is not None:
            return span
    raise ReductError("Requested range not satisfiable", 416)


def _answer(found, api, request, file_name):
    name, view = found
    record = view.record
    size = record.size
    try:
        span = byte_range(request.getHeader(b"range"), size)
    except ReductError:
        request.setHeader(b"content-range", b"bytes */%d" % size)
        raise
    if request.method != b"HEAD":  # RS_RATE_LIMIT_EGRESS: the bytes about to be sent
        charge_egress(api, request, size if span is None else span[1] - span[0] + 1)
    record_headers(request, record, name)
    request.setHeader(b"content-disposition", _disposition(file_name))
    request.setHeader(b"accept-ranges", b"bytes")
    if span is None:
        return send_record(request, view, api.engine)
    first, last = span
    length = last - first + 1
    request.setResponseCode(206)
    request.setHeader(b"content-range", b"bytes %d-%d/%d" % (first, last, size))
    request.setHeader(b"content-length", b"%d" % length)
    if request.method == b"HEAD":
        return b""
    if size <= INLINE_MAX:
        return api.engine.read_content(view)[first:last + 1]
    reader = api.engine.open_reader((view,))
    reader.narrow(first, length)
    return RangeSender(request, reader).start().addCallback(lambda _: b"")
