"""
Helpers for tests of code built on the storage core.

They follow the writing protocol the HTTP layer uses (the ``writer``
functions): small records are written in place into the engine's
descriptor, private segments are created, written and closed before
``commit``.  They claim nothing (``StorageEngine.claim``): ``commit``
checks a chunked record against a HARD quota.
"""

import os

from reduct_twisted.storage import writer
from reduct_twisted.storage.records import Allocation, RecordView

#: The content type upstream stores when a write has none.
DEFAULT_TYPE = "application/octet-stream"


def write_content(alloc: Allocation, data: bytes) -> None:
    """
    Write ``data`` for ``alloc`` as the HTTP layer does, checksum included
    (no commit).

    :param alloc: from ``StorageEngine.allocate``.
    :param data: the content; its length may differ from ``alloc.length``.
    """
    if alloc.private:
        fd = writer.open_segment(alloc)
        try:
            alloc.crc = writer.write_chunks(fd, [data], alloc.crc)
        finally:
            writer.close_segment(fd)
        alloc.written += len(data)
    else:
        writer.write_at(alloc, data)


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
    :return: the record's bytes, read as a response producer would.
    """
    fd = os.open(view.path, os.O_RDONLY)
    try:
        return os.pread(fd, view.record.size, view.record.offset)
    finally:
        os.close(fd)
