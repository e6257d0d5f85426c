"""
Lifecycle runs (``lifecycle/policy.py``, ``actions.py``; spec 1.20 §7.4),
driven by a ``task.Clock`` over a real storage engine: the first run one
interval after start, PUT restarts the timer, ``disabled`` skips,
``dry_run`` counts, the window, entry patterns and ``when``, the slices of
a large removal, errors, the bounded windows with system events, compress
through ``engine.compress_blocks``, and the event of each run.
"""

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from reduct_twisted.interfaces import ISystemEvents
from reduct_twisted.lifecycle.manager import LifecycleManager
from reduct_twisted.lifecycle.settings import parse_settings
from reduct_twisted.storage.testing import write_record

HOUR = 3600
US = 1_000_000
#: The fake time of every test: far enough from 0 for ten days of records.
NOW = 100 * 24 * HOUR


@implementer(ISystemEvents)
class RecordingEvents:
    """An ``ISystemEvents`` that keeps what it is given."""

    def __init__(self, enabled=False):
        self.enabled = enabled
        self.events = []

    def emit(self, stream, name, timestamp, status, message, payload):
        self.events.append((stream, name, timestamp, status, message, payload))

    def last_access(self, token_name):
        return None

    def record_call(self, token, method, path, status, message, client_ip, started, duration):
        """Not used by lifecycles."""

    def replication_pass(self, name, status, message, records, size, pending):
        """Not used by lifecycles."""


def test_the_recording_fake_is_an_isystemevents():
    assert verifyObject(ISystemEvents, RecordingEvents())


@pytest.fixture
def events():
    return RecordingEvents()


@pytest.fixture
def manager(engine, clock, tmp_path, events):
    clock.advance(NOW)
    engine.create_bucket("b", None)
    made = LifecycleManager(engine, clock, str(tmp_path / "data"), events)
    made.startService()
    yield made
    made.stopService()


def hours_ago(hours: float) -> int:
    return int((NOW - hours * HOUR) * US)


def stamps(engine, entry, bucket="b"):
    return [ts for ts, _ in engine.list_records(bucket, entry, 0, 2**63, limit=10**6)]


def create(manager, name="p", **fields):
    body = {"type": "delete", "bucket": "b", "older_than": "2h", "interval": "10m"}
    body.update(fields)
    done = manager.create(name, parse_settings(body))
    assert done.called
    return done


def test_delete_runs_one_interval_after_creation(manager, engine, clock, events):
    """Records with ``ts <= now - older_than`` go; the event reports the run."""
    for hours in (5, 3, 2.5, 1, 0.5):
        write_record(engine, "b", "e", hours_ago(hours), b"x")
    create(manager)
    clock.advance(599)
    assert len(stamps(engine, "e")) == 5 and events.events == []
    assert manager.get("p")["info"]["last_run"] is None
    clock.advance(1)
    # now = NOW + 600 s: 2.5 h ago (at creation) is older than 2 h.
    assert stamps(engine, "e") == [hours_ago(1), hours_ago(0.5)]
    [(stream, name, timestamp, status, message, payload)] = events.events
    assert (stream, name, timestamp, status, message) == ("lifecycle", "p", (NOW + 600) * US,
                                                          200, "")
    assert payload == {
        "policy_name": "p", "action_type": "delete", "bucket": "b", "duration": 0.0,
        "processed_records": 3, "processed_blocks": 1, "caught_up": True,
        "last_processed_ts": (NOW + 600 - 2 * HOUR) * US + 1,
    }
    info = manager.get("p")["info"]
    assert info == {"name": "p", "is_provisioned": False, "is_running": True,
                    "type": "delete", "mode": "enabled",
                    "last_run": "1970-04-11T00:10:00.000000Z"}
    clock.advance(600)  # the next run: nothing more is old enough
    assert len(events.events) == 2 and events.events[1][5]["processed_records"] == 0


def test_the_boundary_record_is_processed(manager, engine, clock):
    """``ts <= now - older_than``: a record exactly that old goes, one µs younger stays."""
    cutoff = (NOW + 600 - 2 * HOUR) * US
    write_record(engine, "b", "e", cutoff, b"x")
    write_record(engine, "b", "e", cutoff + 1, b"x")
    create(manager)
    clock.advance(600)
    assert stamps(engine, "e") == [cutoff + 1]


def test_put_restarts_the_timer(manager, engine, clock, events):
    write_record(engine, "b", "e", hours_ago(5), b"x")
    create(manager)
    clock.advance(540)
    manager.update("p", parse_settings({"type": "delete", "bucket": "b", "older_than": "3h",
                                        "interval": "20m"}))
    clock.advance(60)
    assert events.events == [] and stamps(engine, "e") == [hours_ago(5)]
    clock.advance(1139)
    assert events.events == []
    clock.advance(1)
    assert stamps(engine, "e") == [] and len(events.events) == 1
    # A PUT without mode is enabled again.
    assert manager.get("p")["settings"]["mode"] == "enabled"


def test_disabled_skips_and_mode_applies_from_the_next_run(manager, engine, clock, events):
    write_record(engine, "b", "e", hours_ago(5), b"x")
    create(manager, mode="disabled")
    clock.advance(600)
    assert events.events == [] and stamps(engine, "e") == [hours_ago(5)]
    assert manager.get("p")["info"]["last_run"] is None
    manager.set_mode("p", "enabled")
    assert manager.get("p")["info"]["mode"] == "enabled"
    clock.advance(600)
    assert stamps(engine, "e") == [] and len(events.events) == 1


def test_dry_run_counts_only(manager, engine, clock, events):
    for hours in (6, 5, 4, 1):
        write_record(engine, "b", "e", hours_ago(hours), b"x")
    write_record(engine, "b", "f", hours_ago(7), b"x")
    create(manager, mode="dry_run")
    clock.advance(600)
    assert len(stamps(engine, "e")) == 4 and len(stamps(engine, "f")) == 1
    payload = events.events[0][5]
    assert payload["processed_records"] == 4 and payload["processed_blocks"] == 2
    assert payload["caught_up"] is True


def test_entry_patterns_and_meta(manager, engine, clock):
    """``prefix*`` takes nested entries too; ``$meta`` entries are never touched."""
    old = hours_ago(5)
    for entry in ("cam-1", "cam-2/raw", "cam", "other", "exact"):
        write_record(engine, "b", entry, old, b"x")
    write_record(engine, "b", "cam-1/$meta", old, b"{}", labels={"key": "k"})
    create(manager, entries=["cam-*", "exact", "cam-1/$meta"])
    clock.advance(600)
    left = {e: stamps(engine, e) for e in ("cam-1", "cam-2/raw", "cam", "other", "exact")}
    assert left == {"cam-1": [], "cam-2/raw": [], "cam": [old], "other": [old], "exact": []}
    assert stamps(engine, "cam-1/$meta") == [old]


@pytest.mark.parametrize("entries", [[], ["*"], ["x", "*"]])
def test_all_entries(manager, engine, clock, entries):
    old = hours_ago(5)
    for entry in ("a", "a/b", "c"):
        write_record(engine, "b", entry, old, b"x")
    write_record(engine, "b", "$meta", old, b"{}", labels={"key": "k"})
    create(manager, entries=entries)
    clock.advance(600)
    assert [stamps(engine, e) for e in ("a", "a/b", "c", "$meta")] == [[], [], [], [old]]


def test_when_selects_what_is_removed(manager, engine, clock, events):
    write_record(engine, "b", "e", hours_ago(5), b"x", labels={"kind": "raw"})
    write_record(engine, "b", "e", hours_ago(4), b"x", labels={"kind": "summary"})
    write_record(engine, "b", "e", hours_ago(1), b"x", labels={"kind": "raw"})
    create(manager, when={"&kind": {"$eq": "raw"}})
    clock.advance(600)
    assert stamps(engine, "e") == [hours_ago(4), hours_ago(1)]
    assert events.events[0][5]["processed_records"] == 1


def test_a_large_removal_runs_in_slices(engine, clock, tmp_path, events):
    """The removal yields to the reactor between slices of 2,000 records."""
    clock.advance(NOW)
    engine.create_bucket("b", None)
    reactor = Clock()
    manager = LifecycleManager(engine, clock, str(tmp_path / "data"), events, reactor=reactor)
    manager.startService()
    first = hours_ago(10)
    for i in range(4500):
        write_record(engine, "b", "e", first + i, b"")
    create(manager)
    clock.advance(600)
    assert events.events == [] and len(stamps(engine, "e")) == 4500
    turns = 0
    while not events.events:
        assert len(reactor.getDelayedCalls()) == 1
        reactor.advance(0)
        turns += 1
    assert turns >= 1 and stamps(engine, "e") == []
    assert events.events[0][5]["processed_records"] == 4500
    manager.stopService()


def test_a_failed_run_is_reported_and_the_loop_goes_on(manager, engine, clock, events):
    write_record(engine, "b", "e", hours_ago(5), b"x")
    create(manager)
    engine.remove_bucket("b")
    clock.advance(600)
    [(_, _, _, status, message, payload)] = events.events
    assert (status, message) == (404, "Bucket 'b' is not found")
    assert (payload["processed_records"], payload["processed_blocks"], payload["caught_up"],
            payload["last_processed_ts"]) == (0, 0, False, None)
    assert manager.get("p")["info"]["last_run"] is not None
    clock.advance(600)
    assert len(events.events) == 2


def test_no_records_is_caught_up(manager, clock, events):
    create(manager)
    clock.advance(600)
    payload = events.events[0][5]
    assert payload["caught_up"] is True and payload["processed_records"] == 0
    assert payload["last_processed_ts"] is None


def test_bounded_windows_with_system_events(engine, clock, tmp_path):
    """
    With system events a run covers at most 24 intervals past its progress;
    one that found nothing and is not caught up is repeated after 100 ms.
    """
    events = RecordingEvents(enabled=True)
    clock.advance(NOW)
    engine.create_bucket("b", None)
    manager = LifecycleManager(engine, clock, str(tmp_path / "data"), events)
    manager.startService()
    # interval 10 m: a run spans at most 4 h.
    write_record(engine, "b", "e", hours_ago(30), b"x", labels={"kind": "keep"})
    write_record(engine, "b", "e", hours_ago(21), b"x", labels={"kind": "drop"})
    write_record(engine, "b", "e", hours_ago(1), b"x", labels={"kind": "drop"})
    create(manager, when={"&kind": {"$eq": "drop"}})
    clock.advance(600)
    assert [e[5]["processed_records"] for e in events.events] == [0]
    assert events.events[0][5]["last_processed_ts"] == hours_ago(26)
    assert events.events[0][5]["caught_up"] is False
    clock.advance(0.1)  # [26 h, 22 h): nothing either
    clock.advance(0.1)  # [22 h, 18 h): the record of 21 h ago
    assert [e[5]["processed_records"] for e in events.events] == [0, 0, 1]
    assert stamps(engine, "e") == [hours_ago(30), hours_ago(1)]
    clock.advance(0.1)
    assert len(events.events) == 3  # it did something: the next run is an interval away
    manager.stopService()
    assert clock.getDelayedCalls() == []


class CompressingEngine:
    """The real engine, with the ``compress_blocks`` of contract 4 recorded."""

    def __init__(self, engine):
        self._engine = engine
        self.calls = []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def compress_blocks(self, bucket, entry, stop, dry_run=False):
        self.calls.append((bucket, entry, stop, dry_run))
        return succeed((3, 1))


@pytest.mark.parametrize("mode", ["enabled", "dry_run"])
def test_compress_calls_the_engine_per_entry(engine, clock, tmp_path, events, mode):
    clock.advance(NOW)
    engine.create_bucket("b", None)
    compressing = CompressingEngine(engine)
    manager = LifecycleManager(compressing, clock, str(tmp_path / "data"), events)
    manager.startService()
    write_record(engine, "b", "a", hours_ago(5), b"x")
    write_record(engine, "b", "a/x", hours_ago(1), b"x")
    write_record(engine, "b", "b", hours_ago(5), b"x")
    write_record(engine, "b", "c", hours_ago(9), b"x")
    create(manager, type="compress", entries=["a*", "b"], mode=mode)
    clock.advance(600)
    stop = (NOW + 600 - 2 * HOUR) * US + 1
    dry = mode == "dry_run"
    assert compressing.calls == [("b", "a", stop, dry), ("b", "a/x", stop, dry),
                                 ("b", "b", stop, dry)]
    payload = events.events[0][5]
    assert payload["action_type"] == "compress"
    assert (payload["processed_records"], payload["processed_blocks"]) == (9, 3)
    manager.stopService()


def test_stopping_cancels_every_timer(manager, clock):
    create(manager, name="one")
    create(manager, name="two", mode="disabled")
    assert len(clock.getDelayedCalls()) == 2
    manager.stopService()
    assert clock.getDelayedCalls() == []
    assert manager.get("one")["info"]["is_running"] is False


def test_removing_a_policy_stops_its_loop(manager, engine, clock, events):
    write_record(engine, "b", "e", hours_ago(5), b"x")
    create(manager)
    manager.remove("p")
    clock.advance(3600)
    assert events.events == [] and stamps(engine, "e") == [hours_ago(5)]


class SlowCompressingEngine(CompressingEngine):
    """``compress_blocks`` answers when the test says so (work in a thread pool)."""

    def compress_blocks(self, bucket, entry, stop, dry_run=False):
        self.calls.append((bucket, entry, stop, dry_run))
        self.pending = Deferred()
        self.all_pending = getattr(self, "all_pending", []) + [self.pending]
        return self.pending


@pytest.mark.parametrize("how", ["stop", "put"])
def test_a_compress_run_is_left_to_finish(engine, clock, tmp_path, events, how):
    """Stopping (or a PUT) does not cancel a compression in the thread pool: stopping waits."""
    clock.advance(NOW)
    engine.create_bucket("b", None)
    slow = SlowCompressingEngine(engine)
    manager = LifecycleManager(slow, clock, str(tmp_path / "data"), events)
    manager.startService()
    write_record(engine, "b", "a", hours_ago(5), b"x")
    create(manager, type="compress")
    clock.advance(600)
    assert len(slow.calls) == 1 and not slow.pending.called
    if how == "stop":
        stopped = manager.stopService()
        assert not stopped.called
        slow.pending.callback((1, 1))
        assert stopped.called
    else:
        manager.update("p", parse_settings({"type": "compress", "bucket": "b",
                                            "older_than": "3h", "interval": "10m"}))
        slow.pending.callback((1, 1))
        manager.stopService()
    assert events.events == []  # the result of a replaced or stopped run is not reported


def test_stopping_waits_for_every_compress_run_left_to_finish(engine, clock, tmp_path, events):
    clock.advance(NOW)
    engine.create_bucket("b", None)
    slow = SlowCompressingEngine(engine)
    manager = LifecycleManager(slow, clock, str(tmp_path / "data"), events)
    manager.startService()
    write_record(engine, "b", "a", hours_ago(5), b"x")
    create(manager, type="compress")
    clock.advance(600)
    manager.update("p", parse_settings({"type": "compress", "bucket": "b",
                                        "older_than": "2h", "interval": "10m"}))
    clock.advance(600)
    first, second = slow.all_pending
    stopped = manager.stopService()
    second.callback((1, 1))
    assert not stopped.called
    first.callback((1, 1))
    assert stopped.called and events.events == []
