"""
Bucket settings parsing and name rules (spec §1.7, §2.2).
"""

import json
import os

import pytest
from twisted.internet.task import Clock

from tests.unit.conftest import error_message
from reduct_twisted.errors import Conflict, NotFound, UnprocessableEntity
from reduct_twisted.storage import BucketSettings, StorageEngine, parse_settings
from reduct_twisted.storage.settings import check_name

NAME_ERROR = "Bucket or entry name can contain only letters, digests and [-,_] symbols"
BASE = BucketSettings(max_block_size=10, max_block_records=20, quota_type="FIFO", quota_size=30)


def test_defaults():
    """The default settings are those of upstream 1.11+."""
    assert BucketSettings().to_json() == {
        "max_block_size": 64_000_000,
        "max_block_records": 1024,
        "quota_type": "NONE",
        "quota_size": 0,
    }


@pytest.mark.parametrize("obj", [None, {}, {"max_block_size": None, "quota_type": None}, {"x": 1}])
def test_missing_null_and_unknown_fields_keep_base(obj):
    """An empty body, nulls and unknown fields leave every base value."""
    assert parse_settings(obj, BASE) == BASE


def test_given_fields_override_base():
    """Every given field replaces the base value; u64 max is accepted."""
    obj = {"max_block_size": 2**64 - 1, "max_block_records": 0, "quota_type": "HARD",
           "quota_size": 5}
    assert parse_settings(obj, BASE).to_json() == obj


@pytest.mark.parametrize("obj", [[], "x", 1, True, [{"quota_size": 1}]])
def test_non_object_is_422(obj):
    """A body that is not a JSON object is refused."""
    assert error_message(UnprocessableEntity, parse_settings, obj, BASE) == (
        "Invalid JSON: expected an object"
    )


@pytest.mark.parametrize("field", ["max_block_size", "max_block_records", "quota_size"])
@pytest.mark.parametrize("value", ["1", True, False, 1.0, -1, 2**64, [1], {}])
def test_bad_integer_is_422(field, value):
    """Integers must be unsigned 64-bit JSON integers, not strings, bools or floats."""
    assert error_message(UnprocessableEntity, parse_settings, {field: value}, BASE) == (
        f"Invalid JSON: '{field}' must be an unsigned integer"
    )


@pytest.mark.parametrize("value", ["fifo", "", "NONE ", "SOFT"])
def test_unknown_quota_type_is_422(value):
    """A quota type string other than NONE/FIFO/HARD is refused."""
    assert error_message(UnprocessableEntity, parse_settings, {"quota_type": value}, BASE) == (
        "Invalid quota type"
    )


@pytest.mark.parametrize("value", [1, True, ["FIFO"], {"a": "b"}])
def test_non_string_quota_type_is_422(value):
    """A non-string quota type is echoed as JSON in the message."""
    assert error_message(UnprocessableEntity, parse_settings, {"quota_type": value}, BASE) == (
        f"Failed to parse quota type: {json.dumps(value)}"
    )


@pytest.mark.parametrize("name", ["a", "A-b_9", "x" * 255, "-", "_"])
def test_good_names(name):
    """Letters, digits, '-' and '_' up to 255 characters are accepted."""
    check_name(name)


@pytest.mark.parametrize(
    "name", ["", "a b", "a/b", "..", ".", ".trash", "x" * 256, "é", "a\n", "a.b", "a\\b", None]
)
def test_bad_names(name):
    """Anything else, in particular path tricks, is refused with the 1.13+ text."""
    assert error_message(UnprocessableEntity, check_name, name) == NAME_ERROR


def test_create_bucket_checks_settings_then_name_then_existence(engine):
    """Bad settings win over a bad name; a second create is a conflict."""
    assert error_message(UnprocessableEntity, engine.create_bucket, "bad name", "x") == (
        "Invalid JSON: expected an object"
    )
    assert error_message(UnprocessableEntity, engine.create_bucket, "../evil", None) == NAME_ERROR
    assert not os.path.exists(os.path.join(engine.data_path, "..", "evil"))
    engine.create_bucket("b", {"quota_type": "FIFO"})
    assert error_message(Conflict, engine.create_bucket, "b", None) == "Bucket 'b' already exists"
    assert engine.bucket_info("b")["settings"]["quota_type"] == "FIFO"


def test_create_bucket_uses_engine_defaults(tmp_path):
    """Missing fields take the engine's configured defaults."""
    engine = StorageEngine(str(tmp_path), Clock(), defaults=BASE)
    engine.open()
    engine.create_bucket("b", {"quota_size": 99})
    assert engine.bucket_info("b")["settings"] == {**BASE.to_json(), "quota_size": 99}
    assert engine.info()["defaults"] == {"bucket": BASE.to_json()}


def test_update_parses_before_404_and_keeps_missing_fields(engine):
    """PUT: parse errors precede the 404; missing/null fields keep current values."""
    assert error_message(UnprocessableEntity, engine.update_bucket, "nope", {"quota_type": 5}) == (
        "Failed to parse quota type: 5"
    )
    assert error_message(NotFound, engine.update_bucket, "nope", {}) == "Bucket 'nope' is not found"
    engine.create_bucket("b", {"max_block_records": 7, "quota_size": 3})
    engine.update_bucket("b", {"max_block_size": 1000, "quota_type": "FIFO", "quota_size": None})
    assert engine.bucket_info("b")["settings"] == {
        "max_block_size": 1000, "max_block_records": 7, "quota_type": "FIFO", "quota_size": 3,
    }


def test_settings_file_is_replaced_atomically(engine):
    """The settings file holds the settings and no temporary file is left."""
    engine.create_bucket("b", None)
    engine.update_bucket("b", {"quota_size": 12})
    bucket_dir = os.path.join(engine.data_path, "b")
    assert sorted(os.listdir(bucket_dir)) == ["settings.json"]
    with open(os.path.join(bucket_dir, "settings.json")) as f:
        assert json.load(f)["quota_size"] == 12
