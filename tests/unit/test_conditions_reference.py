"""
The compiled ``when`` evaluator against a deliberately simple reference
interpreter written from spec §3.11, on random conditions (comparison,
logical, ``$in``/``$nin``, ``$exists``) over a small label alphabet.

The reference walks the JSON on every call and shares no code with the
evaluator: its own label typing, equality, ordering and truthiness.
"""

import math
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reduct_twisted.storage.when import ConditionEvalError, RecordContext, compile_condition

NAMES = ["a", "b", "c", "d"]
LABEL_VALUES = [
    "0", "1", "2", "-1", "01", "+1", "1.0", "1.5", "-0.5", "1e0", ".5",
    "true", "false", "True", "x", "y", "", " 1", "NaN", "inf",
]
CONSTANTS = [
    True, False, 0, 1, 2, -1, 0.5, 1.0, 1.5, -1.0, math.nan, math.inf,
    "x", "y", "", "1", "1.0", "true",
]
COMPARISONS = {
    "$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "ge", "$lt": "lt", "$lte": "le",
}
LOGICAL = {
    "$and": "all", "$all_of": "all", "$or": "any", "$any_of": "any",
    "$not": "none", "$none_of": "none", "$xor": "one", "$one_of": "one",
}


class Missing(Exception):
    """The reference met a label the record does not have."""


def typed(text):
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    number = r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)"
    if re.fullmatch(number, text, re.IGNORECASE):
        return float(text)
    return text


def is_text(value):
    return isinstance(value, str)


def number(value):
    return int(value) if isinstance(value, bool) else value


def equal(x, y):
    if is_text(x) or is_text(y):
        return is_text(x) and is_text(y) and x == y
    return number(x) == number(y)


def compare(kind, x, y):
    if kind == "eq":
        return equal(x, y)
    if kind == "ne":
        return not equal(x, y)
    if is_text(x) != is_text(y):
        return False
    if not is_text(x):
        x, y = number(x), number(y)
    return {"gt": x > y, "ge": x >= y, "lt": x < y, "le": x <= y}[kind]


def truthy(value):
    if isinstance(value, bool):
        return value
    if is_text(value):
        return value != ""
    return value != 0


def operand(item, labels):
    """A thunk: operands are evaluated only when an operator asks."""

    def value():
        if isinstance(item, dict):
            ((key, rest),) = item.items()
            return expression(key, rest, labels)
        if is_text(item) and item.startswith("&"):
            if item[1:] not in labels:
                raise Missing(item[1:])
            return typed(labels[item[1:]])
        return item

    return value


def apply(op, thunks, labels):
    if op in COMPARISONS:
        left, right = thunks
        return compare(COMPARISONS[op], left(), right())
    if op in ("$in", "$nin"):
        first = thunks[0]()
        found = False
        for thunk in thunks[1:]:
            if equal(thunk(), first):
                found = True
                break
        return found if op == "$in" else not found
    if op in ("$exists", "$has"):
        for thunk in thunks:
            if thunk() not in labels:
                return False
        return True
    kind = LOGICAL[op]
    if kind == "all":
        for thunk in thunks:
            if not truthy(thunk()):
                return False
        return True
    if kind == "any":
        for thunk in thunks:
            if truthy(thunk()):
                return True
        return False
    if kind == "none":
        for thunk in thunks:
            if truthy(thunk()):
                return False
        return True
    return sum(1 for thunk in thunks if truthy(thunk())) == 1


def expression(key, rest, labels):
    if isinstance(rest, list):
        return apply(key, [operand(item, labels) for item in rest], labels)
    ((op, right),) = rest.items()
    return apply(op, [operand(key, labels), operand(right, labels)], labels)


def reference(when, labels, strict):
    """:return: whether the record matches, or ``("error", message)``."""
    try:
        for key, rest in when.items():
            if not truthy(expression(key, rest, labels)):
                return False
        return True
    except Missing as missing:
        return ("error", f"Reference '{missing}' not found") if strict else False


def _pairs(operands):
    """Strategies for one ``key: value`` expression over ``operands``."""
    refs = st.sampled_from(NAMES).map(lambda n: "&" + n)
    object_syntax = st.tuples(refs, st.sampled_from(sorted(COMPARISONS)), operands).map(
        lambda t: (t[0], {t[1]: t[2]})
    )
    array_syntax = st.tuples(st.sampled_from(sorted(COMPARISONS)), operands, operands).map(
        lambda t: (t[0], [t[1], t[2]])
    )
    logical = st.tuples(st.sampled_from(sorted(LOGICAL)), st.lists(operands, max_size=4))
    membership = st.tuples(
        st.sampled_from(["$in", "$nin"]), operands, st.lists(operands, min_size=1, max_size=4)
    ).map(lambda t: (t[0], [t[1]] + t[2]))
    exists = st.tuples(
        st.sampled_from(["$exists", "$has"]),
        st.lists(st.sampled_from(NAMES + ["e"]), min_size=1, max_size=3),
    )
    return st.one_of(object_syntax, array_syntax, logical, membership, exists)


SCALARS = st.one_of(st.sampled_from(CONSTANTS), st.sampled_from(NAMES).map(lambda n: "&" + n))
OPERANDS = st.recursive(
    SCALARS, lambda inner: _pairs(inner).map(lambda kv: {kv[0]: kv[1]}), max_leaves=12
)
CONDITIONS = st.lists(_pairs(OPERANDS), max_size=3).map(dict)
NUMBERISH = "0123456789+-.eEinfatrux "
LABEL_TEXTS = st.sampled_from(LABEL_VALUES) | st.text(alphabet=NUMBERISH, max_size=6)
LABELS = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(LABEL_VALUES), max_size=4)


def _compiled(condition, labels):
    try:
        return condition.evaluate(RecordContext(0, labels))
    except ConditionEvalError as err:
        return ("error", err.message)


@settings(
    max_examples=600,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(when=CONDITIONS, labels=LABELS, strict=st.booleans())
def test_compiled_evaluator_agrees_with_reference(when, labels, strict):
    expected = reference(when, labels, strict)
    condition = compile_condition(when, strict)
    assert _compiled(condition, labels) == expected
    # Stateless conditions give the same answer again.
    assert _compiled(condition, labels) == expected


@settings(max_examples=300, derandomize=True, deadline=None)
@given(text=LABEL_TEXTS)
def test_label_typing_agrees_with_reference(text):
    """Random label texts are typed like the reference does: compared with
    every constant, through ``$eq`` and ``$gt``."""
    labels = {"v": text}
    for constant in CONSTANTS:
        for op in ("$eq", "$gt"):
            when = {"&v": {op: constant}}
            assert _compiled(compile_condition(when), labels) == reference(when, labels, False)
