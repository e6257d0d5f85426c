"""
Lifecycle settings (``lifecycle/settings.py``, ``duration.py``; spec 1.20
§7.2): duration literals and their parser texts, the shape checked before
the token (``Invalid JSON: …``), the values checked after it in upstream's
order, and the echo.
"""

import pytest

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.lifecycle.duration import parse_duration
from reduct_twisted.lifecycle.settings import (
    LifecycleSettings, parse_mode, parse_settings, validate,
)
from tests.unit.conftest import error_message

BODY = {"type": "delete", "bucket": "b", "older_than": "2h"}


@pytest.mark.parametrize("text, us", [
    ("1us", 1), ("5ms", 5000), ("30s", 30_000_000), ("10m", 600_000_000),
    ("1h", 3_600_000_000), ("7d", 7 * 86_400_000_000), ("1h 30m", 5_400_000_000),
    ("  2h\t-30m ", 5_400_000_000), ("-1h", -3_600_000_000), ("0s", 0),
])
def test_duration_literals(text, us):
    assert parse_duration(text) == us


@pytest.mark.parametrize("text, message", [
    ("", "Duration literal cannot be empty"),
    ("   ", "Duration literal cannot be empty"),
    ("30days", "Invalid duration unit: days"),
    ("10", "Invalid duration unit: "),
    ("1h 5x", "Invalid duration unit: x"),
    ("h", "Invalid duration value: h"),
    ("-s", "Invalid duration value: -s"),
    ("1.5h", "Invalid duration unit: .5h"),
    ("9" * 30 + "s", "Invalid duration value: " + "9" * 30 + "s"),
    ("9999999999999999d", "Invalid duration value: 9999999999999999d"),
])
def test_duration_errors(text, message):
    assert error_message(UnprocessableEntity, parse_duration, text) == message


def test_settings_are_echoed_as_given():
    body = dict(BODY, entries=["a", "cam-*"], older_than="1h 30m", interval="15m",
                when={"&kind": {"$eq": "raw"}}, mode="dry_run", processing_interval="1d")
    assert parse_settings(body).to_json() == {
        "type": "delete", "bucket": "b", "entries": ["a", "cam-*"], "older_than": "1h 30m",
        "interval": "15m", "when": {"&kind": {"$eq": "raw"}}, "mode": "dry_run",
    }


@pytest.mark.parametrize("extra", [{}, {"interval": None}, {"entries": None, "mode": None}])
def test_defaults_and_null_interval(extra):
    """A null interval is the default (reduct-py sends one, spec §10.4 f)."""
    assert parse_settings(dict(BODY, **extra)).to_json() == {
        "type": "delete", "bucket": "b", "entries": [], "older_than": "2h",
        "interval": "3600s", "when": None, "mode": "enabled",
    }


@pytest.mark.parametrize("body, message", [
    (None, "EOF while parsing a value at line 1 column 0"),
    ([], "invalid type: sequence, expected struct LifecycleSettings"),
    ({"bucket": "b", "older_than": "2h"}, "missing field `type`"),
    (dict(BODY, type="archive"), "unknown variant `archive`, expected `delete` or `compress`"),
    (dict(BODY, type=1), "invalid type: integer `1`, expected a string"),
    ({"type": "delete", "older_than": "2h"}, "missing field `bucket`"),
    (dict(BODY, bucket=None), "invalid type: null, expected a string"),
    ({"type": "delete", "bucket": "b"}, "missing field `older_than`"),
    (dict(BODY, older_than=None), "invalid type: null, expected a string"),
    (dict(BODY, max_age="2h", older_than=3600), "invalid type: integer `3600`, expected a string"),
    (dict(BODY, interval=600), "invalid type: integer `600`, expected a string"),
    (dict(BODY, entries="a"), 'invalid type: string "a", expected a sequence'),
    (dict(BODY, entries=["a", 2]), "invalid type: integer `2`, expected a string"),
    (dict(BODY, mode="paused"),
     "unknown variant `paused`, expected one of `enabled`, `disabled`, `dry_run`"),
])
def test_shape_errors(body, message):
    assert error_message(UnprocessableEntity, parse_settings, body) == "Invalid JSON: " + message


def test_max_age_is_not_older_than():
    """``max_age`` was never released: only ``older_than`` is accepted."""
    body = {"type": "delete", "bucket": "b", "max_age": "2h"}
    message = error_message(UnprocessableEntity, parse_settings, body)
    assert message == "Invalid JSON: missing field `older_than`"


@pytest.mark.parametrize("body, message", [
    (None, "EOF while parsing a value at line 1 column 0"),
    ({}, "missing field `mode`"),
    ("x", 'invalid type: string "x", expected struct ModePayload'),
    ({"mode": "on"}, "unknown variant `on`, expected one of `enabled`, `disabled`, `dry_run`"),
])
def test_mode_body(body, message):
    assert error_message(UnprocessableEntity, parse_mode, body) == "Invalid JSON: " + message
    assert parse_mode({"mode": "dry_run"}) == "dry_run"


def _validate(fields):
    validate("p", parse_settings(dict(BODY, **fields)), lambda name: name == "b")


# The table of spec §7.2, in its order: each row also breaks every later rule,
# so the first applicable text wins.
VALIDATION = [
    (dict(bucket="x", older_than="30days", interval="1s", type="compress", when={"$x": 1}),
     NotFound, "Bucket 'x' for lifecycle 'p' does not exist"),
    (dict(older_than="30days", interval="1s", type="compress", when={}),
     UnprocessableEntity,
     "Invalid lifecycle older_than '30days': [UnprocessableEntity] Invalid duration unit: days"),
    (dict(older_than="59m", interval="", type="compress", when={}), UnprocessableEntity,
     "Lifecycle older_than '59m' is shorter than minimum allowed value of 1h"),
    (dict(older_than="", interval=""), UnprocessableEntity,
     "Invalid lifecycle older_than '': [UnprocessableEntity] Duration literal cannot be empty"),
    (dict(interval="", type="compress", when={}), UnprocessableEntity,
     "Invalid lifecycle interval '': [UnprocessableEntity] Duration literal cannot be empty"),
    (dict(interval="xm"), UnprocessableEntity,
     "Invalid lifecycle interval 'xm': [UnprocessableEntity] Invalid duration value: xm"),
    (dict(interval="599s", type="compress", when={}), UnprocessableEntity,
     "Lifecycle interval '599s' is shorter than minimum allowed value of 10m"),
    (dict(type="compress", when={"$nope": []}), UnprocessableEntity,
     "Lifecycle type 'compress' does not support 'when' condition"),
    (dict(when={"$nope": []}), UnprocessableEntity,
     "Invalid lifecycle condition: Operator '$nope' not supported"),
    (dict(when={"#ext": {"x": {}}, "&a": {"$eq": 1}}), UnprocessableEntity,
     "Lifecycle condition cannot use '#ext' directive"),
]


@pytest.mark.parametrize("fields, error, message", VALIDATION)
def test_validation_order(fields, error, message):
    assert error_message(error, _validate, fields) == message


@pytest.mark.parametrize("fields", [
    {}, {"older_than": "1h", "interval": "10m"}, {"older_than": "2h -30m"},
    {"type": "compress"}, {"type": "compress", "when": None},
    {"when": {"&kind": {"$eq": "raw"}}}, {"when": {}}, {"entries": ["*"]},
])
def test_valid_settings(fields):
    _validate(fields)


def test_settings_durations():
    settings = LifecycleSettings(type="delete", bucket="b", older_than="1h 1s", interval="10m")
    assert settings.older_than_us == 3_601_000_000 and settings.interval_us == 600_000_000
