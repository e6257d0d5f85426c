# -*- test-case-name: tests.unit.test_log_api -*-
"""
The entry log and listing calls of a ``StorageEngine`` (issue #16), for the
HTTP layer: heads and RFC 9162 proofs (O(log n) reads), one record's item,
and listing pages (``listing_plan.py``).  Every call first appends the
entry's pending leaves (``entry_log.py``).  While the log catches up or
builds its hashes in steps (``entry_log_catchup.py``), the calls answer
from the part already logged (heads and proofs: already hashed), a prefix
of the log to come.

Errors: ``NotFound`` for a missing bucket or entry (the usual texts), for a
number beyond the log (``Record number <n> not found in entry <b>/<e>``)
and, with ``integrity=off`` (no log) or for heads and proofs with
``integrity=digest`` (leaves without hashes), ``Integrity log is off for
this server``; ``UnprocessableEntity`` for a ``tree_size`` beyond the log,
a number beyond ``tree_size``, ``first > second`` and zero values;
``Conflict`` (409) for an entry whose log this build refuses (a newer
format version, a damaged format file: ``entry_log_refused.py``).
"""

import bisect
import json
import os

import attr
from twisted.internet.defer import fail, inlineCallbacks, maybeDeferred, succeed

from reduct_twisted.errors import NotFound, ReductError, UnprocessableEntity
from reduct_twisted.integrity.jcs import string
from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.disk.treelog_files import LEAVES_FILE, OFFSET, OFFSETS_FILE
from reduct_twisted.storage.entry_log import MERKLE
from reduct_twisted.storage.entry_log_lag import sweep
from reduct_twisted.storage.entry_log_refused import REFUSALS, RefusedLog, conflict
from reduct_twisted.storage.listing import ListingSpec
from reduct_twisted.storage.listing_plan import (
    Leaf, by_position, by_time, cut_scanned, plan_page, plan_time_page, wanted,
)
from reduct_twisted.storage.records import FINISHED

__all__ = ["LogMethods", "LOG_OFF", "parse_leaf"]

LOG_OFF = "Integrity log is off for this server"


def parse_leaf(raw: bytes) -> Leaf:
    """
    The :class:`Leaf` of a log leaf: a record's (a timestamp written as a
    string is read as its integer) or, for a gap leaf, ``skipped`` with
    empty fields.
    """
    obj = json.loads(raw)
    digest = obj.get("digest")
    return Leaf(obj["number"], int(obj.get("timestamp", 0)), obj.get("size", 0),
                obj.get("content_type", ""), obj.get("labels", {}),
                bytes.fromhex(digest[len("sha-256:"):]) if digest else None,
                obj.get("skipped") is True)


#: A spec without filters (every leaf).
_EVERY = ListingSpec()
#: Leaves read at a time by a scan (in the thread pool); the matches of one
#: slice are then checked against the entry on the reactor.
_SLICE = 4096
#: Block tables a scanned page's check against the entry loads (as a scan's:
#: not kept in the cache) between two turns of the reactor.
_LOADS = 4


def needle(spec):
    """
    Bytes that every leaf passing ``spec``'s label conditions holds: the RFC
    8785 form of a label with its value (``"<label>":"<value>"``) for an
    ``=`` condition, else of a label's name (``"<label>":``: a record
    without the label matches no condition on it); None without conditions.
    A leaf is canonical JSON (``integrity.merkle``): a name is always written
    so, and a quote inside a string always escaped, so the bytes cannot be
    missing from a leaf that matches (they may be in one that does not:
    each leaf found is parsed and checked).
    """
    if not spec.where:
        return None
    equal = [c for c in spec.where if c.operator == "="]
    condition = (equal or list(spec.where))[0]
    text = string(condition.label) + ":" + (string(condition.value) if equal else "")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no leaf holds it; parse them all
        return None


def scan_leaves(directory: str, size: int, spec, numbers=None, first: int = 1,
                last: int = 0) -> dict:
    """
    In the thread pool: the leaves ``first … last`` (``last`` 0: ``size``;
    or only ``numbers``) of the log in ``directory`` that pass ``spec``'s
    filters, number -> :class:`Leaf`.  With label conditions only the
    leaves holding their :func:`needle` are parsed.  Reads the files
    through its own descriptors (the first ``size`` leaves never change;
    the reactor may append meanwhile).
    """
    found = {}
    last = min(size, last or size)
    wants = needle(spec)
    with open(os.path.join(directory, OFFSETS_FILE), "rb") as offsets, \
            open(os.path.join(directory, LEAVES_FILE), "rb") as leaves:
        def read(first: int, last: int) -> None:
            offsets.seek(8 * (first - 2) if first > 1 else 0)
            raw = offsets.read(8 * (last - first + 1 + (first > 1)))
            base = OFFSET.unpack_from(raw)[0] if first > 1 else 0
            ends = [e - base for (e,) in OFFSET.iter_unpack(raw[8 if first > 1 else 0:])]
            leaves.seek(base)
            data = leaves.read(ends[-1])
            if wants is None:
                chosen = range(len(ends))
            else:  # the leaves holding the needle, each once
                chosen, at = [], data.find(wants)
                while at >= 0:
                    i = bisect.bisect_right(ends, at)
                    chosen.append(i)
                    at = data.find(wants, ends[i]) if i + 1 < len(ends) else -1
            for i in chosen:
                leaf = parse_leaf(data[ends[i - 1] if i else 0:ends[i]])
                if wanted(leaf, spec):
                    found[first + i] = leaf
        if numbers is None:
            for start in range(first, last + 1, _SLICE):
                read(start, min(last, start + _SLICE - 1))
        else:
            for n in numbers:
                if 1 <= n <= size:
                    read(n, n)
    return found


def page_of(directory: str, size: int, spec, found: list):
    """
    In the thread pool: :func:`cut_scanned` of the listed ones of ``found``
    (every match, ``(number, timestamp, stored)``), then the page's leaves read.
    """
    every = spec.include_removed
    page = cut_scanned(spec, [match for match in found if every or match[2]])
    leaves = scan_leaves(directory, size, _EVERY, [n for n, _ in page.items])
    return attr.evolve(page, items=[(leaves[n], keep) for n, keep in page.items])


def _rows(block) -> list:
    """``(timestamp, number)`` of a loaded block's finished records, ascending."""
    table = block.table
    return [(ts, record.number) for ts in block.order
            if (record := table[ts]).state == FINISHED]


def _positive(**values) -> None:
    for name, value in values.items():
        if type(value) is not int or value < 1:
            raise UnprocessableEntity(f"'{name}' must be a positive integer")


class LogMethods:
    """The log calls of a ``StorageEngine`` (see the module docstring)."""

    def set_integrity(self, mode: str, warn=None) -> None:
        """
        ``integrity`` = ``log`` | ``digest`` | ``off`` (digests, and what the
        log keeps); ``warn``: called with one line per entry whose log this
        build refuses (the daemon logs it).
        """
        self._context.digests = mode != "off"
        self._context.logs.mode = mode
        if warn is not None:
            self._context.logs.warn = warn

    def set_cooperator(self, cooperate) -> None:
        """
        Long entry-log work (a catch-up, a hash build: ``entry_log_catchup.py``)
        runs in steps through ``cooperate(iterator)`` (the service's
        ``task.Cooperator.cooperate``); without one it runs at once.
        """
        self._context.logs.cooperate = cooperate

    def catch_up_logs(self) -> None:
        """
        Catch up the entry logs left behind their records (``entry_log_lag.py``),
        in steps through the cooperator; the service calls it every
        ``entry_log_lag.SWEEP_INTERVAL`` seconds.
        """
        sweep(self._context.logs)

    def set_leaf_worker(self, submit) -> None:
        """
        Pending leaves are made by a worker process (``entry_log_offload.py``):
        ``submit(payload) -> Deferred`` firing with its answer
        (``leafjob.py``; an ``ILeafWorker``), or None: by the daemon itself.
        """
        self._context.logs.offload = submit

    def _entry_log(self, bucket: str, entry: str, hashes: bool = False):
        series = self._bucket(bucket).entry(entry)
        logs = self._context.logs
        if logs.mode not in MERKLE or (hashes and not MERKLE[logs.mode]):
            raise NotFound(LOG_OFF)
        log = logs.of(series)
        if not isinstance(log, RefusedLog):
            try:
                log.flush()
            except OSError as exc:  # 507 on a full disk, else 500; the leaves stay pending
                raise storage_error(exc, "append to the entry log") from None
            except REFUSALS as exc:
                log = logs.refuse(series, exc)
        if isinstance(log, RefusedLog):
            raise conflict(bucket, entry, log.error)
        return series, log

    def log_head(self, bucket: str, entry: str) -> tuple:
        """:return: ``(tree_size, root)`` of the entry's log (root: 32 bytes)."""
        _, log = self._entry_log(bucket, entry, hashes=True)
        return log.tree.hashed, log.tree.root()

    def log_inclusion(self, bucket: str, entry: str, number: int, tree_size: int) -> list:
        """:return: the audit path (32-byte hashes) of record ``number`` in the tree of ``tree_size``."""
        _positive(number=number, tree_size=tree_size)
        _, log = self._entry_log(bucket, entry, hashes=True)
        if tree_size > log.tree.hashed:
            raise UnprocessableEntity(
                f"tree_size {tree_size} is beyond the log's size {log.tree.hashed}")
        if number > tree_size:
            raise UnprocessableEntity(f"Record number {number} is beyond tree_size {tree_size}")
        return log.tree.inclusion(number, tree_size)

    def log_consistency(self, bucket: str, entry: str, first: int, second: int) -> list:
        """:return: the consistency path from the tree of ``first`` leaves to that of ``second``."""
        _positive(first=first, second=second)
        _, log = self._entry_log(bucket, entry, hashes=True)
        if first > second:
            raise UnprocessableEntity(f"'first' ({first}) is greater than 'second' ({second})")
        if second > log.tree.hashed:
            raise UnprocessableEntity(
                f"'second' ({second}) is beyond the log's size {log.tree.hashed}")
        return log.tree.consistency(first, second)

    def _stored(self, series):
        def stored(leaf: Leaf) -> bool:
            if leaf.skipped:
                return False
            found = None if series.removed else series.find(leaf.timestamp)
            return (found is not None and found[1].state == FINISHED
                    and found[1].number == leaf.number)
        return stored

    def record_item(self, bucket: str, entry: str, number: int) -> tuple:
        """:return: ``(Leaf, stored)`` of record ``number`` (removed ones too)."""
        _positive(number=number)
        series, log = self._entry_log(bucket, entry)
        if number > log.tree.size:
            raise NotFound(f"Record number {number} not found in entry {bucket}/{entry}")
        leaf = parse_leaf(log.tree.leaf(number))
        return leaf, self._stored(series)(leaf)

    def _stored_in_scan(self, series):
        """``stored`` for a scan: ``(number, timestamp)`` -> bool; tables loaded as a scan."""
        def stored(number: int, ts: int) -> bool:
            if series.removed:
                return False
            block = series.block_for(ts)
            if block is None or not block.first_ts <= ts <= block.latest_ts:
                return False
            record = series.scan_block(block).get(ts)
            return record is not None and record.state == FINISHED and record.number == number
        return stored

    def list_page(self, bucket: str, entry: str, spec):
        """
        :return: a Deferred firing the ``listing_plan.Page`` of ``spec``.
            Number-order pages (no filter) cost work in proportion to the
            page, on the calling thread, and so do timestamp-ordered pages
            of stored records without label or digest filter (the entry's
            blocks skipped by their counts: ``plan_time_page``).  Any other
            listing is a scan in slices of :data:`_SLICE` leaves: each
            slice is read and filtered in the thread pool (``scan_leaves``),
            its matches placed by the removed set on the reactor, the page
            cut and its leaves read in the thread pool (``page_of``), then
            its items checked against the entry (:meth:`_scan`); a
            ``digest`` listing reads only the digest index's candidates (the
            index is first given the leaves above what it covers, a slice at
            a time).
        """
        try:
            series, log = self._entry_log(bucket, entry)
            tree, removed = log.tree, log.removed()
            leaf = lambda n: parse_leaf(tree.leaf(n))  # noqa: E731
            if by_position(spec):
                return succeed(plan_page(spec, tree.size, leaf, self._stored(series), removed))
            if by_time(spec) and log.ready():
                blocks = [(b.record_count - b.started, b.first_ts, b.latest_ts, b)
                          for b in series.blocks]
                page = plan_time_page(spec, tree.size, leaf, blocks,
                                      lambda b: _rows(series.load_block(b)))
                if page is not None:
                    return succeed(page)
        except ReductError as exc:
            return fail(exc)
        except OSError as exc:
            return fail(storage_error(exc, "read the entry log"))
        except REFUSALS as exc:  # e.g. a removed set of a newer format
            self._context.logs.refuse(series, exc)
            return fail(conflict(bucket, entry, exc))

        def disk_error(failure):
            failure.trap(OSError)  # e.g. the entry was renamed meanwhile
            raise storage_error(failure.value, "read the entry log")

        return self._scan(series, log, spec, tree.size).addErrback(disk_error)

    @inlineCallbacks
    def _scan(self, series, log, spec, size):
        """
        The scan of :meth:`list_page`.  Whether a match is stored is first
        taken from the removed set (and gap leaves), as the positional pages
        do; the page's items are then checked against the entry
        (:data:`_LOADS` block tables at a time, loaded as a scan's), and only if
        one differs (the set lost its newest lines to a crash) is every
        match checked against the entry, a slice at a time on the reactor.
        """
        thread, directory, removed = self.run_in_thread, log.directory, log.removed()
        if spec.digest is None:
            slices = [(first, None) for first in range(1, size + 1, _SLICE)]
        else:
            # The digest index first gets the leaves above what it covers (may lag).
            for first in range(log.indexed + 1, size + 1, _SLICE):
                last = min(size, first + _SLICE - 1)
                leaves = yield maybeDeferred(thread, scan_leaves, directory, size, _EVERY,
                                             None, first, last)
                log.index(leaves, last)
            numbers = sorted(n for n in set(log.digests().lookup(spec.digest)) if n <= size)
            slices = [(0, numbers[i:i + _SLICE]) for i in range(0, len(numbers), _SLICE)]
        found = []
        for first, numbers in slices:
            last = first + _SLICE - 1 if numbers is None else 0
            leaves = yield maybeDeferred(thread, scan_leaves, directory, size, spec, numbers,
                                         first, last)
            found += [(n, leaf.timestamp, not leaf.skipped and n not in removed)
                      for n, leaf in sorted(leaves.items())]
        page = yield maybeDeferred(thread, page_of, directory, size, spec, found)
        check, loads = self._stored_in_scan(series), 0
        for leaf, keep in page.items:  # a sparse page: a block table an item
            if loads >= _LOADS:
                yield maybeDeferred(thread, _idle)
                loads = 0
            block = series.block_for(leaf.timestamp)
            loads += block is not None and (block.table is None or block.partial)
            if check(leaf.number, leaf.timestamp) != keep:
                break
        else:
            return page
        for i in range(0, len(found), _SLICE):
            if i:  # a turn of the reactor between two slices
                yield maybeDeferred(thread, _idle)
            found[i:i + _SLICE] = [(n, ts, check(n, ts)) for n, ts, _ in found[i:i + _SLICE]]
        page = yield maybeDeferred(thread, page_of, directory, size, spec, found)
        return page


def _idle() -> None:
    """Nothing, in the thread pool (the reactor runs meanwhile)."""
