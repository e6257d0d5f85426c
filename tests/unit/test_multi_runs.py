"""
Batched reads of a multi-entry query in runs: ``engine.multi_take(…,
visit_run=…)`` hands the matches one entry has ahead of every other head
as one run of its block (``storage/multi.py``), and ``IoBatchReader``
encodes such runs exactly as it encodes records one by one; the
``ContentReader`` behind them takes shared segments' descriptors from the
engine's cache.
"""

import pytest

from reduct_twisted.http.io_read import IoBatchReader
from reduct_twisted.http.batch_limits import BatchLimits
from reduct_twisted.storage import FULL, PENDING, SMALL_RECORD_MAX
from reduct_twisted.storage.multi import HELD
from reduct_twisted.storage.testing import write_record
from reduct_twisted.wire.v2 import encode_batch


@pytest.fixture
def engine(engine):
    """The shared engine with bucket ``m`` holding up to 100 records per block."""
    engine.create_bucket("m", {"max_block_records": 100})
    return engine


def _content(name, ts):
    return b"<%s%d>" % (name.encode(), ts)


def _fill(engine, entry, stamps, labels=lambda ts: {}, bucket="m"):
    for ts in stamps:
        write_record(engine, bucket, entry, ts, _content(entry, ts), labels=labels(ts))


class Runs:
    """``visit`` and ``visit_run`` together: what they see; full after ``size`` records."""

    def __init__(self, size=10**9):
        self.size, self.seen, self.runs = size, [], []

    def __call__(self, name, ts, size, content_type, labels):
        self.seen.append((name, ts, size, content_type, dict(labels)))
        return len(self.seen) % self.size == 0

    def run(self, name, records):
        self.runs.append((name, [record.ts for record in records]))
        for n, record in enumerate(records, 1):
            self.seen.append((name, record.ts, record.size, record.content_type,
                              dict(record.labels)))
            if len(self.seen) % self.size == 0:
                return n, True
        return len(records), False


def _merged(engine, bucket="m"):
    """The merge record by record (``multi_next``), as ``Runs.seen`` holds it."""
    qid = engine.create_multi_query(bucket, None)
    found = []
    while (result := engine.multi_next(bucket, qid)) is not None:
        if result is not PENDING:
            name, view = result
            record = view.record
            found.append((name, record.ts, record.size, record.content_type, record.labels))
    return found


def _take(engine, batch, reader=None, bucket="m", **kwargs):
    qid = engine.create_multi_query(bucket, None)
    results = []
    while (result := engine.multi_take(bucket, qid, batch, reader, visit_run=batch.run,
                                       **kwargs)) is not None:
        results.append(result)
    return qid, results


def test_runs_follow_the_merge_and_break_before_another_entrys_head(engine):
    _fill(engine, "a", range(1, 10), labels=lambda ts: {"t": str(ts % 2)})
    _fill(engine, "b", (5, 6, 7, 20))  # b's 5 comes after a's 5 (equal stamps: by name)
    _fill(engine, "c", (3, 10, 11))
    expected = _merged(engine)
    batch = Runs()
    _take(engine, batch)
    assert batch.seen == expected and len(expected) == 16
    # each part's record from the heap and what it has ahead before the next
    # head (a3 before c3, a5 before b5) go as one run
    assert batch.runs == [("a", [1, 2, 3]), ("c", [3]), ("a", [4, 5]), ("b", [5]), ("a", [6]),
                          ("b", [6]), ("a", [7]), ("b", [7]), ("a", [8, 9]), ("c", [10, 11]),
                          ("b", [20])]


def test_a_batch_full_part_way_through_a_run_goes_on_where_it_stopped(engine):
    _fill(engine, "a", range(1, 30))
    _fill(engine, "b", range(30, 40))
    expected = _merged(engine)
    for size in (1, 2, 5, 7, 28, 29, 30):
        batch = Runs(size)
        qid = engine.create_multi_query("m", None)
        stamps = []
        while True:
            result = engine.multi_take("m", qid, batch, visit_run=batch.run)
            stamps.append(len(batch.seen))
            if result is None:
                break
            assert result in (FULL, PENDING)
        assert batch.seen == expected, size
        assert any(len(run) > 1 for _, run in batch.runs) or size == 1


def test_runs_hold_only_finished_uncompressed_shared_records(engine):
    _fill(engine, "a", (1, 2, 3))
    write_record(engine, "m", "a", 4, b"L" * (SMALL_RECORD_MAX + 1))  # a private segment
    _fill(engine, "a", (5, 6, 7))
    alloc = engine.allocate("m", "a", 8, 3, "t", {})  # being written: skipped
    _fill(engine, "a", (9, 10))
    _fill(engine, "b", (100,))
    batch = Runs()
    reader = engine.open_reader()
    try:
        _take(engine, batch, reader)
        assert [fields[1] for fields in batch.seen] == [1, 2, 3, 4, 5, 6, 7, 9, 10, 100]
        assert batch.runs == [("a", [1, 2, 3]), ("a", [5, 6, 7, 9, 10]), ("b", [100])]  # 4 alone
        # the contents, in the order of the headers
        data = b"".join(data_file.read(offset, size) for data_file, offset, size in reader.ranges)
        assert data == b"".join(b"L" * (SMALL_RECORD_MAX + 1) if ts == 4
                                else _content(name, ts) for name, ts, *_ in batch.seen)
    finally:
        reader.close()
        engine.abort(alloc)


def test_a_refused_entry_holds_the_run_back(engine):
    _fill(engine, "a", (1, 2, 3, 4))
    _fill(engine, "b", (10,))
    qid = engine.create_multi_query("m", None)
    calls = []

    def accept(name):
        calls.append(name)
        return len(calls) == 1  # the first record only

    batch = Runs()
    assert engine.multi_take("m", qid, batch, accept=accept, visit_run=batch.run) is HELD
    assert [fields[1] for fields in batch.seen] == [1]
    assert engine.multi_take("m", qid, batch, visit_run=batch.run) is None
    assert [fields[1] for fields in batch.seen] == [1, 2, 3, 4, 10]


def test_selected_labels_go_record_by_record(engine):
    _fill(engine, "a", (1, 2, 3), labels=lambda ts: {"keep": str(ts), "drop": "x"})
    qid = engine.create_multi_query("m", None, when={"#select_labels": ["keep"]})
    batch = Runs()
    while engine.multi_take("m", qid, batch, visit_run=batch.run) is not None:
        pass
    assert batch.runs == []
    assert [fields[4] for fields in batch.seen] == [{"keep": "1"}, {"keep": "2"}, {"keep": "3"}]


@pytest.mark.parametrize("limits", [BatchLimits(), BatchLimits(max_records=7),
                                    BatchLimits(max_size=40)])
def test_io_reader_headers_are_those_of_the_records_one_by_one(engine, limits):
    _fill(engine, "a", range(1, 40), labels=lambda ts: {"k": str(ts // 10)} if ts % 7 else {})
    _fill(engine, "b", range(20, 30), labels=lambda ts: {"z": "1,2"})
    _fill(engine, "c", range(35, 60))
    expected = [fields for fields in _merged(engine)]
    qid = engine.create_multi_query("m", None)
    seen = []
    while True:
        reader = IoBatchReader(engine, "m", qid, head=False, limits=limits)
        while (result := reader.step()) is PENDING:
            pass
        assert result is reader
        try:
            if not reader.headers:
                break
            # one batch: the records it holds, encoded one by one
            batch = expected[len(seen):len(seen) + len(reader.headers)]
            assert reader.encoder.headers() + reader.headers == encode_batch(batch)
            data = b"".join(f.read(offset, size) for f, offset, size in reader._reader.ranges)
            assert data == b"".join(_content(name, ts) for name, ts, *_ in batch)
            seen.extend(batch)
        finally:
            reader.close()
        if reader.last:
            break
    assert seen == expected


def test_a_reader_dups_the_cached_descriptor_of_a_shared_segment(engine, monkeypatch):
    """A shared segment's descriptor comes from the engine's cache (a dup, no
    open of the path; the cache's own stays open after the reader closes);
    a private segment, or a cache that cannot open the file, is opened."""
    import os

    _fill(engine, "a", (1, 2, 3))
    write_record(engine, "m", "a", 4, b"L" * (SMALL_RECORD_MAX + 1))  # a private segment
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a: opened.append(path) or real_open(path, *a))
    engine.read_content(engine.read("m", "a", 1))  # the shared segment is cached now
    opened.clear()
    batch = Runs()
    reader = engine.open_reader()
    _take(engine, batch, reader)
    assert [os.path.basename(path) for path in opened] == ["1-4.blk"]
    data = b"".join(f.read(offset, size) for f, offset, size in reader.ranges)
    reader.close()
    assert data == b"<a1><a2><a3>" + b"L" * (SMALL_RECORD_MAX + 1)
    assert engine.read_content(engine.read("m", "a", 2)) == b"<a2>"  # the cached one still works
    # the cache cannot open it (say, a read-only file system): opened here
    def refuse(path, create=True):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(engine._context.fds, "acquire", refuse)
    opened.clear()
    reader = engine.open_reader()
    _take(engine, Runs(), reader)
    assert sorted(os.path.basename(path) for path in opened) == ["1-4.blk", "1.blk"]
    reader.close()
