"""
The lifecycle registry (``lifecycle/manager.py``): the API's texts, the
``.lifecycles`` file (format, upstream's bare list, a newer format left
alone), provisioning (``provision_lifecycles.py``) and provisioned modes.
"""

import json
import os

import pytest

from reduct_twisted.errors import Conflict, InternalError, NotFound
from reduct_twisted.lifecycle.manager import FILE_FORMAT, LifecycleManager
from reduct_twisted.lifecycle.settings import parse_settings
from reduct_twisted.provision import parse_provisioning
from reduct_twisted.system import NullSystemEvents
from tests.unit.conftest import error_message

BODY = {"type": "delete", "bucket": "b", "older_than": "2h"}


@pytest.fixture
def data(engine):
    engine.create_bucket("b", None)
    return engine.data_path


def make(engine, clock):
    return LifecycleManager(engine, clock, engine.data_path, NullSystemEvents())


def settings(**fields):
    return parse_settings(dict(BODY, **fields))


def stored(data_path):
    with open(f"{data_path}/.lifecycles") as f:
        return json.load(f)


def test_api_texts(engine, clock, data):
    manager = make(engine, clock)
    assert manager.create("p", settings()).called
    assert error_message(Conflict, manager.create, "p", settings()) == \
        "Lifecycle 'p' already exists"
    for call in (lambda: manager.get("q"), lambda: manager.update("q", settings()),
                 lambda: manager.set_mode("q", "disabled"), lambda: manager.remove("q")):
        assert error_message(NotFound, call) == "Lifecycle 'q' does not exist"
    # 409 exists comes before the values are checked.
    assert error_message(Conflict, manager.create, "p", settings(bucket="nope")) == \
        "Lifecycle 'p' already exists"
    assert error_message(NotFound, manager.update, "p", settings(bucket="nope")) == \
        "Bucket 'nope' for lifecycle 'p' does not exist"
    manager.remove("p")
    assert manager.list() == []


def test_list_is_sorted_and_the_file_holds_the_settings(engine, clock, data):
    manager = make(engine, clock)
    for name in ("zeta", "alpha", "mid"):
        manager.create(name, settings(interval=None, entries=["a*"]))
    manager.set_mode("mid", "dry_run")
    assert [i["name"] for i in manager.list()] == ["alpha", "mid", "zeta"]
    assert manager.list()[1]["mode"] == "dry_run"
    on_disk = stored(data)
    assert on_disk["format"] == FILE_FORMAT and on_disk["provisioned_modes"] == {}
    assert on_disk["lifecycles"][1] == {"name": "mid", "settings": {
        "type": "delete", "bucket": "b", "entries": ["a*"], "older_than": "2h",
        "interval": "3600s", "when": None, "mode": "dry_run"}}
    again = make(engine, clock)
    assert again.list() == manager.list()
    assert again.get("mid") == manager.get("mid")


def test_upstreams_bare_list_is_read(engine, clock, data):
    with open(f"{data}/.lifecycles", "w") as f:
        json.dump([{"name": "up", "settings": dict(BODY, interval="1h", mode="disabled")},
                   {"name": "broken", "settings": {"type": "x"}}], f)
    manager = make(engine, clock)
    assert [i["name"] for i in manager.list()] == ["up"]
    assert manager.get("up")["settings"]["mode"] == "disabled"


def test_a_newer_file_is_left_alone(engine, clock, data):
    text = json.dumps({"format": FILE_FORMAT + 1, "lifecycles": [], "future": True})
    with open(f"{data}/.lifecycles", "w") as f:
        f.write(text)
    manager = make(engine, clock)
    failed = []
    manager.create("p", settings()).addErrback(failed.append)
    assert failed[0].check(InternalError)
    with open(f"{data}/.lifecycles") as f:
        assert f.read() == text


def test_an_unreadable_file_loads_nothing(engine, clock, data):
    with open(f"{data}/.lifecycles", "w") as f:
        f.write("{not json")
    with open(f"{data}/.lifecycles.abc.tmp", "w") as f:
        f.write("half")
    manager = make(engine, clock)
    assert manager.list() == []
    assert not os.path.exists(f"{data}/.lifecycles.abc.tmp")


ENV = {
    "RS_LIFECYCLE_A_NAME": "env-policy", "RS_LIFECYCLE_A_TYPE": "delete",
    "RS_LIFECYCLE_A_BUCKET": "b", "RS_LIFECYCLE_A_OLDER_THAN": "1d",
    "RS_LIFECYCLE_A_ENTRIES": "cam-*, logs", "RS_LIFECYCLE_A_WHEN": '{"&k": {"$eq": 1}}',
}


def test_provisioning_parses_the_variables():
    [item] = parse_provisioning(ENV).lifecycles
    assert item.name == "env-policy" and item.mode_given is False
    assert item.settings.to_json() == {
        "type": "delete", "bucket": "b", "entries": ["cam-*", "logs"], "older_than": "1d",
        "interval": "3600s", "when": {"&k": {"$eq": 1}}, "mode": "enabled"}
    [item] = parse_provisioning(dict(ENV, RS_LIFECYCLE_A_MODE="DRY_RUN",
                                     RS_LIFECYCLE_A_INTERVAL="15m",
                                     RS_LIFECYCLE_A_TYPE="Compress")).lifecycles
    assert (item.settings.mode, item.settings.interval, item.settings.type, item.mode_given) \
        == ("dry_run", "15m", "compress", True)


@pytest.mark.parametrize("change", [
    {"RS_LIFECYCLE_A_TYPE": ""}, {"RS_LIFECYCLE_A_BUCKET": " "},
    {"RS_LIFECYCLE_A_OLDER_THAN": ""}, {"RS_LIFECYCLE_A_TYPE": "archive"},
    {"RS_LIFECYCLE_A_MODE": "paused"}, {"RS_LIFECYCLE_A_WHEN": "{oops"},
    {"RS_LIFECYCLE_A_NAME": "bad name!"},
])
def test_provisioning_drops_what_is_missing_or_invalid(change):
    assert parse_provisioning(dict(ENV, **change)).lifecycles == []


def test_provisioned_policies(engine, clock, data):
    manager = make(engine, clock)
    manager.create("env-policy", settings(mode="disabled"))
    env = dict(ENV, RS_LIFECYCLE_B_NAME="no-bucket", RS_LIFECYCLE_B_TYPE="delete",
               RS_LIFECYCLE_B_BUCKET="missing", RS_LIFECYCLE_B_OLDER_THAN="1d",
               RS_LIFECYCLE_C_NAME="too-short", RS_LIFECYCLE_C_TYPE="delete",
               RS_LIFECYCLE_C_BUCKET="b", RS_LIFECYCLE_C_OLDER_THAN="5m")
    manager.provision(parse_provisioning(env).lifecycles)
    assert [i["name"] for i in manager.list()] == ["env-policy"]
    info = manager.get("env-policy")
    # It hides the stored policy of that name, and takes its mode.
    assert info["info"]["is_provisioned"] is True and info["settings"]["older_than"] == "1d"
    assert info["info"]["mode"] == "disabled"
    assert error_message(Conflict, manager.update, "env-policy", settings()) == \
        "Can't update provisioned lifecycle 'env-policy'"
    assert error_message(Conflict, manager.remove, "env-policy") == \
        "Can't remove provisioned lifecycle 'env-policy'"
    manager.set_mode("env-policy", "dry_run")
    on_disk = stored(data)
    assert on_disk["provisioned_modes"] == {"env-policy": "dry_run"}
    # The stored policy stays in the file, unchanged.
    assert on_disk["lifecycles"][0]["settings"]["older_than"] == "2h"
    # A restart without _MODE keeps the mode; with _MODE it wins.
    again = make(engine, clock)
    again.provision(parse_provisioning(ENV).lifecycles)
    assert again.get("env-policy")["info"]["mode"] == "dry_run"
    third = make(engine, clock)
    third.provision(parse_provisioning(dict(ENV, RS_LIFECYCLE_A_MODE="enabled")).lifecycles)
    assert third.get("env-policy")["info"]["mode"] == "enabled"
    # Without the variables, the stored policy is back.
    fourth = make(engine, clock)
    assert fourth.get("env-policy")["info"]["is_provisioned"] is False
    assert fourth.get("env-policy")["settings"]["older_than"] == "2h"
