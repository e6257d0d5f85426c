"""
Block compression (storage/compress.py, disk/packed.py; spec 1.20 §7.4
``compress``): ``engine.compress_blocks`` and ``engine.entry_names``, the
packed segment format, and every read path over compressed blocks.
"""

import os
import random

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from reduct_twisted.errors import NotFound
from reduct_twisted.storage import SMALL_RECORD_MAX, StorageEngine
from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.testing import read_content, write_record

BIG = bytes(random.Random(7).getrandbits(8) for _ in range(1000)) * (SMALL_RECORD_MAX // 900)


def _data(ts: int) -> bytes:
    return BIG if ts % 5 == 2 else (b"record %d " % ts) * (ts % 7 + 1)


def _fill(engine, count=12, block_records=4, entry="e", bucket="b"):
    if not engine.has_bucket(bucket):
        engine.create_bucket(bucket, {"max_block_records": block_records})
    for ts in range(1, count + 1):
        write_record(engine, bucket, entry, ts, _data(ts), labels={"n": str(ts)})


def _result(deferred):
    results = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def _compress(engine, stop=2**63, entry="e", dry_run=False, bucket="b"):
    return _result(engine.compress_blocks(bucket, entry, stop, dry_run=dry_run))


def _files(engine, entry="e"):
    return sorted(os.listdir(os.path.join(engine.data_path, "b", entry)))


def _all_bytes(engine, entry="e", bucket="b"):
    """Every record through the single read (whole and streamed) and a query."""
    qid = engine.create_query(bucket, entry)
    found = {}
    while True:
        view = engine.query_next(bucket, entry, qid)
        if view is None:
            break
        data = read_content(view)
        assert data == engine.read_content(engine.read(bucket, entry, view.record.ts))
        found[view.record.ts] = data
    return found


def test_compress_blocks_compresses_old_finished_blocks(engine):
    _fill(engine)
    size_before = engine.list_buckets()[0]["size"]
    assert _compress(engine, stop=9) == (8, 2)  # blocks 1-4 and 5-8; 9-12 is newer
    stats = engine.block_stats("b", "e")
    assert [s["compressed"] for s in stats] == [4, 4, 0]
    assert _files(engine) == ["1-1.zst", "1.meta", "5-1.zst", "5.meta", "9-12.blk", "9.blk",
                              "9.meta"]
    assert engine.list_buckets()[0]["size"] < size_before
    assert _all_bytes(engine) == {ts: _data(ts) for ts in range(1, 13)}


def test_compress_twice_does_nothing_more(engine):
    _fill(engine)
    assert _compress(engine) == (12, 3)
    assert _compress(engine) == (0, 0)
    assert _all_bytes(engine) == {ts: _data(ts) for ts in range(1, 13)}


def test_dry_run_counts_and_changes_nothing(engine):
    _fill(engine)
    files = _files(engine)
    assert _compress(engine, stop=5, dry_run=True) == (4, 1)
    assert _files(engine) == files
    assert [s["compressed"] for s in engine.block_stats("b", "e")] == [0, 0, 0]


def test_stop_is_exclusive_on_the_newest_record(engine):
    _fill(engine)
    assert _compress(engine, stop=4) == (0, 0)
    assert _compress(engine, stop=5) == (4, 1)


def test_block_being_written_is_skipped(engine):
    _fill(engine, count=3)
    alloc = engine.allocate("b", "e", 4, 3, "t/x", {})
    assert _compress(engine) == (0, 0)
    engine.abort(alloc)
    assert _compress(engine) == (3, 1)


def test_missing_bucket_or_entry_fails_the_deferred(engine):
    _fill(engine, count=2)
    with pytest.raises(NotFound):
        _compress(engine, bucket="nope")
    with pytest.raises(NotFound):
        _compress(engine, entry="nope")


def test_entry_names_lists_entries_without_attachments(engine):
    _fill(engine, count=1, entry="b-entry")
    write_record(engine, "b", "a/x", 1, b"x")
    write_record(engine, "b", "a/x/$meta", 1, b"m", labels={"key": "k"})
    assert engine.entry_names("b") == ["a", "a/x", "b-entry"]
    with pytest.raises(NotFound):
        engine.entry_names("nope")


def test_compressed_blocks_survive_a_restart(tmp_path):
    engine = StorageEngine(str(tmp_path / "d"), Clock())
    engine.open()
    _fill(engine)
    _compress(engine)
    size = engine.list_buckets()[0]["size"]
    engine.close()
    again = StorageEngine(str(tmp_path / "d"), Clock())
    again.open()
    assert again.recovery_report()["problems"] == []
    assert again.list_buckets()[0]["size"] == size
    assert _all_bytes(again) == {ts: _data(ts) for ts in range(1, 13)}
    with open(os.path.join(again.data_path, "b", "e", "1.meta"), "rb") as f:
        header = f.readline()
    assert b'"version":3' in header
    again.close()


class _Threads:
    """A ``run_in_thread`` whose calls wait until the test runs them."""

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        d = Deferred()
        self.calls.append((d, f, args))
        return d

    def run_one(self):
        d, f, args = self.calls.pop(0)
        d.callback(f(*args))

    def run_all(self):
        while self.calls:
            self.run_one()


def test_a_change_during_compression_leaves_the_block_as_it_was(engine):
    _fill(engine, count=4)
    threads = engine.run_in_thread = _Threads()
    d = engine.compress_blocks("b", "e", 2**63)
    threads.run_one()  # the .meta read
    engine.update_labels("b", "e", {2: {"n": "changed"}})
    threads.run_all()
    assert _result(d) == (0, 0)
    assert _files(engine) == ["1-2.blk", "1.blk", "1.meta"]
    assert engine.read("b", "e", 2).record.labels == {"n": "changed"}
    assert _all_bytes(engine) == {ts: _data(ts) for ts in range(1, 5)}
