# -*- test-case-name: tests.unit.test_sinks -*-
"""
Where request bodies go: sinks that hand each received chunk to the
record's storage writer (``storage.upload.RecordWriter``, from
``engine.upload``) as the chunk arrives.  Storage does every disk
operation, keeps the CRC-32 and checks the length; a sink decides only when
bytes move and what the request answers.

* ``SharedSegmentSink``: small records (declared length <= the engine's
  ``SMALL_RECORD_MAX``).  Each chunk is written at once
  (``RecordWriter.write``: into the block's shared segment, on the reactor
  thread; a page-cache write is cheaper than a thread hop for small bodies).
* ``PrivateSegmentSink``: large records and chunked uploads.  Chunks queue up
  and one ``RecordWriter.write_chunks`` call at a time (bounded ``writev``
  calls) runs in the writer's thread pool, so a slow disk never
  stalls the reactor; when more than its share of ``UPLOAD_BUDGET`` bytes
  (``HIGH_WATER`` for one upload alone) are queued, the socket is paused
  (TCP backpressure) until the queue drains below a quarter of it.  Batches never overlap, so the CRC follows the content
  order across pause and resume.

A chunked upload's bytes are claimed against the bucket's quota as they
arrive (``RecordWriter.admit``).  Crossing a HARD quota aborts the record at
once and sets ``refusal``: the request answers it without waiting for the
rest of the body (``StreamingRequest.handleContentChunk``).

Both commit the record only once every byte is on its way to the disk, and
abort it (nothing visible, nothing counted, space released) if the body
falls short, the client goes away or the disk refuses: a full disk fails
the write with 507, other disk errors with 500, the reason in
``x-reduct-error``.
"""

from collections import deque
from functools import partial
from io import BytesIO
from typing import Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from reduct_twisted.errors import BadRequest, ReductError
from reduct_twisted.interfaces import IRecordSink, IUploadSink
from reduct_twisted.storage.disk.durability import storage_error

log = Logger()

#: Pause reading from the client above this many queued bytes (one upload) ...
HIGH_WATER = 8 << 20
#: ... and resume below this many.
LOW_WATER = 2 << 20
#: The bytes all large uploads may hold at once, shared out between the ones
#: receiving (``Uploads``): 64 concurrent uploads must not grow the daemon by
#: more than 32 MiB (issue #17), one alone keeps ``HIGH_WATER``.  The heap
#: grows by more than the bytes queued (a read in flight per connection, the
#: holes between freed chunks): with 16 MiB, 64 uploads of 10 MiB grew it by
#: 12-24 MiB on a fresh daemon and by 32 MiB in a full benchmark run; with
#: 12 MiB by 12-20 MiB, at 0.9x their throughput (8 MiB: 13-17 MiB, 0.8x).
UPLOAD_BUDGET = 12 << 20
#: The least an upload may queue (64 uploads' shares of the budget), and the
#: least it reads at a time.
MIN_HIGH_WATER = 192 << 10
MIN_RECV = 64 << 10
#: The most a connection streaming a large record reads at a time (fewer,
#: larger chunks: about 2x upload throughput with the thread-pool writer).
LARGE_UPLOAD_RECV = 1 << 20
#: Largest single ``writev`` handed to a worker thread.
MAX_BATCH = 4 << 20


def in_pool(reactor, threadpool):
    """
    :return: the ``run_in_thread`` a storage writer runs its disk work with:
        ``deferToThreadPool`` on ``threadpool``, results back on ``reactor``.
    """
    return partial(deferToThreadPool, reactor, threadpool)


def _storage_error(exc: OSError) -> ReductError:
    return storage_error(exc, "write record")


class _Sink:
    """
    The part both sinks share: the record's writer and the outcome.
    Subclasses implement ``write``, ``_flush`` and ``_discard``.

    :param upload: the record's ``RecordWriter`` (``engine.upload``).
    :ivar done: True once committed or aborted; further calls are no-ops.
    :ivar refusal: the error to answer at once, before the body ends (a
        chunked upload crossed a HARD quota); the record is aborted already.
    """

    refusal: Optional[ReductError] = None
    #: The writer slot the record holds (``writers.py``), or None (no limit):
    #: released once the record is stored, has failed or is dropped.
    slot = None

    def __init__(self, upload) -> None:
        self._writer = upload
        self.done = False
        self.error: Optional[ReductError] = None

    def _check_overflow(self, size: int) -> bool:
        if self._writer.overflows(size):
            self.error = BadRequest("Content is bigger than in content-length")
            return True
        return False

    def finish(self) -> Deferred:
        """
        The body is complete: flush, then commit the record.

        :return: a Deferred firing with None once the record is stored, or
            failing with a ``ReductError`` after aborting it.
        """
        if self.done:
            return fail(self.error or BadRequest("Upload was aborted"))
        d = self._flush()
        d.addCallback(self._commit)
        d.addErrback(self._finish_failed)
        if self.slot is not None:
            d.addBoth(self._release_slot)
        return d

    def _release_slot(self, result=None):
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release()
        return result

    def _commit(self, _) -> None:
        if self.done:
            raise self.error or BadRequest("Upload was aborted")
        if self.error is not None:
            raise self.error
        # From here on the engine owns the outcome: on a length mismatch or
        # a vanished bucket it aborts the record itself before raising.
        self.done = True
        self._writer.commit()

    def _finish_failed(self, failure):
        self.abort()
        if failure.check(OSError):
            raise _storage_error(failure.value)
        return failure

    def abort(self) -> None:
        """Drop the record: the client vanished or the body was wrong."""
        if self.done:
            return
        self.done = True
        self._discard()
        self._writer.abort()
        if self.slot is not None:
            self._release_slot()


@implementer(IRecordSink)
class SharedSegmentSink(_Sink):
    """Writes a small record's chunks into the shared segment, in place."""

    def write(self, data: bytes) -> None:
        if self.done or self.error is not None or self._check_overflow(len(data)):
            return
        try:
            self._writer.write(data)
        except OSError as exc:
            self.error = _storage_error(exc)

    def _flush(self) -> Deferred:
        return succeed(None)

    def finish_now(self) -> None:
        """
        ``finish`` without a Deferred: every chunk is already written, so
        the record is committed at once.

        :raises ReductError: the record was aborted (the same errors
            ``finish`` fails with).
        """
        try:
            if self.done:
                raise self.error or BadRequest("Upload was aborted")
            self._commit(None)
        except OSError as exc:
            self.abort()
            raise _storage_error(exc) from None
        except BaseException:
            self.abort()
            raise
        finally:
            if self.slot is not None:
                self._release_slot()

    def _discard(self) -> None:
        pass


class Uploads:
    """
    The large uploads receiving now, and each one's share of
    ``UPLOAD_BUDGET``: the queued bytes above which it pauses its client
    (:meth:`high`) and how much its connection reads at a time (:meth:`recv`).
    Shares shrink as uploads arrive and grow as they end; nobody waits for
    a share, each upload always reads at least ``MIN_RECV``.
    """

    def __init__(self) -> None:
        self.active = 0

    def high(self) -> int:
        return max(MIN_HIGH_WATER, min(HIGH_WATER, UPLOAD_BUDGET // max(self.active, 1)))

    def recv(self) -> int:
        return max(MIN_RECV, min(LARGE_UPLOAD_RECV, self.high() // 4))


#: The daemon's large uploads (one reactor per process).
UPLOADS = Uploads()


def _connection(pauser):
    """The TCP transport behind ``pauser`` whose read size can be set, or None."""
    gate = getattr(pauser, "_gate", None)
    connection = gate.transport if gate is not None else pauser
    return connection if hasattr(connection, "bufferSize") else None


@implementer(IRecordSink)
class PrivateSegmentSink(_Sink):
    """
    Streams a large record into its own segment through its writer's thread
    pool, pausing the client above its share of queued bytes (``Uploads``).

    :param upload: a private ``RecordWriter`` (its segment is created).
    :param transport: the connection to pause and resume (``IPushProducer``).
    """

    def __init__(self, upload, transport) -> None:
        super().__init__(upload)
        self._transport = transport
        self._connection = _connection(transport)
        self._receiving = True
        UPLOADS.active += 1
        self._queue: deque = deque()
        self._queued = 0
        self._busy = False
        self._paused = False
        self._drained: Optional[Deferred] = None
        self._closing = False
        #: Largest number of bytes ever queued (for tests and benchmarks).
        self.max_queued = 0

    def write(self, data: bytes) -> None:
        if self.done or self.error is not None or self._check_overflow(len(data)):
            return
        try:
            self._writer.admit(len(data))
        except ReductError as err:
            self._refuse(err)
            return
        self._queue.append(data)
        self._queued += len(data)
        self.max_queued = max(self.max_queued, self._queued)
        if self._connection is not None:
            self._connection.bufferSize = UPLOADS.recv()
        if self._queued >= UPLOADS.high() and not self._paused:
            self._paused = True
            self._transport.pauseProducing()
        self._pump()

    def _leave(self) -> None:
        """The body ended (or the upload did): its share goes to the others."""
        if self._receiving:
            self._receiving = False
            UPLOADS.active -= 1

    def finish(self) -> Deferred:
        self._leave()
        return super().finish()

    def abort(self) -> None:
        self._leave()
        super().abort()

    def _pump(self) -> None:
        if self._busy or not self._writer.is_open:
            return
        if self.done:
            self._writer.close()
            return
        if not self._queue:
            if self._closing:
                self._close_and_signal()
            return
        batch, size = [], 0
        while self._queue and size < MAX_BATCH:
            chunk = self._queue.popleft()
            batch.append(chunk)
            size += len(chunk)
        self._busy = True
        self._writer.write_chunks(batch).addCallbacks(
            self._written, self._failed, callbackArgs=(size,)
        )

    def _refuse(self, err: ReductError) -> None:
        # The rest of the body is read and dropped by the request: never
        # leave the socket paused on its behalf.
        self.error = self.refusal = err
        if self._paused:
            self._paused = False
            self._transport.resumeProducing()
        self.abort()

    def _written(self, _, size: int) -> None:
        self._busy = False
        self._queued -= size
        if self._paused and self._queued <= min(LOW_WATER, UPLOADS.high() // 4):
            self._paused = False
            self._transport.resumeProducing()
        self._pump()

    def _failed(self, failure) -> None:
        self._busy = False
        if self.error is None:
            self.error = (
                _storage_error(failure.value) if failure.check(OSError) else
                ReductError(f"Failed to write record: {failure.getErrorMessage()}")
            )
        if failure.check(OSError):
            # An expected condition (full disk, read-only file system): no traceback.
            log.warn("Writing record {ts} failed: {reason}", ts=self._writer.ts,
                     reason=self.error.message)
        else:
            log.failure("Writing record {ts} failed", failure, ts=self._writer.ts)
        self._queue.clear()
        if self._paused:
            self._paused = False
            self._transport.resumeProducing()
        if self._closing:
            self._close_and_signal()

    def _close_and_signal(self) -> None:
        drained, self._drained = self._drained, None
        if drained is None:
            return
        closed = self._writer.close()
        if closed is None:
            drained.callback(None)
            return
        self._busy = True
        closed.addBoth(self._closed, drained)

    def _closed(self, result, drained: Deferred) -> None:
        # Some file systems report a failed write only at close.
        if isinstance(result, Failure) and self.error is None:
            self.error = (
                _storage_error(result.value) if result.check(OSError) else
                ReductError(f"Failed to write record: {result.getErrorMessage()}")
            )
        drained.callback(None)

    def _flush(self) -> Deferred:
        # _pump may signal (and drop self._drained) before returning: after
        # a failed write the queue is empty and the file is closed at once.
        drained = self._drained = Deferred()
        self._closing = True
        if not self._busy:
            self._pump()
        return drained

    def _discard(self) -> None:
        self._queue.clear()
        self._queued = 0
        if self._paused:
            self._paused = False
        if not self._busy:
            self._writer.close()
        # The engine discards the segment file itself (in the pool).


@implementer(IUploadSink)
class DiscardSink:
    """Swallows a body that will be refused anyway (counting its size)."""

    done = False

    def __init__(self) -> None:
        self.received = 0

    def write(self, data: bytes) -> None:
        self.received += len(data)

    def abort(self) -> None:
        self.done = True


class BoundedBuffer(BytesIO):
    """In-memory body of a non-streaming route; refuses to grow past a cap."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.overflow = False

    def write(self, data) -> int:
        if self.overflow or self.tell() + len(data) > self.limit:
            self.overflow = True
            return 0
        return super().write(data)


class PauseGate:
    """
    One transport paused on behalf of several sinks: it resumes only when
    every sink that paused it has resumed (the records of a batch may
    overlap in time: one still flushing while the next one arrives).
    """

    def __init__(self, transport) -> None:
        self.transport = transport
        self._pausers: set = set()

    def handle(self) -> "_GateHandle":
        """:return: a transport stand-in for one sink."""
        return _GateHandle(self)

    def pause(self, who) -> None:
        if not self._pausers:
            self.transport.pauseProducing()
        self._pausers.add(who)

    def resume(self, who) -> None:
        if who in self._pausers:
            self._pausers.discard(who)
            if not self._pausers:
                self.transport.resumeProducing()


class _GateHandle:
    def __init__(self, gate: PauseGate) -> None:
        self._gate = gate

    def pauseProducing(self) -> None:
        self._gate.pause(self)

    def resumeProducing(self) -> None:
        self._gate.resume(self)
