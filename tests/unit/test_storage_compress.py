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
from reduct_twisted.storage import PENDING, SMALL_RECORD_MAX, StorageEngine
from reduct_twisted.storage import compress
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
    # Block files (the entry's number counter aside).
    names = os.listdir(os.path.join(engine.data_path, "b", entry))
    return sorted(n for n in names if n != ".numbers")


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
        try:
            result = f(*args)
        except Exception:
            d.errback()
        else:
            d.callback(result)

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


# -- writes, label updates, removals into compressed blocks -----------------


def test_belated_and_appended_records_go_plain_into_a_compressed_block(engine):
    _fill(engine, count=6, block_records=10)
    engine.remove_records("b", "e", start=3, stop=4).step()  # a gap at 3
    assert _compress(engine) == (5, 1)
    write_record(engine, "b", "e", 3, b"belated")  # into the compressed block
    write_record(engine, "b", "e", 7, BIG)  # appended, large: a private segment
    write_record(engine, "b", "e", 8, b"small")
    assert [s["compressed"] for s in engine.block_stats("b", "e")] == [5]
    expected = {ts: _data(ts) for ts in (1, 2, 4, 5, 6)}
    expected.update({3: b"belated", 7: BIG, 8: b"small"})
    assert _all_bytes(engine) == expected
    # A second compression packs the plain ones too, into a new generation.
    assert _compress(engine) == (8, 1)
    assert _files(engine) == ["1-2.zst", "1.meta"]
    assert _all_bytes(engine) == expected


def test_label_updates_of_compressed_records(engine):
    _fill(engine, count=4)
    _compress(engine)
    assert engine.update_labels("b", "e", {2: {"n": "", "x": "y"}}) == {}
    assert engine.read("b", "e", 2).record.labels == {"x": "y"}
    assert _all_bytes(engine) == {ts: _data(ts) for ts in range(1, 5)}


def test_removing_compressed_records_and_blocks(engine):
    _fill(engine)
    _compress(engine)
    size = engine.list_buckets()[0]["size"]
    removal = engine.remove_records("b", "e", start=2, stop=6)  # 4 of block 1, 5 of block 5
    result = removal.step()
    while result is PENDING:
        result = removal.step()
    assert result == 4
    assert engine.list_buckets()[0]["size"] < size
    assert _all_bytes(engine) == {ts: _data(ts) for ts in [1] + list(range(6, 13))}
    engine.remove_records("b", "e", start=1, stop=2).step()  # block 1 empty: removed
    assert "1-1.zst" not in _files(engine) and "1.meta" not in _files(engine)
    engine.rename_entry("b", "e", "f")
    assert _all_bytes(engine, "f") == {ts: _data(ts) for ts in range(6, 13)}
    engine.remove_entry("b", "f")
    assert not os.path.exists(os.path.join(engine.data_path, "b", "f"))


def test_fifo_quota_evicts_compressed_blocks_whole(engine):
    engine.create_bucket("b", {"max_block_records": 4, "quota_type": "FIFO",
                               "quota_size": 10 << 20})
    _fill(engine)
    _compress(engine, stop=9)
    files = _files(engine)
    assert "1-1.zst" in files
    engine.update_bucket("b", {"quota_size": engine.list_buckets()[0]["size"] - 1})
    engine.enforce_quotas()
    assert "1-1.zst" not in _files(engine) and "1.meta" not in _files(engine)
    assert sorted(_all_bytes(engine)) == list(range(5, 13))


# -- reading ------------------------------------------------------------------


def test_one_reader_over_compressed_and_plain_records(engine):
    """The v1 batch read and replication read many records through one reader."""
    _fill(engine)
    _compress(engine, stop=5)
    views = [engine.read("b", "e", ts) for ts in range(1, 13)]
    reader = engine.open_reader(views)
    try:
        assert reader.size == sum(len(_data(ts)) for ts in range(1, 13))
        out = b""
        for data_file, offset, size in reader.ranges:
            done = 0
            while done < size:  # in small chunks, as the producers do
                chunk = data_file.read(offset + done, min(4096, size - done))
                assert chunk
                out += chunk
                done += len(chunk)
        assert out == b"".join(_data(ts) for ts in range(1, 13))
        kinds = {type(r[0]).__name__ for r in reader.ranges}
        assert kinds == {"DataFile", "CompressedRange"}
        assert all(r[0].sendable == (type(r[0]).__name__ == "DataFile") for r in reader.ranges)
    finally:
        reader.close()


def test_frame_reader_reads_any_offset(engine):
    _fill(engine, count=2)
    _compress(engine)
    reader = engine.open_reader([engine.read("b", "e", 2)])
    try:
        (frame, _, size), = reader.ranges
        assert frame.read(size - 10, 100) == BIG[-10:]
        assert frame.read(5, 7) == BIG[5:12]  # backwards: starts over
        assert frame.read(size, 10) == b""
        with pytest.raises(OSError):
            frame.send_to(0, 0, 1)
    finally:
        reader.close()


def test_a_corrupt_frame_is_an_oserror_not_a_crash(engine):
    _fill(engine, count=2)
    _compress(engine)
    path = os.path.join(engine.data_path, "b", "e", "1-1.zst")
    with open(path, "r+b") as f:
        f.seek(20)
        f.write(b"\xff" * 64)
    reader = engine.open_reader([engine.read("b", "e", 2)])
    try:
        with pytest.raises(OSError):
            frame = reader.ranges[0][0]
            while frame.read(0, 1 << 20):
                pass
    finally:
        reader.close()


# -- failures and crashes -----------------------------------------------------


def test_a_record_failing_its_checksum_stops_the_compression(engine):
    _fill(engine, count=4)
    with open(os.path.join(engine.data_path, "b", "e", "1.blk"), "r+b") as f:
        f.write(b"X")  # record 1's content no longer matches its CRC
    assert _compress(engine) == (0, 0)
    assert _files(engine) == ["1-2.blk", "1.blk", "1.meta"]
    assert engine.block_stats("b", "e")[0]["compressed"] == 0


def test_entry_renamed_or_removed_during_compression(engine, monkeypatch):
    monkeypatch.setattr(compress, "SLICE", 1)  # one record per slice
    _fill(engine, count=4)
    _fill(engine, count=4, entry="g")
    threads = engine.run_in_thread = _Threads()
    d = engine.compress_blocks("b", "e", 2**63)
    threads.run_one()
    threads.run_one()  # the first slice: the packed file exists
    engine.rename_entry("b", "e", "f")
    threads.run_all()
    assert _result(d) == (0, 0)
    assert _files(engine, "f") == ["1-2.blk", "1.blk", "1.meta"]
    d = engine.compress_blocks("b", "g", 2**63)
    threads.run_one()
    engine.remove_entry("b", "g")
    threads.run_all()
    assert _result(d) == (0, 0)
    assert _all_bytes(engine, "f") == {ts: _data(ts) for ts in range(1, 5)}


def _reopen(engine):
    again = StorageEngine(engine.data_path, Clock())  # the first one "crashed"
    again.open()
    return again


def test_crash_before_the_swap_leaves_the_old_block(engine, monkeypatch):
    monkeypatch.setattr(compress, "SLICE", 1)  # one record per slice
    _fill(engine, count=4)
    threads = engine.run_in_thread = _Threads()
    engine.compress_blocks("b", "e", 2**63)
    threads.run_one()
    threads.run_one()  # packed file half written, .meta not swapped
    assert "1-1.zst" in _files(engine)
    again = _reopen(engine)
    assert again.recovery_report()["unclean"]
    assert _files(again) == ["1-2.blk", "1.blk", "1.meta"]  # the orphan is trashed
    assert _all_bytes(again) == {ts: _data(ts) for ts in range(1, 5)}
    again.close()


def test_crash_after_the_swap_leaves_the_new_block(engine, monkeypatch):
    _fill(engine, count=4)
    from reduct_twisted.storage.disk.trash import Trash

    monkeypatch.setattr(Trash, "__call__", lambda self, paths, strict=False: None)
    _compress(engine)  # the old segments are never trashed: "killed" right after the swap
    assert _files(engine) == ["1-1.zst", "1-2.blk", "1.blk", "1.meta"]
    monkeypatch.undo()
    again = _reopen(engine)
    assert _files(again) == ["1-1.zst", "1.blk", "1.meta"]  # the shared segment is kept, empty
    assert os.path.getsize(os.path.join(again.data_path, "b", "e", "1.blk")) == 0
    assert again.recovery_report()["dropped_records"] == 0
    assert again.recovery_report()["verified_records"] == 4  # CRCs of decompressed content
    assert _all_bytes(again) == {ts: _data(ts) for ts in range(1, 5)}
    again.close()


def test_unclean_open_drops_a_damaged_compressed_record(engine):
    _fill(engine, count=4)
    _compress(engine)
    path = os.path.join(engine.data_path, "b", "e", "1-1.zst")
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) - 8)
        f.write(b"\x00" * 8)  # the last frame (record 4) is damaged
    again = _reopen(engine)
    report = again.recovery_report()
    assert report["dropped_records"] == 1 and "Dropped record 4" in report["problems"][0]
    assert _all_bytes(again) == {ts: _data(ts) for ts in range(1, 4)}
    again.close()


def test_meta_lines_of_compressed_records(engine):
    _fill(engine, count=2)
    _compress(engine)
    table, _ = blockfile.read_meta(os.path.join(engine.data_path, "b", "e", "1.meta"), 1)
    first, second = table[1], table[2]
    assert (first.segment, first.offset, first.size) == ("1-1.zst", 0, len(_data(1)))
    assert second.offset == first.zsize and second.size == len(BIG) and second.zsize < 100_000
    assert blockfile.classify("1-1.zst") == (1, 1, ".zst")
    assert blockfile.classify("1.zst") is None


# -- the response producer: decompression in the thread pool ----------------


class _Request:
    """A consumer that pauses the producer after every write (a full socket)."""

    method = b"GET"

    def __init__(self):
        self.data, self.producer = [], None

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.data.append(data)
        self.producer.pauseProducing()


def test_range_sender_decompresses_in_the_thread_and_keeps_order(engine):
    from reduct_twisted.http.producers import CHUNK, RangeSender

    _fill(engine, count=8)
    _compress(engine, stop=5)
    threads = engine.run_in_thread = _Threads()
    views = [engine.read("b", "e", ts) for ts in range(1, 9)]
    request = _Request()
    done = []
    RangeSender(request, engine.open_reader(views)).start().addCallback(done.append)
    while not done:
        if threads.calls:
            assert len(threads.calls) == 1  # one decompression at a time
            threads.run_one()  # the chunk is written when it arrives
        elif request.producer is not None:
            request.producer.resumeProducing()
            if threads.calls:
                request.producer.resumeProducing()  # starts no second decompression
    assert b"".join(request.data) == b"".join(_data(ts) for ts in range(1, 9))
    assert max(map(len, request.data)) <= CHUNK


def test_range_sender_stopped_during_a_decompression_closes_after_it(engine):
    from reduct_twisted.http.producers import RangeSender

    _fill(engine, count=2)
    _compress(engine)
    threads = engine.run_in_thread = _Threads()
    reader = engine.open_reader([engine.read("b", "e", 2)])
    request = _Request()
    done = []
    RangeSender(request, reader).start().addCallback(done.append)
    assert len(threads.calls) == 1 and request.data == []
    request.producer.stopProducing()  # the client went away
    assert done == [None] and reader.file_count == 1  # still open for the thread
    threads.run_one()
    assert reader.file_count == 0 and request.data == []
