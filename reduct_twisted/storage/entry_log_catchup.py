# -*- test-case-name: tests.unit.test_entry_log_slices -*-
"""
The catch-up of an entry log in bounded steps (issue #16): the leaves an
entry's log lacks and holds no pending leaf for, rebuilt from the records
of its blocks.  That happens once for an older entry (``entry_log.py``
"Older entries": every record of the entry), after ``kill -9`` (the leaves
above the log's durable prefix) and for numbers skipped after a failure.

A :class:`CatchUp` of leaves ``S + 1 … T`` (``S``: the log's size, ``T``:
the entry's last number when it starts) is a generator of steps, each of
which does one of:

* append up to :data:`STEP_LEAVES` leaves that follow the log's end and are
  known (the pending leaf as written, else the one found in a block);
* load the table of the next block whose greatest number is above ``S``
  (entry order, which is nearly number order) and keep the leaves of its
  records numbered ``S + 1 … T`` that have no pending one;
* once every such block was visited, append up to :data:`STEP_LEAVES`
  leaves, the gap leaf for a number no record holds (the number goes to
  the entry's removed set first).

So a step touches at most one block or :data:`STEP_LEAVES` leaves, and the
leaves found wait in memory only while an earlier number is still unknown.
The service layer runs the steps (:func:`run_in_steps` hands them to
``LogBook.cooperate``: a ``twisted.internet.task.Cooperator``, a few steps
per reactor turn); the storage never schedules anything itself.  Without it (an engine used
directly, tools) and for a catch-up of at most :data:`INLINE_BLOCKS`
blocks and :data:`INLINE_LEAVES` leaves, every step runs at once (the
result is the same leaves).

While a catch-up runs, records keep being written: their leaves wait
pending (as written) and are appended in number order after ``T``.  Reads
of the log and listing are answered from the part already logged (a prefix
of the final log: heads and proofs stay consistent with later ones).  A
relabel does not wait (records not reached yet are logged with their labels
at catch-up); a removal of records not logged yet first runs the steps up
to them, at once (:func:`catch_up_to`: a leaf must be logged before its
record vanishes).  Closing the log stops the steps; the next flush starts
anew from the log's size (what was appended stays).
"""

from collections import deque

from reduct_twisted.storage.entry_leaves import fields_leaf
from reduct_twisted.storage.entry_log_refused import REFUSALS
from reduct_twisted.storage.records import FINISHED

__all__ = ["CatchUp", "catch_up_to", "run_in_steps", "STEP_LEAVES", "INLINE_BLOCKS",
           "INLINE_LEAVES"]

#: Leaves appended by one step.
STEP_LEAVES = 1024
#: A catch-up visiting at most this many blocks ...
INLINE_BLOCKS = 2
#: ... and adding at most this many leaves runs at once.
INLINE_LEAVES = 2 * STEP_LEAVES


class CatchUp:
    """
    The catch-up of ``log`` (an ``EntryLog``) from its tree's size to ``target``.

    :ivar found: number -> leaf, taken from a block, not appended yet.
    :ivar visited: blocks loaded so far (tests and reports).
    """

    def __init__(self, log, target: int, record_leaf, gap_leaf) -> None:
        self.log = log
        self.start = log.tree.size
        self.target = target
        self._record_leaf = record_leaf
        self._gap_leaf = gap_leaf
        self.blocks = deque(b for b in log.entry.blocks if b.top_number > self.start)
        self.found: dict = {}
        self.visited = 0
        self.stopped = False
        self.steps = self._steps()

    @property
    def small(self) -> bool:
        """Whether it is done at once even when steps could be scheduled."""
        return len(self.blocks) <= INLINE_BLOCKS and self.target - self.start <= INLINE_LEAVES

    def run(self) -> None:
        """Every step left, now.  :raises OSError: an append failed (nothing is lost)."""
        for _ in self.steps:
            pass

    def stop(self) -> None:
        """The steps end at the next one (the log closes; a later flush starts anew)."""
        self.stopped = True

    def _steps(self):
        log = self.log
        while not self.stopped:
            size = log.tree.size
            if size >= self.target:
                if not self._more_pending(size):
                    return
            if size + 1 in log.pending or size + 1 in self.found:
                self._append(gaps=False)
            elif self.blocks:
                self._visit(self.blocks.popleft())
            else:
                self._append(gaps=True)
            yield None

    def _more_pending(self, size: int) -> bool:
        """Past ``T``: go on with the pending leaves that follow (records written meanwhile)."""
        pending, n = self.log.pending, size + 1
        if n not in pending:
            return False
        while n + 1 in pending:
            n += 1
        self.target = n
        return True

    def _visit(self, block) -> None:
        if block.removed or self.log.entry.removed:
            return
        self.visited += 1
        low, high, pending, found = self.log.tree.size, self.target, self.log.pending, self.found
        leaf, entry = self._record_leaf, self.log.entry
        entry.context.settle()
        if block.partial and block.partial_from <= low:  # all those to log are in its partial table
            records = block.table.values()
        else:
            records = entry.scan_block(block).table.values()
        for record in records:
            n = record.number
            if n and low < n <= high and record.state == FINISHED and n not in pending:
                found[n] = leaf(record)

    def _append(self, gaps: bool) -> None:
        log = self.log
        first = n = log.tree.size + 1
        last = min(self.target, first + STEP_LEAVES - 1)
        pending, found, leaves, skipped = log.pending, self.found, [], []
        while n <= last:
            row = pending.get(n)
            leaf = fields_leaf(*row) if row is not None else found.get(n)
            if leaf is None:
                if not gaps:
                    break
                leaf = self._gap_leaf(n)
                skipped.append(n)
            leaves.append(leaf)
            n += 1
        if skipped:  # never stored: in the removed set first, like removed numbers
            log.removed().add(skipped)
        log.tree.append(leaves)  # OSError: the log and what is kept here are unchanged
        pending.drop(first, n - 1)
        for number in range(first, n):
            found.pop(number, None)


def catch_up_to(log, upto: int) -> None:
    """
    Catch ``log`` up now to leaf ``upto`` at least (a removal: leaves before
    records vanish): the steps of the catch-up under way, else all at once.

    :raises OSError: an append failed (a later flush starts anew).
    """
    job = log.catching
    if job is not None:
        try:
            for _ in job.steps:
                if log.tree.size >= upto:
                    return  # the rest goes on in steps
        except OSError:
            job.stop()
            log.catching = None
            raise
        log.catching = None  # ended
    log.flush(now=True)


def run_in_steps(log, steps, doing: str, job=None) -> None:
    """
    Run the generator ``steps`` (a catch-up ``job``, or a hash build) of
    ``log`` through its book's ``cooperate``, a step at a time.  A failing
    step ends it: the problem is kept, a catch-up is started anew by the
    next flush, a hash build by the next open (the log is closed).
    """
    book = log.book

    def guarded():
        try:
            yield from steps
        except REFUSALS as exc:  # a log this build cannot read: set aside
            if job is not None and log.catching is job:
                log.catching = None
            book.refuse(log.entry, exc)
            return
        except Exception as exc:  # noqa: BLE001 -- the cooperator would drop it
            book.problems.append(f"Entry log of {log.entry.directory}: could not {doing} it: {exc}")
            if job is None:
                log.close()
            elif log.catching is job:
                log.catching = None
                book.waiting[id(log)] = log
            return
        if job is not None and log.catching is job:
            log.catching = None
            try:  # the pending leaves that did not follow on (or a later catch-up)
                log.flush()
            except OSError as exc:
                book.problems.append(f"Entry log of {log.entry.directory}: {exc}")
            except REFUSALS as exc:
                book.refuse(log.entry, exc)

    book.cooperate(guarded())
