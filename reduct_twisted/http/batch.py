# -*- test-case-name: tests.unit.test_batch, tests.integration.test_batch -*-
"""
The batch protocol (v1): several records of one entry in one request.

* Batched write, ``POST /api/v1/b/:bucket/:entry/batch`` [1.7], spec §3.4
  (``batch_write.py``).
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

from twisted.logger import Logger
from twisted.python.failure import Failure

from reduct_twisted.errors import InternalError, NoContent, ReductError
from reduct_twisted.http.batch_limits import BatchLimits, set_raw_headers
from reduct_twisted.http.batch_write import (  # importable from here too
    SHORT_BODY,  # noqa: F401
    BatchWriteSink,  # noqa: F401
    open_batch_write,  # noqa: F401
)
from reduct_twisted.http.headers import u64_param
from reduct_twisted.http.producers import RangeSender
from reduct_twisted.storage import FULL, PENDING
from reduct_twisted.stepping import Wait
from reduct_twisted.storage.multi import HELD
from reduct_twisted.wire import (  # the limits stay importable from here
    BATCH_MAX_METADATA_SIZE,  # noqa: F401
    BATCH_MAX_RECORDS,  # noqa: F401
    BATCH_MAX_SIZE,  # noqa: F401
    TIME_PREFIX,
    record_header_value,
)

log = Logger()

#: A batched read's record header name, ``%`` its timestamp.
_TIME_NAME = TIME_PREFIX + b"%d"

#: A size bound no batch reaches (a HEAD's, which sends no contents).
_UNBOUNDED = 1 << 62

#: Seconds a batched read may scan before it yields to the reactor.
SCAN_SLICE = 0.005
#: Seconds between two looks for a new record while an empty batched read of
#: a continuous query waits for one.
WAIT_POLL = 0.05

# -- batched read ------------------------------------------------------------------


def batch_query_id(args) -> int:
    """The ``q`` parameter of a batched read."""
    qid = u64_param(
        args, "q", "'query' must be a number",
        required="'q' parameter is required for batched reads",
    )
    assert qid is not None
    return qid


def _time_header(record) -> tuple:
    """A stored record's v1 batch header: ``(x-reduct-time-<ts>, value)``."""
    return _TIME_NAME % record.ts, record_header_value(record.size, record.content_type,
                                                       record.labels)


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
                 limits: BatchLimits = BatchLimits(), reader=None) -> None:
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
        #: ``reader``: a read-ahead's ``PlannedReader`` (``batch_ahead.py``).
        self._reader = reader if reader is not None else None if head else engine.open_reader()
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
        return self._take_run(records, _time_header)

    def _take_run(self, records, header) -> tuple:
        """
        Add the records of a run, each's ``(name, value)`` from
        ``header(record)``, until the batch is full: :return: ``(taken, stop)``.
        """
        headers, limits, deadline = self.headers, self.limits, self._deadline
        room = limits.max_records - len(headers)
        max_metadata = limits.max_metadata
        max_size = _UNBOUNDED if self.head else limits.max_size
        metadata, size = self.metadata, self.size
        taken = 0
        for record in records:
            name, value = pair = header(record)
            headers.append(pair)
            metadata += len(name) + len(value) + 2
            size += record.size
            taken += 1
            if (taken >= room or metadata > max_metadata or size > max_size
                    or time.monotonic() >= deadline):
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

    def attach(self, reader) -> None:
        """Read the contents through ``reader`` (a read-ahead's, claimed) from now on."""
        self._reader = reader

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
