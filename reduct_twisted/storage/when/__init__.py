"""
The conditional query language ``when`` (spec §3.10, §3.11; ReductStore
1.13 – 1.17): :func:`compile_condition` checks a JSON condition once and
compiles it to nested closures; :meth:`Condition.evaluate` runs them once
per record.

One :class:`Condition` serves one query: ``$each_n``, ``$each_t``,
``$limit`` and ``$gate`` keep their state in it, so records must be evaluated in
ascending timestamp order and only those that reached the ``when`` filter
(after time range, state, include/exclude, ``each_s``/``each_n``).  Use
:meth:`Condition.fresh` for another query with the same condition.  The
directives (``#select_labels``, ``#ctx_before``, ``#ctx_after``, ``#ext`` and
the ``#batch_*``/``*_timeout`` overrides) are only parsed here; the query
engine applies them.

Errors: a malformed condition raises :class:`UnprocessableEntity` (422) from
:func:`compile_condition`.  While evaluating, a missing ``&label``/``@label``
raises :class:`ReferenceNotFound` (404, ``Reference 'x' not found``) and a
type error, bad cast or division by zero :class:`EvaluationError` (422);
both are :class:`ConditionEvalError`.  Non-strict, such an error makes the
record not match; strict, :meth:`Condition.evaluate` raises it and the query
ends with it.  When ``$limit`` runs out, :attr:`Condition.exhausted` becomes
true and every later evaluation is false: the engine should end the query
as if out of data (no error), in either mode.

Decisions where the spec is silent (upstream behaviour unless noted):

1.  Grammar as upstream's parser: an object used as an operand contributes
    all its expressions (``{"$and": [{"&a": …, "&b": …}]}`` has two
    operands); ``{"$not": {…}}`` is object syntax with ``$not`` (no
    operands) as left operand, so write ``{"$not": [{…}]}``.  A ``#`` key
    below the top level is an operator name (``must start with '$'``).
    ``when`` may also be a scalar (one expression); ``{}`` matches all.
2.  ``$`` literals as upstream 1.19: ``"$$x"`` is the string ``"$x"``, and
    any other ``$`` string must be an operator without operands
    (``"$timestamp"``), else ``Unknown '$' literal …`` (1.17 said
    ``Operator '…' not supported``).  The date-part operators of 1.19
    are in :mod:`.dates` (with their decisions), ``$gate`` in :mod:`.record`.
3.  Integer literals outside i64 are a 422 (upstream panics on them),
    however many digits they have (the text then gives their size only).
4.  Duration literals are parts ``-?<digits><unit>`` (a minus sign is
    accepted, as upstream does); a part whose number or a total outside
    i64 keeps the string (so ``"1111…1s"`` of 5,000 digits is a string
    constant, and a 422 where a number or duration is required).
    Label values are never durations (``"5s"`` in a label is a string).
5.  Label typing follows Rust's parsers: ``true``/``false`` exactly, i64
    (a ``+`` sign allowed), f64 (``1.``, ``.5``, ``1e3``, ``inf``, ``NaN``;
    no blanks or ``_``).  Values out of i64 are floats, however long: a
    label of 5,000 digits is ``inf``, as Rust's f64 parser makes it.  Digit
    strings are never handed whole to ``int()`` (Python refuses more than
    4,300 digits); error texts abbreviate values over 100 characters.
6.  Text forms (string operators, ``$exists``, ``$ref``, ``$cast`` to
    string) are Rust's Display: ``1.0`` → ``"1"``, no exponent, booleans
    ``true``/``false``, durations ``"1h 30m"``.  So a label ``"1.50"`` is
    the float 1.5 and ``$contains "50"`` is false on it.
7.  Integer arithmetic wraps at 64 bits like upstream's release build; the
    result of arithmetic on a duration is an int.  Int/float equality is
    exact (upstream converts the int to f64 first; they differ beyond 2**53).
8.  ``$div_num`` truncates towards zero; ``$rem`` takes the dividend's sign;
    an integer ``$rem`` by 0 is ``Cannot divide by zero`` (upstream panics),
    a float one is NaN.
9.  ``$cast`` to ``duration``: numbers are microseconds (floats truncated);
    a string is a duration literal, else a number of microseconds.
10. ``$ref`` of a missing label: 404 ``Label '"x"' not found`` (upstream's
    text); ``@x`` missing: 404 ``Reference '@x' not found``.
11. Arity messages name the operator as written (``$has requires at least
    one operand``); ``$in``/``$nin`` say ``… operator requires at least two
    operands`` as upstream.
12. Checked at compile time (upstream only fails later, per record): a pure
    subexpression over constants is evaluated once, its error is a 422 even
    where short-circuit would have skipped it; constant operands of
    ``$each_n`` (integer, not 0), ``$each_t`` (number or duration),
    ``$limit`` (integer), the type of ``$cast``; a constant string operand
    of ``$sub $mult $div $div_num $rem``; a constant string mixed with a
    constant number in ``$add``; a constant zero divisor of ``$div`` and
    ``$div_num``.
13. ``$each_t`` with a threshold ≤ 0 matches every record, the first too
    (upstream); a timestamp going backwards is no error: it does not
    match and becomes the new reference (upstream 1.18+).
14. ``$limit``: the operand is evaluated per record; the (N+1)-th
    evaluation sets :attr:`Condition.exhausted`, even inside ``$not``.
15. ``#ctx_before``/``#ctx_after``: one value; a duration sets ``*_us``,
    anything else is a record count by upstream's integer cast (a float is
    truncated, ``true`` is 1, a numeric string counts); negative → 422.
16. ``#select_labels``: a string or a non-empty array of strings, kept
    verbatim (not typed: a label named ``"1s"`` can be selected), duplicates
    dropped, order kept.
17. ``#ext`` (any value but ``null``) is exposed as is; the query checks
    it with its id (:mod:`.extensions`, spec 1.20 §6.3).
18. ``#batch_size``/``#batch_metadata_size``: a non-negative int or a size
    string (``"8MB"`` = 8·10⁶, ``"1KiB"`` = 1024, units b k m g t p with
    optional ``i``/``b``); ``"8m"`` is a duration literal and so rejected;
    a size beyond i64 is a 422 as an integer literal beyond it is.
    Timeouts: non-negative int seconds or a duration.  Errors name the
    directive (upstream always says ``#batch_size``).
19. A value's truthiness after evaluation: bool as is, numbers ≠ 0 (NaN is
    true), strings non-empty.
20. Directive values (1.19.10): an object inside an array is refused but
    for ``#ext`` (``… does not support object items in arrays``), as is an
    array or ``null`` inside one (``… contains unsupported value type:
    <JSON>``) and an integer beyond i64 anywhere (``… contains integer value
    out of range: <n>``).
21. ``$gate``: a constant window is converted when the condition is
    compiled (a bad one is a 422, as for ``$each_t``); a window from a
    label per record.  Its input's truthiness is rule 19.  An evaluation
    error (non-strict) leaves the window as it was, but the record's
    timestamp counts for "time going backwards".
"""

import attr

from reduct_twisted.storage.when import directives
from reduct_twisted.storage.when.directives import IoOverrides
from reduct_twisted.storage.when.parse import parse_root
from reduct_twisted.storage.when.values import (
    ConditionEvalError,
    Duration,
    EvaluationError,
    LimitReached,
    ReferenceNotFound,
)

__all__ = [
    "Condition",
    "ConditionEvalError",
    "Duration",
    "EvaluationError",
    "IoOverrides",
    "RecordContext",
    "ReferenceNotFound",
    "compile_condition",
]


@attr.s(slots=True)
class RecordContext:
    """
    What a condition sees of one record.

    :ivar timestamp: the record's timestamp in microseconds.
    :ivar labels: label name → value (strings).
    :ivar computed_labels: computed label name → value (``@name``), filled
        by an extension.
    """

    timestamp: int = attr.ib()
    labels: dict = attr.ib(factory=dict)
    computed_labels: dict = attr.ib(factory=dict)


@attr.s(eq=False, repr=False)
class Condition:
    """
    A compiled ``when`` condition with its directives and the state of its
    stateful operators; one instance per query.

    :ivar when: the JSON condition it was compiled from.
    :ivar strict: whether evaluation errors end the query.
    :ivar select_labels: label names to keep in the output, or ``None``.
    :ivar ctx_before_records: records to return before each match.
    :ivar ctx_before_us: or the time span before each match, or ``None``.
    :ivar ctx_after_records: records to return after each match.
    :ivar ctx_after_us: or the time span after each match, or ``None``.
    :ivar ext: the ``#ext`` object, or ``None``.
    :ivar io: the :class:`IoOverrides` of the batch directives.
    :ivar exhausted: ``$limit`` ran out: the query has no more records.
    """

    when = attr.ib()
    strict: bool = attr.ib()
    _root = attr.ib()
    select_labels: list = attr.ib(default=None)
    ctx_before_records: int = attr.ib(default=0)
    ctx_before_us: int = attr.ib(default=None)
    ctx_after_records: int = attr.ib(default=0)
    ctx_after_us: int = attr.ib(default=None)
    ext: dict = attr.ib(default=None)
    io: IoOverrides = attr.ib(factory=IoOverrides)
    exhausted: bool = attr.ib(default=False)

    def evaluate(self, ctx) -> bool:
        """
        :param ctx: the next record, e.g. a :class:`RecordContext` (any
            object with ``timestamp``, ``labels`` and ``computed_labels``).
        :return: whether the record matches.
        :raises ConditionEvalError: only when strict: the evaluation failed.
        """
        if self.exhausted:
            return False
        try:
            return bool(self._root(ctx))
        except ConditionEvalError:
            if self.strict:
                raise
            return False
        except LimitReached:
            self.exhausted = True
            return False

    def fresh(self) -> "Condition":
        """:return: the same condition with its state reset, for another query."""
        return compile_condition(self.when, self.strict)

    def __repr__(self) -> str:
        return f"Condition({self.when!r}, strict={self.strict!r})"


def compile_condition(when, strict: bool = False) -> Condition:
    """
    Check and compile the ``when`` object of a query.

    :param when: the decoded JSON condition (normally an object).
    :param strict: the query's ``strict`` flag.
    :raises UnprocessableEntity: the condition or a directive is malformed,
        e.g. ``Operator '$foo' not supported``, ``$eq requires exactly two
        operands``, ``Object notation must have exactly one operator``,
        ``Array type is not supported: […]``, ``Directive '#x' is not
        supported``.
    """
    found = directives.collect(when) if isinstance(when, dict) else {}
    expressions = {k: v for k, v in when.items() if k not in found} if found else when
    root = parse_root(expressions)
    fields = directives.interpret(found)
    return Condition(when, bool(strict), root.fn, **fields)
