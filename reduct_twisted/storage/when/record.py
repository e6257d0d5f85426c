"""
The operators of the ``when`` language (spec §3.11) that read the record
(``$exists``, ``$ref``, ``$timestamp``) or keep state across the records of
one query (``$each_n``, ``$each_t``, ``$limit``); never folded into
constants.  Built like those of :mod:`.ops`: each build gets
fresh counters in its closure.
"""

import math

from reduct_twisted.storage.when.ops import at_least, exactly
from reduct_twisted.storage.when.values import (
    Duration,
    EvaluationError,
    LimitReached,
    ReferenceNotFound,
    as_float,
    as_int,
    parse_label,
    quoted,
    to_text,
)


def _exists(name, operands):
    at_least(name, operands, 1, "requires at least one operand")
    if all(o.is_constant for o in operands):
        names = [to_text(o.value) for o in operands]
        if len(names) == 1:
            (label,) = names
            return lambda ctx: label in ctx.labels
        return lambda ctx: all(label in ctx.labels for label in names)
    fns = [o.fn for o in operands]

    def exists(ctx):
        for f in fns:
            if to_text(f(ctx)) not in ctx.labels:
                return False
        return True

    return exists


def _ref(name, operands):
    exactly(name, operands, 1)
    f = operands[0].fn

    def ref(ctx):
        label = to_text(f(ctx))
        value = ctx.labels.get(label)
        if value is None:
            raise ReferenceNotFound(f"Label '{quoted(label)}' not found")
        return parse_label(value)

    return ref


def _timestamp(name, operands):
    exactly(name, operands, 0)
    return lambda ctx: ctx.timestamp




def _each_n_value(value) -> int:
    n = as_int(value)
    if n == 0:
        raise EvaluationError("Value '0' is not a valid operand for $each_n")
    return n


def _operand(name, operands, convert):
    """
    The one operand of a stateful operator as ``value(ctx)``, converted by
    ``convert``; a constant is converted once, here (so a bad one fails
    when the condition is compiled).
    """
    exactly(name, operands, 1)
    (a,) = operands
    if a.is_constant:
        fixed = convert(a.value)
        return lambda ctx: fixed
    f = a.fn
    return lambda ctx: convert(f(ctx))


def _each_n(name, operands):
    operand = _operand(name, operands, _each_n_value)
    count = 0

    def each_n(ctx):
        nonlocal count
        count += 1
        return count % operand(ctx) == 0

    return each_n


def _each_t_threshold(value) -> int:
    # Upstream's arithmetic, to the bit: seconds as f64, then ``as u64``.
    seconds = as_float(value) / 1_000_000.0 if value.__class__ is Duration else as_float(value)
    us = seconds * 1_000_000.0
    if us != us or us <= 0:
        return 0
    return 2**64 - 1 if math.isinf(us) else int(us)


def _each_t(name, operands):
    operand = _operand(name, operands, _each_t_threshold)
    last = None

    def each_t(ctx):
        nonlocal last
        ts = ctx.timestamp
        if last is None:
            last = ts  # the first record is the reference
        if ts - last >= operand(ctx):
            last = ts
            return True
        return False

    return each_t


def _limit(name, operands):
    operand = _operand(name, operands, as_int)
    count = 0

    def limit(ctx):
        nonlocal count
        count += 1
        if count > operand(ctx):
            raise LimitReached()
        return True

    return limit


#: Operator name → builder.
RECORD_OPERATORS = {
    "$exists": _exists,
    "$has": _exists,
    "$ref": _ref,
    "$timestamp": _timestamp,
    "$id": _timestamp,
    "$each_n": _each_n,
    "$each_t": _each_t,
    "$limit": _limit,
}
