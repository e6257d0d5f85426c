"""
Provisioned buckets in the storage engine (spec §3.14, §2.2, §3.9).
"""

import json
import os

import pytest

from tests.unit.conftest import error_message
from reduct_twisted.errors import BadRequest, Conflict, NotFound, UnprocessableEntity
from reduct_twisted.provision import parse_provisioning
from reduct_twisted.storage import BucketSettings, StorageEngine
from reduct_twisted.storage.testing import write_record

DEFAULTS = {"max_block_size": 64_000_000, "max_block_records": 1024, "quota_type": "NONE",
            "quota_size": 0}
NAME_ERROR = "Bucket or entry name can contain only letters, digests and [-,_] symbols"


def _saved(engine, name):
    with open(os.path.join(engine.data_path, name, "settings.json")) as f:
        return json.load(f)


def _flags(engine):
    return {b["name"]: b["is_provisioned"] for b in engine.list_buckets()}


def _reopen(engine, clock, **kwargs):
    engine.close()
    again = StorageEngine(engine.data_path, clock, **kwargs)
    again.open()
    return again


def test_provision_creates_missing_bucket(engine):
    """A missing bucket is created with the given settings and the defaults
    for the rest, saved, and reported as provisioned."""
    engine.provision_bucket("b", {"quota_type": "FIFO", "quota_size": 1000})
    info = engine.bucket_info("b")
    assert info["settings"] == {**DEFAULTS, "quota_type": "FIFO", "quota_size": 1000}
    assert info["info"]["is_provisioned"] is True
    assert _flags(engine) == {"b": True}
    assert _saved(engine, "b") == {"version": 1, **info["settings"]}


def test_provision_uses_engine_defaults(tmp_path, clock):
    """Fields the environment leaves out take the engine's defaults, as for
    an ordinary creation."""
    engine = StorageEngine(str(tmp_path / "d"), clock,
                           defaults=BucketSettings(max_block_records=7, quota_size=5))
    engine.open()
    engine.provision_bucket("b", {"max_block_size": 100})
    assert engine.bucket_info("b")["settings"] == {
        "max_block_size": 100, "max_block_records": 7, "quota_type": "NONE", "quota_size": 5,
    }
    engine.close()


def test_provision_overwrites_given_settings_of_existing_bucket(engine, clock):
    """An existing bucket keeps its data and the settings the environment
    does not give; the given ones are overwritten and saved."""
    engine.create_bucket("b", {"max_block_size": 10, "max_block_records": 20,
                               "quota_type": "HARD", "quota_size": 30})
    write_record(engine, "b", "e", 1, b"abc")
    engine.provision_bucket("b", {"quota_type": "NONE", "max_block_records": 99})
    expected = {"max_block_size": 10, "max_block_records": 99, "quota_type": "NONE",
                "quota_size": 30}
    info = engine.bucket_info("b")
    assert info["settings"] == expected
    assert [e["record_count"] for e in info["entries"]] == [1]
    assert info["info"]["is_provisioned"] is True
    assert _saved(engine, "b") == {"version": 1, **expected}
    again = _reopen(engine, clock)
    assert again.bucket_info("b")["settings"] == expected
    again.close()


def test_provision_with_no_settings_only_marks(engine):
    """Empty settings change nothing but the provisioned flag; twice is fine."""
    engine.create_bucket("b", {"quota_size": 3})
    before = engine.bucket_info("b")["settings"]
    engine.provision_bucket("b", {})
    engine.provision_bucket("b", {})
    assert engine.bucket_info("b")["settings"] == before
    assert _flags(engine) == {"b": True}


def test_flag_only_on_provisioned_buckets(engine):
    """Other buckets are listed as not provisioned."""
    engine.create_bucket("a", None)
    engine.provision_bucket("b", {})
    engine.create_bucket("c", None)
    assert _flags(engine) == {"a": False, "b": True, "c": False}
    assert engine.bucket_info("a")["info"]["is_provisioned"] is False


def test_flag_not_persisted(engine, clock):
    """After a restart without provisioning the bucket is an ordinary one
    with the settings it was given; it can then be changed and removed."""
    engine.provision_bucket("b", {"quota_type": "HARD", "quota_size": 10})
    again = _reopen(engine, clock)
    assert _flags(again) == {"b": False}
    assert again.bucket_info("b")["settings"]["quota_type"] == "HARD"
    again.update_bucket("b", {"quota_size": 20})
    assert again.bucket_info("b")["settings"]["quota_size"] == 20
    again.remove_bucket("b")
    assert _flags(again) == {}
    again.close()


def test_update_of_provisioned_bucket_is_409(engine):
    """Changing the settings of a provisioned bucket is refused and changes
    nothing, in memory or on disk."""
    engine.provision_bucket("b", {"quota_size": 5})
    before = _saved(engine, "b")
    assert error_message(Conflict, engine.update_bucket, "b", {"quota_size": 6}) == (
        "Can't change settings of provisioned bucket 'b'"
    )
    assert error_message(Conflict, engine.update_bucket, "b", None) == (
        "Can't change settings of provisioned bucket 'b'"
    )
    assert engine.bucket_info("b")["settings"]["quota_size"] == 5
    assert _saved(engine, "b") == before


def test_update_checks_settings_and_existence_first(engine):
    """Bad settings are 422 and a missing bucket 404 before the 409."""
    engine.provision_bucket("b", {})
    assert error_message(UnprocessableEntity, engine.update_bucket, "b",
                         {"quota_type": "SOFT"}) == "Invalid quota type"
    assert error_message(NotFound, engine.update_bucket, "x", {}) == "Bucket 'x' is not found"


def test_remove_of_provisioned_bucket_is_409(engine):
    """Removing a provisioned bucket is refused; bucket and data stay."""
    engine.provision_bucket("b", {})
    write_record(engine, "b", "e", 1, b"abc")
    assert error_message(Conflict, engine.remove_bucket, "b") == (
        "Can't remove provisioned bucket 'b'"
    )
    assert engine.bucket_info("b")["entries"][0]["record_count"] == 1
    assert os.path.isdir(os.path.join(engine.data_path, "b", "e"))
    assert error_message(NotFound, engine.remove_bucket, "x") == "Bucket 'x' is not found"


def test_ordinary_buckets_still_change(engine):
    """Buckets that are not provisioned can still be updated and removed."""
    engine.provision_bucket("p", {})
    engine.create_bucket("b", None)
    engine.update_bucket("b", {"quota_size": 9})
    assert engine.bucket_info("b")["settings"]["quota_size"] == 9
    engine.remove_bucket("b")
    assert _flags(engine) == {"p": True}


@pytest.mark.parametrize("settings, message", [
    ({"quota_type": "SOFT"}, "Invalid quota type"),
    ({"quota_size": -1}, "Invalid JSON: 'quota_size' must be an unsigned integer"),
    ({"max_block_records": "5"}, "Invalid JSON: 'max_block_records' must be an unsigned integer"),
    ([], "Invalid JSON: expected an object"),
])
def test_invalid_settings_are_422_and_change_nothing(engine, settings, message):
    """Invalid settings raise the parser's 422, for a new bucket (nothing is
    created) and an existing one (nothing changes, not marked)."""
    assert error_message(UnprocessableEntity, engine.provision_bucket, "new", settings) == message
    assert not engine.has_bucket("new")
    assert not os.path.exists(os.path.join(engine.data_path, "new"))
    engine.create_bucket("old", {"quota_size": 1})
    assert error_message(UnprocessableEntity, engine.provision_bucket, "old", settings) == message
    assert engine.bucket_info("old")["settings"]["quota_size"] == 1
    assert _flags(engine) == {"old": False}


@pytest.mark.parametrize("name", ["", "a b", "..", "a/b"])
def test_invalid_name_is_422(engine, name):
    """A bad name is refused with the name rule's 422."""
    assert error_message(UnprocessableEntity, engine.provision_bucket, name, {}) == NAME_ERROR
    assert _flags(engine) == {}


def test_provisioned_quota_applies(engine):
    """Writes to a provisioned bucket follow its quota."""
    engine.provision_bucket("b", {"quota_type": "HARD", "quota_size": 100})
    write_record(engine, "b", "e", 1, b"x" * 10)
    assert error_message(BadRequest, write_record, engine, "b", "e", 2, b"x" * 100) == (
        "Quota of 'b' exceeded"
    )


def test_environment_to_engine(engine, clock):
    """What parse_provisioning reads from the environment is what the engine
    takes: byte sizes become integers, the quota type its canonical form."""
    environ = {"RS_BUCKET_1_NAME": "data", "RS_BUCKET_1_QUOTA_TYPE": "fifo",
               "RS_BUCKET_1_QUOTA_SIZE": "10.4 MB", "RS_BUCKET_1_MAX_BLOCK_SIZE": "1KiB",
               "RS_BUCKET_1_MAX_BLOCK_RECORDS": "16", "RS_BUCKET_2_NAME": "plain"}
    for bucket in parse_provisioning(environ).buckets:
        engine.provision_bucket(bucket.name, bucket.settings)
    assert engine.bucket_info("data")["settings"] == {
        "max_block_size": 1024, "max_block_records": 16, "quota_type": "FIFO",
        "quota_size": 10_400_000,
    }
    assert engine.bucket_info("plain")["settings"] == DEFAULTS
    assert _flags(engine) == {"data": True, "plain": True}
