# -*- test-case-name: tests.integration.test_api -*-
"""
Record routes (spec §2.3, §3.3, §3.4): write and read one record, write and
read batches, and the legacy v0 record list.

Writes are checked before their body arrives: :func:`open_write` and
:func:`open_batch_write` run from the streaming request's ``gotLength``
(through ``fastpath.py``, which applies the table's permission first) and
the route only finishes the sink.  Each handler takes the ``ReductAPI``
first; the table, with who may call each route, is in ``api.py``.
"""

from functools import partial
from typing import Optional


from reduct_twisted.errors import NoContent, NotFound
from reduct_twisted.http.batch import BatchReader, batch_query_id
from reduct_twisted.http.batch_ahead import adopt, serve_batch, take_ahead
from reduct_twisted.http.batch_write import open_batch_write as _open_batch
from reduct_twisted.http.headers import (
    announced_digest,
    announced_length,
    content_type,
    query_arg,
    record_labels,
    respond_empty,
    respond_json,
    timestamp_param,
    u64_param,
)
from reduct_twisted.http.producers import send_record
from reduct_twisted.http.ratelimit import charge_egress
from reduct_twisted.http.sinks import (
    LARGE_UPLOAD_RECV, PauseGate, PrivateSegmentSink, SharedSegmentSink, in_pool)
from reduct_twisted.stepping import drive
from reduct_twisted.wire import ERROR_PREFIX, error_header
from reduct_twisted.wire.digest import format_digest



# -- before the body (called from StreamingRequest.gotLength) ----------------------


def open_write(api, request, length: Optional[int], args, bucket: str, entry: str):
    """
    Validate a record write and allocate its place (spec §2.3.1 order; the
    caller has applied the route's permission).
    """
    ts = timestamp_param(args)
    # Content-Length, or x-reduct-content-length [1.20] (a chunked body is
    # then held to it); a chunked body announcing neither is of unknown length.
    length = announced_length(request, length)
    ctype = content_type(request)
    labels = record_labels(request.requestHeaders.getAllRawHeaders())
    digest = announced_digest(request)
    if api.writers is not None:
        # RS_IO_MAX_WRITERS_IN_FLIGHT: the record is allocated once it has a slot.
        opener = partial(_record_sink, api, request, bucket, entry, ts, length, ctype, labels,
                         digest)
        return api.writers.open(opener, PauseGate(request.channel.transport),
                                refuse=request.refuse_body, touch=request.channel.resetTimeout)
    upload = api.engine.upload(
        bucket, entry, ts, length, ctype, labels, in_pool(api.reactor, api.threadpool), digest
    )
    if not upload.private:
        return SharedSegmentSink(upload)
    return _private_sink(request, upload, request.channel.transport)


def _record_sink(api, request, bucket, entry, ts, length, ctype, labels, digest, gate):
    upload = api.engine.upload(
        bucket, entry, ts, length, ctype, labels, in_pool(api.reactor, api.threadpool), digest
    )
    if not upload.private:
        return SharedSegmentSink(upload)
    return _private_sink(request, upload, gate.handle())


def _private_sink(request, upload, pauser) -> PrivateSegmentSink:
    transport = request.channel.transport
    if hasattr(transport, "bufferSize"):
        transport.bufferSize = LARGE_UPLOAD_RECV
    return PrivateSegmentSink(upload, pauser)


def open_batch_write(api, request, length: Optional[int], bucket: str, entry: str):
    """
    Validate a batched write and return the sink its body goes to
    (spec §3.4; records are allocated as their bytes arrive; the caller
    has applied the route's permission).
    """
    sink = _open_batch(api.engine, api.reactor, api.threadpool, request, length, bucket, entry,
                       api.writers)
    transport = request.channel.transport
    if sink.has_large and hasattr(transport, "bufferSize"):
        transport.bufferSize = LARGE_UPLOAD_RECV
    return sink


# -- one record ----------------------------------------------------------------------


def write_record(api, request, bucket, entry):
    sink = request.sink
    if sink is None:
        # No body framing at all, so gotLength skipped routing: run the
        # same checks now (the table's layer has applied the permission);
        # they end in "content-length header is required".
        sink = open_write(api, request, 0, request.args, bucket, entry)
    if isinstance(sink, SharedSegmentSink):
        # Nothing to flush: commit now (and, without fsync, answer
        # without a Deferred).
        sink.finish_now()
        return api.durable(respond_empty, request)
    return sink.finish().addCallback(lambda _: api.durable(respond_empty, request))


def read_record(api, request, bucket, entry):
    ts = u64_param(request.args, "ts")
    if ts is None and query_arg(request.args, "q") is not None:
        qid = u64_param(request.args, "q", "'query' must be a number")
        d = drive(api.reactor, lambda: api.engine.query_next(bucket, entry, qid))
        return d.addCallback(_answer_query_read, api, request, entry)
    view = api.engine.read(bucket, entry, ts)
    return _answer_record(api, request, view, b"1", entry)


def _answer_query_read(view, api, request, entry):
    if view is None:
        raise NoContent("No content")
    return _answer_record(api, request, view, b"1" if view.last else b"0", entry)


def _answer_record(api, request, view, last: bytes, entry: str):
    # x-reduct-last: dropped upstream in 1.16, still read by old clients
    # (spec 1.20 §10.3).
    if request.method != b"HEAD":
        charge_egress(api, request, view.record.size)
    record_headers(request, view.record, entry)
    request.setHeader(b"x-reduct-last", last)
    request.setHeader(b"content-disposition", b"attachment")
    return send_record(request, view, api.engine)


def record_headers(request, record, entry: str) -> None:
    """
    The headers of a single-record answer (a read, a query link's download):
    type, length, time, ``x-reduct-entry`` (the raw name, spec 1.20 §5.7),
    ``repr-digest`` (issue #16, when the digest is known) and labels.
    """
    set_header = request.setHeader
    set_header(b"content-type", record.content_type.encode("utf-8"))
    set_header(b"content-length", b"%d" % record.size)
    set_header(b"x-reduct-time", b"%d" % record.ts)
    set_header(b"x-reduct-entry", entry.encode("utf-8"))
    if record.digest is not None:
        set_header(b"repr-digest", format_digest(record.digest))  # RFC 9530
    for name, value in record.labels.items():
        try:
            set_header(b"x-reduct-label-" + name.encode("utf-8"), value.encode("utf-8"))
        except ValueError:
            # No header name (an ``@`` label of a v1 batch [1.19], ``a b``):
            # it shows in batched reads and queries, whose headers carry
            # labels in their values.
            pass


# -- batches (spec §3.3, §3.4) ---------------------------------------------------------


def write_batch(api, request, bucket, entry):
    sink = request.sink
    if sink is None:
        # No body framing at all, so gotLength skipped routing: run the
        # same checks now (the table's layer has applied the permission);
        # they end in "content-length header is required".
        sink = open_batch_write(api, request, 0, bucket, entry)
    return sink.finish().addCallback(answer_batch_errors, api, request)


def answer_batch_errors(errors, api, request):
    """Answer a batched change: one ``x-reduct-error-<ts>`` per failed record."""
    for ts in sorted(errors):
        request.setHeader(ERROR_PREFIX + b"%d" % ts, error_header(errors[ts]))
    return api.durable(respond_empty, request)


def read_batch(api, request, bucket, entry):
    """``GET|HEAD /b/:bucket/:entry/batch?q=`` (``batch_ahead.serve_batch``)."""
    qid = batch_query_id(request.args)
    head = request.method == b"HEAD"
    engine = api.engine
    reader = adopt(engine.query_claim(bucket, entry, qid, use=not head))
    if reader is not None:
        return serve_batch(api, request, reader, True, False, partial(
            _read_ahead, engine, bucket, entry, qid, reader.limits))
    limits, metadata_only = _batch_limits(api, bucket, entry, qid)
    reader = BatchReader(engine, bucket, entry, qid, head or metadata_only, limits)
    # (an only_metadata GET: the records' headers, their sizes in them, no body)
    ahead = None if head or metadata_only else partial(
        _read_ahead, engine, bucket, entry, qid, limits)
    return serve_batch(api, request, reader, False, metadata_only and not head, ahead)


def _read_ahead(engine, bucket, entry, qid, limits) -> bool:
    """The next batch of query ``qid`` taken for its next GET, if it fits in one step."""
    return engine.query_read_ahead(bucket, entry, qid, lambda planned: take_ahead(
        BatchReader(engine, bucket, entry, qid, False, limits, reader=planned)))


def _batch_limits(api, bucket, entry, qid):
    # The server's BatchLimits with the query's directives applied, and
    # whether it was created with only_metadata.
    options = api.engine.query_options(bucket, entry, qid)
    if options is None:
        return api.batch_limits, False
    return api.batch_limits.overridden(options["io"]), options["only_metadata"]


# -- legacy ------------------------------------------------------------------------------


def list_records(api, request, bucket, entry):
    """Legacy v0 record list: uint64 values as JSON strings."""
    start = u64_param(request.args, "start", required="'start' parameter is required")
    stop = u64_param(request.args, "stop", required="'stop' parameter is required")
    records = api.engine.list_records(bucket, entry, start, stop)
    if not records:
        raise NotFound(f"No records for time interval [{start}, {stop})")
    return respond_json(
        request, {"records": [{"ts": str(ts), "size": str(size)} for ts, size in records]}
    )
