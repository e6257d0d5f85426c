# -*- test-case-name: tests.unit.test_readahead_multi,tests.unit.test_readahead_query -*-
"""
Read-ahead for batched reads (``GET /io/:b/read`` and ``GET
/b/:b/:e/batch?q=``): the next batch of a query taken while its client is
still busy with the one before, and handed out when it asks, if nothing it
read has changed.

A batched read is a round trip per batch (for the I/O API, the rule of spec
1.20 §1.9 closes a batch early when entries interleave), so the daemon sat
idle while the client parsed an answer.  ``StorageEngine.multi_read_ahead``
and ``query_read_ahead`` take the next batch then, through the same
``multi_take`` / ``query_take`` as a read, with two differences:

* the query's state is saved first (a :class:`MultiMark`: the merge's heap,
  the matches taken ahead and each part's cursor; a :class:`QueryMark`: the
  cursor), and the blocks whose records the batch takes are noted with their
  ``version``;
* contents go to a :class:`PlannedReader`, which opens no file: it only
  remembers what to add to a ``ContentReader`` later.  A plan left unread
  holds no descriptor (a block the FIFO quota removes frees its space at
  once) and nothing else but the batch's headers.

``multi_claim`` / ``query_claim`` hand the plan to the next read only if every
noted block is still there at the same version (no record of it written,
removed, relabelled or moved) and the read can use it (a GET, not a HEAD);
then its files are opened and its traffic counted.  Otherwise the query is
put back as it was before the plan, and the read takes its batch as if no
plan had been made.  Any other step of the query does the same first.  So a
client sees exactly what it would without read-ahead at the moment it asked,
or the state of the store right after its previous answer, which it could
have seen by asking sooner; never a record changed since.

Only plain queries are planned: not continuous, no ``when``, ``limit`` or
sampling (their state is not saved), no error, and for a merge at most
:data:`MAX_PARTS` entries (the snapshot copies each part's matches taken
ahead).
"""

from collections import deque

from reduct_twisted.storage.content import ContentReader

#: Entries a merge may have to be planned (the snapshot is O(entries)).
MAX_PARTS = 64


def _plain(query) -> bool:
    """Whether a per-entry ``Query`` keeps no state but its cursor."""
    return (query.condition is None and query.limit is None and query.error is None
            and query.filter.each_n is None and query.filter.each_s is None)


class _Mark:
    """
    What a plan read: ``blocks`` (``id(block)`` -> ``(block, version)``) and
    ``counted`` (``[records, bytes]``, the read traffic to count once the
    plan is used); subclasses save and restore the query's state.
    """

    def __init__(self, query) -> None:
        self.query = query
        self._last_access = query.last_access
        self.blocks: dict = {}
        self.counted = [0, 0]

    def restore(self) -> None:
        """Put the query back as it was when this mark was made (once at most)."""
        self.query.last_access = self._last_access
        self.query.kept = None

    def unchanged(self) -> bool:
        """Whether every block the plan read is still there, at the version it read."""
        return all(not block.removed and block.version == version
                   for block, version in self.blocks.values())

    def noting(self, emit, emit_run):
        """
        ``emit`` and ``emit_run`` (a take's visitors) that also note each
        block they are handed.
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

    def count(self, counted) -> None:
        """Add a take's ``[records, bytes]``."""
        self.counted[0] += counted[0]
        self.counted[1] += counted[1]


def _cursor(query) -> tuple:
    return query.cursor, query.examined, query.returned, deque(query._ready)


def _set_cursor(query, saved) -> None:
    query.cursor, query.examined, query.returned, query._ready = saved


class QueryMark(_Mark):
    """The state of a per-entry ``Query`` before a plan."""

    def __init__(self, query) -> None:
        super().__init__(query)
        self._saved = _cursor(query)

    @staticmethod
    def plannable(query) -> bool:
        """Whether ``query`` may be read ahead."""
        return not query.continuous and _plain(query)

    def restore(self) -> None:
        _set_cursor(self.query, self._saved)
        super().restore()


class MultiMark(_Mark):
    """The state of a ``MultiQuery`` before a plan."""

    def __init__(self, query) -> None:
        super().__init__(query)
        self._heap = list(query._heap)
        self._empty = list(query._empty)
        self._ahead = {i: deque(d) for i, d in query._ahead.items()}
        self._parts = [_cursor(part) for _, _, part in query.parts]

    @staticmethod
    def plannable(query) -> bool:
        """Whether multi-entry query ``query`` may be read ahead."""
        if query.continuous or query.error is not None or len(query.parts) > MAX_PARTS:
            return False
        return all(_plain(part) for _, _, part in query.parts)

    def restore(self) -> None:
        # A mark is restored once at most (the query then keeps nothing):
        # what it saved goes back as it is, without another copy.
        query = self.query
        query._heap, query._empty, query._ahead = self._heap, self._empty, self._ahead
        for (_, _, part), saved in zip(query.parts, self._parts):
            _set_cursor(part, saved)
        super().restore()


def read_ahead(query, mark, take) -> bool:
    """
    Run ``take(PlannedReader)`` with ``mark`` (a fresh mark of ``query``) set
    on it (a take that reaches the query's end then leaves it registered);
    keep what it returns on ``query`` (``query.kept``), or, if it returns
    None or raises, restore the query.  :return: whether a batch is kept.
    """
    query.mark = mark
    planned = PlannedReader()
    kept = None
    try:
        kept = take(planned)
    finally:
        query.mark = None
        if kept is None:
            mark.restore()
    if kept is None:
        return False
    query.kept = (mark, kept, planned)
    return True


def claim(query, now: float, use: bool, open_reader, count):
    """
    The batch kept on ``query`` (see :func:`read_ahead`), if ``use`` and it
    is still valid: ``(kept, ContentReader)`` from ``open_reader(planned)``,
    its traffic given to ``count([records, bytes])`` and the query's TTL
    refreshed; else None, the query restored.  The caller checked
    ``query.kept`` and the query's TTL.
    """
    mark, kept, planned = query.kept
    reader = None
    if use and mark.unchanged():
        try:
            reader = open_reader(planned)
        except OSError:
            reader = None
    if reader is None:
        mark.restore()
        return None
    query.kept = None
    query.last_access = now
    count(mark.counted)
    return kept, reader


class PlannedReader:
    """
    A ``ContentReader``'s additions, remembered to be made by :meth:`open`:
    it holds no file.
    """

    __slots__ = ("_adds",)

    def __init__(self) -> None:
        self._adds: list = []

    def add_stored(self, block, record) -> None:
        self._adds.append((block, record, None))

    def open_shared(self, block) -> None:
        """Nothing now: :meth:`open` opens it."""

    def add_run(self, block, records) -> None:
        self._adds.append((block, None, records))

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
