"""
The storage core of reduct-twisted: buckets, entries, blocks, records,
queries and quotas on local disk.

Synchronous and deterministic: standard library and attrs only, time through
an injected clock, no reactor and no HTTP code (a unit test checks this).

The domain objects live here (``engine.py`` draws the on-disk layout and the
order of file operations); the ``when`` condition language of queries is in
``when/``, the disk format and crash safety (layout, block files, recovery,
durability, trash, space reserve) in ``disk/``.

The names below are imported on first use (PEP 562), so that a process
needing one module of the package (the leaf worker: ``leafjob.py``) does not
import the whole engine: that took the worker 0.19 s of CPU to start.
"""

import importlib

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

#: name -> the module that defines it.
_WHERE = {
    "StorageEngine": "engine",
    "SMALL_RECORD_MAX": "entry",
    "FULL": "records", "PENDING": "records", "Allocation": "records", "RecordView": "records",
    "U64_MAX": "settings", "BucketSettings": "settings", "parse_settings": "settings",
}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
