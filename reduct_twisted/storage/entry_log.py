# -*- test-case-name: tests.unit.test_entry_log -*-
"""
The per-entry integrity log wired into the storage (issue #16): each entry
keeps, in ``<entry dir>/.log/``, a :class:`~reduct_twisted.storage.disk.treelog.TreeLog`
of its records' leaves (``integrity.merkle.leaf_of``) in entry-number
order, the numbers of its removed records (``.log/removed``,
``disk/removedset.py``) and an index digest → numbers (``.log/digests/``,
``disk/digestindex.py``).  What is kept depends on the ``integrity``
setting: ``log`` leaves and tree hashes, ``digest`` leaves only, ``off``
nothing (existing logs are left alone).

**Pending leaves.**  A committed record's leaf fields (labels as written; a
write run's as its ``.meta`` lines: ``entry_pending.py``) wait in its entry
and are appended (one write per file; made by the leaf worker if there is
one: ``entry_log_offload.py``) when ``BATCH`` are pending, when it has
waited longest of more than ``MAX_WAITING`` (with ``sync=none`` it sheds
them instead, to be caught up from its blocks: ``entry_log_lag.py``) and
*always* before anything rewrites (relabel, removal, compression, backfill:
``reserve.rewrite_meta``) or removes (``Entry.remove_block``) a ``.meta``
of the entry, before a rename, at close, whenever the sync policy takes the
dirty set (``take_dirty``: so ``sync=always`` makes leaves durable with
their records) and before any read of the log.

**Opening and recovery.**  A log is opened on first use (start-up stays
O(entries)).  It reopens as a consistent prefix of ``S`` leaves
(``treelog_files.py``); leaves ``S+1 … N`` (``N``: the entry's last number
handed out) are then taken from the pending ones or rebuilt from the
records of the blocks whose greatest number is above ``S`` (their ``.meta``
lines still hold the as-written labels: every rewrite flushed the log
first), by a catch-up in bounded steps (``entry_log_catchup.py``).  A
number skipped after a failure gets the gap leaf ``{"number": n, "skipped": true}`` (RFC 8785) so that leaf
index ``n - 1`` stays record ``n``; the number goes to the removed set
first (the listing places its pages by that set: a skipped number is
never stored; after a crash between the two it is added again).  A log
ahead of the entry's numbers (records dropped by crash recovery) raises
the entry's counter above it: numbers are never reused.

**Older entries.**  An entry holding records the backfill has not numbered
yet (``numbers.py``: ``1 … L`` handed out later), or, until the backfill
pass has ended, records without a digest (written before digests or with
``integrity=off``), keeps no pending leaves: its log starts once they are
done, with a one-time catch-up (in steps, as above) from the records by
number.  Limits: records relabelled before the catch-up reaches them are
logged with their labels at catch-up (this also holds for a rebuild after
``kill -9``, and, after a crash during a catch-up, for records written
during it and relabelled); a record whose digest could not be computed is
logged with ``"digest": null``.

**A log this build refuses** (a newer format version, a damaged format
file, lost data files, a removed set of a newer format): the entry gets a ``RefusedLog`` for the run
(``entry_log_refused.py``): its records go on, its ``.log/`` is left as it
is, reads of its log and listing answer 409, the daemon logs it once.
"""

import os

from reduct_twisted.storage.disk.digestindex import DigestIndex
from reduct_twisted.storage.disk.durability import NO_SPACE
from reduct_twisted.storage.disk.layout import LOG_DIR
from reduct_twisted.storage.disk.removedset import RemovedSet, header_refusal
from reduct_twisted.storage.disk.treelog import TreeLog
from reduct_twisted.storage.disk.treelog_files import refusal
from reduct_twisted.storage.entry_leaves import gap_leaf, parts_leaves, record_fields, record_leaf
from reduct_twisted.storage.entry_log_catchup import CatchUp, catch_up_to, run_in_steps
from reduct_twisted.storage.entry_log_lag import catch_up_now, far_behind, make_room
from reduct_twisted.storage.entry_log_offload import BATCH, MAX_WAITING, held, offload
from reduct_twisted.storage.entry_log_refused import REFUSALS, RefusedLog, set_aside
from reduct_twisted.storage.entry_log_trees import OpenTrees
from reduct_twisted.storage.entry_pending import PendingLeaves
from reduct_twisted.storage.records import FINISHED

__all__ = ["BATCH", "LogBook", "EntryLog", "record_leaf", "gap_leaf"]


#: The ``integrity`` modes that keep a log, and whether each keeps hashes.
MERKLE = {"log": True, "digest": False}


def _waits(block, late: bool) -> bool:
    """Whether ``block`` holds records the backfill has not numbered (or hashed, unless ``late``)."""
    return bool(block.unnumbered[0] or (block.unnumbered[1] and not late))


class EntryLog:
    """
    The log of one entry: pending leaves and, once used, its open files.

    :ivar pending: number -> leaf fields, not appended yet (``entry_pending.py``).
    """

    def __init__(self, book: "LogBook", entry) -> None:
        self.book = book
        self.entry = entry
        self.pending = PendingLeaves()
        self.tree = None
        self._removed = self._digests = None
        self._indexed = 0
        self._ready = False
        self._waiting = (0, None)  # where the first block found not ready was, and it
        self.catching = None
        self.inflight = None  # (first, last) of the leaves a worker job is making
        self.behind_from = None  # the first leaf shed (entry_log_lag.py), until a flush
        self.behind_sweep = 0  # the sweep it fell behind at (entry_log_lag.py)

    @property
    def directory(self) -> str:
        return os.path.join(self.entry.directory, LOG_DIR)

    def ready(self) -> bool:
        """
        Whether the entry's records are all numbered (see the module
        docstring).  Blocks only ever become ready (new ones are), so the
        search goes on from where it found one waiting (from the start if
        blocks came or went before it): O(blocks) over the backfill.
        """
        if not self._ready:
            late = self.book.pass_done  # digests: wait for one backfill pass, not for failures
            blocks, (start, block) = self.entry.blocks, self._waiting
            if start >= len(blocks) or blocks[start] is not block:  # moved: from the start
                start = 0
            for index in range(start, len(blocks)):
                if _waits(blocks[index], late):
                    self._waiting = (index, blocks[index])
                    return False
            self._ready = True
        return self._ready

    def committed(self, record, lines: bytes = None, numbers=()) -> None:
        """``record`` committed; or, with ``lines``, records ``numbers`` (their ``.meta`` lines)."""
        if not self._ready and not self.ready():
            return
        if lines is None:
            self.pending.add(record_fields(record))
        else:
            self.pending.add_lines(numbers, lines)
        waiting = self.book.waiting
        if id(self) not in waiting:
            waiting[id(self)] = self
            if len(waiting) > MAX_WAITING and not self.book.holding:
                make_room(self.book)
        if self.book.holding:
            return
        if far_behind(self, BATCH):
            self.flush()
        elif len(self.pending) >= BATCH and not offload(self):
            self.flush()

    def open(self):
        """
        :return: the tree log, opened if needed.  Hashes to build for a log
        kept without them (``digest`` before) are built in steps (``run_in_steps``).
        """
        if self.tree is None:
            sliced = self.book.cooperate is not None
            self.tree = TreeLog.open(self.directory, MERKLE[self.book.mode], self.book.dirty,
                                     build_now=not sliced)
            if self.tree.building:
                run_in_steps(self, self.tree.hash_steps(), "build the hashes of")
        self.book.trees.used(self)  # (entry_log_trees.py: the least recently used may close)
        return self.tree

    def flush(self, now: bool = False) -> int:
        """
        Append every leaf up to the entry's last number: the pending ones
        at once; if others must be rebuilt from the records, a catch-up
        (``entry_log_catchup.py``) does it, in steps if it is large and the
        service runs steps (unless ``now``), else at once.

        :return: the log's size.
        :raises OSError: a write failed (the leaves stay pending).
        """
        self.book.waiting.pop(id(self), None)
        self.book.behind.pop(id(self), None)
        self.behind_from = None
        tree = self.open()
        if not self.ready():  # an older entry: waits for its backfill
            self.pending.clear()
            return tree.size
        if self.catching is not None:  # its steps append the pending leaves in order
            return tree.size
        size, numbers = tree.size, self.entry.numbers
        if size >= numbers.next:
            numbers.next = size + 1  # records lost in a crash: never reuse their numbers
        target = numbers.next - 1
        if target <= size:
            self.pending.clear()
            return size
        try:
            if self.pending.covers(size + 1, target):
                tree.append(parts_leaves(self.pending.parts(size + 1, target), size + 1, target))
                self.pending.clear()
            else:
                job = CatchUp(self, target, record_leaf, gap_leaf)
                if now or job.small or self.book.cooperate is None:
                    job.run()
                else:
                    self.catching = job
                    run_in_steps(self, job.steps, "catch up", job)
                    return tree.size
        except OSError:
            self.book.waiting[id(self)] = self
            raise
        return tree.size

    def removed(self) -> RemovedSet:
        if self._removed is None:
            os.makedirs(self.directory, exist_ok=True)
            self._removed = RemovedSet.open(self.directory, self.book.dirty)
        return self._removed

    def digests(self) -> DigestIndex:
        """
        The digest index (it may lag the log: feed it with :meth:`index`
        the leaves above :attr:`indexed` before a lookup).
        """
        if self._digests is None:
            self._digests = DigestIndex.open(os.path.join(self.directory, "digests"),
                                             dirty=self.book.dirty)
            self._indexed = self._digests.covered
        return self._digests

    @property
    def indexed(self) -> int:
        """The highest number the digest index was given (this run or saved)."""
        self.digests()
        return self._indexed

    def index(self, leaves: dict, upto: int) -> None:
        """Feed the index ``leaves`` (number -> ``Leaf``), which are those up to ``upto``."""
        index = self.digests()
        if upto > self._indexed:
            index.add((leaf.digest, n) for n, leaf in sorted(leaves.items())
                      if n > self._indexed and leaf.digest is not None)
            self._indexed = upto

    def close(self) -> None:
        if self.catching is not None:  # the next flush starts anew from the log's size
            self.catching.stop()
            self.catching = None
        for part in (self.tree, self._digests):
            if part is not None:
                part.close()
        self.book.trees.forget(self)
        self.tree = self._digests = self._removed = None
        self._indexed = 0


class LogBook:
    """
    Every entry's :class:`EntryLog` (the engine's ``Context.logs``).

    :ivar mode: the ``integrity`` setting: ``log``, ``digest`` or ``off``
        (an engine's default: the daemon sets it, ``StorageEngine.set_integrity``).
    :ivar waiting: the entry logs with pending leaves (``behind``: that shed theirs).
    :ivar pass_done: the backfill pass of this run has ended.
    :ivar warn: called with one line per entry whose log is refused
        (:meth:`refuse`; the daemon logs it), or None.
    :ivar cooperate: ``cooperate(iterator)`` runs an iterator's steps a few per reactor
        turn (the service's ``task.Cooperator.cooperate``); ``None``: long log work at once.
    """

    def __init__(self, dirty, mode: str = "off", reserve=None) -> None:
        self.dirty = dirty
        self.reserve = reserve
        self.mode = mode
        self.waiting: dict = {}
        self.behind, self.sweeping, self.sweeps = {}, False, 0  # (entry_log_lag.py: and these)
        self.commits = self.commits_swept = 0
        self.problems: list = []
        self.pass_done = False
        self.warn = None
        self.cooperate = None
        self.offload = None  # the leaf worker's ``submit`` (entry_log_offload.py) or None
        self.holding = False  # see held()
        self.trees = OpenTrees()

    def backfilled(self, report):
        """The backfill pass ended: records still without a digest will keep none."""
        self.pass_done = True
        return report

    @property
    def on(self) -> bool:
        return self.mode in MERKLE

    def of(self, entry):
        """
        ``entry``'s :class:`EntryLog`, made on first use; a ``RefusedLog``
        (``entry_log_refused.py``) when this build refuses its ``.log/``.
        """
        log = entry.__dict__.get("_log")
        if log is None:
            directory = os.path.join(entry.directory, LOG_DIR)
            try:
                problem = refusal(directory) or header_refusal(directory)
            except OSError:
                problem = None  # unreadable: opening it will say so
            if problem is not None:
                return self.refuse(entry, problem)
            log = entry._log = EntryLog(self, entry)
        return log

    def refuse(self, entry, error) -> RefusedLog:
        """Set ``entry``'s log aside for this run (``entry_log_refused.set_aside``)."""
        return set_aside(self, entry, error)

    def _flush(self, log) -> None:
        """``log.flush()`` (with the space reserve); a log refused on the way is set aside."""
        try:
            self._with_space(log.flush)
        except REFUSALS as exc:
            self.refuse(log.entry, exc)

    def committed(self, entry, record, lines: bytes = None, numbers=()) -> None:
        """``record`` was committed to ``entry``; or the run's ``numbers`` (``lines``: EntryLog.committed)."""
        self.commits += 1
        if self.on:
            try:
                self.of(entry).committed(record, lines, numbers)
            except OSError as exc:  # kept pending; tried again at the next flush
                self.problems.append(f"Entry log of {entry.directory}: {exc}")
            except REFUSALS as exc:  # the record stands; its log is set aside
                self.refuse(entry, exc)

    def _with_space(self, write) -> None:
        """
        ``write()``; on a full disk release the space reserve (it is kept for
        removals and rewrites, which must reach the log first) and try once more.
        """
        try:
            write()
        except OSError as exc:
            if exc.errno not in NO_SPACE or self.reserve is None or not self.reserve.release():
                raise
            write()

    def before_rewrite(self, directory: str) -> None:
        """A ``.meta`` in entry ``directory`` is about to be rewritten."""
        for log in list(self.waiting.values()):
            if log.entry.directory == directory:
                self._flush(log)
        catch_up_now(self, directory)  # shed leaves come from the lines about to change

    def before_remove(self, entry, records=(), block=None) -> None:
        """
        ``records`` of ``entry`` (or all of ``block``'s) are about to be
        removed: the log gets every leaf first (a catch-up under way goes
        on now up to the greatest of them if it is not logged yet), then
        their numbers.
        """
        if not self.on:
            return
        log = self.of(entry)
        if block is not None:
            records = entry.load_block(block).table.values()
        numbers = [r.number for r in records if r.number and r.state == FINISHED]
        self._flush(log)
        log = self.of(entry)
        if getattr(log, "catching", None) and numbers and max(numbers) > log.tree.size:
            try:
                self._with_space(lambda: catch_up_to(log, max(numbers)))
            except REFUSALS as exc:
                log = self.refuse(entry, exc)
        if numbers and log.ready():
            try:
                self._with_space(lambda: log.removed().add(numbers))
            except REFUSALS as exc:  # the records go; the log is set aside
                self.refuse(entry, exc)

    def held(self):
        """A context: commits inside only join pending leaves (``entry_log_offload.held``)."""
        return held(self)

    def flush_all(self) -> None:
        """Append every pending leaf (before a sync takes the dirty set, a rename, close)."""
        for log in list(self.waiting.values()) + list(self.behind.values()):
            try:
                log.flush()
            except OSError as exc:
                self.problems.append(f"Entry log of {log.entry.directory}: {exc}")
            except REFUSALS as exc:
                self.refuse(log.entry, exc)

    def close(self, entry) -> None:
        """Close ``entry``'s files (flushed first unless the entry was removed)."""
        log = entry.__dict__.get("_log")
        if log is not None:
            self.waiting.pop(id(log), None)
            self.behind.pop(id(log), None)
            if not entry.removed and (log.pending or log.behind_from is not None):
                try:
                    log.flush()
                except REFUSALS as exc:
                    log = self.refuse(entry, exc)
            log.close()

    def close_all(self, entries) -> None:
        self.flush_all()
        for entry in entries:
            self.close(entry)
