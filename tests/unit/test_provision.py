"""
Parsing of provisioned buckets and tokens from the environment (spec §3.14).
"""

import pytest
from twisted.logger import Logger, LogLevel, formatEvent

from reduct_twisted.provision import (
    ProvisionedBucket,
    ProvisionedToken,
    Provisioning,
    parse_byte_size,
    parse_provisioning,
)
from reduct_twisted.storage.settings import parse_settings_fields

NO_RIGHTS = {"full_access": False, "read": [], "write": []}
SECRET = "s3cr3t-Value-42"


def _warnings(log_events) -> list:
    """The formatted warnings of this module among ``log_events``."""
    return [
        formatEvent(e) for e in log_events
        if e.get("log_namespace") == "reduct_twisted.provision"
        and e.get("log_level") == LogLevel.warn
    ]


def _buckets(environ) -> dict:
    return {b.name: b.settings for b in parse_provisioning(environ).buckets}


def _tokens(environ) -> dict:
    return {t.name: t for t in parse_provisioning(environ).tokens}


# -- byte sizes ------------------------------------------------------------


@pytest.mark.parametrize("text, size", [
    ("512", 512),
    ("0", 0),
    (" 7 ", 7),
    ("1TB", 10**12),
    ("10.4 MB", 10_400_000),
    ("1KiB", 1024),
    ("1 kib", 1024),
    ("1KB", 1000),
    ("1kb", 1000),
    ("3k", 3000),
    ("1.5 KB", 1500),
    ("0.5KiB", 512),
    ("1.0001 KB", 1000),
    (".5 MB", 500_000),
    ("2 GiB", 2 * 1024**3),
    ("3MiB", 3 * 1024**2),
    ("1 TiB", 1024**4),
    ("1PB", 10**15),
    ("1PiB", 1024**5),
    ("1GB", 10**9),
    ("12 B", 12),
    ("12b", 12),
    ("18446744073709551615", 2**64 - 1),
])
def test_byte_sizes(text, size):
    """Plain bytes, SI units (powers of 1000) and binary units (powers of
    1024) are understood, with or without a space; fractions round down."""
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("text", [
    "", "  ", "abc", "-1", "+1", "1.5", "1 XB", "1e3", "10 MB extra", "1,5MB", "MB",
    "1 M B", "0x10", "1_000", "١٢", "20000PB", "18446744073709551616", "1.2.3KB",
])
def test_byte_size_garbage(text):
    """Anything else, or more than 64 bits, is a ValueError."""
    with pytest.raises(ValueError):
        parse_byte_size(text)


# -- buckets ---------------------------------------------------------------


def test_bucket_every_variable(log_events):
    """Every bucket variable becomes the matching settings field."""
    environ = {
        "RS_BUCKET_A_NAME": "data",
        "RS_BUCKET_A_QUOTA_TYPE": "FIFO",
        "RS_BUCKET_A_QUOTA_SIZE": "1TB",
        "RS_BUCKET_A_MAX_BLOCK_SIZE": "10.4 MB",
        "RS_BUCKET_A_MAX_BLOCK_RECORDS": "500",
    }
    assert parse_provisioning(environ) == Provisioning(
        [ProvisionedBucket("data", {"quota_type": "FIFO", "quota_size": 10**12,
                                    "max_block_size": 10_400_000, "max_block_records": 500})],
        [],
    )
    assert _warnings(log_events) == []


def test_bucket_name_only():
    """A bucket with only a name has no settings: the engine's defaults apply."""
    assert _buckets({"RS_BUCKET_X_NAME": "b"}) == {"b": {}}


@pytest.mark.parametrize("raw, expected", [
    ("NONE", "NONE"), ("fifo", "FIFO"), (" Hard ", "HARD"), ("hArD", "HARD"),
])
def test_quota_type_case_insensitive(raw, expected):
    """The quota type may be given in any case."""
    environ = {"RS_BUCKET_A_NAME": "b", "RS_BUCKET_A_QUOTA_TYPE": raw}
    assert _buckets(environ) == {"b": {"quota_type": expected}}


def test_max_block_records_is_a_plain_number():
    """MAX_BLOCK_RECORDS is a whole number, not a byte size."""
    environ = {"RS_BUCKET_A_NAME": "b", "RS_BUCKET_A_MAX_BLOCK_RECORDS": " 2048 "}
    assert _buckets(environ) == {"b": {"max_block_records": 2048}}


@pytest.mark.parametrize("suffix, raw, reason", [
    ("QUOTA_TYPE", "SOFT", "Invalid quota type"),
    ("QUOTA_TYPE", "FIFO HARD", "Invalid quota type"),
    ("QUOTA_SIZE", "lots", "not a byte size"),
    ("QUOTA_SIZE", "5 XB", "unknown unit"),
    ("MAX_BLOCK_SIZE", "-1", "not a byte size"),
    ("MAX_BLOCK_SIZE", "1.5", "not a whole number of bytes"),
    ("MAX_BLOCK_SIZE", "99999 PiB", "too large"),
    ("MAX_BLOCK_RECORDS", "1.5", "not a whole number"),
    ("MAX_BLOCK_RECORDS", "1k", "not a whole number"),
    ("MAX_BLOCK_RECORDS", "18446744073709551616", "too large"),
])
def test_invalid_setting_warned_and_default_used(log_events, suffix, raw, reason):
    """An invalid setting is logged, naming the variable and its value, and
    left out (the default applies); the other settings and the bucket stay."""
    environ = {"RS_BUCKET_A_NAME": "b", f"RS_BUCKET_A_{suffix}": raw}
    other = "QUOTA_SIZE" if suffix != "QUOTA_SIZE" else "MAX_BLOCK_SIZE"
    environ[f"RS_BUCKET_A_{other}"] = "2KB"
    assert _buckets(environ) == {"b": {other.lower(): 2000}}
    [warning] = _warnings(log_events)
    assert warning.startswith(f"Ignoring RS_BUCKET_A_{suffix}={raw!r}: ")
    assert reason in warning
    assert "default" in warning


def test_empty_setting_is_unset(log_events):
    """An empty or blank variable counts as not set, without a warning."""
    environ = {"RS_BUCKET_A_NAME": "b", "RS_BUCKET_A_QUOTA_TYPE": "",
               "RS_BUCKET_A_QUOTA_SIZE": "  "}
    assert _buckets(environ) == {"b": {}}
    assert _warnings(log_events) == []


@pytest.mark.parametrize("name", ["", "  ", "bad name", "a/b", "..", "b.1", "x" * 256, "é"])
def test_invalid_bucket_name_drops_bucket(log_events, name):
    """A bucket whose name breaks the storage name rule is left out, with a
    warning naming the variable."""
    environ = {"RS_BUCKET_A_NAME": name, "RS_BUCKET_A_QUOTA_TYPE": "FIFO",
               "RS_BUCKET_B_NAME": "good"}
    assert _buckets(environ) == {"good": {}}
    [warning] = _warnings(log_events)
    assert warning.startswith("Ignoring RS_BUCKET_A_NAME=")
    assert "bucket not provisioned" in warning


def test_bucket_name_trimmed_and_longest_name_accepted():
    """Surrounding white space is not part of a name; 255 characters are fine."""
    environ = {"RS_BUCKET_A_NAME": " b-1_X ", "RS_BUCKET_B_NAME": "y" * 255}
    assert sorted(_buckets(environ)) == ["b-1_X", "y" * 255]


def test_settings_without_name_warned(log_events):
    """Variables of a group without a NAME provision nothing and are logged."""
    environ = {"RS_BUCKET_Q_QUOTA_TYPE": "FIFO", "RS_BUCKET_Q_MAX_BLOCK_SIZE": "1KB"}
    assert parse_provisioning(environ) == Provisioning([], [])
    assert _warnings(log_events) == [
        "Ignoring RS_BUCKET_Q_MAX_BLOCK_SIZE: RS_BUCKET_Q_NAME is not set",
        "Ignoring RS_BUCKET_Q_QUOTA_TYPE: RS_BUCKET_Q_NAME is not set",
    ]


def test_grouping_by_id():
    """Variables group by the ID between the prefix and the suffix (which
    may contain underscores); results are sorted by name, not ID."""
    environ = {
        "RS_BUCKET_MY_DATA_NAME": "zeta",
        "RS_BUCKET_MY_DATA_QUOTA_TYPE": "HARD",
        "RS_BUCKET_MY_DATA_QUOTA_SIZE": "1KB",
        "RS_BUCKET_MY_NAME": "alpha",
        "RS_BUCKET_MY_MAX_BLOCK_RECORDS": "3",
        "RS_BUCKET_1_NAME": "mid",
        "RS_BUCKET_1_QUOTA_TYPE": "FIFO",
    }
    assert parse_provisioning(environ).buckets == [
        ProvisionedBucket("alpha", {"max_block_records": 3}),
        ProvisionedBucket("mid", {"quota_type": "FIFO"}),
        ProvisionedBucket("zeta", {"quota_type": "HARD", "quota_size": 1000}),
    ]


def test_duplicate_bucket_names_last_id_wins(log_events):
    """Two groups naming one bucket: the group whose ID sorts last wins, with
    a warning."""
    environ = {
        "RS_BUCKET_B_NAME": "b", "RS_BUCKET_B_QUOTA_TYPE": "HARD",
        "RS_BUCKET_A_NAME": "b", "RS_BUCKET_A_QUOTA_TYPE": "FIFO",
        "RS_BUCKET_A_MAX_BLOCK_RECORDS": "9",
    }
    assert _buckets(environ) == {"b": {"quota_type": "HARD"}}
    [warning] = _warnings(log_events)
    assert "RS_BUCKET_B_NAME" in warning and "RS_BUCKET_A_NAME" in warning
    assert "'b'" in warning and "later one wins" in warning


def test_settings_accepted_by_engine_parser():
    """The settings are those the engine's parser accepts unchanged."""
    environ = {"RS_BUCKET_A_NAME": "b", "RS_BUCKET_A_QUOTA_TYPE": "hard",
               "RS_BUCKET_A_QUOTA_SIZE": "1 GiB", "RS_BUCKET_A_MAX_BLOCK_SIZE": "1",
               "RS_BUCKET_A_MAX_BLOCK_RECORDS": "0"}
    [bucket] = parse_provisioning(environ).buckets
    assert parse_settings_fields(bucket.settings) == bucket.settings
    assert type(bucket.settings["quota_size"]) is int


# -- tokens ----------------------------------------------------------------


def test_token_every_variable(log_events):
    """Every token variable becomes the matching field."""
    environ = {
        "RS_TOKEN_A_NAME": "reader",
        "RS_TOKEN_A_VALUE": SECRET,
        "RS_TOKEN_A_FULL_ACCESS": "true",
        "RS_TOKEN_A_READ": "b1,b2",
        "RS_TOKEN_A_WRITE": "b3",
    }
    assert parse_provisioning(environ) == Provisioning(
        [],
        [ProvisionedToken("reader", SECRET,
                          {"full_access": True, "read": ["b1", "b2"], "write": ["b3"]})],
    )
    assert _warnings(log_events) == []


def test_token_defaults():
    """Without permissions variables a token has no rights."""
    [token] = parse_provisioning({"RS_TOKEN_A_NAME": "t", "RS_TOKEN_A_VALUE": "v"}).tokens
    assert (token.name, token.value, token.permissions) == ("t", "v", NO_RIGHTS)


@pytest.mark.parametrize("raw, expected", [
    ("true", True), ("TRUE", True), (" True ", True), ("false", False), ("False", False),
    ("", False),
])
def test_full_access_values(raw, expected):
    """FULL_ACCESS is true or false in any case; empty means false."""
    environ = {"RS_TOKEN_A_NAME": "t", "RS_TOKEN_A_VALUE": "v", "RS_TOKEN_A_FULL_ACCESS": raw}
    assert _tokens(environ)["t"].permissions["full_access"] is expected


@pytest.mark.parametrize("raw", ["yes", "1", "on", "truee"])
def test_invalid_full_access_warned(log_events, raw):
    """Another FULL_ACCESS value is logged and counts as false."""
    environ = {"RS_TOKEN_A_NAME": "t", "RS_TOKEN_A_VALUE": "v", "RS_TOKEN_A_FULL_ACCESS": raw}
    assert _tokens(environ)["t"].permissions == NO_RIGHTS
    [warning] = _warnings(log_events)
    assert warning.startswith(f"Ignoring RS_TOKEN_A_FULL_ACCESS={raw!r}: ")
    assert "using false" in warning


def test_permission_lists_trimmed(log_events):
    """READ and WRITE are comma lists: items are trimmed, empty and repeated
    items dropped, wildcards kept."""
    environ = {"RS_TOKEN_A_NAME": "t", "RS_TOKEN_A_VALUE": "v",
               "RS_TOKEN_A_READ": " b1 , b2,,b1, ,pre*,",
               "RS_TOKEN_A_WRITE": ",,"}
    assert _tokens(environ)["t"].permissions == {
        "full_access": False, "read": ["b1", "b2", "pre*"], "write": [],
    }
    assert _warnings(log_events) == []


def test_invalid_permission_item_warned(log_events):
    """An item that can be no bucket name is logged and left out."""
    environ = {"RS_TOKEN_A_NAME": "t", "RS_TOKEN_A_VALUE": "v",
               "RS_TOKEN_A_WRITE": "ok, not ok,a/b"}
    assert _tokens(environ)["t"].permissions["write"] == ["ok"]
    assert [w.split(":")[0] for w in _warnings(log_events)] == [
        "Ignoring RS_TOKEN_A_WRITE='not ok'", "Ignoring RS_TOKEN_A_WRITE='a/b'",
    ]


@pytest.mark.parametrize("value", [None, "", "   "])
def test_token_without_value_dropped(log_events, value):
    """A token without a value (unset, empty or blank) is left out, with a
    warning naming the VALUE variable."""
    environ = {"RS_TOKEN_A_NAME": "t", "RS_TOKEN_B_NAME": "u", "RS_TOKEN_B_VALUE": "x"}
    if value is not None:
        environ["RS_TOKEN_A_VALUE"] = value
    assert list(_tokens(environ)) == ["u"]
    [warning] = _warnings(log_events)
    assert "RS_TOKEN_A_VALUE" in warning and "'t' not provisioned" in warning


def test_token_value_trimmed():
    """Surrounding white space is not part of a value (HTTP trims header values)."""
    environ = {"RS_TOKEN_A_NAME": "t", "RS_TOKEN_A_VALUE": f"  {SECRET}\n"}
    assert _tokens(environ)["t"].value == SECRET


@pytest.mark.parametrize("name", ["", "with space", "a/b", "x" * 256])
def test_invalid_token_name_dropped(log_events, name):
    """A token with an invalid name is left out, with a warning."""
    environ = {"RS_TOKEN_A_NAME": name, "RS_TOKEN_A_VALUE": SECRET}
    assert parse_provisioning(environ).tokens == []
    [warning] = _warnings(log_events)
    assert warning.startswith("Ignoring RS_TOKEN_A_NAME=")
    assert "token not provisioned" in warning
    assert SECRET not in warning


def test_duplicate_token_names_last_id_wins(log_events):
    """Two groups naming one token: the later ID wins, with a warning."""
    environ = {"RS_TOKEN_2_NAME": "t", "RS_TOKEN_2_VALUE": "second",
               "RS_TOKEN_1_NAME": "t", "RS_TOKEN_1_VALUE": "first",
               "RS_TOKEN_1_FULL_ACCESS": "true"}
    [token] = parse_provisioning(environ).tokens
    assert (token.value, token.permissions) == ("second", NO_RIGHTS)
    [warning] = _warnings(log_events)
    assert "RS_TOKEN_2_NAME" in warning and "RS_TOKEN_1_NAME" in warning


def test_tokens_sorted_by_name():
    """Tokens come sorted by name whatever their IDs."""
    environ = {"RS_TOKEN_A_NAME": "zz", "RS_TOKEN_A_VALUE": "1",
               "RS_TOKEN_B_NAME": "aa", "RS_TOKEN_B_VALUE": "2",
               "RS_TOKEN_C_D_NAME": "mm", "RS_TOKEN_C_D_VALUE": "3"}
    assert [(t.name, t.value) for t in parse_provisioning(environ).tokens] == [
        ("aa", "2"), ("mm", "3"), ("zz", "1"),
    ]


def test_repr_hides_value():
    """Neither repr nor str of a token (or of the whole result) shows its value."""
    token = ProvisionedToken("t", SECRET, dict(NO_RIGHTS))
    result = Provisioning([], [token])
    for text in (repr(token), str(token), repr(result), str(result)):
        assert SECRET not in text
    assert "name='t'" in repr(token) and "permissions=" in repr(token)


def test_token_values_never_logged(log_events):
    """No warning shows a token value, whatever is wrong around it."""
    environ = {
        "RS_TOKEN_A_NAME": "bad name", "RS_TOKEN_A_VALUE": SECRET + "a",
        "RS_TOKEN_B_NAME": "t", "RS_TOKEN_B_VALUE": SECRET + "b",
        "RS_TOKEN_B_FULL_ACCESS": "maybe", "RS_TOKEN_B_READ": "x y",
        "RS_TOKEN_C_NAME": "t", "RS_TOKEN_C_VALUE": SECRET + "c",
        "RS_TOKEN_D_VALUE": SECRET + "d",
    }
    assert [t.value for t in parse_provisioning(environ).tokens] == [SECRET + "c"]
    assert len(_warnings(log_events)) == 5
    for event in log_events:
        assert SECRET not in formatEvent(event)
        assert SECRET not in repr(event)


# -- everything else -------------------------------------------------------


def test_nothing_to_provision(log_events):
    """No RS_BUCKET_*, RS_TOKEN_* or RS_REPLICATION_<ID>_* variables:
    nothing, silently (the RS_REPLICATION_* settings are not resources)."""
    environ = {"RS_API_TOKEN": "x", "RS_DATA_PATH": "/d", "PATH": "/bin",
               "RS_REPLICATION_TIMEOUT": "3", "RS_REPLICATION_LOG_SIZE": "10"}
    assert parse_provisioning(environ) == Provisioning([], [])
    assert parse_provisioning({}) == Provisioning([], [])
    assert _warnings(log_events) == []


def test_names_match_whole_variable():
    """Only variables of the exact form RS_BUCKET_<ID>_NAME start a group."""
    environ = {"X_RS_BUCKET_A_NAME": "a", "RS_BUCKET_A_NAME_X": "b", "rs_bucket_a_name": "c",
               "RS_TOKEN_A_NAMES": "d", "RS_BUCKET__NAME": "e"}
    assert _buckets(environ) == {"e": {}}
    assert parse_provisioning(environ).tokens == []


def test_buckets_and_tokens_together():
    """Buckets and tokens are read independently from one environment."""
    environ = {"RS_BUCKET_1_NAME": "b", "RS_TOKEN_1_NAME": "b", "RS_TOKEN_1_VALUE": "v",
               "RS_TOKEN_1_READ": "b"}
    result = parse_provisioning(environ)
    assert result.buckets == [ProvisionedBucket("b", {})]
    assert [(t.name, t.permissions["read"]) for t in result.tokens] == [("b", ["b"])]


def test_custom_logger(log_events):
    """Warnings go to the logger given."""
    events = []
    parse_provisioning({"RS_BUCKET_A_NAME": "b", "RS_BUCKET_A_QUOTA_TYPE": "x"},
                       Logger(observer=events.append))
    assert [formatEvent(e) for e in events] == [
        "Ignoring RS_BUCKET_A_QUOTA_TYPE='x': Invalid quota type; using the default",
    ]
    assert _warnings(log_events) == []


# -- replications (RS_REPLICATION_<ID>_*) ---------------------------------------


def _replications(environ) -> dict:
    return {r.name: r.settings for r in parse_provisioning(environ).replications}


REPLICATION = {
    "RS_REPLICATION_A_NAME": "to-central",
    "RS_REPLICATION_A_SRC_BUCKET": "cams",
    "RS_REPLICATION_A_DST_BUCKET": "cams-all",
    "RS_REPLICATION_A_DST_HOST": "https://central:8383",
}


def test_replication_minimal():
    """Name, source, destination bucket and host: the rest takes its default."""
    assert _replications(REPLICATION) == {"to-central": {
        "src_bucket": "cams", "dst_bucket": "cams-all", "dst_host": "https://central:8383",
        "dst_token": "", "entries": [], "include": {}, "exclude": {},
    }}


def test_replication_every_setting(log_events):
    """Token, entries, include/exclude labels, each_n, each_s and when are read."""
    environ = dict(
        REPLICATION,
        RS_REPLICATION_A_DST_TOKEN=SECRET,
        RS_REPLICATION_A_ENTRIES=" front, rear-* ,",
        RS_REPLICATION_A_INCLUDE_kind="keep",
        RS_REPLICATION_A_EXCLUDE_debug="true",
        RS_REPLICATION_A_EACH_N="10",
        RS_REPLICATION_A_EACH_S="0.5",
        RS_REPLICATION_A_WHEN='{"&score": {"$gt": 0.5}}',
    )
    [replication] = parse_provisioning(environ).replications
    assert replication.settings == {
        "src_bucket": "cams", "dst_bucket": "cams-all", "dst_host": "https://central:8383",
        "dst_token": SECRET, "entries": ["front", "rear-*"], "include": {"kind": "keep"},
        "exclude": {"debug": "true"}, "each_n": 10, "each_s": 0.5,
        "when": {"&score": {"$gt": 0.5}},
    }
    assert SECRET not in repr(replication)
    assert _warnings(log_events) == []


@pytest.mark.parametrize("variable, value", [
    ("RS_REPLICATION_A_EACH_N", "0"),
    ("RS_REPLICATION_A_EACH_N", "many"),
    ("RS_REPLICATION_A_EACH_S", "-1"),
    ("RS_REPLICATION_A_EACH_S", "nan"),
    ("RS_REPLICATION_A_WHEN", "{not json"),
    ("RS_REPLICATION_A_WHEN", "[1]"),
])
def test_replication_invalid_values_ignored(variable, value, log_events):
    """An invalid optional value is logged and ignored; the replication stays."""
    settings = _replications(dict(REPLICATION, **{variable: value}))["to-central"]
    key = variable[len("RS_REPLICATION_A_"):].lower()
    assert key not in settings
    [warning] = _warnings(log_events)
    assert warning.startswith(f"Ignoring {variable}=")


@pytest.mark.parametrize("value, mode", [("paused", "paused"), (" Disabled ", "disabled"),
                                         ("ENABLED", "enabled")])
def test_replication_mode(value, mode, log_events):
    """RS_REPLICATION_<ID>_MODE (1.19), any case; unset, the settings have no mode."""
    settings = _replications(dict(REPLICATION, RS_REPLICATION_A_MODE=value))["to-central"]
    assert settings["mode"] == mode
    assert "mode" not in _replications(REPLICATION)["to-central"]
    assert _warnings(log_events) == []


def test_replication_invalid_mode_drops_it(log_events):
    """An invalid mode leaves the replication out (spec 1.20 §9)."""
    assert _replications(dict(REPLICATION, RS_REPLICATION_A_MODE="sometimes")) == {}
    assert _warnings(log_events) == [
        "Ignoring RS_REPLICATION_A_MODE='sometimes': not one of enabled, paused, disabled; "
        "replication 'to-central' not provisioned"
    ]


@pytest.mark.parametrize("missing", ["SRC_BUCKET", "DST_BUCKET", "DST_HOST"])
def test_replication_without_required_setting(missing, log_events):
    """Without its source, destination bucket or host, a replication is left out."""
    environ = dict(REPLICATION)
    del environ[f"RS_REPLICATION_A_{missing}"]
    assert _replications(environ) == {}
    assert _warnings(log_events) == [
        f"RS_REPLICATION_A_{missing} is not set or empty; replication 'to-central' "
        "not provisioned"
    ]


def test_replication_token_never_logged(log_events):
    """An orphan DST_TOKEN is reported without its value."""
    parse_provisioning({"RS_REPLICATION_X_DST_TOKEN": SECRET})
    [warning] = _warnings(log_events)
    assert "RS_REPLICATION_X_NAME is not set" in warning and SECRET not in warning


def test_replication_bad_name_and_duplicates(log_events):
    """An invalid name is ignored; of two groups with one name the later <ID> wins."""
    environ = dict(REPLICATION, RS_REPLICATION_B_NAME="to-central",
                   RS_REPLICATION_B_SRC_BUCKET="other", RS_REPLICATION_B_DST_BUCKET="d",
                   RS_REPLICATION_B_DST_HOST="http://h", RS_REPLICATION_C_NAME="a/b")
    assert _replications(environ)["to-central"]["src_bucket"] == "other"
    assert len(_warnings(log_events)) == 2


def test_token_expires_at(log_events):
    """RS_TOKEN_<ID>_EXPIRES_AT (API 1.19): an RFC 3339 time with an offset."""
    environ = {"RS_TOKEN_A_NAME": "t", "RS_TOKEN_A_VALUE": "v",
               "RS_TOKEN_A_EXPIRES_AT": "2030-01-01T01:00:00+01:00"}
    assert _tokens(environ)["t"].expires_at == 1893456000
    assert _warnings(log_events) == []
    assert _tokens({"RS_TOKEN_A_NAME": "t", "RS_TOKEN_A_VALUE": "v"})["t"].expires_at is None


@pytest.mark.parametrize("raw", ["2030-01-01T00:00:00", "tomorrow", "2030-13-01T00:00:00Z"])
def test_invalid_token_expires_at_ignored(log_events, raw):
    """An invalid expiry is ignored with a warning; the token is still provisioned, without expiry."""
    environ = {"RS_TOKEN_A_NAME": "t", "RS_TOKEN_A_VALUE": "v", "RS_TOKEN_A_EXPIRES_AT": raw}
    token = _tokens(environ)["t"]
    assert (token.value, token.expires_at) == ("v", None)
    [warning] = _warnings(log_events)
    assert warning.startswith(f"Ignoring RS_TOKEN_A_EXPIRES_AT={raw!r}: ")
