"""
Pending leaves made by the leaf worker (storage/entry_log_offload.py), with
a stand-in worker whose answers the test gives by hand (the real job
function, ``leafjob.run_job``): the log on disk is exactly the one the
daemon makes alone, whatever happens while a job is out.
"""

import hashlib
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from reduct_twisted.storage import StorageEngine, entry_log_offload, leafjob
from reduct_twisted.storage.entry_log import BATCH
from reduct_twisted.storage.testing import write_record
from tests import rfc9162

CT = "application/octet-stream"


class Worker:
    """Keeps every job; ``answer()`` answers the oldest with the real job function."""

    def __init__(self):
        self.jobs = []

    def submit(self, payload):
        d = Deferred()
        self.jobs.append((d, payload))
        return d

    def answer(self, payload=None):
        d, job = self.jobs.pop(0)
        d.callback(leafjob.run_job(job) if payload is None else payload)


@pytest.fixture
def setup(tmp_path):
    engine = StorageEngine(str(tmp_path / "d"), Clock())
    engine.set_integrity("log")
    engine.open()
    engine.create_bucket("b", {"max_block_records": 64})
    worker = Worker()
    engine.set_leaf_worker(worker.submit)
    yield engine, worker
    engine.close()


def _data(ts):
    return b"content %d" % ts


def _write(engine, stamps, labels=None):
    for ts in stamps:
        write_record(engine, "b", "e", ts, _data(ts), CT, labels or {"k": str(ts)})


def _leaves(stamps):
    return [rfc9162.leaf(n, ts, len(_data(ts)), CT, {"k": str(ts)}, hashlib.sha256(_data(ts)).digest())
            for n, ts in enumerate(stamps, 1)]


def _log(engine):
    return engine._bucket("b").entry("e")._log


def _files(engine):
    log = _log(engine)
    return {name: Path(log.tree.path(name)).read_bytes() for name in ("leaves", "offsets", "hashes")}


def test_leaves_wait_for_the_answer_then_land(setup):
    engine, worker = setup
    stamps = range(1, BATCH + 1)
    _write(engine, stamps)
    log = _log(engine)
    assert len(worker.jobs) == 1 and log.tree.size == 0 and len(log.pending) == BATCH
    worker.answer()
    assert log.tree.size == BATCH and not log.pending and log.inflight is None
    assert id(log) not in engine._context.logs.waiting
    assert engine.log_head("b", "e") == (BATCH, rfc9162.MTH(_leaves(stamps)))


def test_the_next_job_follows_the_answer(setup):
    engine, worker = setup
    stamps = range(1, 2 * BATCH + 11)
    _write(engine, stamps)
    assert len(worker.jobs) == 1  # one job per entry at a time
    worker.answer()
    assert _log(engine).tree.size == BATCH and len(worker.jobs) == 1
    worker.answer()
    assert _log(engine).tree.size == 2 * BATCH + 10
    assert engine.log_head("b", "e") == (2 * BATCH + 10, rfc9162.MTH(_leaves(stamps)))


def test_a_read_of_the_log_while_a_job_is_out_appends_itself_and_drops_the_answer(setup):
    engine, worker = setup
    stamps = range(1, BATCH + 6)
    _write(engine, stamps)
    head = engine.log_head("b", "e")
    assert head == (BATCH + 5, rfc9162.MTH(_leaves(stamps)))
    files = _files(engine)
    worker.answer()
    assert _files(engine) == files and engine.log_head("b", "e") == head


@pytest.mark.parametrize("answer", ["gone", "error", "garbage"])
def test_a_failed_job_appends_the_leaves_at_once(setup, answer):
    engine, worker = setup
    _write(engine, range(1, BATCH + 1))
    d, _ = worker.jobs.pop(0)
    if answer == "gone":
        d.errback(RuntimeError("the leaf worker exited"))
    else:
        d.callback(leafjob.run_job(b"x") if answer == "error" else b"\xff")
    log = _log(engine)
    assert log.tree.size == BATCH and not log.pending
    assert any("leaf worker" in line for line in engine._context.logs.problems)
    assert engine.log_head("b", "e") == (BATCH, rfc9162.MTH(_leaves(range(1, BATCH + 1))))


def test_a_relabel_while_a_job_is_out_logs_the_labels_as_written(setup):
    engine, worker = setup
    stamps = range(1, BATCH + 1)
    _write(engine, stamps)
    engine.update_labels("b", "e", {1: {"k": "changed"}})
    worker.answer()
    assert engine.log_head("b", "e") == (BATCH, rfc9162.MTH(_leaves(stamps)))


def test_an_answer_after_close_is_dropped(tmp_path):
    engine = StorageEngine(str(tmp_path / "d"), Clock())
    engine.set_integrity("log")
    engine.open()
    engine.create_bucket("b", {})
    worker = Worker()
    engine.set_leaf_worker(worker.submit)
    stamps = range(1, BATCH + 1)
    _write(engine, stamps)
    engine.close()  # appends the pending leaves itself
    worker.answer()
    again = StorageEngine(str(tmp_path / "d"), Clock())
    again.set_integrity("log")
    again.open()
    try:
        assert again.log_head("b", "e") == (BATCH, rfc9162.MTH(_leaves(stamps)))
    finally:
        again.close()


def test_a_slow_worker_is_not_waited_for_beyond_max_behind(setup, monkeypatch):
    engine, worker = setup
    monkeypatch.setattr(entry_log_offload, "MAX_BEHIND", 2 * BATCH)
    _write(engine, range(1, 2 * BATCH + 1))
    log = _log(engine)
    assert len(worker.jobs) == 1 and log.tree.size == 2 * BATCH and not log.pending
    worker.answer()  # dropped: the entry appended them itself
    assert log.tree.size == 2 * BATCH
    assert engine.log_head("b", "e") == (2 * BATCH, rfc9162.MTH(_leaves(range(1, 2 * BATCH + 1))))
