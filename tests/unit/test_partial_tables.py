"""
Records after a block's last go into a partial table (storage/block.py,
``TableCache.append``): a block whose table the cache dropped takes them
without reading its ``.meta``; anything else reads the rest first and keeps
the records already in the table (the same objects: their writers hold them).
Every case ends with the entry as written, read back record by record.
"""

import hashlib
import random

import pytest
from twisted.internet.task import Clock

from reduct_twisted.errors import Conflict
from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.block import Block
from reduct_twisted.storage.disk import blockfile
from reduct_twisted.storage.entry_log_lag import shed
from reduct_twisted.storage.testing import read_content, write_content, write_record
from tests import rfc9162

CT = "text/plain"


@pytest.fixture
def engine(tmp_path):
    engine = StorageEngine(str(tmp_path), Clock())
    engine.open()
    engine.create_bucket("b", {"max_block_records": 1000})
    yield engine
    engine.close()


@pytest.fixture
def reads(monkeypatch):
    """The ``.meta`` files read, in order."""
    seen = []
    real = blockfile.read_meta

    def counting(path, *args, **kwargs):
        seen.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(blockfile, "read_meta", counting)
    return seen


def _data(ts):
    return b"record %d" % ts


def _write(engine, stamps, entry="e"):
    for ts in stamps:
        write_record(engine, "b", entry, ts, _data(ts), content_type=CT, labels={"n": str(ts)})


def _block(engine, entry="e"):
    (block,) = engine._bucket("b").entry(entry).blocks
    return block


def _evict(engine, block):
    engine._context.tables.discard(block)
    assert block.table is None


def _check(engine, stamps, entry="e"):
    assert engine.list_records("b", entry, 0, 1 << 62) == [(ts, len(_data(ts))) for ts in stamps]
    for ts in stamps:
        view = engine.read("b", entry, ts)
        assert read_content(view) == _data(ts)
        assert view.record.labels == {"n": str(ts)}


def _run(engine, stamps, entry="e"):
    """A batch's run (engine.upload_run), flushed."""
    failed = []
    specs = [(ts, len(_data(ts)), CT, {"n": str(ts)}) for ts in stamps]
    for w, ts in zip(engine.upload_run("b", entry, specs, [None] * len(specs),
                                       [failed.append] * len(specs)), stamps):
        w.write(_data(ts))
        w.commit()
    engine.flush_writes()
    assert failed == []


def test_appends_to_a_dropped_table_do_not_read_it(engine, reads):
    _write(engine, [1, 2, 3])
    block = _block(engine)
    _evict(engine, block)
    _write(engine, [4, 5])  # one by one
    _run(engine, [6, 7, 8])  # a batch's run
    assert reads == [] and block.partial
    assert sorted(block.table) == [4, 5, 6, 7, 8]
    assert (block.record_count, block.first_ts, block.latest_ts) == (8, 1, 8)
    _check(engine, [1, 2, 3, 4, 5, 6, 7, 8])  # a read completes it
    assert reads == [block.meta_path] and not block.partial
    assert block.order == [1, 2, 3, 4, 5, 6, 7, 8]


def test_the_records_being_written_stay_the_same_objects(engine, reads):
    _write(engine, [1, 2])
    block = _block(engine)
    _evict(engine, block)
    alloc = engine.allocate("b", "e", 3, len(_data(3)), CT, {"n": "3"})
    assert block.partial
    engine.list_records("b", "e", 0, 10)  # the rest read while 3 is being written
    assert not block.partial and block.table[3] is alloc._record
    write_content(alloc, _data(3))
    engine.commit(alloc)
    _check(engine, [1, 2, 3])


def test_a_belated_or_duplicate_timestamp_reads_the_table(engine, reads):
    _write(engine, [10, 20, 30])
    block = _block(engine)
    _evict(engine, block)
    _write(engine, [40])
    with pytest.raises(Conflict):
        engine.allocate("b", "e", 20, 1, CT, {})  # an old record: found in the rest
    assert reads == [block.meta_path] and not block.partial
    _write(engine, [15])
    _check(engine, [10, 15, 20, 30, 40])


def test_an_aborted_append_keeps_the_tail_and_the_summary(engine):
    _write(engine, [1, 2, 3])
    block = _block(engine)
    tail, first, latest = block.tail, block.first_ts, block.latest_ts
    _evict(engine, block)
    alloc = engine.allocate("b", "e", 4, 100, CT, {})
    engine.abort(alloc)
    assert (block.tail, block.first_ts, block.latest_ts) == (tail, first, latest)
    assert block.record_count == 3
    _write(engine, [5])  # its bytes after record 3's, not over them
    _check(engine, [1, 2, 3, 5])


def test_a_scan_of_a_partial_table_in_the_cache_reads_the_rest(engine, reads):
    _write(engine, [1, 2])
    block = _block(engine)
    _evict(engine, block)
    _write(engine, [3])
    assert block in engine._context.tables._items
    engine._bucket("b").entry("e").scan_block(block)
    assert not block.partial and block.order == [1, 2, 3]
    assert engine._context.tables._sizes[block] == block.table_bytes  # counted whole
    _check(engine, [1, 2, 3])


def test_after_a_reopen_and_in_stats(tmp_path):
    engine = StorageEngine(str(tmp_path), Clock())
    engine.open()
    engine.create_bucket("b", {"max_block_records": 1000})
    _write(engine, [1, 2])
    block = _block(engine)
    _evict(engine, block)
    _write(engine, [3])
    (stats,) = engine.block_stats("b", "e")
    assert stats["loaded"] is False and stats["record_count"] == 3
    engine.close()
    again = StorageEngine(str(tmp_path), Clock())
    again.open()
    _check(again, [1, 2, 3])
    again.close()


def test_a_log_catches_up_from_a_partial_table_alone(tmp_path, reads):
    """The records a log lacks are all in the partial table: its .meta is not read."""
    engine = StorageEngine(str(tmp_path), Clock())
    engine.set_integrity("log")
    engine.open()
    engine.create_bucket("b", {"max_block_records": 1000})
    _write(engine, [1, 2, 3])
    log = engine._context.logs.of(engine._bucket("b").entry("e"))
    log.flush(now=True)
    block = _block(engine)
    _evict(engine, block)
    _write(engine, [4, 5])
    shed(log)  # the two leaves dropped: caught up from the blocks
    log.flush(now=True)
    assert reads == [] and block.partial
    _write(engine, [6])
    engine._context.tables.discard(block)
    _write(engine, [7])  # partial again, from number 6 on
    shed(log)
    log.flush(now=True)  # leaf 6 is in the .meta only: read
    assert reads == [block.meta_path]
    leaves = [rfc9162.leaf(n, ts, len(_data(ts)), CT, {"n": str(ts)}, hashlib.sha256(_data(ts)).digest())
              for n, ts in enumerate(range(1, 8), 1)]
    assert engine.log_head("b", "e") == (7, rfc9162.MTH(leaves))
    engine.close()


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_against_a_model(tmp_path, seed, monkeypatch):
    """
    Writes after the last record, belated and duplicate ones, aborts,
    removals, relabels, reads and reopens over a table cache that holds
    about one table: the entries always read back as a plain model says.
    """
    rnd = random.Random(seed)
    model = {e: {} for e in ("e0", "e1", "e2")}  # entry -> ts -> labels
    made, real = [], Block.open_for_append

    def counted(block):
        made.append(block.table is None)
        real(block)

    monkeypatch.setattr(Block, "open_for_append", counted)

    def opened():
        engine = StorageEngine(str(tmp_path), Clock(), table_cache_size=4 << 10)
        engine.set_integrity("log")
        engine.open()
        return engine

    engine = opened()
    engine.create_bucket("b", {"max_block_records": 8})
    for step in range(300):
        entry = rnd.choice(sorted(model))
        stamps = model[entry]
        op = rnd.random()
        last = max(stamps, default=0)
        if op < 0.45:
            ts = last + rnd.randint(1, 5)
            write_record(engine, "b", entry, ts, _data(ts), content_type=CT, labels={"n": str(ts)})
            stamps[ts] = {"n": str(ts)}
        elif op < 0.55:  # belated: a free timestamp below the last
            free = [t for t in range(1, last) if t not in stamps]
            if free:
                ts = rnd.choice(free)
                write_record(engine, "b", entry, ts, _data(ts), content_type=CT, labels={"n": str(ts)})
                stamps[ts] = {"n": str(ts)}
        elif op < 0.6 and stamps:
            with pytest.raises(Conflict):
                engine.allocate("b", entry, rnd.choice(sorted(stamps)), 1, CT, {})
        elif op < 0.7:  # an upload given up after some bytes
            alloc = engine.allocate("b", entry, last + 1, 50, CT, {})
            write_content(alloc, b"x" * rnd.randint(0, 49))
            engine.abort(alloc)
        elif op < 0.78 and stamps:
            ts = rnd.choice(sorted(stamps))
            removal = engine.remove_records("b", entry, start=ts, stop=ts + 1)
            assert removal.step() == 1
            del stamps[ts]
        elif op < 0.86 and stamps:
            ts = rnd.choice(sorted(stamps))
            assert engine.update_labels("b", entry, {ts: {"m": str(step)}}) == {}
            stamps[ts] = dict(stamps[ts], m=str(step))
        elif op < 0.9:
            engine.close()
            engine = opened()
        elif stamps:
            ts = rnd.choice(sorted(stamps))
            view = engine.read("b", entry, ts)
            assert read_content(view) == _data(ts) and view.record.labels == stamps[ts]
        if step % 25 == 24 or step == 299:
            for name, rows in model.items():
                if not rows:
                    continue
                assert engine.list_records("b", name, 0, 1 << 62) == [
                    (ts, len(_data(ts))) for ts in sorted(rows)]
                for ts, labels in rows.items():
                    view = engine.read("b", name, ts)
                    assert read_content(view) == _data(ts) and view.record.labels == labels
    engine.close()
    assert sum(made) >= 20  # partial tables were made, and written, read and merged above
