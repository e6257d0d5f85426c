"""
Entry logs left behind their records (storage/entry_log_lag.py): with no
sync rounds, writes spread over more entries than ``MAX_WAITING`` make the
longest waiting log shed its pending leaves instead of appending them; it is
caught up from its blocks later (a read, a rewrite, a batch behind, the
sweep, after a crash), and every log ends up exactly the one written without
shedding: checked against leaves and roots computed here from RFC 9162.
"""

import hashlib

import pytest
from twisted.internet.task import Clock

from reduct_twisted.config import Config
from reduct_twisted.service import StorageService
from reduct_twisted.storage import StorageEngine, entry_log, entry_log_offload
from reduct_twisted.storage.entry_log import MAX_WAITING
from reduct_twisted.storage.entry_log_lag import LAG_SWEEPS, SWEEP_INTERVAL
from tests import rfc9162

CT = "text/plain"
ENTRIES = MAX_WAITING + 36


def _engine(path, track_dirty=False):
    engine = StorageEngine(str(path), Clock(), track_dirty=track_dirty)
    engine.set_integrity("log")
    engine.open()
    return engine


def _data(e, ts):
    return b"entry %d record %d" % (e, ts)


def _batch(engine, stamps, entries=range(ENTRIES), labels=lambda e, ts: {"k": str(ts)}):
    """One write run (a batch): every entry gets each of ``stamps``."""
    failed = []
    for e in entries:
        for ts in stamps:
            data = _data(e, ts)
            w = engine.upload("b", f"e{e}", ts, len(data), CT, labels(e, ts), failed=failed.append)
            w.write(data)
            w.commit()
    engine.flush_writes()
    assert failed == []


def _leaves(e, stamps, labels=lambda e, ts: {"k": str(ts)}):
    return [rfc9162.leaf(n, ts, len(_data(e, ts)), CT, labels(e, ts),
                         hashlib.sha256(_data(e, ts)).digest())
            for n, ts in enumerate(stamps, 1)]


def _check(engine, e, stamps, labels=lambda e, ts: {"k": str(ts)}):
    size, root = engine.log_head("b", f"e{e}")
    assert size == len(stamps)
    assert root == rfc9162.MTH(_leaves(e, stamps, labels))


def _log(engine, e):
    return engine._context.logs.of(engine._bucket("b").entry(f"e{e}"))


def _logged(engine, e):
    """Leaves on disk now, without flushing (0 for a log never opened)."""
    log = _log(engine, e)
    return 0 if log.tree is None else log.tree.size


@pytest.fixture
def engine(tmp_path):
    engine = _engine(tmp_path / "d")
    engine.create_bucket("b", {})
    yield engine
    engine.close()


def test_spread_writes_shed_the_oldest_and_every_log_is_whole(engine):
    book = engine._context.logs
    stamps = []
    for round_ in range(3):
        batch = [1000 + 10 * round_ + k for k in range(2)]
        _batch(engine, batch)
        stamps += batch
        assert len(book.waiting) <= MAX_WAITING
        if round_ == 0:
            assert len(book.behind) == ENTRIES - MAX_WAITING
    # every one was shed at some point; those not waiting hold no leaf in memory
    assert len(book.behind) == ENTRIES
    shed = [e for e in range(ENTRIES) if id(_log(engine, e)) not in book.waiting]
    assert len(shed) == ENTRIES - MAX_WAITING
    for e in range(ENTRIES):  # nothing appended: the leaves are in the blocks (and pending)
        assert _logged(engine, e) == 0
        pending = len(_log(engine, e).pending)
        assert pending == 0 if e in shed else pending in (2, 4, 6)
    for e in range(ENTRIES):  # a read catches each up
        _check(engine, e, stamps)
    assert not book.behind and not book.waiting


def test_with_sync_rounds_nothing_is_shed(tmp_path):
    engine = _engine(tmp_path / "d", track_dirty=True)
    engine.create_bucket("b", {})
    _batch(engine, [1, 2])
    book = engine._context.logs
    assert not book.behind and len(book.waiting) <= MAX_WAITING
    assert sum(_logged(engine, e) for e in range(ENTRIES)) == 2 * (ENTRIES - MAX_WAITING)
    engine.close()


def test_a_relabel_of_a_shed_record_logs_its_labels_as_written(engine):
    _batch(engine, [5, 6])
    book = engine._context.logs
    assert id(_log(engine, 0)) in book.behind  # the first entries waited longest
    errors = engine.update_labels("b", "e0", {5: {"k": "changed", "new": "x"}})
    assert errors == {}
    assert _logged(engine, 0) == 2  # caught up before its .meta was rewritten
    _check(engine, 0, [5, 6])


def test_a_log_a_batch_behind_catches_up_by_itself(engine, monkeypatch):
    monkeypatch.setattr(entry_log, "BATCH", 4)
    monkeypatch.setattr(entry_log_offload, "BATCH", 4)
    book = engine._context.logs
    _batch(engine, [1])
    assert id(_log(engine, 0)) in book.behind
    stamps = [1]
    for ts in range(2, 9):  # entry 0 alone, then with all the others (shed again)
        _batch(engine, [ts], entries=[0] if ts % 2 else range(ENTRIES))
        stamps.append(ts)
        log = _log(engine, 0)
        behind = 0 if log.behind_from is None else engine._bucket("b").entry("e0").numbers.next - log.behind_from
        assert behind <= 4
    assert _logged(engine, 0) >= 4  # appended without any read of the log
    _check(engine, 0, stamps)


def test_the_sweep_catches_up_one_log_a_step(engine):
    book = engine._context.logs
    tasks = []
    book.cooperate = tasks.append
    _batch(engine, [1, 2, 3])
    behind = len(book.behind)
    assert behind == ENTRIES - MAX_WAITING
    engine.catch_up_logs()  # records were written since the last sweep: none is due yet
    assert tasks == [] and len(book.behind) == behind
    engine.catch_up_logs()  # nothing written since: all of them
    engine.catch_up_logs()  # one sweep at a time
    assert len(tasks) == 1
    steps = tasks[0]
    next(steps)
    assert len(book.behind) == behind - 1
    for _ in steps:
        pass
    assert not book.behind and not book.sweeping
    for e in range(ENTRIES - MAX_WAITING):
        assert _logged(engine, e) == 3
    for e in range(ENTRIES):
        _check(engine, e, [1, 2, 3])


def test_writes_into_one_entry_keep_the_others_behind_until_their_time(engine):
    """Not idle: a sweep catches up nothing before LAG_SWEEPS while any entry is written."""
    book = engine._context.logs
    _batch(engine, [1])
    behind = dict(book.behind)
    for ts in range(2, 2 + LAG_SWEEPS - 1):
        _batch(engine, [ts], entries=[ENTRIES + 5])  # records written meanwhile
        engine.catch_up_logs()
        assert all(key in book.behind for key in behind)
    _batch(engine, [99], entries=[ENTRIES + 5])
    engine.catch_up_logs()
    assert not any(key in book.behind for key in behind)


def test_while_logs_are_shed_the_sweep_takes_those_behind_long_enough(engine):
    """Logs fall behind at different sweeps: each waits its own LAG_SWEEPS, oldest first."""
    book = engine._context.logs
    busy = iter(range(100, 10 ** 6))

    def sweep():  # writes spread over other entries go on between the sweeps
        _batch(engine, [next(busy)], entries=range(1000, 1001 + MAX_WAITING))
        engine.catch_up_logs()

    _batch(engine, [1])
    early = dict(book.behind)
    assert early
    for _ in range(LAG_SWEEPS - 2):
        sweep()
    fresh = range(200, 200 + ENTRIES)
    _batch(engine, [2], entries=fresh)  # others shed now
    mine = {id(_log(engine, e)) for e in fresh}
    late = [key for key in book.behind if key in mine]
    assert late and list(book.behind)[:len(early)] == list(early)
    for _ in range(2):
        sweep()
    assert not any(key in book.behind for key in early)  # their LAG_SWEEPS-th sweep
    assert all(key in book.behind for key in late)
    for _ in range(LAG_SWEEPS - 2):
        sweep()
    assert not any(key in book.behind for key in late)
    for e in range(ENTRIES):
        _check(engine, e, [1])
    for e in fresh:
        _check(engine, e, [2])


def test_close_catches_up_and_a_crash_rebuilds(tmp_path):
    for crash in (False, True):
        path = tmp_path / ("crash" if crash else "clean")
        engine = _engine(path)
        engine.create_bucket("b", {})
        _batch(engine, [7, 8])
        assert engine._context.logs.behind
        if not crash:
            engine.close()
        # (a crash: the engine is dropped as it is, its marker left behind)
        again = _engine(path)
        if not crash:
            assert all(_log(again, e).open().size == 2 for e in range(ENTRIES))  # on disk
        for e in range(ENTRIES):
            _check(again, e, [7, 8])
        again.close()


def test_the_service_sweeps_on_a_timer(tmp_path):
    svc = StorageService(Config(data_path=str(tmp_path / "data"), sync="none"), Clock())
    timer = svc.getServiceNamed("entry-logs")
    assert timer.step == SWEEP_INTERVAL
    calls = []
    svc.engine.catch_up_logs = lambda: calls.append(1)
    timer.call[0]()
    assert calls == [1]

    def broken():
        raise RuntimeError("boom")

    svc.engine.catch_up_logs = broken
    svc._catch_up_logs()  # logged, never out of the loop
    svc.engine.close()
