# -*- test-case-name: tests.unit.test_replication_task -*-
"""
One request to a replication's destination, made from the items at the
front of an entry's transaction log (``task.py`` decides when).

A run is the longest sequence of items of one kind (writes, or label
updates) at the front of the log, without a timestamp twice, within the
batch limits (85 records, about 8 MB, 512 kB of headers).  Records are read
from the source as they are now; one removed meanwhile is an error of its
item (404).  Per-record answers: 409 to a write is delivered (a resend),
404 to a label update means the destination lacks the record, which is
then written in full (upstream does the same); any other is an error of
its item, except a missing destination bucket, which a 1.18+ destination
reports per record (spec 1.20 §5.8): that is retried like the request-level
404 of older ones.  A request the destination does not take raises :class:`Attempt`
when sending it again may work (``RemoteError.retry``); otherwise its
items are errors.
"""

from __future__ import annotations

from reduct_twisted.errors import ReductError
from reduct_twisted.replication.remote import OutgoingBatch, RemoteError
from reduct_twisted.replication.txlog import LABELS, WRITE


class Shipment:
    """
    :param engine: the source ``StorageEngine``.
    :param bucket: the source bucket.
    :param remote: the destination (``RemoteBucket`` or a fake).
    :param entry: the entry (the same name on both sides).
    """

    def __init__(self, engine, bucket: str, remote, entry: str) -> None:
        self._engine = engine
        self._bucket = bucket
        self._remote = remote
        self._entry = entry
        #: Content bytes of the write requests the destination took.
        self.sent_bytes = 0

    def _read(self, item, errors: list):
        try:
            return self._engine.read(self._bucket, self._entry, item.ts)
        except ReductError as exc:
            errors.append((exc.status, exc.message))
            return None

    async def send(self, items: list):
        """
        Send the longest run of items of one kind at the front of ``items``.

        :return: ``(run, errors)``: the items dealt with (to acknowledge) and
            ``(status, message)`` for each of them that failed.
        :raises Attempt: the destination did not take the request; retry later.
        """
        errors: list = []
        kind = items[0].kind
        if kind is None:
            errors.append((500, f"Damaged transaction log line of entry '{self._entry}'"))
            return items[:1], errors
        if kind == WRITE:
            return await self._writes(items, errors), errors
        return await self._labels(items, errors), errors

    async def _writes(self, items: list, errors: list) -> list:
        batch = OutgoingBatch()
        run: list = []
        try:
            for item in _run_of(items, WRITE):
                view = self._read(item, errors)
                if view is not None and not _add(batch, view, errors):
                    break
                run.append(item)
                if batch.full():
                    break
            if batch.headers:
                await self._write(batch, errors)
        finally:
            batch.close()
        return run

    async def _write(self, batch: OutgoingBatch, errors: list) -> None:
        try:
            refused = await self._remote.write(self._entry, batch)
        except RemoteError as exc:
            if exc.retry:
                raise Attempt(exc, len(batch.headers)) from None
            refused = {ts: (exc.status, exc.message) for ts, _ in batch.headers}
        self.sent_bytes += batch.size
        for status, message in refused.values():
            if status == 404 and _bucket_missing(message):
                # A 1.18+ destination answers a missing bucket per record:
                # retried like its request-level 404 of before, never given up.
                raise Attempt(RemoteError(404, message, retry=True), len(batch.headers))
        errors.extend(answer for answer in refused.values() if answer[0] != 409)

    async def _labels(self, items: list, errors: list) -> list:
        run = _run_of(items, LABELS)
        updates, views = [], {}
        for item in run:
            view = self._read(item, errors)
            if view is not None:
                labels = view.record.labels
                views[item.ts] = view
                updates.append((item.ts, labels, [n for n in item.removed if n not in labels]))
        if not updates:
            return run
        try:
            refused = await self._remote.update(self._entry, updates)
        except RemoteError as exc:
            if exc.status == 404:  # the entry is missing on the destination
                refused = {ts: (404, exc.message) for ts, _, _ in updates}
            elif exc.retry:
                raise Attempt(exc, len(updates)) from None
            else:
                refused = {ts: (exc.status, exc.message) for ts, _, _ in updates}
        missing = [views[ts] for ts, answer in sorted(refused.items()) if answer[0] == 404]
        errors.extend(answer for answer in refused.values() if answer[0] != 404)
        # Records the destination does not have are written in full.
        while missing:
            batch = OutgoingBatch()
            try:
                while missing and not batch.full() and _add(batch, missing[0], errors):
                    missing.pop(0)
                if batch.headers:
                    await self._write(batch, errors)
            finally:
                batch.close()
        return run


def _bucket_missing(message: str) -> bool:
    """Whether a per-record error says the destination bucket does not exist."""
    return message.startswith("Bucket '") and message.endswith("' is not found")


def _add(batch: OutgoingBatch, view, errors: list) -> bool:
    """``batch.add(view)``; a file that cannot be opened is an error of its record."""
    try:
        return batch.add(view)
    except OSError as exc:
        errors.append((500, f"Failed to read record {view.record.ts}: {exc.strerror or exc}"))
        return True


class Attempt(Exception):
    """A request failed as a whole, to be retried: its error and how many records it carried."""

    def __init__(self, error: RemoteError, records: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.records = records


def _run_of(items: list, kind: str) -> list:
    """The items of ``kind`` at the front of ``items``, up to a repeated timestamp."""
    run, seen = [], set()
    for item in items:
        if item.kind != kind or item.ts in seen:
            break
        seen.add(item.ts)
        run.append(item)
    return run
