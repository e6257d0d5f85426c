# -*- test-case-name: tests.unit.test_multi_plan -*-
"""
Read-ahead for the I/O API's batched reads (``GET /io/:b/read``): the next
batch of a multi-entry query taken while its client is still busy with the
one before, and handed out when it asks, if nothing it read has changed.

A batched read is a round trip per batch (the rule of spec 1.20 §1.9
closes a batch early when entries interleave), so the daemon sits idle
while the client parses an answer.  ``StorageEngine.multi_read_ahead``
takes the next batch then, through the same ``multi_take`` as a read, with
two differences:

* the merge's state is saved first (a :class:`Mark`: the heap, the matches
  taken ahead, each part's cursor), and the blocks whose records the batch
  takes are noted with their ``version``;
* contents go to a :class:`PlannedReader`, which opens no file: it only
  remembers what to add to a ``ContentReader`` later.  A plan left unread
  holds no descriptor (a block the FIFO quota removes frees its space at
  once) and nothing else but the batch's headers.

``multi_claim`` hands the plan to the next read only if every noted block is
still there at the same version (no record of it written, removed, relabelled
or moved) and the read can use it (a GET, not a HEAD); then its files are
opened and its traffic counted.  Otherwise the merge is put back as it was
before the plan, and the read takes its batch as if no plan had been made.
Any other step of the query does the same first (``MultiRegistry.next``).
So a client sees exactly what it would without read-ahead at the moment it
asked, or the state of the store right after its previous answer, which it
could have seen by asking sooner; never a record changed since.

Only plain merges are planned: not continuous, no ``when``, ``limit`` or
sampling (their state is not saved), no error, at most :data:`MAX_PARTS`
entries (the snapshot copies each part's matches taken ahead).
"""

from collections import deque

from reduct_twisted.storage.content import ContentReader

#: Entries a merge may have to be planned (the snapshot is O(entries)).
MAX_PARTS = 64


def plannable(query) -> bool:
    """Whether multi-entry query ``query`` (a ``MultiQuery``) may be read ahead."""
    if query.continuous or query.error is not None or len(query.parts) > MAX_PARTS:
        return False
    if len(query.parts) != len(query._ahead):
        return False  # a part with a when or a limit
    return all(part.filter.each_n is None and part.filter.each_s is None
               for _, _, part in query.parts)


class Mark:
    """
    The state of a ``MultiQuery`` before a plan (restored by :meth:`restore`),
    and what the plan read: ``blocks`` (``id(block)`` -> ``(block, version)``)
    and ``counted`` (``[records, bytes]``, the read traffic to count once the
    plan is used).
    """

    __slots__ = ("query", "_heap", "_empty", "_ahead", "_parts", "_last_access",
                 "blocks", "counted")

    def __init__(self, query) -> None:
        self.query = query
        self._heap = list(query._heap)
        self._empty = list(query._empty)
        self._ahead = {i: deque(d) for i, d in query._ahead.items()}
        self._parts = [(part.cursor, part.examined, part.returned, deque(part._ready))
                       for _, _, part in query.parts]
        self._last_access = query.last_access
        self.blocks: dict = {}
        self.counted = [0, 0]

    def restore(self) -> None:
        """Put the query back as it was when this mark was made."""
        query = self.query
        query._heap = list(self._heap)
        query._empty = list(self._empty)
        query._ahead = {i: deque(d) for i, d in self._ahead.items()}
        for (_, _, part), (cursor, examined, returned, ready) in zip(query.parts, self._parts):
            part.cursor, part.examined, part.returned = cursor, examined, returned
            part._ready = deque(ready)
        query.last_access = self._last_access
        query.kept = None

    def unchanged(self) -> bool:
        """Whether every block the plan read is still there, at the version it read."""
        return all(not block.removed and block.version == version
                   for block, version in self.blocks.values())

    def noting(self, emit, emit_run):
        """
        ``emit`` and ``emit_run`` (a ``multi_take``'s visitors) that also
        note each block they are handed.
        """
        blocks = self.blocks

        def note(block) -> None:
            if id(block) not in blocks:
                blocks[id(block)] = (block, block.version)

        def noted_emit(block, record, *head):
            note(block)
            return emit(block, record, *head)

        def noted_run(block, records, *head):
            note(block)
            return emit_run(block, records, *head)

        return noted_emit, (None if emit_run is None else noted_run)


class PlannedReader:
    """
    A ``ContentReader``'s additions, remembered to be made by :meth:`open`:
    it holds no file.  ``size`` is the sum of the record sizes added.
    """

    __slots__ = ("_adds", "size")

    def __init__(self) -> None:
        self._adds: list = []
        self.size = 0

    def add_stored(self, block, record) -> None:
        self._adds.append((block, record, None))
        self.size += record.size

    def open_shared(self, block) -> None:
        """Nothing now: :meth:`open` opens it."""

    def add_run(self, block, records) -> None:
        self._adds.append((block, None, records))
        self.size += sum([record.size for record in records])

    def close(self) -> None:
        self._adds = []

    def open(self, run_in_thread=None, fds=None) -> ContentReader:
        """
        The ``ContentReader`` with the additions made, in order.

        :raises OSError: a data file cannot be opened (none is left open).
        """
        reader = ContentReader(run_in_thread, fds)
        try:
            for block, record, records in self._adds:
                if records is None:
                    reader.add_stored(block, record)
                else:
                    reader.open_shared(block)
                    reader.add_run(block, records)
        except OSError:
            reader.close()
            raise
        return reader
