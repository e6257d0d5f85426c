"""
One daemon per data directory (``reduct_twisted/datadir.py``): the flock on
``<data>/.lock``, the stand-by wait, and where ``makeService`` and
``StorageService`` take and release it (issue #12).  No test sleeps: the
wait gets a fake ``sleep`` and ``monotonic``.
"""

import json
import os

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from reduct_twisted.config import Config
from reduct_twisted.datadir import DataDirLock, DataDirLocked, claim_data_dir
from reduct_twisted.service import StorageService
from reduct_twisted.storage.disk.layout import DataDirRefused
from reduct_twisted.tap import Options, makeService
from tests.unit.fakes import FakeEngine
from tests.unit.test_storage_layout import snapshot, upstream_like


class FakeTime:
    """``sleep`` advances ``monotonic``; ``on_sleep(n)`` runs at the n-th sleep."""

    def __init__(self, on_sleep=None):
        self.now = 100.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self.sleeps)


def _owner(data):
    with open(os.path.join(data, ".lock")) as f:
        return json.load(f)


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path):
    """A second claim fails at once with one line naming the lock and the
    holder's PID, and leaves the lock file as it was."""
    data = str(tmp_path / "data")
    first = claim_data_dir(data)
    assert first.held and _owner(data)["pid"] == os.getpid()
    before = snapshot(data)
    with pytest.raises(DataDirLocked) as info:
        claim_data_dir(data)
    message = str(info.value)
    assert "\n" not in message
    assert os.path.join(data, ".lock") in message and f"PID {os.getpid()}" in message
    assert snapshot(data) == before
    first.release()
    assert claim_data_dir(data).held


def test_a_foreign_directory_is_refused_before_the_lock(tmp_path):
    """Classified first, reading only: no .lock is created."""
    upstream_like(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(DataDirRefused):
        claim_data_dir(str(tmp_path))
    assert snapshot(tmp_path) == before
    assert not (tmp_path / ".lock").exists()


def test_standby_waits_then_takes_over(tmp_path):
    """With a timeout, one line says it waits; when the holder lets go the
    lock is taken and the new PID written."""
    data = str(tmp_path)
    holder = claim_data_dir(data)
    time = FakeTime(on_sleep=lambda n: n == 3 and holder.release())
    said = []
    lock = claim_data_dir(data, 5, say=said.append, sleep=time.sleep, monotonic=time.monotonic)
    assert lock.held and time.sleeps == 3
    assert len(said) == 1
    assert "waiting up to 5s" in said[0] and "passive stand-by" in said[0]
    assert f"PID {os.getpid()}" in said[0]


def test_standby_gives_up_after_the_timeout(tmp_path):
    holder = claim_data_dir(str(tmp_path))
    time = FakeTime()
    with pytest.raises(DataDirLocked, match="still in use after 2s"):
        claim_data_dir(str(tmp_path), 2, say=[].append, sleep=time.sleep,
                       monotonic=time.monotonic)
    assert 2 <= time.now - 100 < 2.2
    assert holder.held


def test_holder_without_owner_yet(tmp_path):
    """Locked but nothing written yet: the message says the PID is unknown."""
    holder = DataDirLock(str(tmp_path))
    assert holder.try_acquire()
    with pytest.raises(DataDirLocked, match="unknown PID"):
        claim_data_dir(str(tmp_path))


# -- wiring --------------------------------------------------------------------------


def _options(data, *extra):
    options = Options(environ={})
    options.parseOptions(["--data-path", str(data), "--listen", "tcp:0", *extra])
    return options


def test_make_service_stops_with_one_line_when_locked(tmp_path):
    """The real makeService takes the lock before the engine opens: a held
    lock stops it with one line before anything in the directory changes."""
    first = makeService(_options(tmp_path), MemoryReactorClock())
    storage = first.getServiceNamed("storage")
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as info:
        makeService(_options(tmp_path), MemoryReactorClock())
    message = info.value.code
    assert message.startswith("reduct: data directory ") and "\n" not in message
    assert f"{tmp_path / '.lock'} is held by PID {os.getpid()}" in message
    assert snapshot(tmp_path) == before
    storage.engine.close()
    storage._lock.release()


def test_make_service_refuses_a_foreign_directory(tmp_path):
    upstream_like(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as info:
        makeService(_options(tmp_path), MemoryReactorClock())
    assert info.value.code.startswith("reduct: ") and "not a reduct-twisted" in info.value.code
    assert snapshot(tmp_path) == before


def test_the_lock_is_released_after_the_engine_closes(tmp_path):
    """StorageService writes the owner at start and releases the lock at the
    very end of its stop, after the engine is closed."""
    lock = claim_data_dir(str(tmp_path))
    seen = []
    svc = StorageService(Config(data_path=str(tmp_path)), Clock(), engine_factory=FakeEngine,
                         lock=lock)
    svc.engine.on_close = lambda: seen.append(lock.held)
    os.truncate(tmp_path / ".lock", 0)
    lock._recorded_pid = None  # as after twistd's daemonising fork
    svc.startService()
    assert _owner(tmp_path)["pid"] == os.getpid()
    svc.stopService()
    assert seen == [True] and not lock.held
    assert claim_data_dir(str(tmp_path)).held
