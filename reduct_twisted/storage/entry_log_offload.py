# -*- test-case-name: tests.unit.test_entry_log_offload -*-
"""
An entry log's pending leaves appended through the leaf worker
(``leafjob.py``) instead of being made on the request path (issue #16).

When an entry has :data:`~reduct_twisted.storage.entry_log.BATCH` pending
leaves that follow its log's size without a hole, :func:`offload` sends
their fields to the worker (the book's ``offload(payload) -> Deferred``,
set by the service) and leaves them pending; one job per entry at a time.
The answer is appended (``TreeLog.append_built``) only if it still fits:
the same open log, still at the size the job started from, its first and
last leaves still pending.  Anything that needed the leaves first (a
rewrite, a removal, a sync, a read of the log, close, a catch-up) has
appended them itself meanwhile (``EntryLog.flush``, from the same pending
fields), and the answer is dropped.  A failed job leaves them pending and
the entry appends them itself at once.  So the log on disk is exactly what
it would be without the worker, and a crash at any instant loses no more
than pending leaves do (they are rebuilt from the records, as always).
"""

import contextlib

from reduct_twisted.storage import leafjob
from reduct_twisted.storage.entry_log_lag import far_behind, flush_reported, make_room
from reduct_twisted.storage.entry_log_refused import REFUSALS

__all__ = ["offload", "held", "BATCH", "MAX_BEHIND", "MAX_WAITING"]

#: Pending leaves of one entry appended (or sent to the worker) at once.
BATCH = 1024
#: Entries with pending leaves at most (beyond, the one waiting longest is flushed).
MAX_WAITING = 64
#: Pending leaves of one entry beyond which it stops waiting for the worker
#: and appends them itself (a worker slower than the writes).
MAX_BEHIND = 8192


def offload(log) -> bool:
    """
    Hand ``log``'s pending leaves to the worker.

    :return: False if the caller must append them itself (no worker, a
        catch-up or hash build under way, a hole in the numbers, too far
        behind); True if a job has them.
    """
    book, pending = log.book, log.pending
    if log.inflight is not None:
        return len(pending) < MAX_BEHIND
    if book.offload is None or log.catching is not None:
        return False
    tree = log.open()
    if tree.building or log.catching is not None:
        return False
    size, target = tree.size, log.entry.numbers.next - 1
    if target <= size or not pending.covers(size + 1, target):
        return False
    payload = leafjob.encode_job(size, tree.frontier, tree.leaves_end, size + 1, target,
                                 pending.parts(size + 1, target))
    log.inflight = (size + 1, target)
    book.offload(payload).addCallbacks(
        _landed, _failed, callbackArgs=(log, tree, size + 1, target), errbackArgs=(log,))
    return True


def _landed(answer: bytes, log, tree, first: int, last: int) -> None:
    log.inflight = None
    book, pending = log.book, log.pending
    if (log.tree is not tree or log.entry.removed or tree.size != first - 1
            or first not in pending or last not in pending):
        return  # appended meanwhile (or the log is gone): the answer is not needed
    try:
        built = leafjob.decode_answer(answer)
        book._with_space(lambda: tree.append_built(*built))
    except (leafjob.JobFailed, ValueError) as exc:
        _failed_now(log, f"leaf worker: {exc}")
        return
    except OSError as exc:  # kept pending: the next flush tries again
        book.problems.append(f"Entry log of {log.entry.directory}: {exc}")
        book.waiting[id(log)] = log
        return
    except REFUSALS as exc:
        book.refuse(log.entry, exc)
        return
    pending.drop(first, last)
    if not pending:
        book.waiting.pop(id(log), None)
    elif len(pending) >= BATCH and not offload(log):
        flush_reported(log)


def _failed(failure, log) -> None:
    log.inflight = None
    _failed_now(log, f"leaf worker: {failure.getErrorMessage()}")


def _failed_now(log, problem: str) -> None:
    log.book.problems.append(problem)
    if log.pending:
        flush_reported(log)


@contextlib.contextmanager
def held(book):
    """
    Records committed inside only join their entries' pending leaves; the
    batches they fill go out at the end.  For a write run (``runs.py``),
    which takes the numbers of all its records before it commits the first:
    inside, the numbers not committed yet would look like a hole in the log.
    """
    book.holding = True
    try:
        yield
    finally:
        book.holding = False
        for _ in range(len(book.waiting) - MAX_WAITING):  # (a failed flush stays waiting)
            make_room(book)
        for log in [log for log in book.waiting.values() if far_behind(log, BATCH)]:
            flush_reported(log)
        for log in [log for log in book.waiting.values() if len(log.pending) >= BATCH]:
            try:
                sent = offload(log)
            except OSError as exc:  # its log cannot be opened now: kept pending
                book.problems.append(f"Entry log of {log.entry.directory}: {exc}")
                continue
            if not sent:
                flush_reported(log)
