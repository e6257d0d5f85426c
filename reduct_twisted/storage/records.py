"""
Small value types shared by the storage modules: records, views, allocations.
"""

import attr

#: The record's content is still arriving (spec §4.4); it lives only in memory.
STARTED = "started"
#: All bytes were received and the record's metadata line was appended.
FINISHED = "finished"
#: The record was given up (only ever seen on an :class:`Allocation`).
ABORTED = "aborted"
#: The record was removed (set on the in-memory record a query may still hold).
REMOVED = "removed"


class _Pending:
    """The type of :data:`PENDING`; a singleton with a readable repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


#: Returned by ``query_next`` when its scan budget ran out before a match.
PENDING = _Pending()


class _Full:
    """The type of :data:`FULL`; a singleton with a readable repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FULL"


#: Returned by a batch take (``Query.take``, ``query_take``) whose ``visit``
#: said the batch is full.
FULL = _Full()


@attr.s(slots=True, eq=False)
class Record:
    """
    One record as held in a block's record table.

    :ivar ts: timestamp in microseconds, unique within the entry.
    :ivar segment: file name (inside the entry directory) of the data file.
    :ivar offset: where the content starts in ``segment``.
    :ivar size: content length; ``0`` while a chunked upload is in flight.
    :ivar content_type: stored verbatim.
    :ivar labels: label name to value, in insertion order; records of a
        table may share the ``dict``: replace it, never change it in place.
    :ivar state: :data:`STARTED` or :data:`FINISHED` (:data:`REMOVED` once
        taken out of its block).
    :ivar crc: ``zlib.crc32`` of the content once finished; ``None`` if
        unknown (a record of a version-1 ``.meta`` file).
    :ivar zsize: ``None`` for a plain record; for a compressed one, the
        length of its zstd frame at ``offset`` of ``segment`` (a packed
        segment, ``disk/packed.py``); ``size`` stays the content length.
    :ivar number: the entry number (1, 2, 3 … in commit order, never
        reused; ``numbers.py``), or ``None`` (a record stored before entry
        numbers, until the backfill reaches it).
    :ivar digest: the 32 raw bytes of the SHA-256 of the content, or
        ``None`` (not known: stored before digests and not backfilled yet,
        or written with ``integrity=off``).
    """

    ts: int = attr.ib()
    segment: str = attr.ib()
    offset: int = attr.ib()
    size: int = attr.ib()
    content_type: str = attr.ib()
    labels: dict = attr.ib()
    state: str = attr.ib(default=FINISHED)
    crc = attr.ib(default=None)
    zsize = attr.ib(default=None)
    number = attr.ib(default=None)
    digest = attr.ib(default=None)

    @property
    def stored(self) -> int:
        """The bytes the content takes on disk (the frame of a compressed record)."""
        return self.size if self.zsize is None else self.zsize

    def copy(self) -> "Record":
        """:return: a copy with its own labels, which a reader may keep and change."""
        return Record(
            self.ts, self.segment, self.offset, self.size, self.content_type, dict(self.labels),
            self.state, self.crc, self.zsize, self.number, self.digest,
        )


@attr.s(frozen=True, slots=True)
class RecordView:
    """
    What a reader needs to send one finished record: the record itself
    (timestamp, size, content type, labels, offset) and where its content is.
    The content is read through the engine (``read_content``,
    ``open_reader``); ``path`` is for storage and its tests only.

    :ivar record: a :meth:`~Record.copy` of the stored record.
    :ivar path: absolute path of the data file holding the content (from
        ``record.offset`` on).
    :ivar last: ``True`` for the final record of a ``limit`` query.
    """

    record: Record = attr.ib()
    path: str = attr.ib()
    last: bool = attr.ib(default=False)


@attr.s(eq=False)
class Allocation:
    """
    A record reserved by ``StorageEngine.allocate`` and not yet committed.

    Storage's own: outside storage, a record is written through its
    :class:`~reduct_twisted.storage.upload.RecordWriter` (``engine.upload``),
    which holds the allocation.  Small records (known length up to
    ``SMALL_RECORD_MAX``) are written with ``writer.write_at`` into ``fd``,
    which belongs to the engine's descriptor cache and must not be closed.
    Large and chunked records have ``private`` set and ``fd`` ``None``:
    ``path`` is created with ``writer.open_segment``, filled with
    ``writer.write_chunks`` and closed with ``writer.close_segment`` before
    ``commit``.  A chunked record's bytes are claimed
    (``StorageEngine.claim``) before they are accepted, so a HARD quota
    holds while it is written.

    The record's own fields (timestamp, offset, content type, labels) live
    in the reserved :class:`Record`; ``ts`` and ``offset`` read through to it.

    :ivar bucket: bucket name.
    :ivar entry: entry name.
    :ivar length: declared content length, or ``None`` for a chunked upload.
    :ivar path: absolute path of the data file.
    :ivar private: whether ``path`` holds this record alone.
    :ivar fd: the shared segment's descriptor, or ``None``.
    :ivar written: bytes written (or admitted to be written) so far;
        maintained by the writer.
    :ivar crc: ``zlib.crc32`` of the bytes written so far, maintained by the
        writer in content order; stored with the record and checked after
        an unclean stop.  ``None`` for a record with a private segment
        whose SHA-256 is stored (it checks the content alone: ``integrity``
        log or digest).
    :ivar sha: the ``hashlib.sha256`` of the bytes written so far, kept
        beside ``crc`` (``None``: no digest is computed, ``integrity=off``).
    :ivar expected: the SHA-256 the client announced (32 bytes), checked
        at commit (a mismatch aborts the record), or ``None``.
    :ivar claimed: bytes of a chunked record counted against the quota so
        far (``StorageEngine.claim``); given back on commit or abort.
    :ivar admitted: bytes of a chunked record counted against the
        engine-wide storage cap so far (``usage.Usage.pending``).
    """

    bucket: str = attr.ib()
    entry: str = attr.ib()
    length = attr.ib()
    path: str = attr.ib()
    private: bool = attr.ib()
    fd = attr.ib()
    written: int = attr.ib(default=0)
    crc: int = attr.ib(default=0)
    sha = attr.ib(default=None)
    expected = attr.ib(default=None)
    claimed: int = attr.ib(default=0)
    admitted: int = attr.ib(default=0)
    # Engine-private links, so commit/abort need no lookups by name.
    _owner = attr.ib(default=None, repr=False)
    _block = attr.ib(default=None, repr=False)
    _record = attr.ib(default=None, repr=False)
    _slot = attr.ib(default=None, repr=False)
    _state: str = attr.ib(default=STARTED, repr=False)

    @property
    def ts(self) -> int:
        """The record's timestamp (µs)."""
        return self._record.ts

    @property
    def offset(self) -> int:
        """Where the content starts in ``path``."""
        return self._record.offset
