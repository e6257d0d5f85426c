"""
The write path: reserving a record, committing it, giving it up.

``StorageEngine.allocate``/``commit``/``abort`` delegate here.  A record is
STARTED (in memory only, its timestamp reserved, counted in the statistics)
from :func:`allocate` until :func:`commit` appends its metadata line
(FINISHED) or :func:`abort` makes it vanish.

Storage also writes the content itself, below the
:class:`~reduct_twisted.storage.upload.RecordWriter` the HTTP layer feeds:
:func:`write_at` puts a small record's chunk into its shared segment,
:func:`open_segment` / :func:`write_chunks` / :func:`close_segment` fill a
private segment (``write_chunks`` and ``close_segment`` may run in a worker
thread), each keeping the CRC-32 and the SHA-256 (``alloc.sha``, unless
``integrity=off``) the record is stored with; a digest the client announced
(:func:`expect`) is checked at :func:`commit`, which aborts the record on a
mismatch.  Nothing
outside storage calls them.

A chunked record (length unknown at :func:`allocate`) is counted against
its bucket's quota as its bytes arrive: :func:`claim` before each chunk is
accepted.  The bucket's ``in_flight`` holds the bytes claimed by records not
yet committed, so a HARD quota holds against every write in progress.

A disk error (full disk, read-only or unwritable directory) aborts the
record and raises the ``ReductError`` of ``durability.storage_error``;
nothing stored before is touched and the next write starts afresh.
"""

import base64
import errno
import hashlib
import os
import zlib

from reduct_twisted.errors import BadRequest, InternalError, NotFound, PayloadTooLarge
from reduct_twisted.storage.disk import vectored
from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.disk.reserve import no_space
from reduct_twisted.storage.entry import SMALL_RECORD_MAX
from reduct_twisted.storage.meta import check_write, superseded
from reduct_twisted.storage.records import ABORTED, FINISHED, STARTED, Allocation
from reduct_twisted.storage.removal import remove_from_block
from reduct_twisted.storage.settings import check_entry_name, is_meta_entry

#: What the messages of failed writes say failed.
WRITE = "write record"



def allocate(context, owner, entry: str, ts: int, length, content_type: str,
             labels: dict, acquire: bool = True) -> Allocation:
    """
    Reserve a record in bucket ``owner`` (a ``Bucket``; ``context``: the
    engine's ``Context``; see ``StorageEngine.allocate``).  ``acquire``: give a small
    record the shared segment's descriptor (``False``: the pending run, ``runs.py``).
    """
    if is_meta_entry(entry):
        if entry not in owner.entries:
            check_entry_name(entry)
        check_write(entry, labels)
    # The engine-wide cap comes before the bucket's quota (spec 1.20 §5.10);
    # once reserved, a record of declared length is in the statistics.
    context.usage.check(length or 0)
    owner.check_quota(entry, length or 0)
    if not context.reserve.ensure():
        # Records never take the place of the space reserve.
        raise no_space(WRITE)
    if context.space is not None and not context.space.room_for(length or 0):
        # Refused before a byte is written (usage.FreeSpace).
        if context.space.beyond_capacity(length or 0):
            raise PayloadTooLarge(f"Record of {length} bytes is larger than the storage "
                                  f"({context.space.capacity} bytes)")
        raise no_space(WRITE)
    created = entry not in owner.entries
    try:
        series = owner.entry_for_write(entry)
    except OSError as exc:
        raise storage_error(exc, WRITE) from None
    try:
        block, record = series.reserve(ts, length, content_type, labels,
                                       owner.settings_for(series))
    finally:
        if created and not series.record_count:
            # Do not leave behind an entry created for a refused write.
            owner.drop_entry(series)
    private = not (length is not None and length <= SMALL_RECORD_MAX)
    path = block.path(record.segment) if private else block.shared_path
    slot = None
    if not private and acquire:
        try:
            slot = context.fds.acquire(path)
        except OSError as exc:
            _vanish(owner, series, block, record)
            raise storage_error(exc, WRITE) from None
        if not block.shared_known:
            block.shared_known = True
            context.dirty.created(path)
    return new_allocation(context, owner, series, entry, length, path, private, block, record,
                          slot)


def new_allocation(context, owner, series, entry: str, length, path: str, private: bool,
                   block, record, slot=None) -> Allocation:
    """The ``Allocation`` of a reserved ``record`` (here and ``runalloc.py``)."""
    digests = context.digests
    # Every field by position, in the class's order (a call by keywords
    # costs a quarter of a microsecond more, for every record of a batch):
    # bucket, entry, length, path, private, fd, written, crc (none beside a
    # stored SHA-256: it checks the content alone), sha, expected, claimed,
    # admitted, owner, block, record, slot.
    return Allocation(
        owner.name, entry, length, path, private, None if slot is None else slot.fd, 0,
        None if digests else 0, hashlib.sha256() if digests else None, None, 0, 0,
        (owner, series), block, record, slot,
    )


def expect(alloc: Allocation, digest: bytes) -> None:
    """
    Have ``alloc``'s content checked against the SHA-256 ``digest`` (32
    bytes) at :func:`commit` (with ``integrity=off`` it is computed for the
    check, not stored).  Call before any byte is written.
    """
    alloc.expected = digest
    if alloc.sha is None:
        alloc.sha = hashlib.sha256()


def mismatch(expected: bytes, got: bytes) -> BadRequest:
    """:return: the 400 of a content that does not match its announced digest."""
    b64 = base64.b64encode
    return BadRequest(f"Content digest mismatch: expected {b64(expected).decode()}, "
                      f"got {b64(got).decode()}")


def commit(context, alloc: Allocation) -> None:
    """
    Finish ``alloc`` (see ``StorageEngine.commit``).

    :param context: the engine-wide context.
    :param alloc: a STARTED allocation.
    :raises ReductError: see ``StorageEngine.commit``.
    """
    context.settle()  # the pending run's records come first (numbers in commit order)
    digest = _check(context, alloc)
    owner, series = alloc._owner
    if is_meta_entry(alloc.entry):
        _supersede(context, alloc, series)
    block = alloc._block
    new_meta = not block.meta_length
    try:
        if alloc.private and not alloc.written:
            # An empty upload may never have created its file.
            os.close(os.open(alloc.path, os.O_WRONLY | os.O_CREAT, 0o644))
        series.finish(block, alloc._record, alloc.written, alloc.crc,
                      digest if context.digests else None)
    except OSError as exc:
        abort(context, alloc)
        raise storage_error(exc, WRITE) from None
    dirty = context.dirty
    if alloc.private:
        dirty.created(alloc.path)
    else:
        dirty.file(alloc.path)
    if new_meta:
        dirty.created(block.meta_path)
    else:
        dirty.file(block.meta_path)
    release(context, alloc, FINISHED)


def commit_later(context, alloc: Allocation, failed) -> None:
    """
    :func:`commit` a small record of the pending run (``runs.py``): every
    check now, with the same errors; the line is written at the run's flush
    (``failed(error)`` if that fails).
    """
    digest = _check(context, alloc)
    context.run.commit(alloc._owner[1], alloc, failed, digest if context.digests else None)


def _check(context, alloc: Allocation):
    # The checks of a commit, in order; :return: the content's SHA-256 or None.
    if alloc._state != STARTED:
        raise InternalError(f"Record with timestamp {alloc.ts} is not being written")
    owner, series = alloc._owner
    if owner.removed or series.removed:
        release(context, alloc, ABORTED)
        if alloc.private:
            context.trash([alloc.path])
        if owner.removed:
            raise NotFound(f"Bucket '{alloc.bucket}' is not found")
        raise NotFound(f"Entry '{alloc.entry}' not found in bucket '{alloc.bucket}'")
    if alloc.length is not None and alloc.written != alloc.length:
        abort(context, alloc)
        if alloc.written < alloc.length:
            raise BadRequest("Content is shorter than expected")
        raise BadRequest("Content is bigger than in content-length")
    if alloc.length is None and alloc.written > alloc.claimed:
        # Bytes written without a claim (not through the HTTP sinks).
        try:
            claim(alloc, alloc.written - alloc.claimed, context)
        except BadRequest:
            abort(context, alloc)
            raise
    digest = None if alloc.sha is None else alloc.sha.digest()
    if alloc.expected is not None and digest != alloc.expected:
        abort(context, alloc)
        raise mismatch(alloc.expected, digest)
    return digest


def _supersede(context, alloc: Allocation, series) -> None:
    # Upsert by key (spec 1.20 §3.1): the live attachments with the new
    # record's key go before it is committed; if that fails, it is aborted.
    key = alloc._record.labels.get("key")
    try:
        for block, stamps in superseded(series, key, alloc.ts).items():
            remove_from_block(context, series, block, stamps)
    except Exception:
        abort(context, alloc)
        raise


def abort(context, alloc: Allocation) -> None:
    """
    Make ``alloc``'s record vanish (see ``StorageEngine.abort``); idempotent.

    :param context: the engine-wide context.
    :param alloc: an allocation in any state.
    """
    if alloc._state != STARTED:
        return
    owner, series = alloc._owner
    if not (owner.removed or series.removed):
        _vanish(owner, series, alloc._block, alloc._record)
    release(context, alloc, ABORTED)


def _vanish(owner, series, block, record) -> None:
    series.forget(block, record)
    if not series.record_count and series.numbers.next == 1:  # numbers stay
        owner.drop_entry(series)


def release(context, alloc: Allocation, state: str) -> None:
    """Give back what ``alloc`` holds (claimed bytes, the cap's share, its descriptor)."""
    alloc._state = state
    if alloc.claimed:
        # Committed bytes are in the statistics now; aborted ones are gone.
        alloc._owner[0].in_flight -= alloc.claimed
        alloc.claimed = 0
    if alloc.admitted:
        context.usage.release(alloc.admitted)
        alloc.admitted = 0
    if alloc._slot is not None:
        context.fds.release(alloc._slot)
        alloc._slot = None


# -- quota of chunked records --------------------------------------------------


def claim(alloc: Allocation, size: int, context=None) -> None:
    """
    Count ``size`` more bytes of a chunked record against its bucket's
    quota, before they are accepted (see ``StorageEngine.claim``).

    A record of declared length was counted whole at :func:`allocate`:
    nothing to do.  The bytes stay in the bucket's ``in_flight`` until the
    record is committed (then they are in its ``size``) or aborted.

    :param alloc: a STARTED allocation.
    :param size: the number of bytes about to be written.
    :param context: the engine-wide context: its storage cap and free
        space are checked too (first the cap, then the quota).
    :raises BadRequest: a HARD quota would be exceeded; nothing is counted
        (the caller aborts the record).
    :raises ReductError: 500 beyond the storage cap, 507 without room on
        the file system; nothing is counted.
    """
    if alloc.length is not None or alloc._state != STARTED:
        return
    owner = alloc._owner[0]
    settings = owner.settings
    if context is not None:
        context.usage.admit(size)
    try:
        if settings.quota_type == "HARD" and (
            owner.size + owner.in_flight + size > settings.quota_size
        ):
            raise BadRequest(f"Quota of '{owner.name}' exceeded")
        if context is not None and context.space is not None and not context.space.room_for(
                size, slack=0):
            raise no_space(WRITE)
    except BaseException:
        if context is not None:
            context.usage.release(size)
        raise
    if context is not None:
        alloc.admitted += size
    owner.in_flight += size
    alloc.claimed += size


# -- content -------------------------------------------------------------------


def write_at(alloc: Allocation, data) -> None:
    """
    Write the next chunk of a small record into its shared segment, in
    place (``pwrite`` at ``offset + written``); ``written`` and ``crc``
    follow.  Runs on the calling thread (a page-cache write).

    :param alloc: a STARTED allocation with ``fd`` (not ``private``).
    :param data: bytes or a memoryview.
    :raises OSError: the disk refused (a short write on a full disk is
        retried, which then raises); nothing is counted.
    """
    view, offset = memoryview(data), alloc.offset + alloc.written
    while view:
        done = os.pwrite(alloc.fd, view, offset)
        if not done:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[done:], offset + done
    count_content(alloc, data)


def count_content(alloc: Allocation, data) -> None:
    """``data`` follows ``alloc``'s content: ``written``, ``crc`` and ``sha`` take it in."""
    alloc.written += len(data)
    if alloc.crc is not None:
        alloc.crc = zlib.crc32(data, alloc.crc)
    if alloc.sha is not None:
        alloc.sha.update(data)


def open_segment(alloc: Allocation) -> int:
    """
    Create (or empty) a private segment; call on the thread that may abort
    the record, so the file exists before an abort can trash it (created
    later in a thread it could reappear after the abort, or truncate the
    segment of a newer record at the same path).

    :param alloc: a STARTED ``private`` allocation.
    :return: a descriptor for :func:`write_chunks`; close it with
        :func:`close_segment` before ``commit``.
    :raises OSError: the file could not be created.
    """
    return os.open(alloc.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


def write_chunks(fd: int, chunks: list, crc: int = 0, sha=None) -> int:
    """
    Append every byte of ``chunks`` to a private segment, in order, in
    bounded ``writev`` calls (``disk/vectored.py``).  Safe in a worker thread.

    :param fd: from :func:`open_segment`.
    :param chunks: bytes or memoryviews (the list is not changed).
    :param crc: the CRC-32 of the content before these chunks (``None``: none is kept).
    :param sha: the record's ``hashlib.sha256`` (updated with them; it
        releases the GIL on large buffers), or ``None``.
    :return: the CRC-32 including them (the caller stores it in ``alloc.crc``).
    :raises OSError: the disk refused.
    """
    for chunk in chunks:
        if crc is not None:
            crc = zlib.crc32(chunk, crc)
        if sha is not None:
            sha.update(chunk)
    try:
        vectored.write_buffers(fd, chunks)
    except vectored.ShortWrite as short:
        raise short.error from None
    return crc


def close_segment(fd: int) -> None:
    """
    Close a private segment's descriptor (may run in a worker thread).

    :raises OSError: some file systems report a failed write only here.
    """
    os.close(fd)
