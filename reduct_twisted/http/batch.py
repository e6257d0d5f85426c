# -*- test-case-name: tests.unit.test_batch, tests.integration.test_batch -*-
"""
The batch protocol (v1): several records of one entry in one request.

* Batched write, ``POST /api/v1/b/:bucket/:entry/batch`` [1.7], spec §3.4.
  Every record is announced by a header
  ``x-reduct-time-<ts>: <length>,<content type>[,<name>=<value>]…`` and
  the body holds the contents back to back, in ascending timestamp order.
  ``BatchWriteSink`` is opened from ``gotLength``, before the first body
  byte, like a single-record sink: it cuts the records out of the stream by
  their declared lengths as chunks arrive, allocates each record when its
  bytes begin and writes them through the single-record sinks
  (``SharedSegmentSink`` on the reactor, ``PrivateSegmentSink`` through
  the thread pool with its water marks), so nothing is buffered whole.  A
  record the engine refuses (missing bucket [1.18], duplicate, quota, bad
  entry name, disk, a content not matching its ``x-reduct-digest-<ts>``)
  is skipped in the stream and answered in an
  ``x-reduct-error-<ts>: <status>,<message>`` header of the 200; records
  completed before a client vanishes stay stored.

* Batched read, ``GET|HEAD /api/v1/b/:bucket/:entry/batch?q=<id>`` [1.5],
  spec §3.3.  ``BatchReader`` takes the next records of the query up to
  the limits below, announces them in ``x-reduct-time-<ts>`` headers
  (ascending, the body order) and streams their contents back to back
  through a storage ``ContentReader`` with a ``RangeSender``.  Its :class:`BatchLimits` are the
  server's ``RS_IO_BATCH_*`` settings, which a query's ``#batch_*``,
  ``#batch_timeout`` and ``#record_timeout`` directives override.
"""

import time
from collections import deque
from functools import partial
from typing import Dict, List, Optional

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from reduct_twisted.errors import (
    BadRequest,
    InternalError,
    NoContent,
    ReductError,
    UnprocessableEntity,
)
from reduct_twisted.http.batch_limits import BatchLimits, set_raw_headers
from reduct_twisted.http.headers import announced_digests, announced_length, u64_param
from reduct_twisted.http.producers import RangeSender
from reduct_twisted.http.sinks import PauseGate, PrivateSegmentSink, SharedSegmentSink, in_pool
from reduct_twisted.interfaces import IRecordSink
from reduct_twisted.storage import FULL, PENDING, SMALL_RECORD_MAX
from reduct_twisted.stepping import Wait
from reduct_twisted.storage.multi import HELD
from reduct_twisted.wire import (  # the limits stay importable from here
    BATCH_MAX_METADATA_SIZE,  # noqa: F401
    BATCH_MAX_RECORDS,  # noqa: F401
    BATCH_MAX_SIZE,  # noqa: F401
    TIME_PREFIX,
    parse_batch_headers,
    record_header_value,
)

log = Logger()

#: A batched read's record header name, ``%`` its timestamp.
_TIME_NAME = TIME_PREFIX + b"%d"

#: Seconds a batched read may scan before it yields to the reactor.
SCAN_SLICE = 0.005
#: Seconds between two looks for a new record while an empty batched read of
#: a continuous query waits for one.
WAIT_POLL = 0.05

# -- batched write -------------------------------------------------------------------

#: The answer to a batched write whose body ends before its last record [1.17.4].
SHORT_BODY = "Content is shorter than expected: no more data to read"


def open_batch_write(engine, reactor, threadpool, request, length: Optional[int],
                     bucket: str, entry: str, slots=None) -> "BatchWriteSink":
    """
    Check a batched write before its body arrives (after authorization)
    and return the sink its body goes to.

    :raises ReductError: the whole request is refused (422 headers or
        content length).
    """
    records = parse_batch_headers(request.requestHeaders.getAllRawHeaders(), at_labels=True)
    digests = announced_digests(request, v2=False)
    # Content-Length, or x-reduct-content-length [1.20] for a chunked body.
    length = announced_length(request, length)
    if length is None:
        raise UnprocessableEntity("content-length header is required")
    if sum(r.length for r in records) != length:
        raise UnprocessableEntity(
            "content-length header does not match the sum of the content-lengths in the headers"
        )
    # A missing bucket is no refusal of the request [1.18]: each record
    # answers it in its x-reduct-error-<ts> header (spec 1.20 §5.8).
    return BatchWriteSink(
        engine, reactor, threadpool, request.channel.transport, bucket, entry, records,
        slots=slots, touch=request.channel.resetTimeout, digests=digests,
    )

@implementer(IRecordSink)
class BatchWriteSink:
    """
    Cuts a batched write's body into its records as it arrives (see the
    module docstring).

    :param entry: the entry of every record (v1), or None: each record
        names its own in ``record.entry`` (the I/O API, ``io.py``).
    :param records: what ``wire`` parsed (``BatchedRecord`` or
        ``v2.PlannedRecord``), in the order of their contents in the body.
    :param key: ``key(record)``: what :attr:`errors` is keyed by; default
        the timestamp.
    :param slots, touch: the ``WriterSlots`` records are opened with (or None), ``touch`` for it.
    :param digests: ``key -> SHA-256`` a record must match (``x-reduct-digest-*``).
    :ivar errors: ``key -> ReductError`` of every refused or failed record.
    :ivar has_large: whether a record goes to a private segment (the
        caller may enlarge the receive buffer).
    :ivar done: True once finished or aborted.
    """

    done = False
    _excess = False

    def __init__(self, engine, reactor, threadpool, transport, bucket: str,
                 entry: Optional[str], records: list, key=None, slots=None, touch=None,
                 digests=None) -> None:
        self.engine = engine
        self._digests = digests or {}
        self._slots, self._touch = slots, touch
        self._in_thread = in_pool(reactor, threadpool)
        self._gate = PauseGate(transport)
        self.bucket = bucket
        self.entry = entry
        self._key = key if key is not None else (lambda record: record.ts)
        self._records = deque(records)
        self.has_large = any(r.length > SMALL_RECORD_MAX for r in records)
        self.errors: Dict = {}
        # The record whose bytes are arriving: its key, its sink (None if
        # refused: its bytes are skipped) and how many bytes are missing.
        self._open = False
        self._ts = 0
        self._sink = None
        self._left = 0
        self._pending: List[Deferred] = []

    def write(self, data: bytes) -> None:
        if self.done:
            return
        size, pos = len(data), 0
        while pos < size:
            if not self._open and not self._begin_next():
                # Beyond the announced records: only a chunked body held to
                # x-reduct-content-length can be longer; the rest is dropped.
                self._excess = True
                break
            take = min(self._left, size - pos)
            if self._sink is not None:
                self._sink.write(data if take == size else memoryview(data)[pos:pos + take])
            pos += take
            self._left -= take
            if not self._left:
                self._end_current()
        self.engine.flush_writes()  # this chunk's small records: one write per block (runs.py)

    def _begin_next(self) -> bool:
        """
        Open the next record that has content; empty records on the way
        are stored at once.

        :return: False if no record is left.
        """
        while self._records:
            record = self._records.popleft()
            self._open, self._ts, self._left = True, self._key(record), record.length
            self._sink = self._allocate(record)
            if record.length:
                return True
            self._end_current()
        return False

    @property
    def waiting(self) -> bool:
        """Whether the record being received waits for a writer slot."""
        return getattr(self._sink, "waiting", False)

    def _allocate(self, record):
        try:
            if self._slots is None:
                return self._open_record(record, self._gate)
            return self._slots.open(lambda gate: self._open_record(record, gate), self._gate,
                                    touch=self._touch)
        except Exception as exc:
            self._record_failed(Failure(exc), self._key(record))
            return None

    def _open_record(self, record, gate):
        # A v1 batch names one entry; an I/O API batch (entry None) one a record.
        entry = record.entry if self.entry is None else self.entry
        upload = self.engine.upload(
            self.bucket, entry, record.ts, record.length, record.content_type,
            record.labels, self._in_thread, self._digests.get(self._key(record)),
            failed=partial(self.errors.__setitem__, self._key(record)))
        if not upload.private:
            return SharedSegmentSink(upload)
        return PrivateSegmentSink(upload, gate.handle())

    def _end_current(self) -> None:
        """The current record's bytes are complete: commit it."""
        sink, ts = self._sink, self._ts
        self._open, self._sink = False, None
        if sink is None:
            return
        if isinstance(sink, SharedSegmentSink):
            try:
                sink.finish_now()
            except Exception as exc:
                self._record_failed(Failure(exc), ts)
            return
        d = sink.finish()
        d.addErrback(self._record_failed, ts)
        self._pending.append(d)

    def _record_failed(self, failure: Failure, key) -> None:
        err = failure.value
        if not isinstance(err, ReductError):
            log.failure("Writing batched record {ts} failed", failure, ts=key)
            err = InternalError(f"Failed to write record: {failure.getErrorMessage()}")
        self.errors[key] = err

    def finish(self) -> Deferred:
        """
        The body is complete: store what is left (empty records), wait for
        the records still being flushed.

        :return: a Deferred firing with :attr:`errors` once every record is
            committed or failed.
        """
        if self.done:
            return fail(BadRequest("Upload was aborted"))
        if not self._open:
            self._begin_next()
        self.engine.flush_writes()
        if self._open:
            # Fewer bytes than announced (a chunked body held to
            # x-reduct-content-length; Content-Length framing prevents it).
            self.abort()
            return fail(BadRequest(SHORT_BODY))
        self.done = True
        if self._excess:
            # Records complete before the excess stay stored, as after a
            # client gone mid-body.
            return fail(BadRequest("Content is bigger than in content-length"))
        # A fresh Deferred: cancelling it (the client went away) must not
        # cancel the flushes of records already received, which then commit.
        answer: Deferred = Deferred()
        DeferredList(self._pending).addCallback(lambda _: answer.callback(self.errors))
        return answer

    def abort(self) -> None:
        """
        The body ends short (the client went away): drop the record being
        received and those not begun.  Complete records stay: those still
        being flushed are committed when their flush ends.
        """
        if self.done:
            return
        self.done = True
        sink, self._sink = self._sink, None
        self._open = False
        self._records.clear()
        if sink is not None:
            sink.abort()
        self.engine.flush_writes()  # complete records stay stored


# -- batched read ------------------------------------------------------------------


def batch_query_id(args) -> int:
    """The ``q`` parameter of a batched read."""
    qid = u64_param(
        args, "q", "'query' must be a number",
        required="'q' parameter is required for batched reads",
    )
    assert qid is not None
    return qid


class BatchReader:
    """
    The next records of query ``qid``, up to the batch limits, and the
    answer that carries them.

    Call :meth:`step` (through ``drive``) until it returns something other
    than ``PENDING`` or a :class:`Wait`, then :meth:`answer`.  The time
    limits are measured on the engine's clock.  Records are taken a batch
    at a time (``engine.query_take``: one call walks a block's records);
    for GET, storage adds each to a ``ContentReader`` as it is taken (its
    data file is opened then, so a block removed later by the quota cannot
    take it away; consecutive records of a file make one range, one
    ``sendfile``) and the reader is handed to the ``RangeSender``;
    :meth:`close` releases it if the answer is not sent.
    """

    def __init__(self, engine, bucket: str, entry: str, qid: int, head: bool,
                 limits: BatchLimits = BatchLimits()) -> None:
        self.engine = engine
        self.bucket = bucket
        self.entry = entry
        self.qid = qid
        self.head = head
        self.limits = limits
        self._started = self._found_at = engine.clock.seconds()
        self._found = 0
        #: ``(name, value)`` of each record header, ascending.
        self.headers: list = []
        #: Sum of the record sizes.
        self.size = 0
        self.metadata = 0
        #: Whether the query said "no more records".
        self.last = False
        self._reader = None if head else engine.open_reader()
        self._deadline = 0.0

    def step(self):
        """
        Take records until the batch is full, has gathered long enough, or
        the query has none left.

        :return: ``PENDING`` (call again soon), a :class:`Wait` or ``self``.
        """
        self._deadline = time.monotonic() + SCAN_SLICE
        while True:
            try:
                result = self._take()
            except ReductError:
                if not self.headers:
                    raise
                return self  # send what was taken; the next read reports it
            if result is HELD:
                return self  # the next record starts the next batch
            if result is None:
                if not self.headers:
                    return self._nothing_yet()
                self.last = True
                return self
            if result is not PENDING:
                # FULL: the batch is full, or the time slice is used up.
                if self._full():
                    return self
                if time.monotonic() < self._deadline:
                    continue
            # The time slice, or the engine's budget of examined records, is
            # used up: yield to the reactor, unless the batch is done waiting.
            return self if self._gathered_long_enough() else PENDING

    def _take(self):
        """
        Take the query's next records into the batch (:meth:`_visit`).

        :return: ``FULL`` (the batch is full or the slice used up),
            ``None``, ``PENDING`` or (a subclass) ``HELD``.
        """
        take = getattr(self.engine, "query_take", None)
        if take is None:  # an engine of single-record reads only (a test's script)
            result = self.engine.query_next(self.bucket, self.entry, self.qid)
            if result is None or result is PENDING:
                return result
            self._add_view(result)
            return FULL
        return take(self.bucket, self.entry, self.qid, self._visit, self._reader,
                    visit_run=self._visit_run)

    def _visit(self, ts: int, size: int, content_type: str, labels) -> bool:
        """One record taken: its header; :return: whether to stop taking."""
        return self._taken(_TIME_NAME % ts, record_header_value(size, content_type, labels), size)

    def _taken(self, name, value, size: int) -> bool:
        """A record's header and size added; :return: whether the batch is full."""
        headers = self.headers
        headers.append((name, value))
        self.metadata += len(name) + len(value) + 2
        self.size += size
        limits = self.limits  # _full(), inline
        return (len(headers) >= limits.max_records or self.metadata > limits.max_metadata
                or (not self.head and self.size > limits.max_size)
                or time.monotonic() >= self._deadline)

    def _visit_run(self, records) -> tuple:
        """
        :meth:`_visit` for a run of stored records (their ``ts``, ``size``,
        ``content_type`` and ``labels``): :return: ``(taken, stop)``.
        """
        headers, limits, head, deadline = self.headers, self.limits, self.head, self._deadline
        metadata, size = self.metadata, self.size
        taken = 0
        for record in records:
            taken += 1
            name = _TIME_NAME % record.ts
            value = record_header_value(record.size, record.content_type, record.labels)
            headers.append((name, value))
            metadata += len(name) + len(value) + 2
            size += record.size
            if (len(headers) >= limits.max_records or metadata > limits.max_metadata
                    or (not head and size > limits.max_size) or time.monotonic() >= deadline):
                self.metadata, self.size = metadata, size
                return taken, True
        self.metadata, self.size = metadata, size
        return taken, False

    def _add_view(self, view) -> None:
        record = view.record
        if self._reader is not None and record.size:
            try:
                self._reader.add(view)
            except OSError as exc:
                raise InternalError(
                    f"Failed to read record {record.ts}: {exc.strerror or exc}"
                ) from None
        self._visit(record.ts, record.size, record.content_type, record.labels)

    def _ended(self) -> bool:
        """Whether the query is gone (it delivered its end)."""
        return self.engine.query_options(self.bucket, self.entry, self.qid) is None

    def _full(self) -> bool:
        limits = self.limits
        return (
            len(self.headers) >= limits.max_records
            or self.metadata > limits.max_metadata
            or (not self.head and self.size > limits.max_size)
        )

    def _gathered_long_enough(self) -> bool:
        # Checked between scan slices (SCAN_SLICE apart at most); an empty
        # batch goes on: a 204 would end a non-continuous client's reading.
        if not self.headers:
            return False
        now = self.engine.clock.seconds()
        if len(self.headers) != self._found:
            self._found, self._found_at = len(self.headers), now
        limits = self.limits
        return (now - self._started >= limits.timeout
                or now - self._found_at >= limits.record_timeout)

    def _nothing_yet(self):
        """
        The query has no record now and the batch is empty: ``self`` (204)
        if the query ended; a continuous query (still there) is polled again
        until ``record_timeout`` has passed.
        """
        if self._ended():
            return self
        left = self.limits.record_timeout - (self.engine.clock.seconds() - self._started)
        if left <= 0:
            return self
        return Wait(min(WAIT_POLL, left))

    def close(self) -> None:
        """Close the reader if it was not handed to a sender."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def answer(self, result, request):
        """
        Answer ``request`` with the batch (a ``drive`` callback or errback).

        :return: the body (``b""``) or a Deferred firing with it once sent.
        :raises NoContent: the query had no record.
        """
        if isinstance(result, Failure):
            self.close()
            return result
        if not self.headers:
            self.close()
            raise NoContent("No content")
        set_header = request.setHeader
        set_header(b"content-type", b"application/octet-stream")
        set_header(b"content-length", b"%d" % self.size)
        set_header(b"x-reduct-last", b"true" if self.last else b"false")
        set_raw_headers(request, self.headers)
        reader = self._reader
        if reader is None or not reader.ranges:
            self.close()
            return b""
        self._reader = None
        sender = RangeSender(request, reader, f"a batch of query {self.qid}")
        return sender.start().addCallback(lambda _: b"")
