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

import json
import os

from twisted.internet.defer import fail, maybeDeferred, succeed

from reduct_twisted.errors import NotFound, ReductError, UnprocessableEntity
from reduct_twisted.storage.disk.durability import storage_error
from reduct_twisted.storage.disk.treelog_files import LEAVES_FILE, OFFSET, OFFSETS_FILE
from reduct_twisted.storage.entry_log import MERKLE
from reduct_twisted.storage.entry_log_refused import REFUSALS, RefusedLog, conflict
from reduct_twisted.storage.listing import ListingSpec, matches
from reduct_twisted.storage.listing_plan import Leaf, by_position, plan_page
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
#: Leaves read at a time by a scan.
_SLICE = 4096


def _wanted(leaf: Leaf, spec) -> bool:
    # A skipped number has no timestamp, labels or digest: a scan (filters,
    # timestamp order) never lists it.
    return (not leaf.skipped and (spec.digest is None or leaf.digest == spec.digest)
            and (spec.start_ts is None or leaf.timestamp >= spec.start_ts)
            and (spec.stop_ts is None or leaf.timestamp < spec.stop_ts)
            and (not spec.where or matches(leaf.labels, spec.where)))


def scan_leaves(directory: str, size: int, spec, numbers=None, first: int = 1) -> dict:
    """
    In the thread pool: the leaves ``first … size`` (or only ``numbers``) of
    the log in ``directory`` that pass ``spec``'s filters, number ->
    :class:`Leaf`.  Reads the files through its own descriptors (the first
    ``size`` leaves never change; the reactor may append meanwhile).
    """
    found = {}
    with open(os.path.join(directory, OFFSETS_FILE), "rb") as offsets, \
            open(os.path.join(directory, LEAVES_FILE), "rb") as leaves:
        def read(first: int, last: int) -> None:
            offsets.seek(8 * (first - 2) if first > 1 else 0)
            raw = offsets.read(8 * (last - first + 1 + (first > 1)))
            ends = [e for (e,) in OFFSET.iter_unpack(raw)]
            start = ends.pop(0) if first > 1 else 0
            leaves.seek(start)
            data = leaves.read(ends[-1] - start)
            for n, end in zip(range(first, last + 1), ends):
                leaf = parse_leaf(data[:end - start])
                data, start = data[end - start:], end
                if _wanted(leaf, spec):
                    found[n] = leaf
        if numbers is None:
            for start in range(first, size + 1, _SLICE):
                read(start, min(size, start + _SLICE - 1))
        else:
            for n in numbers:
                if 1 <= n <= size:
                    read(n, n)
    return found


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

    def list_page(self, bucket: str, entry: str, spec):
        """
        :return: a Deferred firing the ``listing_plan.Page`` of ``spec``.
            Number-order pages (no filter) cost work in proportion to the
            page, on the calling thread; a filtered or timestamp-ordered
            listing reads every leaf in the thread pool (``scan_leaves``),
            then asks the entry whether each match is stored; a ``digest``
            listing reads only the digest index's candidates.
        """
        try:
            series, log = self._entry_log(bucket, entry)
            tree, removed = log.tree, log.removed()
            if by_position(spec):
                return succeed(plan_page(spec, tree.size, lambda n: parse_leaf(tree.leaf(n)),
                                         self._stored(series), removed))
            indexed = log.indexed if spec.digest is not None else 0
        except ReductError as exc:
            return fail(exc)
        except OSError as exc:
            return fail(storage_error(exc, "read the entry log"))
        except REFUSALS as exc:  # e.g. a removed set of a newer format
            self._context.logs.refuse(series, exc)
            return fail(conflict(bucket, entry, exc))
        size, thread = tree.size, self.run_in_thread

        def disk_error(failure):
            failure.trap(OSError)  # e.g. the entry was renamed meanwhile
            raise storage_error(failure.value, "read the entry log")

        def scan(candidates):
            found = maybeDeferred(thread, scan_leaves, log.directory, size, spec, candidates)
            return found.addCallback(lambda leaves: plan_page(
                spec, size, leaves.__getitem__, self._stored(series), removed, sorted(leaves)))

        if spec.digest is None:
            return scan(None).addErrback(disk_error)
        # The digest index first gets the leaves above what it covers (may lag).
        fed = maybeDeferred(thread, scan_leaves, log.directory, size, _EVERY, None, indexed + 1)
        fed.addCallback(log.index, size)
        fed.addCallback(lambda _: scan(log.digests().lookup(spec.digest)))
        return fed.addErrback(disk_error)
