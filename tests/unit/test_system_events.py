"""
``system/``: the ``$system`` event streams over a real engine and a
``task.Clock`` (spec 1.20 §8): the audit and replication windows, the flush
in slices, the record format, usage, ``last_access``, the bucket's creation
and quota, and the settings that choose them.
"""

import json

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface.verify import verifyObject

from reduct_twisted.config import Config
from reduct_twisted.config_system import parse_switch
from reduct_twisted.errors import InsufficientStorage, UnprocessableEntity
from reduct_twisted.interfaces import ISystemEvents
from reduct_twisted.storage import StorageEngine
from reduct_twisted.storage.testing import read_content
from reduct_twisted.system import NullSystemEvents, SystemEvents, make_events
from reduct_twisted.system import events as events_module
from reduct_twisted.system.aggregate import AuditAggregates, ReplicationAggregates
from reduct_twisted.system.events import instance_name, sanitize

T0 = 1_700_000_000.0


@pytest.fixture
def clock():
    c = Clock()
    c.advance(T0)
    return c


@pytest.fixture
def engine(tmp_path, clock):
    e = StorageEngine(str(tmp_path / "data"), clock)
    e.open()
    yield e
    e.close()


@pytest.fixture
def events(engine, clock):
    ev = SystemEvents(engine, clock, "node")
    ev.startService()
    yield ev
    if ev.running:
        ev.stopService()


def records(engine, entry):
    """``[(ts, labels, content_type, body dict)]`` of ``$system`` entry ``entry``."""
    found = []
    for ts, _ in engine.list_records("$system", entry, 0, 2**63):
        view = engine.read("$system", entry, ts)
        found.append((ts, view.record.labels, view.record.content_type,
                      json.loads(read_content(view))))
    return found


def call(events, token="t", path="/api/v1/info", status=200, message="", started=T0, duration=0.5):
    events.record_call(token, "GET", path, status, message, "10.0.0.1", started, duration)


# -- interfaces and settings -----------------------------------------------------------


def test_both_implementations_provide_the_interface(events):
    assert verifyObject(ISystemEvents, events)
    assert verifyObject(ISystemEvents, NullSystemEvents())
    assert events.enabled and not NullSystemEvents().enabled


def test_make_events_follows_the_settings(engine, clock):
    assert isinstance(make_events(Config(), engine, clock), SystemEvents)
    assert isinstance(make_events(Config(system_events_enabled=False), engine, clock),
                      NullSystemEvents)
    named = make_events(Config(instance_name="a.b c"), engine, clock)
    assert named.instance == "a_b_c"


def test_audit_settings_are_ignored_with_a_warning(engine, clock):
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        make_events(Config(audit_enabled="true", audit_quota_size="1GB"), engine, clock)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    [warning] = [e for e in seen if "ignored since API 1.20" in e.get("log_format", "")]
    assert warning["log_level"] == LogLevel.warn
    assert warning["names"] == "RS_AUDIT_ENABLED, RS_AUDIT_QUOTA_SIZE"


@pytest.mark.parametrize("text, value", [
    ("1", True), ("true", True), ("YES", True), (" on ", True),
    ("0", False), ("False", False), ("no", False), ("OFF", False),
])
def test_switch_spellings(text, value):
    assert parse_switch(text) is value


def test_switch_garbage_refused():
    with pytest.raises(ValueError):
        parse_switch("maybe")


def test_instance_name_defaults_to_the_host_name(monkeypatch):
    monkeypatch.setattr(events_module.socket, "gethostname", lambda: "host.example.com")
    assert instance_name(None) == "host_example_com"
    assert instance_name("mine") == "mine"
    monkeypatch.setattr(events_module.socket, "gethostname", lambda: "")
    assert instance_name(None) == "unknown"
    assert sanitize("a/b$c") == "a_b_c"


# -- the audit window ----------------------------------------------------------------


def test_audit_aggregates_by_key_and_sums():
    agg = AuditAggregates()
    agg.add("t", "GET", "/p", 200, "", "1.2.3.4", 10.0, 0.25)
    agg.add("t", "GET", "/p", 200, "", "1.2.3.4", 11.0, 0.5)
    agg.add("t", "GET", "/p", 404, "no", "1.2.3.4", 11.0, 0.5)  # another status
    agg.add("t", "GET", "/p", 200, "", "5.6.7.8", 11.0, 0.5)  # another client
    assert len(agg) == 3
    assert agg.due(14.0) == []  # 5 s after the last call not reached
    taken = agg.due(16.5)
    assert len(taken) == 3 and len(agg) == 0
    token, ts, status, message, payload = taken[0]
    assert (token, ts, status, message) == ("t", 10_000_000, 200, "")
    assert payload == {"token_name": "t", "method": "GET", "path": "/p",
                       "client_ip": "1.2.3.4", "call_count": 2, "duration": 0.75}


def test_audit_written_sixty_seconds_after_the_first_call():
    """A busy key (a call every second) is written 60 s after its first call, then starts again."""
    agg = AuditAggregates()
    written = []
    for second in range(0, 130):
        agg.add("t", "GET", "/p", 200, "", None, float(second), 0.001)
        written += agg.due(second + 0.5)
    assert [w[1] for w in written] == [0, 61_000_000]
    assert [w[4]["call_count"] for w in written] == [61, 61]


def test_audit_flushed_by_the_tick_5s_after_the_last_call(events, engine, clock):
    call(events, started=clock.seconds())
    clock.advance(1)
    call(events, started=clock.seconds())
    clock.advance(5)  # the last call ended at T0 + 1.5: still open at T0 + 6
    assert not engine.has_bucket("$system")
    clock.advance(1)  # the tick at T0 + 7, 5.5 s after the last call
    [(ts, labels, content_type, body)] = records(engine, "audit/node/t")
    assert ts == int(T0 * 1_000_000)
    assert labels == {"status": "200"} and content_type == "application/json"
    assert body == {"timestamp": ts, "instance": "node", "status": 200, "message": "",
                    "token_name": "t", "method": "GET", "path": "/api/v1/info",
                    "client_ip": "10.0.0.1", "call_count": 2, "duration": 1.0}
    assert list(body) == ["timestamp", "instance", "status", "message", "token_name",
                          "method", "path", "client_ip", "call_count", "duration"]
    assert events.last_access("t") == ts
    assert events.last_access("other") is None


def test_timestamp_collision_drops_the_event(events, engine):
    """Two events of one entry at one microsecond: the second is dropped (spec §8.2)."""
    events.emit("audit", "t", 5, 200, "", {"n": 1})
    events.emit("audit", "t", 5, 200, "", {"n": 2})
    assert events.flush() == 1
    assert events.dropped == 1
    [(_, _, _, body)] = records(engine, "audit/node/t")
    assert body["n"] == 1


def test_flush_writes_in_slices_per_reactor_turn(events, engine, clock, monkeypatch):
    monkeypatch.setattr(events_module, "SLICE", 10)
    for i in range(25):
        events.emit("usage", "x", 1000 + i, 200, "", {"i": i})
    events.tick()  # one slice, the rest in the next reactor turn
    assert events.written == 10 and len(events.queue) == 15
    assert [c.getTime() for c in clock.getDelayedCalls()].count(clock.seconds()) == 1
    clock.advance(0)  # the next turns, one slice each
    assert events.written == 25 and not events.queue
    assert len(records(engine, "usage/node/x")) == 25


def test_queue_is_bounded(events, monkeypatch):
    monkeypatch.setattr(events_module, "MAX_QUEUE", 3)
    for i in range(5):
        events.emit("usage", "x", i, 200, "", {})
    assert len(events.queue) == 3 and events.dropped == 2


def test_nothing_written_per_request(events, engine):
    """A request only touches memory: the bucket appears at the tick, not at the call."""
    for _ in range(100):
        call(events)
    assert not engine.has_bucket("$system")
    assert events.written == 0


# -- the bucket ------------------------------------------------------------------------


def test_bucket_created_with_the_quota_and_recreated(engine, clock):
    events = SystemEvents(engine, clock, "node", quota_size=5_000_000)
    events.emit("usage", "x", 1, 200, "", {})
    events.flush()
    settings = engine.bucket_info("$system")["settings"]
    assert (settings["quota_type"], settings["quota_size"]) == ("FIFO", 5_000_000)
    engine.remove_bucket("$system")
    events.emit("usage", "x", 2, 200, "", {})
    events.flush()
    assert [r[0] for r in records(engine, "usage/node/x")] == [2]


def test_name_reserved_for_the_server(engine, tmp_path, clock):
    with pytest.raises(UnprocessableEntity):
        engine.create_bucket("$system", None)
    engine.create_bucket("$system", None, system=True)
    engine.close()
    again = StorageEngine(str(tmp_path / "data"), clock)
    again.open()
    try:
        assert again.has_bucket("$system")
        assert again.recovery_report()["left_in_place"] == []
    finally:
        again.close()


class _FullDisk:
    """An engine whose every write fails as on a full disk."""

    is_open = True

    def has_bucket(self, name):
        return True

    def upload(self, *args, **kwargs):
        raise InsufficientStorage("No space left on device")


def test_write_failure_never_raises(clock):
    events = SystemEvents(_FullDisk(), clock, "node")
    events.emit("usage", "x", 1, 200, "", {})
    assert events.flush() == 0
    assert events.dropped == 1 and not events.queue


# -- usage, last access, replication ----------------------------------------------------


def test_usage_every_minute_with_traffic_and_snapshot(events, engine, clock):
    engine.create_bucket("b", None)
    writer = engine.upload("b", "e", 1, 3, "text/plain", {})
    writer.write(b"abc")
    writer.commit()
    read_content(engine.read("b", "e", 1))
    clock.advance(60)  # queued at T0 + 60 ...
    clock.advance(1)  # ... written by the next tick
    [(ts, _, _, total)] = records(engine, "usage/node/total")
    assert ts == int((T0 + 60) * 1_000_000)
    assert total["duration"] == 60.0
    assert (total["write_bytes"], total["records_written"]) == (3, 1)
    assert (total["read_bytes"], total["records_read"]) == (3, 1)
    assert (total["bucket_count"], total["entry_count"], total["block_count"]) == (1, 1, 1)
    assert total["storage_bytes"] == engine.info()["usage"] - engine.bucket_info("$system")["info"]["size"]
    [(_, _, _, per_bucket)] = records(engine, "usage/node/b")
    assert per_bucket["bucket"] == "b" and per_bucket["write_bytes"] == 3


def test_stop_writes_usage_and_open_aggregates(events, engine, clock):
    call(events)
    events.stopService()
    assert [r[3]["call_count"] for r in records(engine, "audit/node/t")] == [1]
    assert len(records(engine, "usage/node/total")) == 1
    clock.advance(120)  # stopped: no more ticks
    assert len(records(engine, "usage/node/total")) == 1


def test_last_access_loaded_at_start(engine, clock):
    first = SystemEvents(engine, clock, "a")
    first.emit("audit", "tok", 100, 200, "", {})
    first.emit("audit", "tok", 300, 200, "", {})
    SystemEvents(engine, clock, "b").emit("audit", "tok", 200, 200, "", {})
    first.flush()
    second = SystemEvents(engine, clock, "b")
    second.emit("audit", "tok", 200, 200, "", {})
    second.flush()
    fresh = SystemEvents(engine, clock, "c")
    assert fresh.last_access("tok") is None
    fresh.load_access()
    assert fresh.last_access("tok") == 300


def test_replication_aggregates_by_status():
    agg = ReplicationAggregates()
    agg.add("r", 200, "", 10, 100, 5, 1.0)
    agg.add("r", 200, "", 5, 50, 0, 2.0)
    agg.add("r", 500, "boom", 3, 0, 3, 3.0)  # status change closes the 200 run
    [(name, ts, status, message, payload)] = agg.due(3.5)
    assert (name, ts, status, message) == ("r", 1_000_000, 200, "")
    assert payload == {"status": 200, "pending_records": 0, "written_records": 15,
                       "failed_records": 0, "replicated_data_size": 150, "duration": 1.0}
    assert agg.due(7.9) == []
    [(_, ts, status, message, payload)] = agg.due(8.0)  # 5 s without a pass
    assert (ts, status, message) == (3_000_000, 500, "boom")
    assert (payload["written_records"], payload["failed_records"]) == (0, 3)


def test_replication_written_after_sixty_seconds():
    agg = ReplicationAggregates()
    taken = []
    for second in range(0, 125):
        agg.add("r", 200, "", 1, 0, 0, float(second))
        taken += agg.due(second + 0.5)
    assert [t[1] for t in taken] == [0, 61_000_000]


def test_replication_passes_reach_the_stream(tmp_path, events, engine, clock):
    """The replication manager's diagnostics tell the events of every pass (one hook)."""
    from reduct_twisted.replication.manager import ReplicationManager

    manager = ReplicationManager(engine, clock, str(tmp_path / "data"))
    manager.use_events(events)
    engine.create_bucket("src", None)
    manager.create("rep", {"src_bucket": "src", "dst_bucket": "d", "dst_host": "http://127.0.0.1:1"})
    task = manager._tasks["rep"]
    task.diagnostics.ok(4, 4000)
    clock.advance(0.5)
    task.diagnostics.errored(502, "down", 2)
    events.flush()
    got = [(r[3]["status"], r[3]["written_records"], r[3]["failed_records"], r[3]["message"],
            r[3]["replicated_data_size"]) for r in records(engine, "replications/node/rep")]
    assert got == [(200, 4, 0, "", 4000), (502, 0, 2, "down", 0)]


def test_bad_payload_dropped_and_the_tick_goes_on(events, engine, clock):
    """An event that cannot be written as JSON is dropped; the loop keeps running."""
    events.emit("lifecycle", "p.1", 10, 200, "", {"bad": object()})
    events.emit("lifecycle", "p.1", 11, 200, "", {"good": 1})
    clock.advance(1)
    assert events.dropped == 1
    [(ts, _, _, body)] = records(engine, "lifecycle/node/p_1")
    assert (ts, body["good"]) == (11, 1)
    events.emit("lifecycle", "p.1", 12, 200, "", {"good": 2})
    clock.advance(1)  # still ticking
    assert len(records(engine, "lifecycle/node/p_1")) == 2
