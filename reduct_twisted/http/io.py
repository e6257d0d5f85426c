# -*- test-case-name: tests.integration.test_io_write,tests.integration.test_io_update_remove -*-
"""
The I/O API (spec 1.20 §1): ``/api/v1/io/:bucket/{write,q,read,update,remove}``,
records of several entries in one request, in the batch protocol v2
(``wire/v2.py``).  Reads are in ``io_read.py``.

* ``POST …/write`` streams its body like the v1 batched write: the headers
  are parsed before the body arrives (:func:`open_io_write`, from the
  streaming request's ``gotLength`` through ``fastpath.py``, after the
  table's permission) and the same ``BatchWriteSink`` cuts the body into
  records, in (entry index, timestamp) order, writing each through its
  storage ``RecordWriter`` as its bytes arrive.  A record the engine refuses
  (missing bucket, bad entry name, duplicate, quota…) is skipped in the
  stream and answered as ``x-reduct-error-<I>-<D>``.
* ``POST …/q`` creates a multi-entry query (``storage/multi.py``) or runs a
  REMOVE query over several entries; its body is parsed before the token
  is checked, and the token must read (QUERY) or write (REMOVE).
* ``PATCH …/update`` and ``DELETE …/remove`` change records of several
  entries: one engine call per entry.

Every answer that concerns records echoes ``x-reduct-entries`` and
``x-reduct-start-ts``: clients read the error headers through them.
"""

from typing import Optional

from reduct_twisted.auth.policy import Policy
from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.http.authz import authorize
from reduct_twisted.http.batch_write import BatchWriteSink
from reduct_twisted.http.headers import announced_digests
from reduct_twisted.http.headers import (
    announced_length,
    parse_json_body,
    respond_empty,
    respond_json,
)
from reduct_twisted.http.params import json_query, remove_kwargs
from reduct_twisted.http.routes_records import drive
from reduct_twisted.http.sinks import LARGE_UPLOAD_RECV
from reduct_twisted.storage.settings import is_meta_entry
from reduct_twisted.wire import error_header
from reduct_twisted.wire.v2 import error_name, parse_request


def _key(record) -> tuple:
    return record.index, record.delta


# -- write (spec 1.20 §1.3) --------------------------------------------------------------


class IoWriteSink(BatchWriteSink):
    """A v2 batched write's sink: the v1 one, records naming their own entry.

    :ivar plan: the parsed request (``wire.v2.V2Request``).
    """

    def __init__(self, api, request, bucket: str, plan) -> None:
        super().__init__(api.engine, api.reactor, api.threadpool, request.channel.transport,
                         bucket, None, plan.records, key=_key, slots=api.writers,
                         touch=request.channel.resetTimeout,
                         digests=announced_digests(request, v2=True))
        self.plan = plan


def open_io_write(api, request, length: Optional[int], bucket: str) -> IoWriteSink:
    """
    Check a v2 write before its body arrives (after the permission, in the
    order of §1.3) and return the sink its body goes to.  The bucket is not
    looked up here: a missing one fails every record (404 each).

    :raises UnprocessableEntity: a bad header, or a content length that
        does not match the records.
    """
    plan = parse_request(request.requestHeaders.getAllRawHeaders())
    # Content-Length, or x-reduct-content-length [1.20] for a chunked body.
    length = announced_length(request, length)
    if length is None:
        raise UnprocessableEntity("content-length header is required")
    if plan.total_length != length:
        raise UnprocessableEntity(
            "content-length header does not match the sum of the content-lengths in the headers"
        )
    sink = IoWriteSink(api, request, bucket, plan)
    transport = request.channel.transport
    if sink.has_large and hasattr(transport, "bufferSize"):
        transport.bufferSize = LARGE_UPLOAD_RECV
    return sink


def io_write(api, request, bucket):
    sink = request.sink
    if sink is None:
        # No body framing at all, so gotLength skipped routing: the same
        # checks now (the table's layer has applied the permission).
        sink = open_io_write(api, request, 0, bucket)
    plan = sink.plan
    return sink.finish().addCallback(_answer_records, api, request, plan)


def _answer_records(errors, api, request, plan):
    """Answer a v2 change: the echo headers, one error header per failed record."""
    set_header = request.setHeader
    for name, value in plan.echo_headers():
        set_header(name, value)
    for (index, delta), err in sorted(errors.items()):
        set_header(error_name(index, delta), error_header(err))
    return api.durable(respond_empty, request)


# -- queries (spec 1.20 §1.4) ----------------------------------------------------------------


def _entries_field(body) -> Optional[list]:
    entries = body.get("entries") if isinstance(body, dict) else None
    if entries is not None and not (
        isinstance(entries, list) and all(isinstance(e, str) for e in entries)
    ):
        raise UnprocessableEntity(
            "Invalid JSON: invalid value for `entries`: expected a sequence of strings"
        )
    return entries


def io_query(api, request, bucket):
    """
    ``POST /io/:bucket/q``: QUERY creates a multi-entry query, REMOVE
    removes what it selects.  A malformed body is refused before the token
    is looked at.
    """
    body = parse_json_body(request.content.getvalue())
    query_type, kwargs = json_query(body)
    entries = _entries_field(body)
    if query_type == "QUERY":
        authorize(api, request, Policy.READ, bucket)
        qid = api.engine.create_multi_query(bucket, entries, **kwargs)
        return respond_json(request, {"id": qid})
    authorize(api, request, Policy.WRITE, bucket)
    if entries is None:
        criteria = remove_kwargs(kwargs)  # the 422 without any criterion
    else:  # entries alone is a criterion: {"entries": ["a"]} removes all of a
        criteria = {k: v for k, v in kwargs.items()
                    if k not in ("continuous", "ttl", "only_metadata")}
    removal = api.engine.remove_multi(bucket, entries, **criteria)
    d = drive(api.reactor, removal.step)
    return d.addCallback(
        lambda count: api.durable(respond_json, request, {"removed_records": count})
    )


# -- update and remove (spec 1.20 §1.6, §1.7) -------------------------------------------------


def _by_entry(records) -> dict:
    grouped: dict = {}
    for record in records:
        grouped.setdefault(record.entry, []).append(record)
    return grouped


def _per_entry(api, bucket: str, records, change) -> dict:
    """
    Apply ``change(entry, records)`` (returning ``ts -> error``) entry by
    entry; :return: ``(index, delta) -> error`` of the records not changed.
    """
    if not api.engine.has_bucket(bucket):
        raise NotFound(f"Bucket '{bucket}' is not found")
    errors = {}
    for entry, group in _by_entry(records).items():
        try:
            failed = change(entry, group)
        except NotFound as err:  # the entry is missing: each record says so
            for record in group:
                errors[_key(record)] = err
            continue
        for record in group:
            err = failed.get(record.ts)
            if err is None:
                continue
            if err.status == 404:
                err = NotFound(f"Record {record.ts} not found in entry {bucket}/{entry}")
            errors[_key(record)] = err
    return errors


def io_update(api, request, bucket):
    """``PATCH /io/:bucket/update``: cumulative label changes per entry [1.18.5]."""
    plan = parse_request(request.requestHeaders.getAllRawHeaders())

    def change(entry, group):
        return api.engine.update_labels(bucket, entry, {r.ts: r.changes for r in group})

    return _answer_records(_per_entry(api, bucket, plan.records, change), api, request, plan)


def _no_meta(entries) -> None:
    for entry in entries:
        if is_meta_entry(entry):
            raise UnprocessableEntity(
                f"Can't delete records from system entry '{entry}'; "
                "use label update with remove=true"
            )


def io_remove(api, request, bucket):
    """``DELETE /io/:bucket/remove``: records of several entries by timestamp."""
    plan = parse_request(request.requestHeaders.getAllRawHeaders(), start_first=True,
                         check_entries=_no_meta, values=False)

    def change(entry, group):
        return api.engine.remove_stamps(bucket, entry, [r.ts for r in group])

    return _answer_records(_per_entry(api, bucket, plan.records, change), api, request, plan)

