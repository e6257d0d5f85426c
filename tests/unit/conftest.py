"""Fixtures shared by the unit tests: fake time, an opened engine, log capture."""

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from reduct_twisted.storage import StorageEngine


@pytest.fixture
def clock():
    """Fake time for the engine and services."""
    return Clock()


@pytest.fixture
def engine(tmp_path, clock):
    """An opened storage engine on an empty data directory."""
    engine = StorageEngine(str(tmp_path / "data"), clock)
    engine.open()
    yield engine
    engine.close()


@pytest.fixture
def log_events():
    """Every log event emitted while the test runs."""
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def error_message(exc_type, fn, *args):
    """Call ``fn(*args)``, expect ``exc_type``, return its message."""
    with pytest.raises(exc_type) as info:
        fn(*args)
    return info.value.message
