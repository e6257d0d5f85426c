# -*- test-case-name: tests.unit.test_batch, tests.integration.test_batch -*-
"""
The batch protocol's write half (v1 ``POST /api/v1/b/:bucket/:entry/batch``
and, with one entry a record, the I/O API's ``POST /io/:bucket/write``):
see ``batch.py`` for the protocol.  :class:`BatchWriteSink` cuts the body
into its records as it arrives; the small records of one entry that follow
each other are allocated together when the first one's bytes begin
(``engine.upload_run``, unless writer slots are counted: each record then
waits for its own).
"""

from collections import deque
from functools import partial
from typing import Dict, List, Optional

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from reduct_twisted.errors import BadRequest, InternalError, ReductError, UnprocessableEntity
from reduct_twisted.http.headers import announced_digests, announced_length
from reduct_twisted.http.sinks import PauseGate, PrivateSegmentSink, SharedSegmentSink, in_pool
from reduct_twisted.interfaces import IRecordSink
from reduct_twisted.storage import SMALL_RECORD_MAX
from reduct_twisted.wire import parse_batch_headers

__all__ = ["open_batch_write", "BatchWriteSink", "SHORT_BODY", "RUN_MAX"]

log = Logger()

#: Most records of a batched write allocated at once (``BatchWriteSink._open_run``).
RUN_MAX = 1024

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
    #: The current record's sink is a run's writer (``_open_run``), not a record sink.
    _direct = False

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
        # id(record) -> its writer (or refusal) from a run allocated at once.
        self._ready: Dict[int, object] = {}

    def write(self, data: bytes) -> None:
        if self.done:
            return
        size, pos, view = len(data), 0, None
        while pos < size:
            if not self._open and not self._begin_next():
                # Beyond the announced records: only a chunked body held to
                # x-reduct-content-length can be longer; the rest is dropped.
                self._excess = True
                break
            take = min(self._left, size - pos)
            if self._sink is not None:
                if take == size:
                    self._sink.write(data)
                else:
                    if view is None:
                        view = memoryview(data)
                    self._sink.write(view[pos:pos + take])
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
                ready = self._ready.pop(id(record), None) if self._ready else None
                if ready is None and record.length <= SMALL_RECORD_MAX:
                    ready = self._open_run(record)
                if ready is None:
                    return self._open_record(record, self._gate)
                if isinstance(ready, ReductError):
                    raise ready
                # The run's writer itself: its bytes are cut to its length
                # here and only kept until the flush (no I/O, no overflow).
                self._direct = True
                return ready
            return self._slots.open(lambda gate: self._open_record(record, gate), self._gate,
                                    touch=self._touch)
        except Exception as exc:
            self._record_failed(Failure(exc), self._key(record))
            return None

    def _open_run(self, record):
        """
        Allocate ``record`` and the small records of its entry that follow
        it at once (``engine.upload_run``: work per batch, not per record);
        the others wait in ``_ready``.  :return: ``record``'s writer or
        refusal, or None: it goes on its own (``_open_record``).
        """
        entry = record.entry if self.entry is None else self.entry
        run = [record]
        for later in self._records:
            if (len(run) >= RUN_MAX or later.length > SMALL_RECORD_MAX
                    or (self.entry is None and later.entry != entry)):
                break
            run.append(later)
        upload_run = getattr(self.engine, "upload_run", None)
        if len(run) < 2 or upload_run is None:
            return None
        key, errors = self._key, self.errors
        keys = [key(r) for r in run]
        try:
            out = upload_run(self.bucket, entry, [(r.ts, r.length, r.content_type, r.labels) for r in run],
                             [self._digests.get(k) for k in keys],
                             [partial(errors.__setitem__, k) for k in keys])
        except ReductError:
            return None  # (no bucket): each record gets its own answer
        self._ready.update(zip(map(id, run[1:]), out[1:]))
        return out[0]

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
        if self._direct:
            self._direct = False
            try:
                sink.commit()  # checked now, stored at the flush (storage/runs.py)
            except Exception as exc:
                sink.abort()  # (idempotent: a refused commit has aborted it already)
                self._record_failed(Failure(exc), ts)
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
        ready, self._ready = self._ready, {}
        for writer in ready.values():  # allocated with their run, never begun
            if not isinstance(writer, ReductError):
                writer.abort()
        self.engine.flush_writes()  # complete records stay stored
