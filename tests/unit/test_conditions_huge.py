"""
Unbounded digit strings in the ``when`` language (issue #12): a label value,
a duration, a directive value or an integer literal of thousands of digits
gives a defined result or a 422 with a readable text, never Python's
int-string limit (``ValueError: Exceeds the limit (4300 digits)…``).
"""

import math

import pytest

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.when import values
from reduct_twisted.storage.when import (
    ConditionEvalError,
    Duration,
    RecordContext,
    compile_condition,
)

BIG = "1" * 5000
I64_MAX = 2**63 - 1


def _both(when, labels):
    """The result non-strict and strict (strict must not raise either)."""
    results = []
    for strict in (False, True):
        condition = compile_condition(when, strict)
        results.append(condition.evaluate(RecordContext(1, labels)))
    assert results[0] == results[1]
    return results[0]


def _refused(when) -> str:
    with pytest.raises(UnprocessableEntity) as info:
        compile_condition(when)
    assert not isinstance(info.value, ConditionEvalError)
    message = info.value.message
    assert "4300" not in message and "sys.set_int_max_str_digits" not in message
    assert len(message) < 300
    return message


def test_a_huge_label_is_a_float_as_upstream_types_it():
    """Not an i64, so Rust's f64 parser makes it +inf (spec §3.11 typing); no exception."""
    assert values.parse_label(BIG) == math.inf
    assert values.parse_label("-" + BIG) == -math.inf
    assert values.parse_label("0" * 5000 + "42") == 42  # leading zeros: still an i64
    assert values.parse_label(BIG + "x") == BIG + "x"


@pytest.mark.parametrize("when, expected", [
    ({"&n": {"$gt": 10}}, True),
    ({"&n": {"$lt": 10}}, False),
    ({"&n": {"$eq": 10}}, False),
    ({"&n": {"$ne": 10}}, True),
    ({"&n": {"$gte": 1.5e308}}, True),
    ({"&n": {"$gt": "10"}}, False),  # a string is never ordered against a number
    ({"$in": ["&n", 1, 2, "x"]}, False),
    ({"$nin": ["&n", 1, 2]}, True),
    ({"$gt": [{"$add": ["&n", 1]}, 0]}, True),
    ({"$eq": [{"$sub": ["&n", "&n"]}, 0]}, False),  # inf - inf is NaN
    ({"$gt": [{"$mult": ["&n", -1]}, 0]}, False),
    ({"$gt": [{"$div": ["&n", 2]}, 0]}, True),
    ({"$gt": [{"$abs": ["&n"]}, 0]}, True),
    ({"$eq": [{"$cast": ["&n", "int"]}, I64_MAX]}, True),  # saturated, as Rust's `as`
    ({"$eq": [{"$cast": ["&n", "string"]}, "inf"]}, True),
    ({"$starts_with": ["&n", "1"]}, False),  # its text form is "inf"
    ({"$eq": [{"$ref": "n"}, 10]}, False),
])
def test_a_huge_label_compares_without_error(when, expected):
    assert _both(when, {"n": BIG}) is expected


def test_a_huge_label_in_integer_arithmetic_is_an_evaluation_error_not_a_crash():
    """``$div_num`` wants integers: inf saturates, so the result is defined."""
    assert _both({"$gt": [{"$div_num": ["&n", 2]}, 0]}, {"n": BIG}) is True
    assert _both({"$eq": [{"$rem": ["&n", 2]}, 0]}, {"n": BIG}) is False


def test_a_huge_string_compared_with_a_huge_label():
    """A huge literal string is a string (not a number): never equal to the float label."""
    assert _both({"&n": {"$eq": BIG}}, {"n": BIG}) is False
    assert _both({"$eq": [{"$cast": ["&n", "string"]}, {"$cast": [BIG, "string"]}]},
                 {"n": BIG}) is False


def test_a_huge_label_under_stateful_operators():
    """``$each_n``/``$limit`` with a label operand: saturated, defined results."""
    assert _both({"$limit": "&n"}, {"n": BIG}) is True
    assert _both({"$each_t": "&n"}, {"n": BIG}) is False  # the first record is the reference


def test_a_huge_duration_literal_stays_a_string():
    """Upstream's i64 parse of the part fails: a string constant, as in decision 4."""
    assert values.parse_duration(BIG + "s") is None
    assert values.parse_duration("1s " + BIG + "ms") is None
    assert values.parse_duration("0" * 5000 + "5s") == Duration(5_000_000)
    assert _both({"&n": {"$gt": BIG + "s"}}, {"n": "5"}) is False
    assert _both({"&n": {"$eq": BIG + "s"}}, {"n": BIG + "s"}) is True


@pytest.mark.parametrize("when, text", [
    ({"$each_t": BIG + "s"}, "could not be parsed as float"),
    ({"$each_n": BIG}, "could not be parsed as integer"),
    ({"$limit": BIG}, "could not be parsed as integer"),
    ({"$limit": "-" + BIG}, "could not be parsed as integer"),
    ({"$gt": [{"$cast": [BIG + "s", "duration"]}, 0]}, "could not be parsed as float"),
    ({"$div_num": ["&n", BIG]}, "cannot take the string"),
])
def test_huge_operands_where_a_number_is_required_are_422(when, text):
    message = _refused(when)
    assert text in message
    assert "(5001 characters)" in message or "(5000 characters)" in message


@pytest.mark.parametrize("when, text", [
    ({"#ctx_before": BIG + "s"}, "#ctx_before must be an integer or duration"),
    ({"#ctx_after": BIG}, "#ctx_after must be an integer or duration"),
    ({"#batch_timeout": BIG + "s"}, "#batch_timeout must be a positive integer or duration"),
    ({"#record_timeout": BIG + "ms"}, "#record_timeout must be a positive integer or duration"),
    ({"#io_timeout": BIG + "us"}, "#io_timeout must be a positive integer or duration"),
    ({"#batch_size": BIG}, "#batch_size must be a positive integer or string: '1111"),
    ({"#batch_size": BIG + "KB"}, "is out of the 64-bit integer range"),
    ({"#batch_size": BIG + ".5 MB"}, "is out of the 64-bit integer range"),
    ({"#batch_size": "9223372036854775807KB"}, "is out of the 64-bit integer range"),
    ({"#batch_size": "99999999999999999999.0GB"}, "is out of the 64-bit integer range"),
    ({"#batch_metadata_size": BIG + "b"}, "#batch_metadata_size must be a positive integer"),
    ({"#batch_records": BIG + "d"}, "#batch_records must be a positive integer"),
])
def test_huge_directive_values_are_422(when, text):
    assert text in _refused(dict(when, **{"&x": {"$eq": 1}}))


@pytest.mark.parametrize("when", [
    {"$gt": ["&n", 10**5000]},
    {"&n": {"$eq": -(10**5000)}},
    {"$in": ["&n", 1, 10**5000]},
    {"$limit": 10**5000},
    {"$each_n": 10**5000},
    {"#batch_records": 10**5000},
    {"#batch_size": 10**5000},
    {"#ctx_before": [10**5000]},
    {"#select_labels": [10**5000]},
])
def test_huge_integer_literals_handed_to_the_compiler_are_422(when):
    """``json.loads`` stops at 4300 digits, but the compiler copes with what it is given."""
    message = _refused(when)
    if any(key.startswith("#") for key in when):  # 1.19.10 text (spec 1.20 §6.3)
        directive = next(iter(when))
        assert message == (f"Directive '{directive}' contains integer value out of range: "
                           "<a number of about 5001 digits>")
    else:
        assert "out of the 64-bit integer range" in message


def test_huge_integers_in_error_texts_are_described():
    message = _refused({"$gt": ["&n", 10**5000]})
    assert message == "Number <a number of about 5001 digits> is out of the 64-bit integer range"
    message = _refused({"$and": [[1, 10**5000]]})
    assert message == 'Array type is not supported: [1,"<a number of about 5001 digits>"]'
    assert _refused({"$gt": ["&n", 2**63]}) == \
        "Number 9223372036854775808 is out of the 64-bit integer range"


def test_i64_bounds_are_exact():
    """The length check does not move the i64 bounds; leading zeros do not count."""
    assert values.parse_label("-" + "0" * 5000 + "9") == -9
    assert values.parse_duration("0" * 5000 + "1d") == Duration(86_400_000_000)
    assert values.parse_label(str(I64_MAX)) == I64_MAX
    assert values.parse_label(str(-(2**63))) == -(2**63)
    assert values.parse_label(str(I64_MAX + 1)) == float(I64_MAX + 1)
    assert values.parse_label("+" + "0" * 30 + "7") == 7
    assert values.parse_duration("9223372036854775807us") == Duration(I64_MAX)
    assert values.parse_duration("9223372036854775808us") is None


def test_typing_a_long_digit_string_takes_linear_time():
    """
    A 16,000-digit label that is no number (about the most one header holds)
    is typed in about a millisecond: the float grammar does not backtrack
    quadratically (it took over ten seconds of CPU, blocking the reactor).
    """
    import time

    labels = ["7" * 16_000 + "x", "7" * 16_000 + "e", "7" * 8_000 + "." + "7" * 8_000 + "e+"]
    started = time.process_time()
    assert [values.parse_label(text) for text in labels] == labels
    assert _both({"&n": {"$gt": 10}}, {"n": "9" * 16_000 + "_"}) is False
    assert time.process_time() - started < 2.0


def test_long_label_values_are_not_cached():
    """The typing cache keeps short values only: long ones cannot fill memory."""
    values.cached_label.cache_clear()
    for i in range(20):
        assert values.parse_label(str(i) + "1" * 5000) == math.inf
    assert values.parse_label("42") == 42
    assert values.cached_label.cache_info().currsize == 1
