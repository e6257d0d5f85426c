"""
Removing records by query (spec §3.7, §4.7): ``POST …/q`` with
``"query_type": "REMOVE"``.

A :class:`RecordRemoval` first runs its query to the end, collecting the
matching records per block (in slices: :meth:`RecordRemoval.step` returns
``PENDING`` between them), then removes them block by block:

* a block left without records (and none being written) is removed whole,
  its ``.meta`` trashed first (``Entry.remove_block``);
* otherwise its ``.meta`` is rewritten without their lines
  (``blockfile.replace_meta``: a temporary file renamed over the old one;
  the format is unchanged; on a full disk the space reserve is released
  for it, ``reserve.rewrite_meta``), then the records leave the table and the
  statistics, and their private segments are trashed.  Their bytes in the
  shared segment stay unreferenced (``dead_bytes`` of the block statistics)
  until the block goes; a later open cuts them off only at its end.

Crash safety: before the rename the block is as it was; after it the
records are gone, and a private segment not yet trashed is an orphan the
next open trashes.  The new ``.meta`` and the moves are reported to the
dirty set, so a sync round makes a removal durable before it is answered.
A strict ``when`` error during the scan removes nothing.  Records written
or removed between the scan and the removal are looked up again by
timestamp: only records still finished are removed.
"""

import os

from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.disk.reserve import rewrite_meta
from reduct_twisted.storage.entry import Entry
from reduct_twisted.storage.records import FINISHED, PENDING
from reduct_twisted.storage.meta import refuse_record_removal
from reduct_twisted.storage.settings import check_entry_name

#: What the message of a failed removal says failed.
REMOVE = "remove records"


def start_removal(context, queries, owner, entry: str, now: float, query: dict):
    """
    Check a REMOVE query and prepare its :class:`RecordRemoval`.

    A missing entry is created, empty, as upstream does (it then removes
    nothing), with its missing parents.  Attachment entries refuse (spec 1.20 §3.1).

    :param context: the engine-wide :class:`~reduct_twisted.storage.cache.Context`.
    :param queries: the engine's :class:`~reduct_twisted.storage.query.QueryRegistry`.
    :param owner: the :class:`~reduct_twisted.storage.bucket.Bucket`.
    :param entry: the entry name.
    :param now: the current time in seconds.
    :param query: keyword arguments of ``QueryRegistry.build`` (``continuous``
        and ``ttl`` are ignored).
    :raises UnprocessableEntity: an attachment entry, a bad entry name or
        query parameter.
    :raises ReductError: the entry directory could not be created.
    """
    refuse_record_removal(entry)
    query = dict(query, continuous=False, ttl=0)
    series = owner.entries.get(entry)
    if series is None:
        check_entry_name(entry)
        # Check the query before anything is created.
        queries.build(owner.name, Entry(entry, os.path.join(owner.directory, entry), context),
                      now, **query)
        try:
            series = owner.entry_for_write(entry)
        except OSError as exc:
            raise storage_error(exc, REMOVE) from None
    return RecordRemoval(context, series, queries.build(owner.name, series, now, **query))


class RecordRemoval:
    """
    One removal in progress (see the module docstring).

    :param context: the engine-wide context.
    :param entry: the :class:`~reduct_twisted.storage.entry.Entry`.
    :param query: the (unregistered) :class:`~reduct_twisted.storage.query.Query`.
    :param budget: records examined per :meth:`step`.
    """

    def __init__(self, context, entry, query, budget: int = 2000) -> None:
        self.context = context
        self.entry = entry
        self.query = query
        self.budget = budget
        #: Timestamps to remove, by block, in the order found.
        self.found: dict = {}

    def step(self):
        """
        Scan on, or remove what was found once the scan is complete.

        :return: ``PENDING`` (call again later) or the number of records removed.
        :raises ConditionEvalError: a strict ``when`` failed (nothing is removed).
        :raises ReductError: a ``.meta`` could not be rewritten (507 if the disk
            is full); blocks done before stay done.
        """
        query, start = self.query, self.query.examined
        while True:
            left = self.budget - (query.examined - start)
            if left <= 0:
                return PENDING
            result = query.step(self.entry, left)
            if result is PENDING:
                return PENDING
            if result is None:
                break
            block, record, _ = result
            self.found.setdefault(block, []).append(record.ts)
        removed = 0
        for block, stamps in self.found.items():
            if not (block.removed or self.entry.removed):
                removed += remove_from_block(self.context, self.entry, block, stamps)
        self.found = {}
        return removed


def remove_from_block(context, entry, block, stamps) -> int:
    """
    Remove the finished records of ``block`` at ``stamps``.

    :param context: the engine-wide context.
    :param entry: the block's entry.
    :param block: a block of ``entry``.
    :param stamps: timestamps; those without a finished record are skipped.
    :return: how many were removed.
    :raises ReductError: the ``.meta`` could not be rewritten; nothing changed.
    """
    table = entry.load_block(block).table
    doomed = [table[ts] for ts in stamps if ts in table and table[ts].state == FINISHED]
    if not doomed:
        return 0
    gone = {record.ts for record in doomed}
    kept = [r for r in table.values() if r.state == FINISHED and r.ts not in gone]
    try:  # the leaves first; numbers are never reused: the counter next (``numbers.py``)
        context.logs.before_remove(entry, doomed)
        entry.numbers.keep(entry.directory, max(r.number or 0 for r in doomed), context)
    except OSError as exc:
        raise storage_error(exc, REMOVE) from None
    if not kept and not block.started:
        entry.remove_block(block)
        return len(doomed)
    length = rewrite_meta(context, block, kept, REMOVE)
    entry.drop_records(block, doomed, length)
    return len(doomed)
