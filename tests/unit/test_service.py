"""Tests for ``reduct_twisted.service.StorageService``: loops, discards, shutdown."""

import queue

import pytest
from twisted.application.internet import TimerService
from twisted.internet.task import Clock
from twisted.logger import LogLevel

from reduct_twisted.config import Config
from reduct_twisted.service import StorageService, remove_paths
from tests.unit.fakes import FakeEngine


class ThreadedClock(Clock):
    """
    A Clock that also accepts ``callFromThread``: the calls are queued and run
    by :meth:`run_from_threads`, in the test's thread.
    """

    def __init__(self):
        super().__init__()
        self.from_threads = queue.Queue()

    def callFromThread(self, f, *args, **kwargs):
        self.from_threads.put((f, args, kwargs))

    def run_from_threads(self):
        while not self.from_threads.empty():
            f, args, kwargs = self.from_threads.get()
            f(*args, **kwargs)






def make(tmp_path, clock=None, **config):
    clock = clock or ThreadedClock()
    config = Config(data_path=str(tmp_path / "data"), **config)
    svc = StorageService(config, clock, engine_factory=FakeEngine)
    return svc, clock


def advance(clock, seconds, step=1.0):
    for _ in range(int(seconds / step)):
        clock.advance(step)


def test_engine_opened_in_constructor(tmp_path):
    """The engine is created with data path, clock and discard, and opened before start."""
    svc, clock = make(tmp_path)
    assert svc.engine.calls == [("open", None)]
    assert svc.engine.data_path == str(tmp_path / "data")
    assert svc.engine.clock is clock
    assert svc.engine.discard == svc.discard
    assert not svc.running
    assert svc.name == "storage"


def test_open_failure_raises(tmp_path):
    """An engine that cannot open makes the constructor raise."""

    class Broken(FakeEngine):
        def open(self):
            raise OSError("read-only file system")

    with pytest.raises(OSError):
        StorageService(Config(), Clock(), engine_factory=Broken)


def test_children_are_two_timers(tmp_path):
    """The loops are TimerServices on the injected clock, at the configured steps."""
    svc, clock = make(tmp_path, quota_interval=7, query_expiry_interval=0.5)
    timers = {s.name: s for s in svc}
    assert set(timers) == {"quota", "query-expiry"}
    assert all(isinstance(t, TimerService) and t.clock is clock for t in timers.values())
    assert timers["quota"].step == 7
    assert timers["query-expiry"].step == 0.5


def test_loops_run_at_their_intervals(tmp_path):
    """Quota enforcement runs every 5 s and query expiry every 1 s, starting at once."""
    svc, clock = make(tmp_path)
    svc.startService()
    advance(clock, 10)
    assert svc.engine.times("quota") == [0, 5, 10]
    assert svc.engine.times("expiry") == list(range(11))
    svc.stopService()


def test_quota_failure_logged_and_loop_continues(tmp_path, log_events):
    """An exception in one quota step is logged and the next step still runs."""
    svc, clock = make(tmp_path)
    svc.engine.fail_quota_at = {5}
    svc.startService()
    advance(clock, 15)
    assert svc.engine.times("quota") == [0, 5, 10, 15]
    [event] = [e for e in log_events if "log_failure" in e]
    assert event["log_level"] == LogLevel.critical
    assert event["log_failure"].check(RuntimeError)
    assert "quota failed at 5" in str(event["log_failure"].value)
    svc.stopService()


def test_expiry_failure_logged_and_loop_continues(tmp_path, log_events):
    """An exception in one expiry step is logged and later steps still run."""
    svc, clock = make(tmp_path)
    svc.engine.fail_expiry_at = {0, 2}
    svc.startService()
    advance(clock, 4)
    assert svc.engine.times("expiry") == [0, 1, 2, 3, 4]
    failures = [e["log_failure"] for e in log_events if "log_failure" in e]
    assert [f.check(ValueError) for f in failures] == [ValueError, ValueError]
    svc.stopService()


def test_stop_leaves_no_delayed_calls(tmp_path):
    """stopService cancels both loops, stops the pool and closes the engine."""
    svc, clock = make(tmp_path)
    svc.startService()
    advance(clock, 3)
    assert clock.getDelayedCalls()
    done = []
    svc.stopService().addCallback(done.append)
    assert done == [None]
    assert clock.getDelayedCalls() == []
    assert svc.engine.calls[-1] == ("close", None)
    assert svc.threadpool.joined and not svc.threadpool.threads
    calls_after_stop = len(svc.engine.calls)
    advance(clock, 20)
    assert len(svc.engine.calls) == calls_after_stop


def test_threadpool_lifecycle(tmp_path):
    """The pool is sized from the config and runs only while the service does."""
    svc, _ = make(tmp_path, threadpool_size=3)
    assert svc.threadpool.max == 3
    assert not svc.threadpool.started
    svc.startService()
    assert svc.threadpool.started
    svc.stopService()
    assert not svc.threadpool.started


def test_discard_in_pool(tmp_path):
    """discard removes files and whole trees in a pool thread; gone paths are fine."""
    svc, clock = make(tmp_path)
    f = tmp_path / "block.blk"
    f.write_bytes(b"x")
    tree = tmp_path / "bucket" / "entry"
    tree.mkdir(parents=True)
    (tree / "1.blk").write_bytes(b"y")
    svc.startService()
    svc.discard([str(f), str(tmp_path / "bucket"), str(tmp_path / "absent")])
    svc.stopService()  # joins the pool after queued work
    assert not f.exists() and not (tmp_path / "bucket").exists()
    clock.run_from_threads()


def test_discard_errors_logged(tmp_path, log_events):
    """A path that cannot be removed is logged as an error, and the rest still go."""
    svc, clock = make(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    other = tmp_path / "other"
    other.write_bytes(b"")
    svc.startService()
    svc.discard([str(blocker / "child"), str(other)])
    svc.stopService()
    clock.run_from_threads()
    assert not other.exists()
    [event] = [e for e in log_events if e.get("log_level") == LogLevel.error]
    assert event["path"] == str(blocker / "child")
    assert event["reason"].startswith("NotADirectoryError")


def test_discard_queued_before_start(tmp_path):
    """Discards requested while the engine opens run once the pool starts."""
    svc, clock = make(tmp_path)
    f = tmp_path / "leftover"
    f.write_bytes(b"")
    svc.discard([str(f)])
    svc.startService()
    svc.stopService()
    assert not f.exists()


def test_discard_after_pool_stopped_is_synchronous(tmp_path):
    """A discard from engine.close() (after the pool stopped) runs at once."""
    svc, clock = make(tmp_path)
    f = tmp_path / "late"
    f.write_bytes(b"")
    svc.engine.on_close = lambda: svc.discard([str(f)])
    svc.startService()
    svc.stopService()
    assert not f.exists()


def test_discard_nothing(tmp_path):
    """An empty discard does nothing."""
    svc, clock = make(tmp_path)
    svc.discard([])
    assert clock.from_threads.empty()


def test_remove_paths(tmp_path):
    """remove_paths removes files, trees and symlinks (not their targets)."""
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_bytes(b"")
    link = tmp_path / "link"
    link.symlink_to(target)
    f = tmp_path / "f"
    f.write_bytes(b"")
    assert remove_paths([str(link), str(f), str(tmp_path / "none")]) == []
    assert not link.exists() and not f.exists()
    assert (target / "keep").exists()


def test_engine_gets_fsync_and_dirty_tracking_per_sync_policy():
    """sync=always tracks dirty paths for group commit; both policies flush at open/close."""
    from reduct_twisted.sync import fsync_paths

    svc = StorageService(Config(), Clock(), engine_factory=FakeEngine)
    assert svc.engine.sync is fsync_paths and svc.engine.track_dirty is True
    svc = StorageService(Config(sync="none"), Clock(), engine_factory=FakeEngine)
    assert svc.engine.sync is fsync_paths and svc.engine.track_dirty is False


def test_unclean_start_is_reported(log_events):
    """What recovery found is logged: a warning with the counts, an error per problem."""

    class Recovered(FakeEngine):
        def recovery_report(self):
            return {
                "unclean": True,
                "verified_records": 7,
                "dropped_records": 2,
                "quarantined_blocks": ["/d/.quarantine/b/e/1.meta"],
                "problems": ["block b/e/1 quarantined: bad line 3"],
            }

    StorageService(Config(), Clock(), engine_factory=Recovered)
    [warning] = [e for e in log_events if "did not stop cleanly" in e.get("log_format", "")]
    assert (warning["verified"], warning["dropped"], warning["quarantined"]) == (7, 2, 1)
    [error] = [e for e in log_events if e.get("problem")]
    assert error["problem"] == "block b/e/1 quarantined: bad line 3"


def test_names_left_in_place_are_warned_once_each(log_events):
    """Each line about names that are not ours (one per directory) is one warning."""

    class WithUnknown(FakeEngine):
        def recovery_report(self):
            return {"unclean": False, "problems": [],
                    "left_in_place": ["Left in place in b/e: 1 not written by reduct-twisted: "
                                      "'blocks.idx'"]}

    StorageService(Config(), Clock(), engine_factory=WithUnknown)
    [warning] = [e for e in log_events if e.get("line")]
    assert warning["log_level"] == LogLevel.warn
    assert warning["line"].startswith("Left in place in b/e: 1 ")


def test_engine_gets_the_table_cache_size_in_bytes():
    """table_cache_size (RS_TABLE_CACHE_SIZE, bytes) reaches the engine factory."""
    svc = StorageService(Config(), Clock(), engine_factory=FakeEngine)
    assert svc.engine.table_cache_size == 64 << 20
    svc = StorageService(Config(table_cache_size=8 << 20), Clock(), engine_factory=FakeEngine)
    assert svc.engine.table_cache_size == 8 << 20


def test_engine_gets_a_space_reserve():
    """The daemon's engine keeps a space reserve for removals on a full disk."""
    from reduct_twisted.storage.disk.reserve import DEFAULT_SIZE

    svc = StorageService(Config(), Clock(), engine_factory=FakeEngine)
    assert svc.engine.reserve_size == DEFAULT_SIZE > 0


def test_entry_log_steps_run_on_the_services_clock_while_it_runs(tmp_path):
    """Long entry-log work (storage/entry_log_catchup.py) runs in steps on the
    service's cooperator: only once started, on the service's clock, and not
    after the stop (the real engine is handed the cooperator)."""
    config = Config(data_path=str(tmp_path / "data"))
    clock = ThreadedClock()
    svc = StorageService(config, clock)
    assert svc.engine._context.logs.cooperate == svc.cooperator.cooperate
    steps = []

    def work():
        for i in range(3):
            steps.append(i)
            yield None

    svc.cooperator.cooperate(work())
    clock.advance(0)
    assert steps == [] and not clock.getDelayedCalls()
    svc.startService()
    for _ in range(3):
        clock.advance(0)
    assert steps == [0, 1, 2]
    svc.cooperator.cooperate(work())
    done = []
    svc.stopService().addCallback(done.append)
    assert done == [None] and not svc.cooperator.running
    clock.advance(0)
    assert steps == [0, 1, 2] and clock.getDelayedCalls() == []
