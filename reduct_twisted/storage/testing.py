"""
Helpers for tests of code built on the storage core.

They write through the same :class:`~reduct_twisted.storage.upload.RecordWriter`
the HTTP layer feeds, its disk work run at once (``run_now``): small
records in place into their shared segment, private segments created,
written and closed before ``commit``.  They claim nothing as they write:
``commit`` checks a chunked record against a HARD quota.
"""

from reduct_twisted.storage.content import ContentReader
from reduct_twisted.storage.records import Allocation, RecordView
from reduct_twisted.storage.upload import RecordWriter

#: The content type upstream stores when a write has none.
DEFAULT_TYPE = "application/octet-stream"


def write_content(alloc: Allocation, data: bytes) -> None:
    """
    Write ``data`` for ``alloc`` as the HTTP layer does, checksum included
    (no commit).

    :param alloc: from ``StorageEngine.allocate``.
    :param data: the content; its length may differ from ``alloc.length``.
    """
    upload = RecordWriter(None, alloc, claim=False)
    if upload.private:
        try:
            upload.write_chunks([data])
            upload.admit(len(data))
        finally:
            upload.close()
    else:
        upload.write(data)


def write_record(engine, bucket: str, entry: str, ts: int, data: bytes = b"",
                 content_type: str = DEFAULT_TYPE, labels=None, chunked: bool = False) -> None:
    """
    Allocate, write and commit one record.

    :param engine: a ``StorageEngine``.
    :param bucket: an existing bucket.
    :param entry: the entry name.
    :param ts: the timestamp.
    :param data: the content.
    :param content_type: the content type.
    :param labels: the labels (default none).
    :param chunked: announce no length (as a chunked upload).
    """
    length = None if chunked else len(data)
    alloc = engine.allocate(bucket, entry, ts, length, content_type, labels or {})
    write_content(alloc, data)
    engine.commit(alloc)


def read_content(view: RecordView) -> bytes:
    """
    :param view: from ``read`` or ``query_next``.
    :return: the record's bytes, read as a response producer would
        (through a ``ContentReader``).
    """
    reader = ContentReader.of((view,))
    try:
        return b"".join(data_file.read(offset, size) for data_file, offset, size in reader.ranges)
    finally:
        reader.close()
