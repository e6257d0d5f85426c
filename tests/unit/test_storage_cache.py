"""
The record-table cache is bounded by bytes (issue #12): the estimated
memory of the loaded tables (``Block.table_bytes``) stays within
``table_cache_size``; tables of blocks being written and the table in use
are kept; a scan holds one table beside the LRU.
"""

from twisted.internet.task import Clock

from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.block import LABEL_OVERHEAD, RECORD_OVERHEAD, record_bytes
from reduct_twisted.storage.testing import write_content, write_record

KIB = 1 << 10


def _engine(tmp_path, size, **settings):
    engine = StorageEngine(str(tmp_path), Clock(), table_cache_size=size)
    engine.open()
    engine.create_bucket("b", dict({"max_block_records": 2}, **settings))
    return engine


def _loaded(engine, entry="e"):
    return [b["id"] for b in engine.block_stats("b", entry) if b["loaded"]]


def _blocks(engine, entry="e"):
    return {b.block_id: b for b in engine._bucket("b").entry(entry).blocks}


def _cached_bytes(engine):
    return sum(b.table_bytes for b in engine._context.tables._items)


def _big(ts):
    # A record with 10 KiB of labels.
    return {"big": "x" * (10 * KIB), "n": str(ts)}


def test_estimate_is_records_times_overhead_plus_label_bytes(tmp_path):
    """A table's estimate: per record the overhead, its content type and,
    per label, an overhead plus its characters; the same after a reload."""
    engine = _engine(tmp_path, 1 << 20)
    write_record(engine, "b", "e", 1, b"a", content_type="text/plain", labels={"k": "vv"})
    write_record(engine, "b", "e", 2, b"b", content_type="t")
    block = _blocks(engine)[1]
    expected = 2 * RECORD_OVERHEAD + len("text/plain") + len("t") + LABEL_OVERHEAD + 3
    assert block.table_bytes == expected
    block.unload()
    assert block.table_bytes == 0
    block.load()
    assert block.table_bytes == expected == sum(map(record_bytes, block.table.values()))
    engine.close()


def test_cache_evicts_by_size_not_by_count(tmp_path):
    """With a 50 KiB budget, tables of 20 KiB (two records of 10 KiB labels)
    leave at most two loaded; tiny tables fit by the dozen."""
    engine = _engine(tmp_path, 50 * KIB)
    for ts in range(1, 21):
        write_record(engine, "b", "e", ts, b"x", labels=_big(ts))
    for ts in range(1, 21, 2):
        view = engine.read("b", "e", ts)
        assert view.record.labels["n"] == str(ts)
        loaded = _loaded(engine)
        assert ts in loaded and len(loaded) <= 2, loaded
        assert engine._context.tables.total == _cached_bytes(engine) <= 50 * KIB
    assert _loaded(engine) == [17, 19]
    # Small tables: 12 blocks of 2 label-less records (about 0.8 KiB each) all stay.
    for ts in range(100, 124):
        write_record(engine, "b", "small", ts, b"x")
    for ts in range(100, 124, 2):
        engine.read("b", "small", ts)
    assert len(_loaded(engine, "small")) == 12
    assert engine._context.tables.total <= 50 * KIB
    engine.close()


def test_size_follows_appends_relabels_and_removals(tmp_path):
    """A cached table's size is kept up to date as records are appended,
    relabelled and removed; growing a table evicts other idle tables."""
    engine = _engine(tmp_path, 50 * KIB, max_block_records=100)
    tables = engine._context.tables
    write_record(engine, "b", "other", 1, b"x", labels=_big(1))
    write_record(engine, "b", "e", 1, b"x", labels=_big(1))
    assert tables.total == _cached_bytes(engine)
    assert _loaded(engine, "other") == [1]
    write_record(engine, "b", "e", 2, b"x", labels=_big(2))
    write_record(engine, "b", "e", 3, b"x", labels=_big(3))
    block = _blocks(engine)[1]
    assert tables.total == _cached_bytes(engine) == block.table_bytes + _blocks(
        engine, "other")[1].table_bytes
    # Over 50 KiB once "e" holds four records of 10 KiB labels: "other" goes.
    engine.update_labels("b", "e", {1: {"more": "y" * (15 * KIB)}})
    assert _loaded(engine, "other") == []
    assert tables.total == block.table_bytes > 45 * KIB
    engine.update_labels("b", "e", {1: {"more": "", "big": ""}, 2: {"big": ""}})
    assert tables.total == block.table_bytes < 15 * KIB
    engine.remove_stamps("b", "e", [3])
    assert tables.total == block.table_bytes < 5 * KIB
    engine.close()


def test_tables_being_written_are_kept_and_count(tmp_path):
    """A block with a record in flight keeps its table loaded however far
    over the budget, and its bytes push idle tables out; once written it
    is an ordinary table again."""
    engine = _engine(tmp_path, 30 * KIB)
    for ts in (1, 2, 3, 4):
        write_record(engine, "b", "e", ts, b"x", labels=_big(ts))
    pinned = [engine.allocate("b", "w", ts, 1, "t", _big(ts)) for ts in (10, 11, 12)]
    # Three blocks of "w" (two with 20 KiB, one with 10 KiB) are over 30 KiB.
    assert _loaded(engine, "w") == [10, 12]
    assert _loaded(engine) == []
    engine.read("b", "e", 1)  # the table in use is kept even over the budget
    assert _loaded(engine) == [1] and _loaded(engine, "w") == [10, 12]
    for alloc in pinned:
        write_content(alloc, b"p")
        engine.commit(alloc)
    engine.read("b", "e", 3)
    assert _loaded(engine) == [3] and _loaded(engine, "w") == []
    assert engine._context.tables.total == _cached_bytes(engine) <= 30 * KIB
    engine.close()


def test_scan_holds_one_table_beside_the_lru(tmp_path):
    """A query over a cold entry loads one table at a time beside the LRU,
    whose tables (and byte total) it leaves alone."""
    engine = _engine(tmp_path, 25 * KIB)
    for ts in range(1, 11):
        write_record(engine, "b", "e", ts, b"x", labels=_big(ts))
    write_record(engine, "b", "hot", 1, b"x", labels=_big(1))
    engine.close()
    engine = StorageEngine(str(tmp_path), Clock(), table_cache_size=25 * KIB)
    engine.open()
    engine.read("b", "hot", 1)
    total = engine._context.tables.total
    qid = engine.create_query("b", "e")
    for ts in range(1, 11):
        assert engine.query_next("b", "e", qid).record.ts == ts
        assert len(_loaded(engine)) == 1
        assert _loaded(engine, "hot") == [1]
        assert engine._context.tables.total == total
    engine.close()


def test_aborted_record_leaves_the_size_as_before(tmp_path):
    """A record reserved and given up adds and then removes its bytes."""
    engine = _engine(tmp_path, 1 << 20, max_block_records=100)
    tables = engine._context.tables
    write_record(engine, "b", "e", 1, b"x", labels=_big(1))
    before = tables.total
    alloc = engine.allocate("b", "e", 2, 1, "t", _big(2))
    assert tables.total == before + record_bytes(alloc._record) > before + 10 * KIB
    engine.abort(alloc)
    assert tables.total == before == _blocks(engine)[1].table_bytes
    engine.close()
