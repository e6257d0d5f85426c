"""
The pure operators of the ``when`` language (spec §3.11), compiled to
closures: logical, comparison, arithmetic, string and ``$cast``.  Those that
read the record or keep state are in :mod:`.record`.

An operand is a :class:`Node`: a function of the record context and, for a
constant, its value.  Every builder takes the operator name as written (for
error texts) and its operand nodes, checks arity and whatever the constant
operands already tell, and returns the operator's function.

Compile-time problems raise :class:`UnprocessableEntity`; problems met while
evaluating raise :class:`ConditionEvalError` subclasses (the caller turns
those met at compile time into a 422 too).
"""

import operator

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.when.values import (
    absolute,
    add,
    as_int,
    caster,
    div,
    div_num,
    excerpt,
    mult,
    ordered,
    rem,
    sub,
    to_text,
)

_NOT_CONSTANT = object()


class Node:
    """
    A compiled operand.

    :ivar fn: ``fn(ctx) -> value``.
    :ivar value: the value of a constant, else a private sentinel.
    """

    __slots__ = ("fn", "value")

    def __init__(self, fn, value=_NOT_CONSTANT) -> None:
        self.fn = fn
        self.value = value

    @property
    def is_constant(self) -> bool:
        return self.value is not _NOT_CONSTANT


def constant(value) -> Node:
    """:return: a node that always gives ``value``."""
    return Node(lambda ctx: value, value)


def exactly(name: str, operands: list, n: int) -> None:
    """:raises UnprocessableEntity: ``operands`` are not ``n`` (0 – 2)."""
    if len(operands) != n:
        words = {0: "no operands", 1: "exactly one operand", 2: "exactly two operands"}[n]
        raise UnprocessableEntity(f"{name} requires {words}")


def at_least(name: str, operands: list, n: int, words: str) -> None:
    """:raises UnprocessableEntity: fewer than ``n`` ``operands``."""
    if len(operands) < n:
        raise UnprocessableEntity(f"{name} {words}")


# -- logical -----------------------------------------------------------------


def _all_of(name, operands):
    fns = [o.fn for o in operands]
    if not fns:
        return lambda ctx: True
    if len(fns) == 1:
        (f,) = fns
        return lambda ctx: bool(f(ctx))
    if len(fns) == 2:
        f, g = fns
        return lambda ctx: bool(f(ctx) and g(ctx))

    def all_of(ctx):
        for f in fns:
            if not f(ctx):
                return False
        return True

    return all_of


def _any_of(name, operands):
    fns = [o.fn for o in operands]
    if len(fns) == 2:
        f, g = fns
        return lambda ctx: bool(f(ctx) or g(ctx))

    def any_of(ctx):
        for f in fns:
            if f(ctx):
                return True
        return False

    return any_of


def _none_of(name, operands):
    fns = [o.fn for o in operands]
    if len(fns) == 1:
        (f,) = fns
        return lambda ctx: not f(ctx)

    def none_of(ctx):
        for f in fns:
            if f(ctx):
                return False
        return True

    return none_of


def _one_of(name, operands):
    fns = [o.fn for o in operands]
    # No short-circuit: every operand is evaluated, as upstream does.
    return lambda ctx: sum(1 for f in fns if f(ctx)) == 1


def _membership(negate: bool):
    def build(name, operands):
        at_least(name, operands, 2, "operator requires at least two operands")
        first, items = operands[0].fn, operands[1:]
        values = [i.value for i in items]
        if all(i.is_constant for i in items) and not any(v != v for v in values):
            members = frozenset(values)
            if negate:
                return lambda ctx: first(ctx) not in members
            return lambda ctx: first(ctx) in members
        fns = [i.fn for i in items]

        def member(ctx):
            x = first(ctx)
            for f in fns:
                if f(ctx) == x:
                    return not negate
            return negate

        return member

    return build


# -- comparison --------------------------------------------------------------


def _gt(x, y):
    return x > y if ordered(x, y) else False


def _gte(x, y):
    return x >= y if ordered(x, y) else False


def _lt(x, y):
    return x < y if ordered(x, y) else False


def _lte(x, y):
    return x <= y if ordered(x, y) else False


def _binary(test, check=None):
    """A builder for a two-operand operator computing ``test(left, right)``."""

    def build(name, operands):
        exactly(name, operands, 2)
        if check is not None and not all(o.is_constant for o in operands):
            check(name, operands)
        a, b = operands
        fa = a.fn
        if b.is_constant:
            y = b.value
            return lambda ctx: test(fa(ctx), y)
        fb = b.fn
        return lambda ctx: test(fa(ctx), fb(ctx))

    return build


# -- arithmetic --------------------------------------------------------------


def _no_string_constant(name, operands):
    for o in operands:
        if o.is_constant and o.value.__class__ is str:
            raise UnprocessableEntity(f"{name} cannot take the string '{excerpt(o.value)}'")


def _no_zero_divisor(convert):
    def check(name, operands):
        _no_string_constant(name, operands)
        divisor = operands[1]
        if divisor.is_constant and convert(divisor.value) == 0:
            raise UnprocessableEntity("Cannot divide by zero")

    return check


def _add(name, operands):
    if not all(o.is_constant for o in operands):
        kinds = {o.value.__class__ is str for o in operands if o.is_constant}
        if len(kinds) == 2:
            raise UnprocessableEntity(f"{name} cannot add strings and numbers")
    fns = [o.fn for o in operands]
    if not fns:
        return lambda ctx: 0
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        f, g = fns
        return lambda ctx: add(f(ctx), g(ctx))
    first, rest = fns[0], fns[1:]

    def add_all(ctx):
        total = first(ctx)
        for f in rest:
            total = add(total, f(ctx))
        return total

    return add_all


def _abs(name, operands):
    exactly(name, operands, 1)
    f = operands[0].fn
    return lambda ctx: absolute(f(ctx))


# -- strings -----------------------------------------------------------------


def _string(test):
    def build(name, operands):
        exactly(name, operands, 2)
        a, b = operands
        fa = a.fn
        if b.is_constant:
            text = to_text(b.value)
            return lambda ctx: test(to_text(fa(ctx)), text)
        fb = b.fn
        return lambda ctx: test(to_text(fa(ctx)), to_text(fb(ctx)))

    return build


# -- cast ---------------------------------------------------------------------


def _cast(name, operands):
    exactly(name, operands, 2)
    a, b = operands
    fa = a.fn
    if b.is_constant:
        cast = caster(to_text(b.value))
        return lambda ctx: cast(fa(ctx))
    fb = b.fn
    return lambda ctx: caster(to_text(fb(ctx)))(fa(ctx))


#: Operator name → builder, for the operators that only combine their
#: operands (folded into a constant when those are constants).
PURE_OPERATORS = {
    "$and": _all_of,
    "$all_of": _all_of,
    "$or": _any_of,
    "$any_of": _any_of,
    "$not": _none_of,
    "$none_of": _none_of,
    "$xor": _one_of,
    "$one_of": _one_of,
    "$in": _membership(negate=False),
    "$nin": _membership(negate=True),
    "$eq": _binary(operator.eq),
    "$ne": _binary(operator.ne),
    "$gt": _binary(_gt),
    "$gte": _binary(_gte),
    "$lt": _binary(_lt),
    "$lte": _binary(_lte),
    "$add": _add,
    "$sub": _binary(sub, _no_string_constant),
    "$mult": _binary(mult, _no_string_constant),
    "$div": _binary(div, _no_zero_divisor(float)),
    "$div_num": _binary(div_num, _no_zero_divisor(as_int)),
    "$rem": _binary(rem, _no_string_constant),
    "$abs": _abs,
    "$contains": _string(str.__contains__),
    "$starts_with": _string(str.startswith),
    "$ends_with": _string(str.endswith),
    "$cast": _cast,
}
