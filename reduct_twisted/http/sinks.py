# -*- test-case-name: tests.unit.test_sinks -*-
"""
Where request bodies go: sinks that move each received chunk straight into
the record's place in a block file, as the chunk arrives.

* ``SharedSegmentSink``: small records (declared length <= the engine's
  ``SMALL_RECORD_MAX``).  Each chunk is ``os.pwrite``-n into the block's
  shared segment at the offset the engine reserved, on the reactor thread: a
  page-cache write is cheaper than a thread hop for small bodies.
* ``PrivateSegmentSink``: large records and chunked uploads.  Chunks queue up
  and one ``writev`` at a time runs in the thread pool, so a slow disk never
  stalls the reactor; when more than ``HIGH_WATER`` bytes are queued, the
  socket is paused (TCP backpressure) until the queue drains below
  ``LOW_WATER``.  Opening, writing and closing the file all happen in the pool.

Both keep ``alloc.crc``, the CRC-32 of the bytes written so far, which the
engine stores with the record (checked after an unclean stop): the shared
sink on the reactor after each ``pwrite``, the private sink in the thread,
one batch after the other (batches never overlap, so the order holds
across pause and resume).

Both commit the record to the engine only once every byte is on its way to
the disk, and abort it (nothing visible, nothing counted, space released) if
the body falls short, the client goes away or the disk refuses: a full disk
fails the write with 507, other disk errors with 500, the reason in
``x-reduct-error``.
"""

import errno
import os
import zlib
from collections import deque
from typing import Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from reduct_twisted.errors import BadRequest, ReductError
from reduct_twisted.storage.durability import storage_error

log = Logger()

#: Pause reading from the client above this many queued bytes ...
HIGH_WATER = 8 << 20
#: ... and resume below this many.
LOW_WATER = 2 << 20
#: Largest single ``writev`` handed to a worker thread.
MAX_BATCH = 4 << 20


def _storage_error(exc: OSError) -> ReductError:
    return storage_error(exc, "write record")


class _Sink:
    """
    The part both sinks share: bookkeeping of the allocation and of the
    outcome.  Subclasses implement ``write``, ``_flush`` and ``_discard``.

    :ivar done: True once committed or aborted; further calls are no-ops.
    """

    def __init__(self, engine, alloc) -> None:
        self.engine = engine
        self.alloc = alloc
        self.done = False
        self.error: Optional[ReductError] = None

    def _check_overflow(self, size: int) -> bool:
        length = self.alloc.length
        if length is not None and self.alloc.written + size > length:
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
        return d

    def _commit(self, _) -> None:
        if self.done:
            raise self.error or BadRequest("Upload was aborted")
        if self.error is not None:
            raise self.error
        # From here on the engine owns the outcome: on a length mismatch or
        # a vanished bucket it aborts the record itself before raising.
        self.done = True
        self.engine.commit(self.alloc)

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
        self.engine.abort(self.alloc)


class SharedSegmentSink(_Sink):
    """Writes a small record's chunks into the shared segment, in place."""

    def write(self, data: bytes) -> None:
        if self.done or self.error is not None or self._check_overflow(len(data)):
            return
        alloc = self.alloc
        try:
            view, offset = memoryview(data), alloc.offset + alloc.written
            while view:
                # A short write (the disk filling up) is retried, which
                # then raises: never count bytes that were not written.
                done = os.pwrite(alloc.fd, view, offset)
                if not done:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view, offset = view[done:], offset + done
        except OSError as exc:
            self.error = _storage_error(exc)
            return
        alloc.written += len(data)
        alloc.crc = zlib.crc32(data, alloc.crc)

    def _flush(self) -> Deferred:
        return succeed(None)

    def finish_now(self) -> None:
        """
        ``finish`` without a Deferred: every chunk is already written, so
        the record is committed at once.

        :raises ReductError: the record was aborted (the same errors
            ``finish`` fails with).
        """
        if self.done:
            raise self.error or BadRequest("Upload was aborted")
        try:
            self._commit(None)
        except OSError as exc:
            self.abort()
            raise _storage_error(exc) from None
        except BaseException:
            self.abort()
            raise

    def _discard(self) -> None:
        pass


class PrivateSegmentSink(_Sink):
    """
    Streams a large record into its own segment file through a thread pool,
    pausing the client above ``HIGH_WATER`` queued bytes.

    :param transport: the connection to pause and resume (``IPushProducer``).
    """

    def __init__(self, engine, alloc, reactor, threadpool, transport) -> None:
        super().__init__(engine, alloc)
        self._reactor = reactor
        self._pool = threadpool
        self._transport = transport
        self._queue: deque = deque()
        self._queued = 0
        self._busy = False
        self._paused = False
        self._drained: Optional[Deferred] = None
        self._closing = False
        #: Largest number of bytes ever queued (for tests and benchmarks).
        self.max_queued = 0
        # Created here, on the reactor thread (a cheap metadata operation), so
        # the file exists before an abort can trash it; opening it later in a
        # thread could re-create it after the abort, or truncate the segment
        # of a newer record at the same path.
        try:
            self._fd: Optional[int] = os.open(
                alloc.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644
            )
        except OSError as exc:
            self.done = True
            engine.abort(alloc)
            raise _storage_error(exc) from None

    def _in_thread(self, f, *args) -> Deferred:
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    def write(self, data: bytes) -> None:
        if self.done or self.error is not None or self._check_overflow(len(data)):
            return
        self.alloc.written += len(data)
        self._queue.append(data)
        self._queued += len(data)
        self.max_queued = max(self.max_queued, self._queued)
        if self._queued >= HIGH_WATER and not self._paused:
            self._paused = True
            self._transport.pauseProducing()
        self._pump()

    def _pump(self) -> None:
        if self._busy or self._fd is None:
            return
        if self.done:
            self._close_fd()
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
        self._in_thread(_writev_all, self._fd, batch, self.alloc.crc).addCallbacks(
            self._written, self._failed, callbackArgs=(size,)
        )

    def _written(self, crc: int, size: int) -> None:
        self._busy = False
        self._queued -= size
        self.alloc.crc = crc
        if self._paused and self._queued <= LOW_WATER:
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
            log.warn("Writing record {ts} failed: {reason}", ts=self.alloc.ts,
                     reason=self.error.message)
        else:
            log.failure("Writing record {ts} failed", failure, ts=self.alloc.ts)
        self._queue.clear()
        if self._paused:
            self._paused = False
            self._transport.resumeProducing()
        if self._closing:
            self._close_and_signal()

    def _close_and_signal(self) -> None:
        drained, self._drained = self._drained, None
        fd, self._fd = self._fd, None
        if drained is None:
            return
        if fd is None:
            drained.callback(None)
            return
        self._busy = True
        self._in_thread(os.close, fd).addBoth(self._closed, drained)

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

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._in_thread(os.close, fd)

    def _discard(self) -> None:
        self._queue.clear()
        self._queued = 0
        if self._paused:
            self._paused = False
        if not self._busy:
            self._close_fd()
        # The engine discards the segment file itself (in the pool).


def _writev_all(fd: int, chunks, crc: int = 0) -> int:
    """
    Write every byte of ``chunks`` (``writev`` may write less).

    :param crc: the CRC-32 of the content before these chunks.
    :return: the CRC-32 including them.
    """
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
    while chunks:
        n = os.writev(fd, chunks)
        while chunks and n >= len(chunks[0]):
            n -= len(chunks[0])
            chunks.pop(0)
        if n:
            chunks[0] = memoryview(chunks[0])[n:]
    return crc


class DiscardSink:
    """Swallows a body that will be refused anyway (counting its size)."""

    done = False

    def __init__(self) -> None:
        self.received = 0

    def write(self, data: bytes) -> None:
        self.received += len(data)

    def abort(self) -> None:
        self.done = True
