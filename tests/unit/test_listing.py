"""``storage/listing.py``: the label conditions of a record listing (issue #16)."""

import pytest

from reduct_twisted.storage.listing import Condition, like_pattern, matches


def holds(value, op, operand) -> bool:
    return matches({"x": value}, (Condition("x", op, operand),))


@pytest.mark.parametrize("value, op, operand, expected", [
    ("a", "=", "a", True), ("a", "=", "b", False),
    ("a", "!=", "b", True), ("a", "!=", "a", False),
    ("10", ">", "9", True),         # numbers compare as numbers
    ("10", "<", "9", False),
    ("1e3", ">=", "1000", True), ("1000", "<=", "1e3", True),
    ("-1.5", "<", "0", True),
    ("b", ">", "a", True),          # texts by code point
    ("10", ">", "abc", False),      # mixed: texts ("1" < "a")
    ("nan", "<", "1", False),       # not a finite number: text "nan" > "1"
    ("Zebra", "<", "apple", True),  # case-sensitive code points
])
def test_comparisons(value, op, operand, expected):
    assert holds(value, op, operand) is expected


@pytest.mark.parametrize("pattern, value, expected", [
    ("cam-%", "cam-1", True), ("cam-%", "cam-", True), ("cam-%", "xcam-1", False),
    ("cam-_", "cam-1", True), ("cam-_", "cam-12", False),
    ("%front%", "the front door", True), ("%Front%", "the front door", False),
    (r"100\%", "100%", True), (r"100\%", "1000", False),
    (r"a\_b", "a_b", True), (r"a\_b", "axb", False),
    ("a.b", "axb", False),          # regular-expression characters are literal
    ("%", "", True), ("_", "", False),
    ("line%", "line1\nline2", True),
    ("end\\", "end\\", True),       # a trailing backslash stands for itself
])
def test_like(pattern, value, expected):
    assert holds(value, "like", pattern) is expected
    assert (like_pattern(pattern).fullmatch(value) is not None) is expected


def test_every_condition_must_hold_and_a_missing_label_matches_none():
    where = (Condition("a", "=", "1"), Condition("b", "!=", "2"))
    assert matches({"a": "1", "b": "3"}, where)
    assert not matches({"a": "1", "b": "2"}, where)
    assert not matches({"a": "1"}, where)  # no b: even != does not hold
    assert matches({}, ())
