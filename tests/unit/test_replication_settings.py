"""
Replication settings (``replication/settings.py``) and filters
(``replication/filters.py``): shapes, upstream's validation texts, masking,
and which records pass.
"""

import pytest

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.replication.filters import FilterFailed, TransactionFilter
from reduct_twisted.replication.settings import (
    ReplicationSettings,
    check_replication_name,
    destination_url,
    parse_mode,
    parse_settings,
    validate,
)

BASE = {"src_bucket": "src", "dst_bucket": "dst", "dst_host": "http://127.0.0.1:8383"}


def _settings(**changes):
    return parse_settings(dict(BASE, **changes))


def _validate(settings, name="r", buckets=("src",), ports=(8383,)):
    validate(name, settings, lambda b: b in buckets, ports)


def test_defaults_and_json_masked():
    """Optional fields default as upstream; GET shows dst_token as null (1.17)."""
    settings = _settings(dst_token="secret")
    assert settings.to_json() == {
        "src_bucket": "src", "dst_bucket": "dst", "dst_host": "http://127.0.0.1:8383",
        "dst_token": None, "entries": [], "include": {}, "exclude": {},
        "each_n": None, "each_s": None, "when": None, "mode": "enabled",
    }
    assert settings.to_json(masked=False)["dst_token"] == "secret"
    assert "secret" not in repr(settings)


def test_all_fields_and_unknown_ones():
    """Every field is taken; nulls mean unset; newer clients' extra fields are ignored."""
    settings = parse_settings(dict(
        BASE, dst_token=None, entries=["a", "b-*"], include={"x": "1"}, exclude={"y": "2"},
        each_n=3, each_s=1, when={"&k": {"$eq": "v"}}, dst_prefix="", mode="enabled",
        compression="none",
    ))
    assert settings == ReplicationSettings(
        "src", "dst", "http://127.0.0.1:8383", "", ("a", "b-*"), {"x": "1"}, {"y": "2"}, 3, 1.0,
        {"&k": {"$eq": "v"}},
    )


def test_put_without_token_keeps_it():
    """A PUT without dst_token (or with null) keeps the old token; "" clears it."""
    old = _settings(dst_token="old")
    assert parse_settings(dict(BASE), old).dst_token == "old"
    assert parse_settings(dict(BASE, dst_token=None), old).dst_token == "old"
    assert parse_settings(dict(BASE, dst_token="new"), old).dst_token == "new"
    assert parse_settings(dict(BASE, dst_token=""), old).dst_token == ""


@pytest.mark.parametrize("body, message", [
    (None, "Invalid JSON: expected an object with src_bucket, dst_bucket and dst_host"),
    ([], "Invalid JSON: expected an object with src_bucket, dst_bucket and dst_host"),
    ({"dst_bucket": "d", "dst_host": "http://h"}, "Invalid JSON: missing field 'src_bucket'"),
    (dict(BASE, dst_host=None), "Invalid JSON: missing field 'dst_host'"),
    (dict(BASE, dst_bucket=5), "Invalid JSON: 'dst_bucket' must be a string"),
    (dict(BASE, entries="a"), "Invalid JSON: 'entries' must be a list of strings"),
    (dict(BASE, include={"a": 1}), "Invalid JSON: 'include' must be an object of strings"),
    (dict(BASE, each_n=-1), "Invalid JSON: 'each_n' must be an unsigned integer"),
    (dict(BASE, each_n=True), "Invalid JSON: 'each_n' must be an unsigned integer"),
    (dict(BASE, each_n=0), "'each_n' must be greater than 0"),
    (dict(BASE, each_s="1"), "Invalid JSON: 'each_s' must be a number"),
    (dict(BASE, each_s=0), "Time must be greater than 0 seconds"),
    (dict(BASE, each_s=10**400), "Invalid JSON: 'each_s' must be a number"),
    (dict(BASE, each_s=-(10**5000)), "Invalid JSON: 'each_s' must be a number"),
    (dict(BASE, when=[1]), "Invalid JSON: 'when' must be an object"),
])
def test_bad_shapes(body, message):
    """A body of the wrong shape is a 422 naming the field."""
    with pytest.raises(UnprocessableEntity) as e:
        parse_settings(body)
    assert e.value.message == message


@pytest.mark.parametrize("host", [
    "invalid_url", "", "127.0.0.1:8383", "ftp://h", "http://", "http://h:99999", "http://a b",
    "http://h/?q=1", "http://h/#x",
])
def test_invalid_destination_host(host):
    """A dst_host that is not an http(s) URL with a host: upstream's 422 text."""
    assert destination_url(host) is None
    with pytest.raises(UnprocessableEntity) as e:
        _validate(_settings(dst_host=host))
    assert e.value.message == f"Invalid destination host '{host}'"


@pytest.mark.parametrize("host", [
    "http://localhost", "https://central.example:8443/reduct/", "http://[::1]:8383",
    "HTTP://LOCALHOST:1",
])
def test_valid_destination_host(host):
    """http and https URLs with a host (and a base path) are accepted."""
    _validate(_settings(dst_host=host))


def test_missing_source_bucket():
    """The source bucket must exist: upstream's 404 text."""
    with pytest.raises(NotFound) as e:
        _validate(_settings(src_bucket="nope"), name="rep")
    assert e.value.message == "Source bucket 'nope' for replication 'rep' does not exist"


@pytest.mark.parametrize("host, same", [
    ("http://127.0.0.1:8383", True),
    ("http://localhost:8383/", True),
    ("http://0.0.0.0:8383", True),
    ("http://127.0.0.1:9000", False),
    ("http://other:8383", False),
    ("http://localhost", False),  # port 80
])
def test_replication_onto_itself(host, same):
    """Same bucket on a local host and one of our ports is refused (1.13)."""
    settings = _settings(dst_host=host, dst_bucket="src")
    if same:
        with pytest.raises(UnprocessableEntity) as e:
            _validate(settings)
        assert e.value.message == "Source and destination buckets must be different"
    else:
        _validate(settings)


def test_invalid_when():
    """A malformed when condition: upstream's 422 text with the parser's reason."""
    with pytest.raises(UnprocessableEntity) as e:
        _validate(_settings(when={"$UNKNOWN_OP": ["&x", "y"]}))
    assert e.value.message == "Invalid replication condition: Operator '$UNKNOWN_OP' not supported"


@pytest.mark.parametrize("when, reason", [
    ({"$each_t": "1" * 5000 + "s"},
     "Value '1111111111111111111111111111111111111111… (5001 characters)' "
     "could not be parsed as float"),
    ({"#batch_size": "1" * 5000, "&x": {"$eq": 1}},
     "#batch_size must be a positive integer or string: "
     "'1111111111111111111111111111111111111111… (5000 characters)' "
     "is out of the 64-bit integer range"),
    ({"&x": {"$gt": 10**5000}},
     "Number <a number of about 5001 digits> is out of the 64-bit integer range"),
])
def test_when_with_huge_numbers_is_invalid(when, reason):
    """5,000-digit durations, directive values and literals: a 422, not a crash (issue #12)."""
    with pytest.raises(UnprocessableEntity) as e:
        _validate(_settings(when=when))
    assert e.value.message == f"Invalid replication condition: {reason}"


def test_validation_order():
    """Host first, then source bucket, then the loop check, then when (upstream's order)."""
    bad = _settings(dst_host="x", src_bucket="nope", when={"$x": 1})
    with pytest.raises(UnprocessableEntity, match="Invalid destination host"):
        _validate(bad)
    with pytest.raises(NotFound):
        _validate(_settings(src_bucket="nope", when={"$x": 1}))


def test_replication_names():
    """Names are directory names: the bucket name rule."""
    check_replication_name("to-central_1")
    for name in ("", "a/b", "..", "a b", "x" * 256):
        with pytest.raises(UnprocessableEntity) as e:
            check_replication_name(name)
        assert e.value.message.startswith("Replication name can contain only letters")


# -- filters ---------------------------------------------------------------


def _accepts(settings, records, entry="e"):
    f = TransactionFilter(settings)
    return [ts for ts, labels in records if f.accept(entry, ts, labels)]


RECORDS = [(ts, {"kind": "keep" if ts % 2 else "drop", "n": str(ts)}) for ts in range(1, 9)]


def test_filter_everything_by_default():
    """No filter: every record of every entry."""
    assert _accepts(_settings(), RECORDS) == list(range(1, 9))


def test_filter_entries_and_wildcards():
    """entries names entries; a '*' makes a prefix."""
    settings = _settings(entries=["cam", "log-*"])
    f = TransactionFilter(settings)
    assert [e for e in ("cam", "camera", "log-1", "log", "x") if f.accept(e, 1, {})] == [
        "cam", "log-1",
    ]


def test_filter_when():
    """when selects records by their labels."""
    assert _accepts(_settings(when={"&kind": {"$eq": "keep"}}), RECORDS) == [1, 3, 5, 7]


@pytest.mark.parametrize("when, status, message", [
    ({"&missing": {"$eq": "x"}}, 404, "Reference 'missing' not found"),
    ({"$gt": [{"$sub": ["&kind", 1]}, 0]}, 422, "Cannot subtract string from integer"),
])
def test_filter_when_error_is_raised_not_swallowed(when, status, message):
    """
    An evaluation error of ``when`` (strict, as upstream's replication
    evaluates it) leaves the record out by raising ``FilterFailed``, so the
    task can count it; the filter goes on with the next record.
    """
    f = TransactionFilter(_settings(when=when))
    for ts, labels in RECORDS[:2]:
        with pytest.raises(FilterFailed) as info:
            f.accept("e", ts, labels)
        assert (info.value.status, info.value.message) == (status, message)


def test_filter_when_on_a_huge_label():
    """A 5,000-digit label is a float (+inf): compared, never an error (issue #12)."""
    f = TransactionFilter(_settings(when={"&n": {"$gt": 10}}))
    assert f.accept("e", 1, {"n": "1" * 5000}) is True
    assert f.accept("e", 2, {"n": "-" + "1" * 5000}) is False


def test_filter_include_exclude_each_n_each_s():
    """The query filters, in the query's order, each_n keeping the first."""
    assert _accepts(_settings(include={"kind": "keep"}), RECORDS) == [1, 3, 5, 7]
    assert _accepts(_settings(exclude={"kind": "keep"}), RECORDS) == [2, 4, 6, 8]
    assert _accepts(_settings(each_n=3), RECORDS) == [1, 4, 7]
    assert _accepts(_settings(each_s=0.000002), RECORDS) == [1, 3, 5, 7]
    assert _accepts(_settings(include={"kind": "keep"}, each_n=2), RECORDS) == [1, 5]


def test_filter_state_per_entry():
    """Sampling counts per entry, as upstream's filter per entry."""
    f = TransactionFilter(_settings(each_n=2))
    got = [(e, ts) for ts in range(1, 5) for e in ("a", "b") if f.accept(e, ts, {})]
    assert got == [("a", 1), ("b", 1), ("a", 3), ("b", 3)]


# -- mode (API 1.18) and entry paths (1.19) ---------------------------------------------

VARIANTS = "expected one of `enabled`, `paused`, `disabled`"


def test_mode_in_settings():
    """``mode`` defaults to enabled, also for a PUT of a paused one; bad values are 422."""
    assert _settings().mode == "enabled"
    assert _settings(mode=None).mode == "enabled"
    for mode in ("enabled", "paused", "disabled"):
        assert _settings(mode=mode).mode == mode
        assert _settings(mode=mode).to_json()["mode"] == mode
    paused = _settings(mode="paused")
    assert parse_settings(dict(BASE), paused).mode == "enabled"
    for bad, shown in (("PAUSED", "PAUSED"), ("", ""), (1, "1"), (True, "true"),
                       ({"a": 1}, '{"a": 1}')):
        with pytest.raises(UnprocessableEntity) as info:
            _settings(mode=bad)
        assert info.value.message == f"Invalid JSON: unknown variant `{shown}`, {VARIANTS}"


@pytest.mark.parametrize("body, message", [
    (None, "Invalid JSON: EOF while parsing a value at line 1 column 0"),
    ([], "Invalid JSON: expected an object with 'mode'"),
    ("paused", "Invalid JSON: expected an object with 'mode'"),
    ({}, "Invalid JSON: missing field `mode`"),
    ({"mode": "off"}, f"Invalid JSON: unknown variant `off`, {VARIANTS}"),
    ({"mode": None}, f"Invalid JSON: unknown variant `null`, {VARIANTS}"),
])
def test_parse_mode_refusals(body, message):
    with pytest.raises(UnprocessableEntity) as info:
        parse_mode(body)
    assert info.value.message == message


def test_parse_mode():
    """The PATCH body; other keys are ignored."""
    assert parse_mode({"mode": "paused"}) == "paused"
    assert parse_mode({"mode": "disabled", "other": 1}) == "disabled"


def test_filter_nested_entries_and_meta():
    """
    Entry paths match ``entries`` as names and prefixes; ``<e>/$meta`` goes
    with ``<e>`` (a top-level ``$meta`` only without an entries filter),
    and the record filters and ``when`` never apply to it (spec 1.20 §3.1).
    """
    settings = _settings(entries=["a/b", "logs/*"], include={"k": "v"}, each_n=2,
                         when={"&kind": {"$eq": "keep"}})
    f = TransactionFilter(settings)
    names = ["a/b", "a/b/$meta", "a", "a/$meta", "a/b/c", "a/b/c/$meta", "logs/x",
             "logs/x/$meta", "$meta", "x/$meta"]
    meta = [e for e in names if f.accept(e, 1, {})]
    assert meta == ["a/b/$meta", "logs/x/$meta"]
    # every $meta record passes, whatever its labels and how many came before
    assert all(f.accept("a/b/$meta", ts, {}) for ts in range(2, 10))
    assert [ts for ts in range(1, 7)
            if f.accept("a/b", ts, {"k": "v", "kind": "keep"})] == [1, 3, 5]
    everything = TransactionFilter(_settings(when={"&kind": {"$eq": "keep"}}))
    assert everything.accept("$meta", 1, {}) and everything.accept("x/y/$meta", 1, {})
    assert not everything.accept("x/y", 1, {"kind": "drop"})
