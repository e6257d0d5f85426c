"""
The storage core of reduct-twisted: buckets, entries, blocks, records,
queries and quotas on local disk.

Synchronous and deterministic: standard library and attrs only, time through
an injected clock, no reactor and no HTTP code (a unit test checks this).

The domain objects live here (``engine.py`` draws the on-disk layout and the
order of file operations); the ``when`` condition language of queries is in
``when/``, the disk format and crash safety (layout, block files, recovery,
durability, trash, space reserve) in ``disk/``.
"""

from reduct_twisted.storage.engine import StorageEngine
from reduct_twisted.storage.entry import SMALL_RECORD_MAX
from reduct_twisted.storage.records import FULL, PENDING, Allocation, RecordView
from reduct_twisted.storage.settings import U64_MAX, BucketSettings, parse_settings

__all__ = [
    "SMALL_RECORD_MAX",
    "FULL",
    "PENDING",
    "U64_MAX",
    "Allocation",
    "BucketSettings",
    "RecordView",
    "StorageEngine",
    "parse_settings",
]
