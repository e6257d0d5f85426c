"""
The replication registry (``replication/manager.py``): create, update,
remove with upstream's texts, the registry file, provisioning, and the
diagnostics window.
"""

import json
import os
import stat

import pytest

from reduct_twisted.config import Config
from reduct_twisted.errors import Conflict, NotFound, ReductError, UnprocessableEntity
from reduct_twisted.provision import ProvisionedReplication
from reduct_twisted.replication import make_replications
from reduct_twisted.replication.diagnostics import DiagnosticsCounter
from reduct_twisted.replication.manager import REGISTRY_FILE, ReplicationManager
from reduct_twisted.replication.remote import RemoteBucket
from reduct_twisted.storage.testing import write_record

BODY = {"src_bucket": "src", "dst_bucket": "dst", "dst_host": "http://127.0.0.1:9999"}


class Idle:
    """A destination nobody talks to (the services are not started)."""

    def __init__(self, settings):
        self.settings = settings


_MADE = []


@pytest.fixture(autouse=True)
def _close_logs():
    yield
    while _MADE:
        _MADE.pop().stopService()


@pytest.fixture
def manager(engine, clock):
    engine.create_bucket("src", None)
    return _new(engine, clock)


def _new(engine, clock, **kwargs):
    made = ReplicationManager(engine, clock, engine.data_path, remote_factory=Idle,
                              ports=(8383,), **kwargs)
    _MADE.append(made)
    return made


def _stored(engine) -> dict:
    with open(os.path.join(engine.data_path, REGISTRY_FILE)) as f:
        return json.load(f)


def _message(exc_type, fn, *args):
    with pytest.raises(exc_type) as e:
        fn(*args)
    return e.value.message


def test_create_get_list(manager):
    """A created replication is listed and shown with its settings, token masked."""
    manager.create("b-rep", dict(BODY, dst_token="secret"))
    manager.create("a-rep", dict(BODY, when={"&x": {"$gt": 1}}))
    assert [r["name"] for r in manager.list()] == ["a-rep", "b-rep"]
    detail = manager.get("b-rep")
    assert detail["info"] == {"name": "b-rep", "mode": "enabled", "is_active": True, "is_provisioned": False,
                              "pending_records": 0}
    assert detail["settings"]["dst_token"] is None
    assert detail["diagnostics"] == {"hourly": {"ok": 0, "errored": 0, "errors": {}}}
    assert manager.get("a-rep")["settings"]["when"] == {"&x": {"$gt": 1}}


def test_upstream_error_texts(manager):
    """Exists, missing and invalid: upstream's statuses and texts."""
    manager.create("r", dict(BODY))
    assert _message(Conflict, manager.create, "r", dict(BODY)) == "Replication 'r' already exists"
    for call in (manager.get, manager.remove):
        assert _message(NotFound, call, "nope") == "Replication 'nope' does not exist"
    assert _message(NotFound, manager.update, "nope", dict(BODY)) == \
        "Replication 'nope' does not exist"
    assert _message(NotFound, manager.create, "x", dict(BODY, src_bucket="gone")) == \
        "Source bucket 'gone' for replication 'x' does not exist"
    assert _message(UnprocessableEntity, manager.create, "x", dict(BODY, dst_host="bad")) == \
        "Invalid destination host 'bad'"
    assert _message(UnprocessableEntity, manager.create, "x",
                    dict(BODY, dst_bucket="src", dst_host="http://localhost:8383")) == \
        "Source and destination buckets must be different"
    # The port the request came in on counts as ours too.
    assert _message(UnprocessableEntity, manager.create, "x",
                    dict(BODY, dst_bucket="src", dst_host="http://localhost:7000"), 7000) == \
        "Source and destination buckets must be different"
    assert _message(UnprocessableEntity, manager.create, "a/b", dict(BODY)).startswith(
        "Replication name can contain only")
    assert [r["name"] for r in manager.list()] == ["r"]


def test_invalid_update_keeps_the_replication(manager):
    """A refused update changes nothing (upstream keeps the old one too)."""
    manager.create("r", dict(BODY, dst_token="t"))
    assert _message(UnprocessableEntity, manager.update, "r",
                    dict(BODY, when={"$not-exist": [True, True]})) == \
        "Invalid replication condition: Operator '$not-exist' not supported"
    assert manager.get("r")["settings"]["when"] is None


def test_update_keeps_token_and_pending(manager, engine):
    """PUT without dst_token keeps it; pending records stay unless the source changes."""
    manager.create("r", dict(BODY, dst_token="t"))
    write_record(engine, "src", "e", 1, b"x")
    manager.update("r", dict(BODY, dst_bucket="other"))
    task = manager._tasks["r"]
    assert task.settings.dst_token == "t" and task.settings.dst_bucket == "other"
    assert manager.get("r")["info"]["pending_records"] == 1
    engine.create_bucket("src2", None)
    manager.update("r", dict(BODY, src_bucket="src2"))
    assert manager.get("r")["info"]["pending_records"] == 0
    write_record(engine, "src", "e", 2, b"x")
    write_record(engine, "src2", "e", 2, b"x")
    assert manager.get("r")["info"]["pending_records"] == 1


def test_registry_file_survives_restart(manager, engine, clock):
    """Replications are stored (mode 0600, token included) and loaded again."""
    manager.create("r", dict(BODY, dst_token="secret", entries=["a"], each_n=2))
    path = os.path.join(engine.data_path, REGISTRY_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = _stored(engine)
    assert stored["format"] == 2
    assert stored["replications"][0]["settings"]["mode"] == "enabled"
    assert stored["replications"][0]["settings"]["dst_token"] == "secret"
    again = _new(engine, clock)
    assert again._tasks["r"].settings == manager._tasks["r"].settings


def test_remove_deletes_logs_and_entry(manager, engine, clock):
    """DELETE forgets the replication, in the file too, and removes its logs."""
    manager.create("r", dict(BODY))
    write_record(engine, "src", "e", 1, b"x")
    logs = os.path.join(engine.data_path, ".replications", "r")
    assert os.path.isdir(logs)
    manager.remove("r")
    assert manager.list() == [] and not os.path.exists(logs)
    assert _new(engine, clock).list() == []
    manager.create("r", dict(BODY))  # the same name starts afresh
    assert manager.get("r")["info"]["pending_records"] == 0


def test_unreadable_registry_is_logged(engine, clock, log_events):
    """A corrupt registry file loads nothing and says so; broken items are skipped."""
    path = os.path.join(engine.data_path, REGISTRY_FILE)
    with open(path, "w") as f:
        f.write("{not json")
    assert _new(engine, clock).list() == []
    with open(path, "w") as f:
        json.dump({"format": 1, "replications": [
            {"name": "ok", "settings": BODY},
            {"name": "bad", "settings": {"src_bucket": 1}},
            {"name": "../x", "settings": BODY},
        ]}, f)
    assert [r["name"] for r in _new(engine, clock).list()] == ["ok"]
    texts = [e.get("log_format", "") for e in log_events]
    assert any("Cannot read" in t for t in texts)
    assert sum("Skipping a replication" in t for t in texts) == 2


def test_loaded_without_source_bucket(engine, clock):
    """A stored replication whose source bucket is gone still loads (it reports errors)."""
    engine.create_bucket("src", None)
    first = _new(engine, clock)
    first.create("r", dict(BODY))
    engine.remove_bucket("src")
    assert [r["name"] for r in _new(engine, clock).list()] == ["r"]


def test_provisioned_replications(manager, engine, clock, log_events):
    """Provisioned ones overwrite stored ones, are protected, and are not stored."""
    manager.create("r", dict(BODY, dst_bucket="stored"))
    again = _new(engine, clock)
    again.provision([
        ProvisionedReplication("r", dict(BODY, dst_bucket="from-env")),
        ProvisionedReplication("p", dict(BODY)),
        ProvisionedReplication("bad", dict(BODY, src_bucket="missing")),
        ProvisionedReplication("bad2", {"src_bucket": "src"}),
    ])
    assert [(r["name"], r["is_provisioned"]) for r in again.list()] == [("p", True), ("r", True)]
    assert again.get("r")["settings"]["dst_bucket"] == "from-env"
    assert _message(Conflict, again.update, "r", dict(BODY)) == \
        "Can't update provisioned replication 'r'"
    assert _message(Conflict, again.remove, "p") == "Can't remove provisioned replication 'p'"
    errors = [e for e in log_events if "Cannot provision replication" in e.get("log_format", "")]
    assert [e["name"] for e in errors] == ["bad", "bad2"]
    again.create("x", dict(BODY))
    stored = _stored(engine)
    assert {i["name"]: i["settings"]["dst_bucket"] for i in stored["replications"]} == {
        "r": "stored", "x": "dst",
    }


def test_listener_dispatch_by_bucket(manager, engine):
    """Only replications of the written bucket log the record."""
    engine.create_bucket("other", None)
    manager.create("r", dict(BODY))
    write_record(engine, "other", "e", 1, b"x")
    assert manager.get("r")["info"]["pending_records"] == 0
    write_record(engine, "src", "e", 1, b"x")
    assert manager.get("r")["info"]["pending_records"] == 1
    assert engine.listeners == [manager]


def test_take_dirty_has_log_appends(manager, engine):
    """Log appends are handed to the sync round."""
    manager.create("r", dict(BODY))
    manager.take_dirty()
    write_record(engine, "src", "e", 1, b"x")
    files, _ = manager.take_dirty()
    assert [os.path.basename(f) for f in files] == ["%020d.log" % 0]


def test_default_remote_is_treq(engine, clock):
    """Without a factory, destinations are reached with treq over a connection pool."""
    engine.create_bucket("src", None)
    manager = ReplicationManager(engine, clock, engine.data_path)
    manager.create("r", dict(BODY))
    assert isinstance(manager._tasks["r"].remote, RemoteBucket)
    assert manager._pool is not None and manager._pool._factory.noisy is False


def test_daemon_settings_reach_the_manager(engine, clock):
    """RS_REPLICATION_LOG_SIZE, RS_REPLICATION_TIMEOUT, RS_PORT and the sync policy apply."""
    config = Config(replication_log_size=7, replication_timeout=2.5, port=1234, sync="none")
    made = make_replications(engine, config, clock, threadpool=None)
    _MADE.append(made)
    assert (made.capacity, made.timeout, made.ports) == (7, 2.5, frozenset({1234}))
    assert made.dirty.enabled is False


# -- diagnostics ------------------------------------------------------------


def test_diagnostics_scaled_like_upstream(clock):
    """ok/errored are scaled to an hour while less than an hour has passed."""
    counter = DiagnosticsCounter(clock)
    counter.ok(1)
    assert counter.hourly()["ok"] == 60
    clock.advance(60)
    counter.ok(1)
    assert counter.hourly()["ok"] == 60  # 2 over 2 minutes
    clock.advance(60)
    counter.ok(2)
    assert counter.hourly()["ok"] == 80  # 4 over 3 minutes
    for _ in range(60):
        clock.advance(60)
        counter.ok(1)
    assert counter.hourly()["ok"] == 60  # a full hour: plain sum


def test_diagnostics_errors_by_status(clock):
    """Errors are counted per status with the last message; an hour later they are gone."""
    counter = DiagnosticsCounter(clock)
    counter.errored(500, "test")
    counter.errored(500, "test-1")
    counter.errored(-3, "Connection refused", 4)
    hourly = counter.hourly()
    assert hourly["errors"] == {"500": {"count": 2, "last_message": "test-1"},
                                "-3": {"count": 4, "last_message": "Connection refused"}}
    assert hourly["errored"] == 360
    clock.advance(3600)
    assert counter.hourly() == {"ok": 0, "errored": 0, "errors": {}}


def test_engine_tells_listeners_of_commits_only(engine):
    """StorageEngine.listeners hear each committed record once; aborts and refusals never."""
    from reduct_twisted.storage.testing import write_content

    heard = []

    class Listener:
        def record_written(self, bucket, entry, record):
            heard.append((bucket, entry, record.ts, record.size, dict(record.labels)))

    engine.listeners.append(Listener())
    engine.create_bucket("b", None)
    write_record(engine, "b", "e", 1, b"abc", labels={"k": "v"})
    alloc = engine.allocate("b", "e", 2, 3, "text/plain", {})
    write_content(alloc, b"ab")
    with pytest.raises(ReductError):
        engine.commit(alloc)  # shorter than declared: aborted
    aborted = engine.allocate("b", "e", 3, 1, "text/plain", {})
    engine.abort(aborted)
    with pytest.raises(Conflict):
        engine.allocate("b", "e", 1, 1, "text/plain", {})
    assert heard == [("b", "e", 1, 3, {"k": "v"})]
