"""
The ``when`` evaluator (spec §3.10, §3.11, §6 item 8): one table per
operator family; stateful operators over record sequences; directives;
malformed conditions; the value helpers.
"""

import math

import pytest

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.storage.when import values
from reduct_twisted.storage.when import (
    Condition,
    ConditionEvalError,
    Duration,
    EvaluationError,
    RecordContext,
    ReferenceNotFound,
    compile_condition,
)

H = 3_600_000_000
S = 1_000_000


def _evaluate(when, labels=None, ts=0, computed=None, strict=False):
    condition = compile_condition(when, strict)
    return condition.evaluate(RecordContext(ts, labels or {}, computed or {}))


def _run(when, records, strict=False):
    """Evaluate one condition over ``records`` (``(ts, labels)``) in order."""
    condition = compile_condition(when, strict)
    return [condition.evaluate(RecordContext(ts, labels)) for ts, labels in records]


def _compile_error(when):
    with pytest.raises(UnprocessableEntity) as info:
        compile_condition(when)
    assert not isinstance(info.value, ConditionEvalError)
    return info.value.message


def _check(when, labels, expected, ts=0, computed=None):
    """``expected`` is a bool, or ``(exception class, message)`` in strict mode
    (and then ``False`` when not strict)."""
    if isinstance(expected, bool):
        for strict in (False, True):
            assert _evaluate(when, labels, ts, computed, strict) is expected, strict
        return
    exc_type, message = expected
    assert _evaluate(when, labels, ts, computed) is False
    with pytest.raises(exc_type) as info:
        _evaluate(when, labels, ts, computed, strict=True)
    assert info.value.message == message


def _fails(message, kind=EvaluationError):
    """An expected evaluation error (strict) for :func:`_check`."""
    return kind, message


def _missing(name):
    """An expected missing reference (404, strict) for :func:`_check`."""
    return _fails(f"Reference '{name}' not found", NotFound)


COMPARISON = [
    ({"&a": {"$eq": 1}}, {"a": "1"}, True),
    ({"&a": {"$eq": 1}}, {"a": "1.0"}, True),
    ({"&a": {"$eq": 1}}, {"a": "01"}, True),
    ({"&a": {"$eq": 5}}, {"a": "+5"}, True),
    ({"&a": {"$eq": 1000}}, {"a": "1_000"}, False),
    ({"&a": {"$eq": 1}}, {"a": " 1"}, False),
    ({"&a": {"$eq": "1"}}, {"a": "1"}, False),
    ({"&a": {"$eq": "x"}}, {"a": "x"}, True),
    ({"&a": {"$eq": True}}, {"a": "true"}, True),
    ({"&a": {"$eq": True}}, {"a": "True"}, False),
    ({"&a": {"$eq": 1}}, {"a": "true"}, True),
    ({"&a": {"$eq": 0.0}}, {"a": "false"}, True),
    ({"&a": {"$eq": 2**63 * 1.0}}, {"a": "9223372036854775808"}, True),
    ({"&a": {"$ne": 1}}, {"a": "x"}, True),
    ({"&a": {"$ne": 1}}, {"a": "1"}, False),
    ({"&a": {"$eq": "&a"}}, {"a": "NaN"}, False),
    ({"&a": {"$ne": "&a"}}, {"a": "nan"}, True),
    ({"&a": {"$eq": "&b"}}, {"a": "3", "b": "3.0"}, True),
    ({"&a": {"$gt": 5}}, {"a": "10"}, True),
    ({"&a": {"$gt": "5"}}, {"a": "10"}, False),
    ({"&a": {"$lt": "5"}}, {"a": "10"}, False),
    ({"&a": {"$lt": "b"}}, {"a": "a"}, True),
    ({"&a": {"$gt": 1}}, {"a": "abc"}, False),
    ({"&a": {"$lte": 1}}, {"a": "abc"}, False),
    ({"&a": {"$gte": 2.5}}, {"a": "2.5"}, True),
    ({"&a": {"$gt": 2.5}}, {"a": "2.5"}, False),
    ({"&a": {"$lte": -1}}, {"a": "-1"}, True),
    ({"&a": {"$lt": -1}}, {"a": "-1"}, False),
    ({"&a": {"$gt": False}}, {"a": "true"}, True),
    ({"&a": {"$gt": 10**9}}, {"a": "inf"}, True),
    ({"&a": {"$gt": 0}}, {"a": "1e-3"}, True),
    ({"$gt": [20, 10]}, {}, True),
    ({"$lt": ["&a", "&b"]}, {"a": "2", "b": "10"}, True),
    ({"$eq": ["1h", H]}, {}, True),
    ({"$gte": ["1h 30m", "90m"]}, {}, True),
    ({"$gt": ["1h 30m", "90m"]}, {}, False),
    ({"&a": {"$eq": "5s"}}, {"a": "5000000"}, True),
    ({"&a": {"$eq": "5s"}}, {"a": "5s"}, False),
    ({"&a": {"$lt": "2.5m"}}, {"a": "3"}, False),
]


@pytest.mark.parametrize("when, labels, expected", COMPARISON)
def test_comparison(when, labels, expected):
    _check(when, labels, expected)


LOGICAL = [
    ({"$and": [True, 1, "x", 0.5]}, {}, True),
    ({"$and": [True, 0]}, {}, False),
    ({"$and": []}, {}, True),
    ({"$all_of": [True, "&a"]}, {"a": "1"}, True),
    ({"$or": []}, {}, False),
    ({"$or": [0, "", False, 0.0]}, {}, False),
    ({"$or": [0, "x"]}, {}, True),
    ({"$any_of": ["&a", "&b"]}, {"a": "0", "b": "x"}, True),
    ({"$not": [False, 0]}, {}, True),
    ({"$not": [False, 1]}, {}, False),
    ({"$not": "&a"}, {"a": "false"}, True),
    ({"$none_of": ["&a"]}, {"a": "y"}, False),
    ({"$xor": [True, True]}, {}, False),
    ({"$xor": [True, False, False]}, {}, True),
    ({"$xor": []}, {}, False),
    ({"$one_of": ["&a", "&b", "&c"]}, {"a": "0", "b": "1", "c": ""}, True),
    ({"&a": {"$eq": 1}, "&b": {"$eq": 2}}, {"a": "1", "b": "2"}, True),
    ({"&a": {"$eq": 1}, "&b": {"$eq": 2}}, {"a": "1", "b": "3"}, False),
    ({"&label1": {"$and": True}}, {"label1": "true"}, True),
    ({"&label1": {"$and": True}}, {"label1": "false"}, False),
    # An object operand contributes each of its expressions.
    ({"$xor": [{"&a": {"$eq": 1}, "&b": {"$eq": 2}}]}, {"a": "1", "b": "2"}, False),
    ({"$xor": [{"&a": {"$eq": 1}, "&b": {"$eq": 2}}]}, {"a": "1", "b": "5"}, True),
    # Truthiness of typed label values.
    ({"$and": ["&a"]}, {"a": ""}, False),
    ({"$and": ["&a"]}, {"a": "0"}, False),
    ({"$and": ["&a"]}, {"a": "0.0"}, False),
    ({"$and": ["&a"]}, {"a": "NaN"}, True),
    ({"$and": ["&a"]}, {"a": " "}, True),
    # Short-circuit: the missing label is never looked at.
    ({"$or": [True, "&missing"]}, {}, True),
    ({"$and": [False, "&missing"]}, {}, False),
    ({"$not": ["&a", "&missing"]}, {"a": "1"}, False),
    ({"&a": {"$eq": 0}, "&missing": {"$eq": 1}}, {"a": "1"}, False),
    ({}, {}, True),
    (True, {}, True),
    ("&a", {"a": "false"}, False),
]


@pytest.mark.parametrize("when, labels, expected", LOGICAL)
def test_logical(when, labels, expected):
    _check(when, labels, expected)


MEMBERSHIP = [
    ({"$in": ["&camera", "front", "rear"]}, {"camera": "rear"}, True),
    ({"$in": ["&camera", "front", "rear"]}, {"camera": "side"}, False),
    ({"$in": ["&n", 1, 2]}, {"n": "2.0"}, True),
    ({"$in": ["&n", "1", "2"]}, {"n": "1"}, False),
    ({"$in": ["&b", 1]}, {"b": "true"}, True),
    ({"$in": ["&n", 1.5, math.nan]}, {"n": "nan"}, False),
    ({"$in": ["&n", "1s"]}, {"n": "1000000"}, True),
    ({"$in": ["&a", "&c", "&missing"]}, {"a": "x", "c": "x"}, True),
    ({"$in": ["&a", "&missing", "&c"]}, {"a": "x", "c": "x"}, _missing("missing")),
    ({"$nin": ["&camera", "front", "rear"]}, {"camera": "side"}, True),
    ({"$nin": ["&camera", "front", "rear"]}, {"camera": "front"}, False),
    ({"$nin": ["&n", "&m"]}, {"n": "1", "m": "1.0"}, False),
    ({"$in": [1, True, 2]}, {}, True),
    # NaN equals nothing, even the very same object (json.loads shares one).
    ({"$in": [math.nan, 1, math.nan]}, {}, False),
    ({"$nin": [math.nan, math.nan]}, {}, True),
    ({"$in": ["&n", math.nan]}, {"n": "nan"}, False),
    # "$$x" is the string "$x" (1.19, spec 1.20 §6.3): how attachment keys are sent.
    ({"$in": [{"&key": {"$cast": "string"}}, "$$plugin", "x"]}, {"key": "$plugin"}, True),
    ({"$in": [{"&key": {"$cast": "string"}}, "$$plugin"]}, {"key": "$$plugin"}, False),
    ({"$eq": ["&key", "$$$two"]}, {"key": "$$two"}, True),
    ({"$$k": {"$eq": "$$k"}}, {}, True),
]


@pytest.mark.parametrize("when, labels, expected", MEMBERSHIP)
def test_membership(when, labels, expected):
    _check(when, labels, expected)


EXISTS = [
    ({"$exists": ["x", "y"]}, {"x": "1", "y": ""}, True),
    ({"$exists": ["x", "y"]}, {"x": "1"}, False),
    ({"$exists": "x"}, {}, False),
    ({"$has": "x"}, {"x": "1"}, True),
    ({"$has": ["x", "&name"]}, {"x": "1", "name": "x"}, True),
    ({"$exists": ["&name"]}, {"name": "y"}, False),
    ({"$exists": [1]}, {"1": "a"}, True),
    ({"$exists": [1.0]}, {"1": "a"}, True),
    ({"$exists": ["&missing"]}, {}, _missing("missing")),
]


@pytest.mark.parametrize("when, labels, expected", EXISTS)
def test_exists(when, labels, expected):
    _check(when, labels, expected)


def test_exists_ignores_computed_labels():
    assert _evaluate({"$exists": "c"}, {}, computed={"c": "1"}) is False


STRING = [
    ({"&a": {"$contains": "ell"}}, {"a": "hello"}, True),
    ({"&a": {"$contains": "xyz"}}, {"a": "hello"}, False),
    ({"&a": {"$starts_with": "fr"}}, {"a": "front"}, True),
    ({"&a": {"$starts_with": "fr"}}, {"a": "rear"}, False),
    ({"&a": {"$ends_with": "nt"}}, {"a": "front"}, True),
    ({"&a": {"$ends_with": "fr"}}, {"a": "front"}, False),
    ({"&a": {"$contains": 1}}, {"a": "x1x"}, True),
    ({"&a": {"$starts_with": "tr"}}, {"a": "true"}, True),
    ({"&a": {"$ends_with": "50"}}, {"a": "1.50"}, False),
    ({"&a": {"$ends_with": ".5"}}, {"a": "1.50"}, True),
    ({"&a": {"$contains": "&b"}}, {"a": "abc", "b": "b"}, True),
    ({"$starts_with": [{"$cast": ["90m", "string"]}, "1h 3"]}, {}, True),
    ({"&a": {"$contains": "x"}}, {}, _missing("a")),
]


@pytest.mark.parametrize("when, labels, expected", STRING)
def test_string(when, labels, expected):
    _check(when, labels, expected)


ARITHMETIC = [
    ({"$eq": [{"$add": ["&a", "&b"]}, 5]}, {"a": "2", "b": "3"}, True),
    ({"$eq": [{"$add": ["&a", "&b", "&c"]}, 6.5]}, {"a": "2", "b": "3", "c": "1.5"}, True),
    ({"$eq": [{"$add": ["&a", "&b"]}, "xy"]}, {"a": "x", "b": "y"}, True),
    ({"$eq": [{"$add": []}, 0]}, {}, True),
    ({"$eq": [{"$add": ["&a"]}, "x"]}, {"a": "x"}, True),
    ({"$add": ["&a", "&b"]}, {"a": "x", "b": "1"}, _fails("Cannot add string to integer")),
    ({"$add": ["&a", "&b"]}, {"a": "1.5", "b": "x"}, _fails("Cannot add float to string")),
    ({"$eq": [{"$sub": ["&end", "&start"]}, 2000]}, {"end": "3000", "start": "1000"}, True),
    ({"$gt": [{"$sub": ["&end", "&start"]}, 1000]}, {"end": "3000", "start": "1000"}, True),
    ({"$sub": ["&a", "&b"]}, {"a": "x", "b": "y"}, _fails("Cannot subtract string")),
    ({"$sub": ["&a", "&b"]}, {"a": "1", "b": "y"}, _fails("Cannot subtract string from integer")),
    ({"$eq": [{"$mult": ["&a", 2.5]}, 5]}, {"a": "2"}, True),
    ({"$mult": ["&a", "&b"]}, {"a": "true", "b": "y"}, _fails("Cannot multiply boolean by string")),
    ({"$eq": [{"$div": ["&a", 2]}, 2.5]}, {"a": "5"}, True),
    ({"$div": ["&a", "&b"]}, {"a": "1", "b": "0"}, _fails("Cannot divide by zero")),
    ({"$div": ["&a", "&b"]}, {"a": "1", "b": "x"}, _fails("Cannot divide by string")),
    ({"$div": ["&a", "&b"]}, {"a": "x", "b": "1"}, _fails("Cannot divide string")),
    ({"$eq": [{"$div_num": ["&a", 2]}, 2]}, {"a": "5"}, True),
    ({"$eq": [{"$div_num": ["&a", 2]}, -2]}, {"a": "-5"}, True),
    ({"$div_num": ["&a", "&b"]}, {"a": "1", "b": "0.5"}, _fails("Cannot divide by zero")),
    ({"$eq": [{"$rem": ["&a", 3]}, -1]}, {"a": "-7"}, True),
    ({"$eq": [{"$rem": ["&a", 2.5]}, 2]}, {"a": "7"}, True),
    ({"$rem": ["&a", "&b"]}, {"a": "7", "b": "0"}, _fails("Cannot divide by zero")),
    ({"$rem": ["&a", "&b"]}, {"a": "x", "b": "2"}, _fails("Cannot divide string by integer")),
    ({"$eq": [{"$abs": "&a"}, 3]}, {"a": "-3"}, True),
    ({"$eq": [{"$abs": "&a"}, 1.5]}, {"a": "-1.5"}, True),
    ({"$abs": "&a"}, {"a": "x"}, _fails("Cannot calculate absolute value of a string")),
    ({"$eq": [{"$sub": ["&t", "1h"]}, 0]}, {"t": str(H)}, True),
    ({"$eq": [{"$add": ["1h", "30m"]}, "90m"]}, {}, True),
]


@pytest.mark.parametrize("when, labels, expected", ARITHMETIC)
def test_arithmetic(when, labels, expected):
    _check(when, labels, expected)


MISC = [
    ({"$eq": [{"$cast": ["&a", "int"]}, 3]}, {"a": "3.9"}, True),
    ({"$eq": [{"$cast": ["&a", "int"]}, 3]}, {"a": "3"}, True),
    ({"$cast": ["&a", "int"]}, {"a": "x"}, _fails("Value 'x' could not be parsed as integer")),
    ({"$eq": [{"$cast": ["&a", "float"]}, 1.5]}, {"a": "1.5"}, True),
    ({"$cast": ["&a", "float"]}, {"a": "x"}, _fails("Value 'x' could not be parsed as float")),
    ({"$eq": [{"$cast": ["&a", "string"]}, "1"]}, {"a": "1.0"}, True),
    ({"$eq": [{"$cast": ["&a", "bool"]}, True]}, {"a": "x"}, True),
    ({"$eq": [{"$cast": ["&a", "bool"]}, False]}, {"a": "0"}, True),
    ({"$eq": [{"$cast": ["&a", "duration"]}, "2s"]}, {"a": "2000000"}, True),
    # "1m 30s" would be a duration literal, "m 30s" is a string.
    ({"$ends_with": [{"$cast": [{"$cast": ["&a", "duration"]}, "string"]}, "m 30s"]},
     {"a": "90000000"}, True),
    ({"$eq": [{"$cast": [{"$cast": ["&a", "duration"]}, "string"]}, "1m 30s"]},
     {"a": "90000000"}, False),
    ({"$cast": ["&a", "&t"]}, {"a": "1", "t": "bogus"}, _fails("Unknown type 'bogus'")),
    ({"$eq": [{"$ref": "&which"}, 5]}, {"which": "x", "x": "5"}, True),
    ({"$eq": [{"$ref": "x"}, True]}, {"x": "true"}, True),
    ({"$ref": "nope"}, {}, (NotFound, "Label '\"nope\"' not found")),
    ({"$eq": ["$timestamp", 1000]}, {}, True),
    ({"$eq": ["$id", 1000]}, {}, True),
    ({"$timestamp": {"$gte": 1000}}, {}, True),
    ({"$timestamp": {"$gt": 1000}}, {}, False),
    ({"$gt": [{"$sub": ["$timestamp", "&start"]}, "0.5s"]}, {"start": "0"}, False),
    ({"$lt": [{"$sub": ["$timestamp", "&start"]}, "1ms"]}, {"start": "500"}, True),
]


@pytest.mark.parametrize("when, labels, expected", MISC)
def test_misc(when, labels, expected):
    _check(when, labels, expected, ts=1000)


COMPUTED = [
    ({"@score": {"$gt": 0.5}}, {}, {"score": "0.7"}, True),
    ({"@score": {"$gt": 0.5}}, {}, {"score": "0.2"}, False),
    ({"@score": {"$gt": 0.5}}, {"score": "0.7"}, {}, _missing("@score")),
    ({"&score": {"$gt": 0.5}}, {}, {"score": "0.7"}, _missing("score")),
    ({"$eq": ["@a", "&a"]}, {"a": "1"}, {"a": "1.0"}, True),
]


@pytest.mark.parametrize("when, labels, computed, expected", COMPUTED)
def test_computed_labels(when, labels, computed, expected):
    _check(when, labels, expected, computed=computed)


def test_computed_labels_missing_from_context():
    assert _evaluate({"@x": {"$eq": 1}}, {}, computed=None) is False
    ctx = RecordContext(0, {}, None)
    assert compile_condition({"@x": {"$eq": 1}}).evaluate(ctx) is False


STRICT = [
    ({"&missing": {"$eq": 1}}, {}, ReferenceNotFound, 404, "Reference 'missing' not found"),
    ({"&missing": {"$eq": 1}, "&a": {"$eq": 0}}, {"a": "1"}, ReferenceNotFound, 404,
     "Reference 'missing' not found"),
    ({"$add": ["&a", 1]}, {"a": "x"}, EvaluationError, 422, "Cannot add string to integer"),
    ({"$each_n": "&n"}, {"n": "0"}, EvaluationError, 422,
     "Value '0' is not a valid operand for $each_n"),
    ({"$each_t": "&t"}, {"t": "x"}, EvaluationError, 422, "Value 'x' could not be parsed as float"),
    ({"$limit": "&n"}, {"n": "x"}, EvaluationError, 422,
     "Value 'x' could not be parsed as integer"),
]


@pytest.mark.parametrize("when, labels, exc_type, status, message", STRICT)
def test_strict_mode_raises(when, labels, exc_type, status, message):
    """Strict: the evaluation error is raised (its status is the HTTP one);
    not strict: the record just does not match."""
    assert _evaluate(when, labels) is False
    with pytest.raises(exc_type) as info:
        _evaluate(when, labels, strict=True)
    assert (info.value.status, info.value.message) == (status, message)
    assert isinstance(info.value, ConditionEvalError)


def test_strict_error_does_not_poison_later_records():
    condition = compile_condition({"&a": {"$gt": 1}}, strict=True)
    with pytest.raises(ReferenceNotFound):
        condition.evaluate(RecordContext(1, {}))
    assert condition.evaluate(RecordContext(2, {"a": "2"})) is True
    assert compile_condition({"&a": {"$gt": 1}}, strict=1).strict is True


# -- stateful operators over record sequences ---------------------------------


def _stamps(*stamps, **labels):
    return [(ts, dict(labels)) for ts in stamps]


STATEFUL = [
    ({"$each_n": 3}, _stamps(*range(7)), [False, False, True, False, False, True, False]),
    ({"$each_n": 1}, _stamps(*range(3)), [True, True, True]),
    ({"$each_n": "&n"}, _stamps(*range(4), n="2"), [False, True, False, True]),
    ({"$each_n": -2}, _stamps(*range(4)), [False, True, False, True]),
    (
        {"&a": {"$eq": 1}, "$each_n": 2},
        [(t, {"a": a}) for t, a in enumerate("101101")],
        [False, False, True, False, False, True],
    ),
    (
        {"$each_t": "10s"},
        _stamps(0, 5 * S, 10 * S, 15 * S, 20 * S, 31 * S),
        [False, False, True, False, True, True],
    ),
    ({"$each_t": 0.002}, _stamps(1000, 2000, 3000, 4000, 5000), [False, False, True, False, True]),
    ({"$each_t": 0}, _stamps(1, 2, 3), [True, True, True]),
    ({"$each_t": "-1s"}, _stamps(1, 2), [True, True]),
    ({"$each_t": "&t"}, _stamps(0, 1 * S, 2 * S, 3 * S, t="2"), [False, False, True, False]),
    ({"$limit": 3}, _stamps(*range(5)), [True, True, True, False, False]),
    ({"$limit": 0}, _stamps(1, 2), [False, False]),
    (
        {"&a": {"$eq": 1}, "$limit": 2},
        [(t, {"a": a}) for t, a in enumerate("0110011")],
        [False, True, True, False, False, False, False],
    ),
    ({"$not": [{"$limit": 1}]}, _stamps(1, 2, 3), [False, False, False]),
    ({"$or": [True, {"$limit": 1}]}, _stamps(1, 2, 3), [True, True, True]),
]


@pytest.mark.parametrize("when, records, expected", STATEFUL)
def test_stateful_sequences(when, records, expected):
    """One condition serves one query; ``$each_n``/``$each_t`` skip the first
    record (spec §6 item 8); only records that reach an operator count."""
    assert _run(when, records) == expected
    assert _run(when, records, strict=True) == expected


def test_limit_exhausts_the_condition():
    condition = compile_condition({"&a": {"$eq": 1}, "$limit": 1}, strict=True)
    assert condition.evaluate(RecordContext(1, {"a": "1"})) is True
    assert condition.exhausted is False
    assert condition.evaluate(RecordContext(2, {"a": "0"})) is False
    assert condition.exhausted is False
    assert condition.evaluate(RecordContext(3, {"a": "1"})) is False
    assert condition.exhausted is True
    # Sticky, and nothing is evaluated any more (no strict error either).
    assert condition.evaluate(RecordContext(4, {})) is False


def test_fresh_resets_state_and_conditions_are_independent():
    when = {"$limit": 1, "$each_n": 1}
    first = compile_condition(when)
    second = compile_condition(when)
    assert [first.evaluate(RecordContext(t, {})) for t in (1, 2)] == [True, False]
    assert first.exhausted and not second.exhausted
    assert second.evaluate(RecordContext(1, {})) is True
    again = first.fresh()
    assert isinstance(again, Condition) and again is not first
    assert (again.when, again.strict, again.exhausted) == (when, False, False)
    assert again.evaluate(RecordContext(1, {})) is True


def test_each_t_counts_only_records_reaching_it():
    records = [(0, {"a": "1"}), (5 * S, {"a": "0"}), (10 * S, {"a": "0"}), (12 * S, {"a": "1"})]
    assert _run({"&a": {"$eq": 1}, "$each_t": "10s"}, records) == [False, False, False, True]
    assert _run({"$each_t": "10s", "&a": {"$eq": 1}}, records) == [False, False, False, False]


# -- directives -----------------------------------------------------------------

DIRECTIVES = [
    ({}, "select_labels", None),
    ({"#select_labels": ["camera", "x", "camera"]}, "select_labels", ["camera", "x"]),
    ({"#select_labels": "camera"}, "select_labels", ["camera"]),
    ({"#select_labels": ["1s"]}, "select_labels", ["1s"]),
    ({}, "ctx_before_records", 0),
    ({}, "ctx_before_us", None),
    ({"#ctx_before": 2}, "ctx_before_records", 2),
    ({"#ctx_before": 2}, "ctx_before_us", None),
    ({"#ctx_before": "2ms"}, "ctx_before_us", 2000),
    ({"#ctx_before": "2ms"}, "ctx_before_records", 0),
    ({"#ctx_before": [3]}, "ctx_before_records", 3),
    ({"#ctx_before": 2.7}, "ctx_before_records", 2),
    ({"#ctx_after": "1h"}, "ctx_after_us", H),
    ({"#ctx_after": "3"}, "ctx_after_records", 3),
    ({"#ctx_after": 0}, "ctx_after_records", 0),
    ({"#ext": {"select": {"x": 1}}}, "ext", {"select": {"x": 1}}),
    ({"#ext": [{"a": {}}, {"b": {}}]}, "ext", [{"a": {}}, {"b": {}}]),
    ({"#ext": "x"}, "ext", "x"),  # refused by the query, with its id (test_when_1_20.py)
    ({}, "ext", None),
    ({"#batch_size": "8MB"}, "io.batch_size", 8_000_000),
    ({"#batch_size": "1KiB"}, "io.batch_size", 1024),
    ({"#batch_size": "1.5 kb"}, "io.batch_size", 1500),
    ({"#batch_size": 1024}, "io.batch_size", 1024),
    ({"#batch_size": "10"}, "io.batch_size", 10),
    ({"#batch_metadata_size": "1MB"}, "io.batch_metadata_size", 1_000_000),
    ({"#batch_records": 100}, "io.batch_records", 100),
    ({"#batch_timeout": 5}, "io.batch_timeout_us", 5 * S),
    ({"#batch_timeout": "500ms"}, "io.batch_timeout_us", 500_000),
    ({"#record_timeout": "1s"}, "io.record_timeout_us", S),
    ({"#io_timeout": 30}, "io.io_timeout_us", 30 * S),
    ({}, "io.batch_size", None),
]


@pytest.mark.parametrize("when, attribute, expected", DIRECTIVES)
def test_directives(when, attribute, expected):
    value = compile_condition(when)
    for name in attribute.split("."):
        value = getattr(value, name)
    assert value == expected


def test_directives_do_not_take_part_in_evaluation():
    when = {"#select_labels": ["camera"], "#ctx_after": 1, "&camera": {"$starts_with": "fr"}}
    condition = compile_condition(when)
    assert condition.evaluate(RecordContext(1, {"camera": "front"})) is True
    assert condition.evaluate(RecordContext(2, {"camera": "rear"})) is False
    assert compile_condition({"#select_labels": ["x"]}).evaluate(RecordContext(1, {})) is True


DIRECTIVE_ERRORS = [
    ({"#foo": 1}, "Directive '#foo' is not supported"),
    ({"#ctx_before": None}, "Directive '#ctx_before' cannot be null"),
    ({"#ctx_before": -1}, "#ctx_before must be non-negative"),
    ({"#ctx_after": "-1s"}, "#ctx_after must be non-negative"),
    ({"#ctx_before": "abc"},
     "#ctx_before must be an integer or duration: Value 'abc' could not be parsed as integer"),
    ({"#ctx_before": [1, 2]}, "#ctx_before must be a single value"),
    ({"#ctx_after": []}, "#ctx_after must be a single value"),
    # 1.19.10 texts (spec 1.20 §6.3)
    ({"#ctx_before": [[1]]}, "Directive '#ctx_before' contains unsupported value type: [1]"),
    ({"#ctx_before": [None]}, "Directive '#ctx_before' contains unsupported value type: null"),
    ({"#select_labels": [{"a": 1}]},
     "Directive '#select_labels' does not support object items in arrays"),
    ({"#batch_records": 2**63},
     "Directive '#batch_records' contains integer value out of range: 9223372036854775808"),
    ({"#ctx_after": [1, -(2**63) - 1]},
     "Directive '#ctx_after' contains integer value out of range: -9223372036854775809"),
    ({"#ext": [{"a": {}}, [1]]}, "Directive '#ext' contains unsupported value type: [1]"),
    ({"#select_labels": []}, "#select_labels must contain at least one label"),
    ({"#select_labels": [1]}, "#select_labels must contain only string values"),
    ({"#select_labels": {"a": 1}}, "#select_labels must contain only string values"),
    ({"#batch_size": 2.5},
     "#batch_size must be a positive integer or string representing a positive integer"),
    ({"#batch_size": -1},
     "#batch_size must be a positive integer or string representing a positive integer"),
    ({"#batch_size": "8XB"},
     "#batch_size must be a positive integer or string: '8XB' is not a size"),
    ({"#batch_metadata_size": "8m"},
     "#batch_metadata_size must be a positive integer or string representing a positive integer"),
    ({"#batch_size": [1, 2]}, "#batch_size must be a single integer or string value"),
    ({"#batch_records": -1}, "#batch_records must be a positive integer"),
    ({"#batch_records": [1, 2]}, "#batch_records must be a single integer value"),
    ({"#batch_timeout": "10x"}, "#batch_timeout must be a positive integer or duration"),
    ({"#io_timeout": 1.5}, "#io_timeout must be a positive integer or duration"),
    ({"#record_timeout": [1, 2]}, "#record_timeout must be a single integer or duration value"),
]


@pytest.mark.parametrize("when, message", DIRECTIVE_ERRORS)
def test_directive_errors(when, message):
    assert _compile_error(when) == message


def test_directive_errors_come_in_upstream_order():
    """Unknown/null directives before expressions, directive values after."""
    assert _compile_error({"$bad": 1, "#nope": 1}) == "Directive '#nope' is not supported"
    assert _compile_error({"#ctx_before": -1, "$bad": 1}) == "Operator '$bad' not supported"


# -- malformed conditions --------------------------------------------------------

MALFORMED = [
    ({"$foo": [1]}, "Operator '$foo' not supported"),
    ({"foo": [1]}, "Operator 'foo' must start with '$'"),
    ({"&x": 5}, "Operator '&x' must start with '$'"),
    ({"$and": [{"#x": 1}]}, "Operator '#x' must start with '$'"),
    # {"$not": {…}} is object syntax: "$not" is the left operand, "&a" the operator.
    ({"$not": {"&a": 1}}, "Operator '&a' must start with '$'"),
    ({"$not": {"&a": {"$eq": 1}}}, "$eq requires exactly two operands"),
    # 1.19 text (1.17: "Operator '$bogus' not supported"; spec 1.20 §6.3)
    ({"$eq": ["$bogus", 1]}, "Unknown '$' literal '$bogus'; use '$$' to escape a string value"),
    ({"$eq": ["$eq", 1]}, "Unknown '$' literal '$eq'; use '$$' to escape a string value"),
    ({"$bogus": {"$eq": 1}}, "Unknown '$' literal '$bogus'; use '$$' to escape a string value"),
    ({"&x": {"$in": ["a", "b"]}}, 'Array type is not supported: ["a","b"]'),
    ({"&x": {"$eq": 1, "$ne": 2}}, "Object notation must have exactly one operator"),
    ({"&x": {}}, "Object notation must have exactly one operator"),
    ({"&x": {"$eq": None}}, "Null type is not supported: null"),
    ({"$and": [None]}, "Null type is not supported: null"),
    ({"$and": [[1]]}, "Array type is not supported: [1]"),
    ([1, 2], "Array type is not supported: [1,2]"),
    (None, "Null type is not supported: null"),
    ({"&a": {"$eq": 2**63}}, "Number 9223372036854775808 is out of the 64-bit integer range"),
    ({"$eq": [1]}, "$eq requires exactly two operands"),
    ({"$ne": [1, 2, 3]}, "$ne requires exactly two operands"),
    ({"$gt": []}, "$gt requires exactly two operands"),
    ({"$gte": [1]}, "$gte requires exactly two operands"),
    ({"$lt": [1]}, "$lt requires exactly two operands"),
    ({"$lte": 1}, "$lte requires exactly two operands"),
    ({"$sub": [1]}, "$sub requires exactly two operands"),
    ({"$mult": [1]}, "$mult requires exactly two operands"),
    ({"$div": [1]}, "$div requires exactly two operands"),
    ({"$div_num": [1]}, "$div_num requires exactly two operands"),
    ({"$rem": [1]}, "$rem requires exactly two operands"),
    ({"$abs": [1, 2]}, "$abs requires exactly one operand"),
    ({"$contains": ["a"]}, "$contains requires exactly two operands"),
    ({"$starts_with": ["a"]}, "$starts_with requires exactly two operands"),
    ({"$ends_with": ["a", "b", "c"]}, "$ends_with requires exactly two operands"),
    ({"$in": ["&a"]}, "$in operator requires at least two operands"),
    ({"$nin": []}, "$nin operator requires at least two operands"),
    ({"$exists": []}, "$exists requires at least one operand"),
    ({"$has": []}, "$has requires at least one operand"),
    ({"$cast": ["&a"]}, "$cast requires exactly two operands"),
    ({"$ref": []}, "$ref requires exactly one operand"),
    ({"$timestamp": [1]}, "$timestamp requires no operands"),
    ({"$id": 1}, "$id requires no operands"),
    ({"$eq": ["$each_n", 1]}, "Unknown '$' literal '$each_n'; use '$$' to escape a string value"),
    ({"$each_n": [1, 2]}, "$each_n requires exactly one operand"),
    ({"$each_t": []}, "$each_t requires exactly one operand"),
    ({"$limit": []}, "$limit requires exactly one operand"),
    # Literal types known at compile time.
    ({"$each_n": 0}, "Value '0' is not a valid operand for $each_n"),
    ({"$each_n": "x"}, "Value 'x' could not be parsed as integer"),
    ({"$each_t": "x"}, "Value 'x' could not be parsed as float"),
    ({"$limit": "ten"}, "Value 'ten' could not be parsed as integer"),
    ({"$cast": ["&a", "text"]}, "Unknown type 'text'"),
    ({"$sub": ["&a", "x"]}, "$sub cannot take the string 'x'"),
    ({"$rem": ["x", "&a"]}, "$rem cannot take the string 'x'"),
    ({"$div": ["&a", 0]}, "Cannot divide by zero"),
    ({"$div_num": ["&a", 0.5]}, "Cannot divide by zero"),
    ({"$add": ["&a", "x", 1]}, "$add cannot add strings and numbers"),
    ({"$gt": [{"$add": ["x", 1]}, 0]}, "Cannot add string to integer"),
    ({"$eq": [{"$div": [1, 0]}, 0]}, "Cannot divide by zero"),
    ({"$abs": "x"}, "Cannot calculate absolute value of a string"),
    ({"$or": [True, {"$cast": [1, "nope"]}]}, "Unknown type 'nope'"),
]


@pytest.mark.parametrize("when, message", MALFORMED)
def test_malformed_conditions(when, message):
    assert _compile_error(when) == message


ACCEPTED = [
    {"$add": ["&a", "x"]},
    {"$add": ["&a", 1, 2.5]},
    {"$rem": ["&a", 0]},
    {"$each_t": "10s"},
    {"$each_t": 1.5},
    {"$limit": "&n"},
    {"$in": ["&a", "&b"]},
    {"$cast": ["&a", "&type"]},
    {"$gt": [{"$div": ["&a", "&b"]}, 1]},
    {"&a": {"$eq": {"$add": [1, 2]}}},
    {"$timestamp": {"$gt": "1h"}},
    {"#ctx_before": 1, "#ctx_after": "1s", "#select_labels": ["a"], "#ext": {}, "#io_timeout": 1},
]


@pytest.mark.parametrize("when", ACCEPTED)
def test_accepted_conditions(when):
    assert isinstance(compile_condition(when), Condition)


def test_compile_errors_are_plain_422s():
    with pytest.raises(UnprocessableEntity) as info:
        compile_condition({"$div": [1, 0]})
    assert type(info.value) is UnprocessableEntity and info.value.status == 422


# -- the value helpers ----------------------------------------------------------

LABEL_TYPING = [
    ("true", True), ("false", False), ("True", "True"), ("42", 42), ("-42", -42), ("+7", 7),
    ("007", 7), ("1.5", 1.5), ("1.", 1.0), (".5", 0.5), ("1e3", 1000.0), ("-2E-1", -0.2),
    ("inf", math.inf), ("-Infinity", -math.inf), (" 1", " 1"), ("1 ", "1 "), ("1_0", "1_0"),
    ("0x10", "0x10"), ("", ""), (".", "."), ("e5", "e5"), ("5s", "5s"),
    ("9223372036854775807", 2**63 - 1), ("9223372036854775808", 2.0**63), ("١", "١"),
]


@pytest.mark.parametrize("text, expected", LABEL_TYPING)
def test_label_typing(text, expected):
    value = values.parse_label(text)
    assert (value, type(value)) == (expected, type(expected))


def test_label_typing_nan():
    assert math.isnan(values.parse_label("NaN")) and math.isnan(values.parse_label("-nan"))


DURATIONS = [
    ("1h 30m", 5400 * S), ("500ms", 500_000), ("100us", 100), ("2d 3h", 183_600_000_000),
    ("-30m", -1800 * S), ("1h -30m", 1800 * S), (" 5s\t1ms ", 5_001_000), ("0s", 0),
    ("2.5m", None), ("5 s", None), ("", None), ("  ", None), ("1h,2m", None), ("s5", None),
    ("5S", None), ("+5s", None), ("5sec", None), ("106751992d", None),
]


@pytest.mark.parametrize("text, expected", DURATIONS)
def test_duration_literals(text, expected):
    value = values.parse_duration(text)
    assert value == expected
    assert value is None or type(value) is Duration


TEXT_FORMS = [
    (True, "true"), (False, "false"), (3, "3"), (1.0, "1"), (0.5, "0.5"), (-0.0, "-0"),
    (1e16, "10000000000000000"), (1.5e-7, "0.00000015"), (math.nan, "NaN"), (math.inf, "inf"),
    (-math.inf, "-inf"), ("x", "x"), (Duration(5400 * S), "1h 30m"), (Duration(0), "0us"),
    (Duration(-S), "-1s"), (Duration(86_400 * S - H + 5), "23h 5us"), (Duration(1), "1us"),
]


@pytest.mark.parametrize("value, text", TEXT_FORMS)
def test_text_forms(value, text):
    assert values.to_text(value) == text


VALUE_OPS = [
    (values.add, True, False, 1, int),
    (values.add, 1, 2.0, 3.0, float),
    (values.add, Duration(1), 2, 3, int),
    (values.add, "a", "b", "ab", str),
    (values.add, 2**63 - 1, 1, -(2**63), int),
    (values.sub, True, 2, -1, int),
    (values.mult, 2**62, 4, 0, int),
    (values.mult, 2, 1.5, 3.0, float),
    (values.div, 5, 2, 2.5, float),
    (values.div, 4, 2, 2.0, float),
    (values.div_num, -7, 2, -3, int),
    (values.div_num, 7.9, 2, 3, int),
    (values.rem, -7, 3, -1, int),
    (values.rem, 7, -3, 1, int),
    (values.rem, 7.5, 2, 1.5, float),
    (values.rem, True, 2, 1, int),
]


@pytest.mark.parametrize("fn, a, b, expected, kind", VALUE_OPS)
def test_value_operations(fn, a, b, expected, kind):
    result = fn(a, b)
    assert (result, type(result)) == (expected, kind)


def test_value_operations_special_cases():
    assert math.isnan(values.rem(1.0, 0))
    assert math.isnan(values.rem(math.inf, 2))
    assert values.absolute(True) == 1 and type(values.absolute(True)) is int
    assert values.absolute(Duration(-5)) == 5 and type(values.absolute(Duration(-5))) is int
    assert values.float_to_int(math.nan) == 0
    assert values.float_to_int(1e300) == 2**63 - 1
    assert values.float_to_int(-1e300) == -(2**63)
    assert values.float_to_int(-2.9) == -2


CASTS = [
    ("bool", "", False), ("bool", 0.0, False), ("bool", "x", True), ("int", True, 1),
    ("int", 2.9, 2), ("int", "-3", -3), ("float", "1e2", 100.0), ("float", 3, 3.0),
    ("string", 2.0, "2"), ("string", Duration(H), "1h"), ("duration", 5, 5),
    ("duration", 2.9, 2), ("duration", "1s", S), ("duration", "7", 7), ("duration", "7.9", 7),
]


@pytest.mark.parametrize("kind, value, expected", CASTS)
def test_casts(kind, value, expected):
    result = values.caster(kind)(value)
    assert result == expected
    expected_type = {"bool": bool, "int": int, "float": float, "string": str, "duration": Duration}
    assert type(result) is expected_type[kind]


def test_cast_errors():
    with pytest.raises(EvaluationError, match="Unknown type 'x'"):
        values.caster("x")
    with pytest.raises(EvaluationError, match="Value 'y' could not be parsed as float"):
        values.caster("duration")("y")
