"""
Batch-granular writes of small records (issue #17): the pending run.

A batched write (v1 ``POST .../batch``, v2 ``POST /io/:bucket/write``)
stores many small records back to back.  Written one by one, each costs a
``pwrite`` of its content, a ``pwrite`` of its ``.meta`` line and a round
of bookkeeping.  Uploads opened with ``failed=`` (:meth:`UploadMethods.upload`)
instead go through the engine's one :class:`WriteRun`:

* their content chunks are kept (by reference, the received buffers) in
  arrival order, their CRC-32 and SHA-256 computed at once as before;
* their commit makes every check a commit makes (length, announced digest,
  removed bucket or entry) at once, with the same errors, and then queues
  the record; it stays STARTED, so nothing sees it yet;
* :meth:`WriteRun.flush` writes the queued contents, one ``pwritev`` per
  run of contiguous bytes of a shared segment, then appends the ``.meta``
  lines of the run's records, one write per block, and only then makes
  them FINISHED (numbers in commit order, dirty marks once per block, the
  listeners, ``LogBook.committed`` once per block with its lines).  A disk error fails the
  records whose bytes or line it stopped (their ``failed(error)`` is called
  and they vanish as an aborted record does); the others are stored.

Flush points (``Context.settle``): the HTTP sink flushes at the end of each
received chunk, at ``finish`` and ``abort``; inside storage every path that
reads, rewrites, removes, renames or syncs block files settles first:
``Entry.load_block``/``scan_block`` (reads, queries, removals, label
updates, upsert of attachments), ``Entry.remove_oldest_block`` (FIFO
eviction), ``remove_block``, ``forget`` (aborts), ``drop_records``,
``relabel_records``, ``detach``, ``relocate``, a commit or abort of any
other record (``writer.commit``), ``take_dirty`` (sync rounds), ``close``,
``compress_blocks`` and the renames and removals of ``edits.py`` and
``buckets.py``.  Crash safety is as before: a record's content is on disk
before its line, a torn run leaves lines for whole records only.
"""

import contextlib
import errno

from reduct_twisted.errors import ReductError
from reduct_twisted.storage import writer
from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.disk.vectored import ShortWrite, write_buffers
from reduct_twisted.storage.disk.runlines import encode_records
from reduct_twisted.storage.records import FINISHED
from reduct_twisted.storage.runalloc import allocate_run
from reduct_twisted.storage.settings import is_meta_entry
from reduct_twisted.storage.upload import RecordWriter, run_now


class WriteRun:
    """
    The small records whose content and commit wait for the next
    :meth:`flush` (see the module docstring); one per engine, held by the
    ``Context`` (``context.run``).

    :param context: the engine's ``Context``.
    :param stored: ``stored(alloc)`` after a record is FINISHED (the
        engine's statistics and listeners).
    """

    def __init__(self, context, stored) -> None:
        self.context = context
        self._stored = stored
        #: ``[block, offset, [buffers], end]`` runs of contiguous content.
        self._content: list = []
        #: ``(series, alloc, failed)`` in commit order.
        self._commits: list = []
        #: Whether something waits for :meth:`flush`.
        self.pending = False

    # -- filling -------------------------------------------------------------

    def add(self, alloc, data) -> None:
        """
        The next chunk of a small record's content (kept by reference until
        the flush; a writable buffer is copied).  Its CRC-32 and SHA-256
        follow at once, like ``writer.write_at``.
        """
        if type(data) is not bytes:  # a memoryview of the received bytes, or a caller's buffer
            view = data if type(data) is memoryview else memoryview(data)
            if not view.readonly:
                data = bytes(view)
        block, offset = alloc._block, alloc.offset + alloc.written
        writer.count_content(alloc, data)
        content, size = self._content, len(data)
        last = content[-1] if content else None
        if last is not None and last[0] is block and last[3] == offset:
            last[2].append(data)
            last[3] += size
        else:
            content.append([block, offset, [data], offset + size])
        self.pending = True

    def commit(self, series, alloc, failed, digest) -> None:
        """
        Queue a checked record (``writer.commit_later``) with the SHA-256
        ``digest`` it is stored with (or None); ``failed(error)`` if the flush fails it.
        """
        alloc._record.digest = digest
        self._commits.append((series, alloc, failed))
        self.pending = True

    # -- flushing ------------------------------------------------------------

    def flush(self) -> None:
        """
        Write the queued contents and lines, make the records FINISHED; the
        ones a disk error stops are aborted and told through ``failed``.
        Never raises for a disk error.
        """
        if not self.pending:
            return
        content, commits = self._content, self._commits
        self._content, self._commits, self.pending = [], [], False
        context = self.context
        bad = self._write_content(content)  # block -> [(start, end, error)]
        good, lost = commits, []
        if bad:  # a record fails if a byte of it was not written
            good = []
            for item in commits:
                alloc = item[1]
                holes = bad.get(alloc._block)
                error = None
                if holes:
                    start, end = alloc.offset, alloc.offset + alloc.written
                    error = next((e for s, t, e in holes if s < end and start < t), None)
                if error is not None:
                    lost.append((alloc, item[2], error))
                else:
                    good.append(item)
        by_block: dict = {}
        for item in good:  # numbers in commit order
            series, alloc, _ = item
            record = alloc._record
            record.crc = alloc.crc
            record.number = series.numbers.take()
            items = by_block.get(alloc._block)
            if items is None:
                by_block[alloc._block] = [item]
            else:
                items.append(item)
        appended, undone = [], None
        for block, items in by_block.items():
            try:
                lines = self._append_lines(block, items)
            except OSError as exc:
                undone = undone or set()
                for series, alloc, failed in reversed(items):
                    series.numbers.give_back(alloc._record.number)
                    alloc._record.number = None
                    lost.append((alloc, failed, exc))
                    undone.add(id(alloc))
            else:
                appended.append((items, lines))
        logs, stored, release = context.logs, self._stored, writer.release
        with logs.held():  # the run's numbers are all taken: log batches go out after it
            for _, alloc, _ in good:
                if undone is None or id(alloc) not in undone:
                    release(context, alloc, FINISHED)
                    stored(alloc)
            if logs.on:  # one call per block: its records' leaves are in the lines
                for items, lines in appended:
                    logs.committed(items[0][0], None, lines, [item[1]._record.number for item in items])
        for alloc, failed, error in lost:
            with contextlib.suppress(OSError):  # a block left empty stays if it cannot go
                writer.abort(context, alloc)
            failed(error if isinstance(error, ReductError) else storage_error(error, writer.WRITE))

    def _write_content(self, content: list) -> dict:
        fds, dirty, bad = self.context.fds, self.context.dirty, {}
        for block, offset, buffers, end in content:
            if block.removed:
                bad.setdefault(block, []).append((offset, end, OSError(errno.ENOENT, "removed")))
                continue
            path = block.shared_path
            try:
                slot = fds.acquire(path)
            except OSError as exc:
                bad.setdefault(block, []).append((offset, end, exc))
                continue
            try:
                write_buffers(slot.fd, buffers, offset)
            except ShortWrite as short:
                bad.setdefault(block, []).append((offset + short.done, end, short.error))
            finally:
                fds.release(slot)
            if not block.shared_known:
                block.shared_known = True
                dirty.created(path)
            else:
                dirty.file(path)
        return bad

    def _append_lines(self, block, items: list) -> None:
        # One write of every line of ``block`` in this run (its header first
        # for a new file); on failure the file is cut back (``Block.finish``).
        # :return: the lines (the entry log's pending leaves: ``entry_pending.py``).
        pairs = [(alloc._record, alloc.written) for _, alloc, _ in items]
        new_meta = not block.meta_length
        # Sizes are exact (a small record has its declared length): no accounting changes.
        joined = encode_records(pairs)
        block.append_lines(pairs, joined, self.context.fds)
        dirty = self.context.dirty
        if new_meta:
            dirty.created(block.meta_path)
        else:
            dirty.file(block.meta_path)
        return joined


class UploadMethods:
    """``upload`` and ``flush_writes`` of a ``StorageEngine`` (see the module docstring)."""

    def upload(self, bucket: str, entry: str, ts: int, length, content_type: str,
               labels: dict, run_in_thread=run_now, digest=None, failed=None) -> RecordWriter:
        """
        :meth:`allocate` a record and return the writer its bytes go
        through (``upload.py``); the writer commits or aborts it.

        :param run_in_thread: where a large record's disk work runs
            (``run_in_thread(f, *args)`` returning a Deferred).
        :param digest: the SHA-256 (32 bytes) the content must have, or
            ``None``; a mismatch fails the commit (400, nothing stored).
        :param failed: for a batch: a small record joins the engine's
            pending run (its content and line are written at the next
            :meth:`flush_writes`); ``failed(error)`` is called if that write
            fails after ``commit`` returned.  ``None``: written at once.
        :raises ReductError: as :meth:`allocate`, or the private segment
            cannot be created (507/500; nothing is reserved).
        """
        small = (failed is not None and length is not None and length <= writer.SMALL_RECORD_MAX
                 and not is_meta_entry(entry))  # attachments: upserts commit at once
        alloc = writer.allocate(self._context, self._bucket(bucket), entry, ts, length,
                                content_type, labels, acquire=not small)
        if digest is not None:
            writer.expect(alloc, digest)
        if small:
            return RunWriter(self, alloc, self._context, failed)
        try:
            return RecordWriter(self, alloc, run_in_thread)
        except OSError as exc:
            self.abort(alloc)
            raise storage_error(exc, writer.WRITE) from None

    def upload_run(self, bucket: str, entry: str, specs: list, digests: list, failed: list) -> list:
        """
        :meth:`upload` of consecutive small records of one entry of a batch
        (``failed`` given), allocated at once (``runalloc.py``).

        :param specs: ``(ts, length, content_type, labels)`` each (lengths
            known, up to ``SMALL_RECORD_MAX``).
        :param digests: the SHA-256 each must have, or ``None``, in order.
        :param failed: each record's ``failed`` callback, in order.
        :return: for each, its writer or the ``ReductError`` refusing it.
        :raises ReductError: as :meth:`upload` for all of them (no bucket).
        """
        owner = self._bucket(bucket)
        if is_meta_entry(entry):  # attachments: committed at once (upload)
            return [_outcome(self.upload, bucket, entry, *spec, digest=digest, failed=fail)
                    for spec, digest, fail in zip(specs, digests, failed)]
        out = allocate_run(self._context, owner, entry, specs)
        context = self._context
        for i, alloc in enumerate(out):
            if not isinstance(alloc, ReductError):
                if digests[i] is not None:
                    writer.expect(alloc, digests[i])
                out[i] = RunWriter(self, alloc, context, failed[i])
        return out

    def flush_writes(self) -> None:
        """Write and commit every pending small record of batched uploads now (never raises)."""
        self._context.settle()

    def _after_commit(self, alloc) -> None:
        # A record is FINISHED: what ``commit`` does after ``writer.commit``.
        self.traffic.wrote(alloc.bucket, alloc.written)
        if self.listeners:
            for listener in self.listeners:
                listener.record_written(alloc.bucket, alloc.entry, alloc._record)


def _outcome(upload, *args, **kwargs):
    try:
        return upload(*args, **kwargs)
    except ReductError as exc:
        return exc


class RunWriter(RecordWriter):
    """A small record of a batch: written and committed with the pending run."""

    __slots__ = ("_context", "_failed")

    def __init__(self, engine, alloc, context, failed) -> None:
        super().__init__(engine, alloc)
        self._context, self._failed = context, failed

    def write(self, data) -> None:
        """Keep the next chunk for the run's flush (CRC and digest now)."""
        self._context.run.add(self._alloc, data)

    def commit(self) -> None:
        """Check the record now (same errors as ``StorageEngine.commit``); it is stored at the flush."""
        writer.commit_later(self._context, self._alloc, self._failed)
