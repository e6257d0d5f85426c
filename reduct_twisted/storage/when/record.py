"""
The operators of the ``when`` language (spec §3.11) that read the record
(``$exists``, ``$ref``, ``$timestamp``) or keep state across the records of
one query (``$each_n``, ``$each_t``, ``$limit``, ``$gate``); never folded into
constants.  Built like those of :mod:`.ops`: each build gets
fresh counters in its closure.
"""

import math

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.when.ops import at_least, exactly
from reduct_twisted.storage.when.values import (
    Duration,
    EvaluationError,
    LimitReached,
    ReferenceNotFound,
    as_float,
    as_int,
    float_to_int,
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
        threshold = operand(ctx)
        if ts < last:  # time went backwards: the record is the new reference
            last = ts
            return False
        if ts - last >= threshold:
            last = ts
            return True
        return False

    return each_t


def gate_duration(value) -> int:
    """
    :return: the window of ``$gate`` in microseconds: a duration as is, a
        number as seconds (truncated to whole microseconds); never negative.
    :raises EvaluationError: a string that is no number.
    """
    if value.__class__ is Duration:
        us = int(value)
    else:
        us = float_to_int(as_float(value) * 1_000_000.0)
    return max(0, us)


class GateState:
    """
    The state machine of one ``$gate`` (spec 1.20 §6.3): an edge-triggered
    window.  A false→true change of the input opens a window of the given
    length at the record's timestamp; while it is open the output is the
    input; the first record at or after its end closes it, and the output
    stays false until the input has been false once (then a new rising
    edge may open a new window).  A timestamp before the previous one
    resets everything (as if no record had been seen).
    """

    __slots__ = ("deadline", "previous", "reset_required", "last")

    def __init__(self) -> None:
        self.deadline = None  # the end of the open window, or None
        self.previous = False  # the input of the previous record
        self.reset_required = False  # a window expired: wait for a false input
        self.last = None  # the previous record's timestamp

    def step(self, ts: int, duration: int, value: bool) -> bool:
        """:return: the output for a record at ``ts`` whose input is ``value``."""
        self.advance(ts)
        return self.output(ts, duration, value)

    def advance(self, ts: int) -> None:
        """A record at ``ts`` arrives: time going backwards resets the state."""
        if self.last is not None and ts < self.last:
            self.deadline, self.previous, self.reset_required = None, False, False
        self.last = ts

    def output(self, ts: int, duration: int, value: bool) -> bool:
        """:return: the output at ``ts`` (after :meth:`advance`) for input ``value``."""
        if self.deadline is not None and ts >= self.deadline:
            self.deadline = None
            self.reset_required = True
        if self.reset_required:
            self.reset_required = value
            self.previous = value
            return False
        if self.deadline is None and not self.previous and value:
            self.deadline = ts + duration
        self.previous = value
        return value if self.deadline is not None and ts < self.deadline else False


def _gate(name, operands):
    if len(operands) != 2:
        raise UnprocessableEntity("$gate requires exactly two operands")
    window, condition = operands
    if window.is_constant:
        fixed = gate_duration(window.value)
        duration = lambda ctx: fixed  # noqa: E731
    else:
        f = window.fn
        duration = lambda ctx: gate_duration(f(ctx))  # noqa: E731
    test = condition.fn
    state = GateState()

    def gate(ctx):
        ts = ctx.timestamp
        state.advance(ts)
        # upstream's order: the window, then the input (an error leaves the state)
        return state.output(ts, duration(ctx), bool(test(ctx)))

    return gate


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
    "$gate": _gate,
}
