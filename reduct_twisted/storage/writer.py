"""
The write path: reserving a record, committing it, giving it up.

``StorageEngine.allocate``/``commit``/``abort`` delegate here.  A record is
STARTED (in memory only, its timestamp reserved, counted in the statistics)
from :func:`allocate` until :func:`commit` appends its metadata line
(FINISHED) or :func:`abort` makes it vanish.

A disk error (full disk, read-only or unwritable directory) aborts the
record and raises the ``ReductError`` of ``durability.storage_error``;
nothing stored before is touched and the next write starts afresh.
"""

import os

from reduct_twisted.errors import BadRequest, InternalError, NotFound
from reduct_twisted.storage.durability import storage_error
from reduct_twisted.storage.entry import SMALL_RECORD_MAX
from reduct_twisted.storage.records import ABORTED, FINISHED, STARTED, Allocation
from reduct_twisted.storage.reserve import no_space

#: What the messages of failed writes say failed.
WRITE = "write record"


def allocate(context, owner, entry: str, ts: int, length, content_type: str,
             labels: dict) -> Allocation:
    """
    Reserve a record in bucket ``owner`` (see ``StorageEngine.allocate``).

    :param context: the engine-wide :class:`~reduct_twisted.storage.cache.Context`.
    :param owner: the :class:`~reduct_twisted.storage.bucket.Bucket`.
    :return: the allocation.
    """
    owner.check_quota(entry, length or 0)
    if not context.reserve.ensure():
        # Records never take the place of the space reserve.
        raise no_space(WRITE)
    try:
        series = owner.entry_for_write(entry)
    except OSError as exc:
        raise storage_error(exc, WRITE) from None
    try:
        block, record = series.reserve(ts, length, content_type, labels, owner.settings)
    finally:
        if not series.record_count:
            # Do not leave behind an entry created for a refused write.
            owner.drop_entry(series)
    private = not (length is not None and length <= SMALL_RECORD_MAX)
    path = block.path(record.segment) if private else block.shared_path
    slot = None
    if not private:
        try:
            slot = context.fds.acquire(path)
        except OSError as exc:
            _vanish(owner, series, block, record)
            raise storage_error(exc, WRITE) from None
        if not block.shared_known:
            block.shared_known = True
            context.dirty.created(path)
    return Allocation(
        owner.name, entry, length, path, private, None if slot is None else slot.fd,
        owner=(owner, series), block=block, record=record, slot=slot,
    )


def commit(context, alloc: Allocation) -> None:
    """
    Finish ``alloc`` (see ``StorageEngine.commit``).

    :param context: the engine-wide context.
    :param alloc: a STARTED allocation.
    :raises ReductError: see ``StorageEngine.commit``.
    """
    if alloc._state != STARTED:
        raise InternalError(f"Record with timestamp {alloc.ts} is not being written")
    owner, series = alloc._owner
    if owner.removed or series.removed:
        _release(context, alloc, ABORTED)
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
    block = alloc._block
    new_meta = not block.meta_length
    try:
        if alloc.private and not alloc.written:
            # An empty upload may never have created its file.
            os.close(os.open(alloc.path, os.O_WRONLY | os.O_CREAT, 0o644))
        series.finish(block, alloc._record, alloc.written, alloc.crc)
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
    _release(context, alloc, FINISHED)


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
    _release(context, alloc, ABORTED)


def _vanish(owner, series, block, record) -> None:
    series.forget(block, record)
    if not series.record_count:
        owner.drop_entry(series)


def _release(context, alloc: Allocation, state: str) -> None:
    alloc._state = state
    if alloc._slot is not None:
        context.fds.release(alloc._slot)
        alloc._slot = None
