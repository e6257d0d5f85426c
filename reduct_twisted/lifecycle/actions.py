# -*- test-case-name: tests.unit.test_lifecycle_runs -*-
"""
What one lifecycle run does (spec 1.20 §7.4), over the storage engine's
public methods; scheduling is ``policy.py``'s.

* :func:`select_entries`: the policy's entries of the bucket (exact names
  or ``prefix*``, ``[]`` or ``*`` = all, nested entries included, ``$meta``
  entries never: the engine's ``bucket_info`` does not list them).
* :func:`window`: ``[first, stop)`` of a run, ``first`` the oldest record
  of the selected entries, ``stop`` at most ``now - older_than + 1`` and the
  newest record + 1 (and, bounded, ``progress + 24·interval``).
* :func:`delete`: the engine's REMOVE query machinery
  (``StorageEngine.remove_multi``, ``storage/removal.py``) over the window
  with the policy's ``when``, stepped in bounded slices on the reactor;
  ``dry_run`` runs the same selection as a metadata-only query
  (``create_multi_query``) and only counts.
* :func:`compress`: ``StorageEngine.compress_blocks`` per entry (it works
  in the thread pool in bounded slices).

Blocks counted for ``delete`` are an estimate: the blocks of the selected
entries whose time span meets the window (block ids are their first
timestamps).
"""

from __future__ import annotations

from twisted.internet.defer import inlineCallbacks, succeed

from reduct_twisted.stepping import drive
from reduct_twisted.storage import PENDING

#: Records examined per slice of a removal on the reactor.
SLICE = 2000
#: A counting slice: this many ``multi_next`` calls, each examining at most
#: this many records.
COUNT_SLICE = 256


def select_entries(engine, bucket: str, patterns) -> list:
    """
    :param patterns: the policy's ``entries``.
    :return: ``(name, oldest, latest)`` of each selected entry with records.
    :raises NotFound: no such bucket.
    """
    everything = not patterns or "*" in patterns
    exact = set(patterns)
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
    chosen = []
    for info in engine.bucket_info(bucket)["entries"]:
        name = info["name"]
        if not (everything or name in exact or (prefixes and name.startswith(prefixes))):
            continue
        if info["record_count"]:
            chosen.append((name, info["oldest_record"], info["latest_record"]))
    return chosen


def window(entries: list, now_us: int, older_than_us: int, progress=None, span_us=None):
    """
    :param entries: as :func:`select_entries` returns.
    :param progress: where the previous bounded run ended, or None.
    :param span_us: the most one bounded run covers past ``progress``
        (24 intervals), or None: unbounded.
    :return: ``(first, stop, effective_stop)``, or None without records.
    """
    if not entries:
        return None
    first = min(oldest for _, oldest, _ in entries)
    effective_stop = min(max(latest for _, _, latest in entries) + 1,
                         now_us - older_than_us + 1)
    stop = effective_stop
    if span_us is not None:
        start = first if progress is None else max(progress, first)
        stop = min(start + span_us, effective_stop)
    return first, stop, effective_stop


def count_blocks(engine, bucket: str, names, start: int, stop: int) -> int:
    """:return: how many blocks of ``names`` hold times in ``[start, stop)``."""
    count = 0
    for name in names:
        ids = [block["id"] for block in engine.block_stats(bucket, name)]
        for i, block_id in enumerate(ids):
            after = ids[i + 1] if i + 1 < len(ids) else None
            if block_id < stop and (after is None or after > start):
                count += 1
    return count


def delete(engine, clock, bucket: str, names, start: int, stop: int, when, dry_run: bool):
    """
    Remove (or, ``dry_run``, count) the records of entries ``names`` in
    ``[start, stop)`` that match ``when``.

    :return: a Deferred firing ``(records, blocks)``.
    """
    if not names or start >= stop:
        return succeed((0, 0))
    blocks = count_blocks(engine, bucket, names, start, stop)
    if dry_run:
        qid = engine.create_multi_query(bucket, list(names), start=start, stop=stop, when=when,
                                        only_metadata=True, ttl=60)
        counted = [0]

        def step():
            for _ in range(COUNT_SLICE):
                result = engine.multi_next(bucket, qid, COUNT_SLICE)
                if result is None:
                    return counted[0]
                if result is PENDING:
                    return PENDING
                counted[0] += 1
            return PENDING

        found = drive(clock, step)
    else:
        removal = engine.remove_multi(bucket, list(names), start=start, stop=stop, when=when)
        found = drive(clock, removal.step)
    return found.addCallback(lambda records: (records, blocks if records else 0))


@inlineCallbacks
def compress(engine, bucket: str, names, stop: int, dry_run: bool):
    """
    Compress (or, ``dry_run``, estimate) the finished blocks of entries
    ``names`` whose newest record is older than ``stop``.

    :return: a Deferred firing ``(records, blocks)``.
    """
    records = blocks = 0
    for name in names:
        done = yield engine.compress_blocks(bucket, name, stop, dry_run=dry_run)
        records += done[0]
        blocks += done[1]
    return records, blocks
