# -*- test-case-name: tests.unit.test_entry_log_lag -*-
"""
Entry logs left behind their records when writes spread over many entries
(issue #17's spread cell: 80 entries a request, 10,000 entries).

At most ``MAX_WAITING`` entries keep pending leaves in memory
(``entry_log.py``).  Beyond, the one waiting longest used to be flushed at
once: with writes spread over thousands of entries that was one leaf per
flush, each opening and closing the entry's three log files (its tree is
parked: ``entry_log_trees.py``), some 100 µs of CPU per record.

When no sync round takes the changes (``sync = none``: the book's dirty set
is off), the longest waiting log **sheds** its pending leaves instead
(:func:`make_room`): they are in its records' ``.meta`` lines, so the log
is *behind* (``LogBook.behind``) and a catch-up rebuilds them from the
blocks (``entry_log_catchup.py``), as after ``kill -9``, for all the leaves
the entry gathered meanwhile at once.  A behind log is caught up

* when anything needs its leaves, as for pending ones: a read of its log or
  listing, a removal, close, a rename; before a rewrite of its ``.meta``
  (a relabel, compression) at once, so the leaves keep the labels as
  written (``LogBook.before_rewrite``);
* when it is ``BATCH`` leaves behind (``EntryLog.committed``);
* by :func:`sweep`, which the service runs every :data:`SWEEP_INTERVAL`
  seconds, one log a step (``LogBook.cooperate``), once it has been behind
  for :data:`LAG_SWEEPS` sweeps (50 to 60 s): a catch-up opens, writes and
  closes the log's three files whatever it appends, so under writes spread
  over thousands of entries each one gathers a minute of leaves instead of
  ten seconds' (spread writes paid a third of their CPU for the sweeps at
  every sweep).  When nothing was written since the last sweep, every log
  behind is caught up at once.

With ``sync = always`` a round follows every write and appends every pending
leaf (they are made durable with their records): nothing is shed, the
longest waiting log is flushed as before.  A log with a catch-up, a hash
build or a worker job under way is never shed (the next one is).
"""

from reduct_twisted.storage.entry_log_refused import REFUSALS

__all__ = ["make_room", "far_behind", "catch_up_now", "flush_reported", "sweep", "SWEEP_INTERVAL",
           "LAG_SWEEPS"]

#: Seconds between two sweeps of the logs left behind (``service.py``).
SWEEP_INTERVAL = 10.0
#: A log behind is caught up by the sweep this many sweeps after it fell behind.
LAG_SWEEPS = 6


def _sheddable(log) -> bool:
    tree = log.tree
    return (log.catching is None and log.inflight is None
            and (tree is None or not tree.building) and bool(log.pending))


def make_room(book) -> None:
    """
    ``book.waiting`` holds more than its bound: the longest waiting log
    sheds its pending leaves (``sync = none``) or is flushed.
    """
    if not book.dirty.enabled:
        for log in book.waiting.values():
            if _sheddable(log):
                shed(log)
                return
    flush_reported(next(iter(book.waiting.values())))  # (a failure is reported, kept pending)


def shed(log) -> None:
    """``log`` forgets its pending leaves; it is behind until caught up."""
    book = log.book
    first = log.pending.lowest()
    log.pending.clear()
    book.waiting.pop(id(log), None)
    if log.behind_from is None or first < log.behind_from:
        log.behind_from = first
    if id(log) not in book.behind:  # (kept in the order they fell behind: sweep)
        log.behind_sweep = book.sweeps
        book.behind[id(log)] = log


def far_behind(log, batch: int) -> bool:
    """Whether ``log`` shed leaves more than ``batch`` numbers ago: then it is caught up."""
    return log.behind_from is not None and log.entry.numbers.next - log.behind_from > batch


def catch_up_now(book, directory: str) -> None:
    """The logs behind of the entry in ``directory``, caught up at once (before a rewrite)."""
    for log in [log for log in book.behind.values() if log.entry.directory == directory]:
        try:
            book._with_space(lambda: log.flush(now=True))
        except REFUSALS as exc:
            book.refuse(log.entry, exc)


def flush_reported(log) -> None:
    """``book._flush(log)``; a disk error is reported (the leaves stay pending)."""
    try:
        log.book._flush(log)
    except OSError as exc:
        log.book.problems.append(f"Entry log of {log.entry.directory}: {exc}")


def sweep(book) -> None:
    """
    Catch up the logs behind for :data:`LAG_SWEEPS` sweeps or more, or all
    of them when nothing was written since the last sweep (the longest behind
    first, one a step through ``book.cooperate``; at once without one).  A
    sweep under way is not started twice.
    """
    book.sweeps += 1
    quiet, book.commits_swept = book.commits == book.commits_swept, book.commits
    due = book.sweeps if quiet else book.sweeps - LAG_SWEEPS

    def next_due():
        log = next(iter(book.behind.values()), None)
        return log if log is not None and log.behind_sweep <= due else None

    if book.sweeping or next_due() is None:
        return

    def steps():
        try:
            while (log := next_due()) is not None:
                flush_reported(log)  # takes it out of ``behind`` (EntryLog.flush)
                book.behind.pop(id(log), None)  # even if it was closed meanwhile
                yield None
        finally:
            book.sweeping = False

    book.sweeping = True
    if book.cooperate is None:
        for _ in steps():
            pass
    else:
        book.cooperate(steps())
