# -*- test-case-name: tests.integration.test_io_read -*-
"""
``GET|HEAD /api/v1/io/:bucket/read`` (spec 1.20 §1.5): the next batch of a
multi-entry query, in the batch protocol v2.

:class:`IoBatchReader` is the v1 ``BatchReader`` (the same limits,
``#batch_*`` directives, timeouts and streaming of contents from the block
files through a storage ``ContentReader``) over the merged stream of
``storage/multi.py``, with the v2 headers built record by record by a
``wire.v2.BatchEncoder``.  §1.9 rule 2: a batch is closed before a record
whose entry already occurs in it but is not the entry of the record just
before, so no batch interleaves entries; its body, in (entry index,
timestamp) order, is then also in timestamp order, which every client
generation reads right.

Such batches are small and each costs a round trip, so after a GET that does
not end a (plain) query, :func:`read_ahead` takes the next batch while the
client reads this one (``batch_ahead.py``); the next GET gets it if nothing
it read has changed meanwhile (``storage/readahead.py``), and otherwise the
batch it would have got without read-ahead.
"""


from functools import partial

from twisted.python.failure import Failure

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.http.batch import BatchReader
from reduct_twisted.http.batch_ahead import adopt, serve_batch, take_ahead
from reduct_twisted.wire import parse_u64
from reduct_twisted.wire.v2 import BatchEncoder

QUERY_ID = b"x-reduct-query-id"


def query_id(request) -> int:
    """The ``x-reduct-query-id`` of a read (§1.5 texts)."""
    values = request.requestHeaders.getRawHeaders(QUERY_ID)
    if not values:
        raise UnprocessableEntity("x-reduct-query-id header is required for batched reads")
    try:
        text = values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise UnprocessableEntity("Query id header must be valid UTF-8") from None
    qid = parse_u64(text.strip())
    if qid is None:
        raise UnprocessableEntity("Invalid query id")
    return qid


class IoBatchReader(BatchReader):
    """
    The next records of multi-entry query ``qid`` (see the module docstring);
    driven like ``BatchReader``.
    """

    def __init__(self, engine, bucket: str, qid: int, head: bool, limits,
                 continuous: bool = False, reader=None) -> None:
        super().__init__(engine, bucket, None, qid, head, limits, reader)
        self.encoder = BatchEncoder()
        self.continuous = continuous
        self._last_entry = None

    def _accept(self, entry: str) -> bool:
        return entry == self._last_entry or self.encoder.index_of(entry) is None

    def _take(self):
        return self.engine.multi_take(self.bucket, self.qid, self._visit_entry, self._reader,
                                      accept=self._accept, visit_run=self._visit_entry_run)

    def _ended(self) -> bool:
        return self.engine.multi_options(self.bucket, self.qid) is None

    def _visit_entry(self, entry: str, ts: int, size: int, content_type: str, labels) -> bool:
        name, value = self.encoder.add(entry, ts, size, content_type, labels)
        self._last_entry = entry
        return self._taken(name, value, size)

    def _visit_entry_run(self, entry: str, records) -> tuple:
        """:meth:`_visit_entry` for a run of one entry's stored records: ``(taken, stop)``."""
        self._last_entry = entry
        return self._take_run(records, partial(self.encoder.add_record, entry))

    def answer(self, result, request):
        if self.continuous:
            self.last = False  # a continuous merge never ends (§1.5)
        if self.headers and not isinstance(result, Failure):
            for name, value in self.encoder.headers():
                request.setHeader(name, value)
        return super().answer(result, request)


def io_read(api, request, bucket):
    """``GET|HEAD /io/:bucket/read`` (``batch_ahead.serve_batch``)."""
    qid = query_id(request)
    head = request.method == b"HEAD"
    engine = api.engine
    reader = adopt(engine.multi_claim(bucket, qid, use=not head))
    if reader is not None:
        return serve_batch(api, request, reader, True, False,
                           partial(read_ahead, engine, bucket, qid, reader.limits))
    options = engine.multi_options(bucket, qid)
    limits, metadata_only, continuous = api.batch_limits, False, False
    if options is not None:
        limits = limits.overridden(options["io"])
        metadata_only, continuous = options["only_metadata"], options["continuous"]
    reader = IoBatchReader(engine, bucket, qid, head or metadata_only, limits, continuous)
    ahead = None if head or metadata_only or continuous else partial(
        read_ahead, engine, bucket, qid, limits)
    return serve_batch(api, request, reader, False, metadata_only and not head, ahead)


def read_ahead(engine, bucket: str, qid: int, limits) -> bool:
    """
    Take the next batch of query ``qid`` for its next GET, if it fits in one
    step (``engine.multi_read_ahead``): :return: whether one is kept.
    """
    return engine.multi_read_ahead(bucket, qid, lambda planned: take_ahead(
        IoBatchReader(engine, bucket, qid, False, limits, reader=planned)))
