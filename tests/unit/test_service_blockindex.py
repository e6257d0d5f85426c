"""
The service's block index loop (issue #17, ``service.py``): a pass writes
the indexes of the entries whose blocks changed, after flushing the block
files the new rows describe when the sync policy is ``always``.
"""

import os

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from reduct_twisted.config import Config
from reduct_twisted.service import StorageService
from reduct_twisted.storage.disk import blockindex
from reduct_twisted.storage.testing import write_record


def make(tmp_path, sync):
    config = Config(data_path=str(tmp_path / "data"), sync=sync, block_index_interval=12.5)
    svc = StorageService(config, Clock())
    calls = []

    def in_thread(f, *args):  # the disk pool, run at once and recorded
        calls.append((f.__name__, args))
        return succeed(f(*args))

    svc._in_thread = in_thread
    return svc, calls


def test_the_loop_is_a_timer_of_the_configured_interval(tmp_path):
    svc, _ = make(tmp_path, "none")
    timer = svc.getServiceNamed("block-index")
    assert timer.step == 12.5
    svc.engine.close()


def test_a_pass_flushes_the_described_files_then_writes_the_index(tmp_path):
    svc, calls = make(tmp_path, "always")
    engine = svc.engine
    engine.create_bucket("b", {"max_block_records": 2})
    for ts in range(1, 4):
        write_record(engine, "b", "e", ts, b"x%d" % ts)
    entry = os.path.join(engine.data_path, "b", "e")
    written = []
    original = blockindex.write_index
    blockindex.write_index = lambda *a: (written.append(list(calls)), original(*a))[1]
    try:
        svc._write_block_indexes()
    finally:
        blockindex.write_index = original
    assert [name for name, _ in calls] == ["fsync_paths"]
    flushed = calls[0][1][0]
    assert os.path.join(entry, "1.meta") in flushed and os.path.join(entry, "3.blk") in flushed
    assert written == [calls]  # the index was written after the flush
    assert sorted(blockindex.read_index(entry)) == [1, 3]
    calls.clear()
    assert svc._write_block_indexes() is None and calls == []  # nothing changed since
    engine.close()


def test_without_sync_a_pass_writes_at_once(tmp_path):
    svc, calls = make(tmp_path, "none")
    engine = svc.engine
    engine.create_bucket("b", {})
    write_record(engine, "b", "e", 1, b"x")
    svc._write_block_indexes()
    assert calls == []
    assert sorted(blockindex.read_index(os.path.join(engine.data_path, "b", "e"))) == [1]
    engine.close()


def test_a_failing_pass_is_logged_and_the_next_one_runs(tmp_path):
    svc, _ = make(tmp_path, "none")
    engine = svc.engine
    engine.create_bucket("b", {})
    write_record(engine, "b", "e", 1, b"x")
    engine.index_write = lambda pending: 1 / 0
    d = svc._write_block_indexes()
    failures = []
    d.addErrback(failures.append)
    assert failures == []  # logged, swallowed: the timer keeps going
    del engine.index_write
    svc._write_block_indexes()
    assert sorted(blockindex.read_index(os.path.join(engine.data_path, "b", "e"))) == [1]
    engine.close()
