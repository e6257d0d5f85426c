"""
The grammar of the ``when`` language (spec §3.11): JSON to operator nodes.

Follows upstream's parser: an object is a list of expressions (one per key,
in document order); a key whose value is an array is array syntax, an
object is object syntax (``{"<left>": {"$op": <right>}}``), anything else is
unary syntax.  An object used as an operand contributes all its expressions
as operands.  Strings are references (``&``, ``@``), operators without
operands (``$``), duration literals or string constants.
"""

import json
import math

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.when.dates import DATE_OPERATORS
from reduct_twisted.storage.when.ops import PURE_OPERATORS, Node, constant
from reduct_twisted.storage.when.record import RECORD_OPERATORS
from reduct_twisted.storage.when.values import (
    CACHED_LABEL_LENGTH,
    I64_MAX,
    I64_MIN,
    ConditionEvalError,
    ReferenceNotFound,
    cached_label,
    parse_duration,
    parse_label,
)


#: Operator name → ``(builder, pure)``; a pure operator over constant
#: operands is evaluated when the condition is compiled.
OPERATORS = {name: (build, True) for name, build in PURE_OPERATORS.items()}
OPERATORS.update({name: (build, True) for name, build in DATE_OPERATORS.items()})
OPERATORS.update({name: (build, False) for name, build in RECORD_OPERATORS.items()})


#: Integers of more bits than this are not printed whole in error texts
#: (Python refuses to print one of more than 4300 digits: a ValueError).
_PRINTABLE_BITS = 256


def integer_text(value: int) -> str:
    """:return: ``value`` in decimal, or a description of its size if it is huge."""
    if value.bit_length() <= _PRINTABLE_BITS:
        return str(value)
    digits = int(math.log10(abs(value))) + 1
    return f"{'-' if value < 0 else ''}<a number of about {digits} digits>"


def _printable(value):
    # ``value`` with every huge integer replaced by the text describing it.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= _PRINTABLE_BITS else integer_text(value)
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    return value


def compact_json(value) -> str:
    """
    :return: ``value`` as compact JSON, as serde's ``to_string`` writes it
        (for error texts: a huge integer is described, not printed).
    """
    return json.dumps(_printable(value), separators=(",", ":"), ensure_ascii=False)


def check_integer(value: int) -> int:
    """:raises UnprocessableEntity: ``value`` does not fit in an i64."""
    if not I64_MIN <= value <= I64_MAX:
        raise UnprocessableEntity(
            f"Number {integer_text(value)} is out of the 64-bit integer range"
        )
    return value


def make_operator(name: str, operands: list) -> Node:
    """
    :return: the node of operator ``name`` over ``operands``; a pure
        operator over constants is evaluated now and becomes a constant.
    :raises UnprocessableEntity: unknown operator, wrong arity, or constant
        operands the operator fails on.
    """
    if not name.startswith("$"):
        raise UnprocessableEntity(f"Operator '{name}' must start with '$'")
    try:
        build, pure = OPERATORS[name]
    except KeyError:
        raise UnprocessableEntity(f"Operator '{name}' not supported") from None
    try:
        fn = build(name, operands)
        if pure and all(o.is_constant for o in operands):
            return constant(fn(None))
    except ConditionEvalError as err:
        raise UnprocessableEntity(err.message) from None
    return Node(fn)


def _label(name: str) -> Node:
    missing = f"Reference '{name}' not found"
    cached, limit = cached_label, CACHED_LABEL_LENGTH

    def label(ctx):
        try:
            text = ctx.labels[name]
        except KeyError:
            raise ReferenceNotFound(missing) from None
        # parse_label, inlined: this runs once per label read per record.
        return cached(text) if len(text) <= limit else parse_label(text)

    return Node(label)


def _computed(name: str) -> Node:
    missing = f"Reference '@{name}' not found"

    def computed(ctx):
        try:
            text = ctx.computed_labels[name]
        except (KeyError, TypeError):
            raise ReferenceNotFound(missing) from None
        return parse_label(text)

    return Node(computed)


def _literal(text: str) -> Node:
    if text.startswith("&"):
        return _label(text[1:])
    if text.startswith("@"):
        return _computed(text[1:])
    if text.startswith("$$"):
        # 1.19: "$$x" is the string "$x" (how the clients send attachment keys).
        return constant(text[1:])
    if text.startswith("$"):
        # 1.19: a lone "$" must name an operator that takes no operand.
        try:
            return make_operator(text, [])
        except UnprocessableEntity:
            raise UnprocessableEntity(
                f"Unknown '$' literal '{text}'; use '$$' to escape a string value"
            ) from None
    duration = parse_duration(text)
    return constant(text if duration is None else duration)


def parse_operands(value) -> list:
    """:return: the operand nodes one JSON value stands for."""
    if isinstance(value, bool):
        return [constant(value)]
    if isinstance(value, int):
        return [constant(check_integer(int(value)))]
    if isinstance(value, float):
        return [constant(value)]
    if isinstance(value, str):
        return [_literal(value)]
    if isinstance(value, dict):
        return parse_object(value)
    if isinstance(value, (list, tuple)):
        raise UnprocessableEntity(f"Array type is not supported: {compact_json(value)}")
    if value is None:
        raise UnprocessableEntity("Null type is not supported: null")
    raise UnprocessableEntity(f"Type {type(value).__name__} is not supported")


def parse_object(mapping: dict) -> list:
    """:return: one node per key of ``mapping``, in order."""
    expressions = []
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise UnprocessableEntity(f"Key {key!r} is not a string")
        if isinstance(value, (list, tuple)):
            operands = []
            for item in value:
                operands.extend(parse_operands(item))
            expressions.append(make_operator(key, operands))
        elif isinstance(value, dict):
            left = _literal(key)
            if len(value) != 1:
                raise UnprocessableEntity("Object notation must have exactly one operator")
            ((name, right),) = value.items()
            expressions.append(make_operator(name, [left] + parse_operands(right)))
        else:
            expressions.append(make_operator(key, parse_operands(value)))
    return expressions


def parse_root(expressions) -> Node:
    """:return: the AND of the top-level ``expressions`` (a JSON value)."""
    if isinstance(expressions, dict):
        nodes = parse_object(expressions)
    else:
        nodes = parse_operands(expressions)
    return make_operator("$and", nodes)
