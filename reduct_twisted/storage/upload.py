"""
The write side of record contents: one :class:`RecordWriter` per upload.

Storage owns every byte it stores (in the shape of Tahoe-LAFS's
``BucketWriter``): the HTTP layer feeds a record's bytes to its writer and
then commits or aborts it; the writer does the ``pwrite``/``writev``, keeps
the CRC-32 and the byte count, checks them against the declared length, and
runs the disk work of a large record in the thread pool it was given.
Nothing outside storage sees the record's descriptor or path.

* A small record (declared length up to ``SMALL_RECORD_MAX``) goes into
  its block's shared segment with :meth:`RecordWriter.write`, in place, on
  the calling thread: a page-cache write is cheaper than a thread hop.
* A large or chunked record gets a private segment, created by the
  constructor on the calling thread (so it exists before an abort can trash
  it).  The caller counts each chunk with :meth:`RecordWriter.admit` as it
  accepts it, then hands batches of chunks to :meth:`RecordWriter.write_chunks`
  (bounded ``writev`` calls, ``disk/vectored.py``, in the pool; batches must not
  overlap, which keeps the CRC in content order) and finally closes the
  file with :meth:`RecordWriter.close` before :meth:`RecordWriter.commit`.

How many chunks to queue and when to pause the client stays with the caller
(``http/sinks.py``).
"""

from collections import deque

from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.python.failure import Failure

from reduct_twisted.storage import writer

#: What the messages of failed writes say failed.
WRITE = writer.WRITE

#: A private segment's SHA-256 is computed in a second worker beside the
#: writes (``hashlib`` and ``writev`` both release the GIL on large buffers,
#: so a large upload hashes on another core), batch after batch in content
#: order (:class:`_Hasher`); a write waits for the hash only when it lags
#: this many bytes.
HASH_LAG = 16 << 20


def run_now(f, *args):
    """A ``run_in_thread`` that runs ``f`` at once (tests, tools); its result is returned as is."""
    return f(*args)


class _Hasher:
    """
    A private segment's SHA-256 beside its writes.  Batches queue up (on
    the reactor's thread) and one pool job at a time hashes them in order;
    a job goes on with the batches queued while it ran, so the hashing
    keeps its core without a turn of the reactor between two batches (the
    reactor is busy receiving the upload).

    :ivar error: the failure of a job, or None.
    """

    __slots__ = ("_sha", "_run", "_queue", "_queued", "_hashed", "_job", "_waiting", "error")

    def __init__(self, sha, run_in_thread) -> None:
        self._sha, self._run = sha, run_in_thread
        self._queue: deque = deque()
        # Bytes queued (the reactor's count) and hashed (the job's count).
        self._queued = self._hashed = 0
        self._job = None
        self._waiting: list = []
        self.error = None

    @property
    def lag(self) -> int:
        """Bytes queued and not hashed yet."""
        return self._queued - self._hashed

    def add(self, chunks: list) -> None:
        """Queue the next batch (it must not change until hashed)."""
        size = sum(map(len, chunks))
        self._queue.append((chunks, size))
        self._queued += size
        if self._job is None:
            self._start()

    def idle(self) -> Deferred:
        """:return: a Deferred firing once every batch queued so far is hashed."""
        if self._job is None:
            return succeed(None)
        waiting = Deferred()
        self._waiting.append(waiting)
        return waiting

    def drop(self) -> None:
        """The record is given up: the batches not started are not hashed."""
        self._queue.clear()

    def _start(self) -> None:
        self._job = self._run(self._drain)
        self._job.addBoth(self._ended)

    def _drain(self) -> None:
        # In a worker thread.  ``deque`` appends and pops are atomic: a
        # batch queued after the loop saw the queue empty is found by _ended.
        queue, update = self._queue, self._sha.update
        while queue:
            chunks, size = queue.popleft()
            for chunk in chunks:
                update(chunk)
            self._hashed += size

    def _ended(self, result) -> None:
        self._job = None
        if isinstance(result, Failure):
            if self.error is None:
                self.error = result
            self._queue.clear()
        elif self._queue:
            self._start()
            return
        waiting, self._waiting = self._waiting, []
        for each in waiting:
            each.callback(None)


def _nothing(_) -> None:
    return None


def _first_error(failure):
    """``gatherResults``' ``FirstError`` -> the failure it wraps (e.g. the ``OSError``)."""
    failure.trap(FirstError)
    return failure.value.subFailure


class RecordWriter:
    """
    One record being uploaded: its allocation, its file and its checksum.

    :param engine: the ``StorageEngine`` (``claim``, ``commit``, ``abort``).
    :param alloc: from ``engine.allocate``; the writer owns it from now on.
    :param run_in_thread: ``run_in_thread(f, *args)`` runs ``f`` off the
        calling thread and returns a Deferred of its result (the daemon's
        ``deferToThreadPool``); only a private segment's disk work uses it.
    :param claim: count a chunked record's bytes against its bucket's quota
        as they are admitted (``False``: ``commit`` checks them at once).
    :raises OSError: a private segment cannot be created (the caller
        aborts the record).
    """

    __slots__ = ("_engine", "_alloc", "_run", "_fd", "_claim", "_hasher")

    def __init__(self, engine, alloc, run_in_thread=run_now, claim: bool = True) -> None:
        self._engine = engine
        self._alloc = alloc
        self._run = run_in_thread
        self._claim = claim
        # A private segment's hashing beside its writes (on its first batch).
        self._hasher = None
        self._fd = None
        if alloc.private:
            self._fd = writer.open_segment(alloc)

    @property
    def private(self) -> bool:
        """Whether the record has a segment of its own (large or chunked)."""
        return self._alloc.private

    @property
    def ts(self) -> int:
        """The record's timestamp."""
        return self._alloc.ts

    @property
    def length(self):
        """The declared content length, or ``None`` (chunked)."""
        return self._alloc.length

    @property
    def written(self) -> int:
        """Bytes written (small) or admitted (private) so far."""
        return self._alloc.written

    def expect(self, digest: bytes) -> None:
        """Check the content against SHA-256 ``digest`` at :meth:`commit` (before any byte)."""
        writer.expect(self._alloc, digest)

    def overflows(self, size: int) -> bool:
        """Whether ``size`` more bytes would exceed the declared length."""
        alloc = self._alloc
        length = alloc.length
        return length is not None and alloc.written + size > length

    # -- small records ------------------------------------------------------

    def write(self, data) -> None:
        """
        Write the next chunk of a small record into its shared segment, now.

        :param data: bytes or a memoryview.
        :raises OSError: the disk refused; nothing is counted.
        """
        writer.write_at(self._alloc, data)

    # -- private segments ---------------------------------------------------

    def admit(self, size: int) -> None:
        """
        Count ``size`` more bytes of a private segment, accepted to be
        written (by a later :meth:`write_chunks`).

        :raises BadRequest: a chunked record would exceed a HARD quota;
            nothing is counted (the caller aborts the record).
        """
        alloc = self._alloc
        if self._claim and alloc.length is None:
            self._engine.claim(alloc, size)
        alloc.written += size

    def write_chunks(self, chunks: list):
        """
        Append ``chunks`` (bytes or memoryviews, admitted already) to the
        private segment, in the thread pool.  Calls must not overlap.

        :return: ``run_in_thread``'s Deferred: fires with None once written
            (the CRC then includes them), or fails with the ``OSError``.
            The SHA-256 is computed beside, in a second worker, in order; it
            is complete when :meth:`close` fires.
        """
        sha = self._alloc.sha
        if sha is None or self._run is run_now:
            return self._run(self._write_chunks, chunks, sha)
        hasher = self._hasher
        if hasher is None:
            hasher = self._hasher = _Hasher(sha, self._run)
        hasher.add(chunks)
        written = self._run(self._write_chunks, chunks, None)
        if hasher.lag <= HASH_LAG:
            return written
        both = gatherResults([written, hasher.idle()], consumeErrors=True)
        return both.addCallbacks(_nothing, _first_error)

    def _write_chunks(self, chunks: list, sha) -> None:
        # In a worker thread: the reactor reads ``crc`` and ``sha`` only at
        # commit, after the last batch, and batches never overlap.
        alloc = self._alloc
        alloc.crc = writer.write_chunks(self._fd, chunks, alloc.crc, sha)

    @property
    def is_open(self) -> bool:
        """Whether the private segment's file is still open."""
        return self._fd is not None

    def close(self):
        """
        Close the private segment's file, in the thread pool (before
        :meth:`commit`; after an abort, to release it), once the hashing
        beside the writes is done.

        :return: ``None`` if it is closed already, else a Deferred (it fails
            with the ``OSError`` some file systems report only at close).
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return None
        closed = self._run(writer.close_segment, fd)
        if self._hasher is None:
            return closed
        both = gatherResults([closed, self._hasher.idle()], consumeErrors=True)
        return both.addCallbacks(self._after_hashing, _first_error)

    def _after_hashing(self, _) -> None:
        error, self._hasher.error = self._hasher.error, None
        if error is not None:
            error.raiseException()

    # -- outcome ------------------------------------------------------------

    def commit(self) -> None:
        """
        Store the record (see ``StorageEngine.commit``: its errors, raised
        after the engine aborted the record).
        """
        self._engine.commit(self._alloc)

    def abort(self) -> None:
        """Make the record vanish (see ``StorageEngine.abort``); idempotent."""
        if self._hasher is not None:
            self._hasher.drop()
        self._engine.abort(self._alloc)
