"""
The ``when`` additions of spec 1.20 §6.3: the date-part operators, ``$gate``
(its state machine, table-driven), ``$each_t`` with time going backwards,
and the extension specs of a query (``ext``/``#ext``, pipelines) with their
texts.  No clock, no reactor: conditions are evaluated over record tables.
"""

import pytest

from reduct_twisted.errors import NotFound, UnprocessableEntity
from reduct_twisted.storage.when import (
    EvaluationError,
    RecordContext,
    compile_condition,
)
from reduct_twisted.storage.when.extensions import check_extensions
from reduct_twisted.storage.when.parse import parse_object
from reduct_twisted.storage.when.record import GateState

S = 1_000_000
#: 2024-01-01T00:00:00.123456Z, a Monday.
NEW_YEAR = 1_704_067_200_123_456
#: 2024-07-01T12:00:00Z (Berlin: 14:00, summer time).
JULY = 1_719_835_200 * S
#: 2024-03-31T01:00:00Z: Berlin switches from 02:00 CET to 03:00 CEST.
DST_SWITCH = 1_711_846_800 * S
#: 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z.
YEAR_1 = -62_135_596_800 * S
YEAR_10000 = 253_402_300_800 * S


def _part(op, ts, tz=None, labels=None):
    """The value of date part ``op`` of a record's timestamp."""
    operands = ["$timestamp"] if tz is None else ["$timestamp", tz]
    (node,) = parse_object({op: operands})
    value = node.fn(RecordContext(ts, labels or {}))
    assert compile_condition({"$eq": [{op: operands}, value]}).evaluate(RecordContext(ts, {}))
    return value


DATE_PARTS = [
    ("$second", NEW_YEAR, None, 0),
    ("$minute", NEW_YEAR + 61 * S, None, 1),
    ("$hour", NEW_YEAR, None, 0),
    ("$hour", NEW_YEAR, "Europe/Berlin", 1),
    ("$hour", NEW_YEAR, "America/New_York", 19),
    ("$hour", NEW_YEAR, "UTC", 0),
    ("$day", NEW_YEAR, None, 1),
    ("$day", NEW_YEAR, "America/New_York", 31),
    ("$month", NEW_YEAR, None, 1),
    ("$month", NEW_YEAR, "America/New_York", 12),
    ("$year", NEW_YEAR, None, 2024),
    ("$year", NEW_YEAR, "America/New_York", 2023),
    ("$weekday", NEW_YEAR, None, 0),  # Monday
    ("$weekday", NEW_YEAR, "America/New_York", 6),  # still Sunday there
    ("$weekday", NEW_YEAR + 6 * 86_400 * S, None, 6),
    ("$hour", JULY, None, 12),
    ("$hour", JULY, "Europe/Berlin", 14),
    ("$hour", DST_SWITCH - 1, "Europe/Berlin", 1),
    ("$minute", DST_SWITCH - 1, "Europe/Berlin", 59),
    ("$hour", DST_SWITCH, "Europe/Berlin", 3),
    ("$hour", JULY, "Asia/Kolkata", 17),
    ("$minute", JULY, "Asia/Kolkata", 30),
    ("$year", -1, None, 1969),
    ("$second", -1, None, 59),
    ("$year", YEAR_1, None, 1),
    ("$year", YEAR_10000 - 1, None, 9999),
]


@pytest.mark.parametrize("op, ts, tz, expected", DATE_PARTS)
def test_date_parts(op, ts, tz, expected):
    assert _part(op, ts, tz) == expected


def test_date_parts_over_any_integer_expression():
    # A label holding the timestamp, a timestamp shifted by arithmetic, a
    # label naming the zone; constants are folded at compile time.
    labels = {"t": str(JULY), "tz": "Europe/Berlin"}
    ctx = RecordContext(0, labels)
    assert compile_condition({"$eq": [{"$hour": ["&t", "&tz"]}, 14]}).evaluate(ctx)
    assert compile_condition(
        {"$eq": [{"$hour": [{"$add": ["&t", 3600 * S]}]}, 13]}).evaluate(ctx)
    assert compile_condition({"$eq": [{"$year": [0]}, 1970]}).evaluate(ctx)
    assert compile_condition({"$eq": [{"$hour": [JULY, "Europe/Berlin"]}, 14]}).evaluate(ctx)
    # The documented example of spec §6.3.
    when = {"$eq": [{"$hour": ["$timestamp", "Europe/Berlin"]}, 12]}
    assert compile_condition(when).evaluate(RecordContext(JULY - 2 * 3600 * S, {}))
    assert not compile_condition(when).evaluate(RecordContext(JULY, {}))


DATE_ARITY = [
    ({"$hour": []}, "$hour requires one or two operands"),
    ({"$second": ["$timestamp", "UTC", 1]}, "$second requires one or two operands"),
    ({"$weekday": []}, "$weekday requires one or two operands"),
    ({"$eq": [{"$year": []}, 1]}, "$year requires one or two operands"),
    # Folded constants fail when compiled, as every pure operator (decision 12).
    ({"$hour": [0, "Mars/Olympus"]}, "Invalid timezone: 'Mars/Olympus'"),
    ({"$hour": [0, 5]}, "$hour requires timezone to be a string"),
    ({"$day": [2**63 - 1]},
     "$day requires a valid timestamp in microseconds, got 9223372036854775807"),
]


@pytest.mark.parametrize("when, message", DATE_ARITY)
def test_date_part_errors_at_compile_time(when, message):
    with pytest.raises(UnprocessableEntity) as info:
        compile_condition(when)
    assert info.value.message == message


DATE_EVAL_ERRORS = [
    ({"$hour": ["$timestamp", "Mars/Olympus"]}, {}, 0, "Invalid timezone: 'Mars/Olympus'"),
    ({"$hour": ["$timestamp", "europe/berlin"]}, {}, 0, "Invalid timezone: 'europe/berlin'"),
    ({"$hour": ["$timestamp", "localtime"]}, {}, 0, "Invalid timezone: 'localtime'"),
    ({"$hour": ["$timestamp", "posix/Europe/Berlin"]}, {}, 0,
     "Invalid timezone: 'posix/Europe/Berlin'"),
    ({"$hour": ["$timestamp", "../../etc/passwd"]}, {}, 0,
     "Invalid timezone: '../../etc/passwd'"),
    ({"$hour": ["$timestamp", "zone.tab"]}, {}, 0, "Invalid timezone: 'zone.tab'"),
    ({"$hour": ["$timestamp", "&tz"]}, {"tz": ""}, 0, "Invalid timezone: ''"),
    ({"$hour": ["$timestamp", "&tz"]}, {"tz": "x" * 300}, 0,
     "Invalid timezone: '" + "x" * 40 + "… (300 characters)'"),
    ({"$minute": ["$timestamp", "&tz"]}, {"tz": "5"}, 0,
     "$minute requires timezone to be a string"),
    ({"$month": ["$timestamp", "5s"]}, {}, 0, "$month requires timezone to be a string"),
    ({"$hour": ["&t"]}, {"t": "9223372036854775807"}, 0,
     "$hour requires a valid timestamp in microseconds, got 9223372036854775807"),
    ({"$year": ["&t"]}, {"t": str(YEAR_10000)}, 0,
     f"$year requires a valid timestamp in microseconds, got {YEAR_10000}"),
    ({"$year": ["&t"]}, {"t": str(YEAR_1 - 1)}, 0,
     f"$year requires a valid timestamp in microseconds, got {YEAR_1 - 1}"),
    # Year 1 in UTC is still year 0 in New York: out of range after the offset.
    ({"$year": ["&t", "America/New_York"]}, {"t": str(YEAR_1)}, 0,
     f"$year requires a valid timestamp in microseconds, got {YEAR_1}"),
    ({"$hour": ["&t"]}, {"t": "noon"}, 0, "Value 'noon' could not be parsed as integer"),
]


@pytest.mark.parametrize("expr, labels, ts, message", DATE_EVAL_ERRORS)
def test_date_part_evaluation_errors_follow_the_strict_rules(expr, labels, ts, message):
    when = {"$eq": [expr, 1]}
    ctx = RecordContext(ts, labels)
    # Not strict: the record does not match; the query goes on.
    assert compile_condition(when).evaluate(ctx) is False
    with pytest.raises(EvaluationError) as info:
        compile_condition(when, strict=True).evaluate(ctx)
    assert info.value.message == message and info.value.status == 422


def test_date_part_timestamp_is_evaluated_before_the_zone():
    when = {"$eq": [{"$hour": ["&t", "&tz"]}, 1]}
    with pytest.raises(EvaluationError) as info:
        compile_condition(when, strict=True).evaluate(RecordContext(0, {"t": "x"}))
    assert info.value.message == "Value 'x' could not be parsed as integer"
    with pytest.raises(NotFound) as info:
        compile_condition(when, strict=True).evaluate(RecordContext(0, {"t": "1"}))
    assert info.value.message == "Reference 'tz' not found"


def test_dollar_literals_of_date_parts_need_operands():
    # "$hour" alone names an operator that requires operands: not a literal.
    with pytest.raises(UnprocessableEntity) as info:
        compile_condition({"$eq": ["$hour", 1]})
    assert info.value.message == "Unknown '$' literal '$hour'; use '$$' to escape a string value"
    assert compile_condition({"$eq": ["$$hour", "$$hour"]}).evaluate(RecordContext(0, {}))


# -- $gate ------------------------------------------------------------------------

#: (name, window in µs, [(ts, input, expected output)]): the state machine of
#: spec §6.3 step by step.
GATE_TABLE = [
    ("opens on a rising edge, holds, expires, needs a false to re-arm", 10 * S, [
        (0, False, False),
        (1 * S, True, True),       # edge: window [1s, 11s)
        (5 * S, True, True),
        (10 * S, False, False),    # open, but the input is false
        (10 * S + 1, True, True),  # still the same window: output = input
        (11 * S, True, False),     # at the end: closes, waits for a false
        (30 * S, True, False),
        (31 * S, False, False),    # re-armed
        (32 * S, True, True),      # new edge: window [32s, 42s)
        (41 * S, True, True),
        (42 * S, True, False),
    ]),
    ("true from the first record", 10 * S, [
        (100, True, True),
        (100 + 10 * S - 1, True, True),
        (100 + 10 * S, True, False),
        (100 + 10 * S + 1, True, False),
    ]),
    ("a record exactly at the end re-arms only if false", 1, [
        (0, True, True),
        (1, False, False),
        (2, True, True),
        (3, True, False),
        (4, False, False),
        (5, True, True),
    ]),
    ("a zero window never opens long enough", 0, [
        (0, True, False),
        (1, True, False),
        (2, False, False),
        (3, True, False),
    ]),
    ("no edge while the input stays true from before", 10 * S, [
        (0, True, True),
        (10 * S, True, False),
        (15 * S, True, False),
        (16 * S, False, False),
        (17 * S, False, False),
        (18 * S, True, True),
    ]),
    ("time going backwards resets the state", 10 * S, [
        (0, True, True),
        (20 * S, True, False),     # expired, waiting for a false
        (5 * S, True, True),       # backwards: reset, so this is a rising edge
        (14 * S, True, True),
        (15 * S, True, False),
        (3 * S, False, False),     # backwards again: reset, input false
        (4 * S, True, True),
    ]),
    ("equal timestamps are not backwards", 10 * S, [
        (5, True, True),
        (5, True, True),
        (5, False, False),
    ]),
]


@pytest.mark.parametrize("name, window, steps", GATE_TABLE, ids=[t[0] for t in GATE_TABLE])
def test_gate_state_machine(name, window, steps):
    state = GateState()
    assert [state.step(ts, window, value) for ts, value, _ in steps] == [
        out for _, _, out in steps]
    # The same table through the operator: the window as a duration literal
    # and as a number of seconds, the input from a label.
    records = [RecordContext(ts, {"on": "true" if value else "false"}) for ts, value, _ in steps]
    for literal in (f"{window}us", window / S):
        condition = compile_condition({"$gate": [literal, "&on"]}, strict=True)
        assert [condition.evaluate(r) for r in records] == [out for _, _, out in steps], literal


def test_gate_inside_a_condition_and_per_query_state():
    # Only the records reaching $gate move it; fresh() starts over.
    when = {"&kind": {"$eq": "alarm"}, "$gate": ["2s", {"&level": {"$gt": 5}}]}
    records = [
        (0, {"kind": "alarm", "level": "7"}),      # edge: window [0, 2s)
        (1 * S, {"kind": "info", "level": "9"}),   # does not reach $gate
        (1 * S + 1, {"kind": "alarm", "level": "8"}),
        (2 * S, {"kind": "alarm", "level": "9"}),  # end of the window
        (3 * S, {"kind": "alarm", "level": "1"}),  # false: re-armed
        (4 * S, {"kind": "alarm", "level": "6"}),  # new edge
    ]
    condition = compile_condition(when)
    expected = [True, False, True, False, False, True]
    assert [condition.evaluate(RecordContext(ts, lb)) for ts, lb in records] == expected
    again = condition.fresh()
    assert [again.evaluate(RecordContext(ts, lb)) for ts, lb in records] == expected


def test_gate_window_from_a_label_and_its_conversion():
    condition = compile_condition({"$gate": ["&w", True]})
    assert condition.evaluate(RecordContext(0, {"w": "0.5"})) is True  # [0, 0.5s)
    assert condition.evaluate(RecordContext(S // 2 - 1, {"w": "0.5"})) is True
    assert condition.evaluate(RecordContext(S // 2, {"w": "0.5"})) is False
    # A negative window is an empty one.
    negative = compile_condition({"$gate": [-5, True]})
    assert negative.evaluate(RecordContext(0, {})) is False
    bad = compile_condition({"$gate": ["&w", True]}, strict=True)
    with pytest.raises(EvaluationError) as info:
        bad.evaluate(RecordContext(0, {"w": "soon"}))
    assert info.value.message == "Value 'soon' could not be parsed as float"


GATE_ERRORS = [
    ({"$gate": []}, "$gate requires exactly two operands"),
    ({"$gate": ["1s"]}, "$gate requires exactly two operands"),
    ({"$gate": ["1s", True, True]}, "$gate requires exactly two operands"),
    ({"$gate": "1s"}, "$gate requires exactly two operands"),
    ({"$gate": ["soon", True]}, "Value 'soon' could not be parsed as float"),
    ({"$eq": ["$gate", 1]}, "Unknown '$' literal '$gate'; use '$$' to escape a string value"),
]


@pytest.mark.parametrize("when, message", GATE_ERRORS)
def test_gate_errors(when, message):
    with pytest.raises(UnprocessableEntity) as info:
        compile_condition(when)
    assert info.value.message == message


EACH_T_BACKWARDS = [
    ("1s", [0, 2 * S, 1 * S, 3 * S, 2 * S + 1, 4 * S], [False, True, False, True, False, True]),
    # A record back in time does not match and becomes the reference (upstream 1.18).
    (0.1, [200_000, 100_000, 200_000], [False, False, True]),
    ("1s", [5 * S, 1 * S, 2 * S, 3 * S], [False, False, True, True]),
    (0, [5, 3, 3, 4], [True, False, True, True]),
]


@pytest.mark.parametrize("every, stamps, expected", EACH_T_BACKWARDS)
def test_each_t_with_time_going_backwards_is_no_error(every, stamps, expected):
    for strict in (False, True):
        condition = compile_condition({"$each_t": every}, strict=strict)
        assert [condition.evaluate(RecordContext(ts, {})) for ts in stamps] == expected


# -- extensions --------------------------------------------------------------------

def _ext_error(ext=None, directive=None, qid=7):
    when = None if directive is None else {"#ext": directive}
    condition = None if when is None else compile_condition(when)
    with pytest.raises(UnprocessableEntity) as info:
        check_extensions(ext, condition, qid)
    assert info.value.status == 422
    return info.value.message


EXT_ERRORS = [
    ({"select": {}}, "Unknown extension 'select' in query id=7"),
    ({"select": {"columns": ["a"]}, "when": {"&a": {"$gt": 1}}},
     "Unknown extension 'select' in query id=7"),
    ([{"select": {}}], "Unknown extension 'select' in query id=7"),
    ([{"select": {}}, {"ros": {}}], "Unknown extension 'select' in query id=7 at step 0"),
    # An object naming several extensions and no when: one step each.
    ({"ros": {}, "select": {}}, "Unknown extension 'ros' in query id=7 at step 0"),
    ({}, "Extension name is not found in query id=7"),
    ([], "Extension name is not found in query id=7"),
    ({"when": {"&a": {"$eq": 1}}}, "Extension name is not found in query id=7"),
    ([{"a": {}}, {}], "Unknown extension 'a' in query id=7 at step 0"),
    ([{}, {"a": {}}], "Extension name is not found in query id=7"),
    ({"a": {}, "b": {}, "when": {"&x": {"$eq": 1}}},
     "Multiple extensions are not supported in query id=7"),
    ([{"a": {}, "b": {}}, {"c": {}}],
     "Each '#ext' pipeline step must contain exactly one extension in query id=7"),
    ([{"a": {}}, "b"], "Each '#ext' pipeline step must be a JSON object in query id=7"),
    ([1], "Each '#ext' pipeline step must be a JSON object in query id=7"),
    ("select", "Extension parameters must be a JSON object or an array of JSON objects "
               "in query id=7"),
    (5, "Extension parameters must be a JSON object or an array of JSON objects in query id=7"),
    (True, "Extension parameters must be a JSON object or an array of JSON objects "
           "in query id=7"),
    # A step's when must compile.
    ({"select": {}, "when": {"$bogus": 1}}, "Operator '$bogus' not supported"),
    ({"select": {}, "when": None}, "Null type is not supported: null"),
]


@pytest.mark.parametrize("spec, message", EXT_ERRORS)
def test_extension_specs_field_and_directive(spec, message):
    assert _ext_error(ext=spec) == message
    assert _ext_error(directive=spec) == message


def test_extension_directive_wins_over_the_field():
    assert _ext_error(ext={"a": {}}, directive={"b": {}}) == (
        "Unknown extension 'b' in query id=7")
    assert _ext_error(ext=5, directive=[{"b": {}}, {"c": {}}]) == (
        "Unknown extension 'b' in query id=7 at step 0")


def test_no_extension_is_fine():
    check_extensions(None, None, 1)
    check_extensions(None, compile_condition({"&a": {"$eq": 1}}), 1)


def test_replication_when_takes_gate_and_date_parts_per_entry():
    """A replication's ``when`` (strict, one state per entry) takes the new operators."""
    from reduct_twisted.replication.filters import FilterFailed, TransactionFilter
    from reduct_twisted.replication.settings import parse_settings

    settings = parse_settings({
        "src_bucket": "src", "dst_bucket": "dst", "dst_host": "http://127.0.0.1:1",
        "when": {"$gate": ["2s", {"$eq": [{"$hour": ["$timestamp", "Europe/Berlin"]}, 14]}]},
    })
    f = TransactionFilter(settings)
    july_noon = 1_719_835_200 * S  # 14:00 in Berlin
    got = [(e, i) for i in range(4) for e in ("a", "b") if f.accept(e, july_noon + i * S, {})]
    assert got == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    zone = parse_settings({
        "src_bucket": "src", "dst_bucket": "dst", "dst_host": "http://127.0.0.1:1",
        "when": {"$eq": [{"$hour": ["$timestamp", "&tz"]}, 1]},
    })
    with pytest.raises(FilterFailed) as info:
        TransactionFilter(zone).accept("a", 0, {"tz": "Mars/Olympus"})
    assert (info.value.status, info.value.message) == (422, "Invalid timezone: 'Mars/Olympus'")
