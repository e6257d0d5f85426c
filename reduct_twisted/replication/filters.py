"""
Which records of the source bucket a replication takes (spec §3.13).

The same filters as a query, in the same order (spec §3.5): ``entries``,
then ``include``/``exclude``/``each_s``/``each_n``
(:class:`~reduct_twisted.storage.query.RecordFilter`), then ``when``
(:mod:`reduct_twisted.storage.when`).  As upstream, each entry has its
own filter state (``each_n`` counts per entry; ``$each_n``, ``$each_t`` and
``$limit`` too) and label updates pass through the same filters as writes.
Attachment entries (``<e>/$meta``, API 1.19) follow their entry's
``entries`` filter only: the record filters and ``when`` do not apply to
them (spec 1.20 §3.1).
``when`` is evaluated strictly, as upstream's replication does: an
evaluation error (a missing label, a type error…) leaves the record out
and raises :class:`FilterFailed`, which the task counts in its
diagnostics.  The state lives in memory: after a restart sampling starts
afresh.  Directives of ``when`` (``#ctx_before``, ``#select_labels``…)
are accepted and have no effect on replication.
"""

from __future__ import annotations

from reduct_twisted.storage.when import (
    ConditionEvalError,
    RecordContext,
    compile_condition,
)
from reduct_twisted.storage.query import RecordFilter
from reduct_twisted.storage.settings import is_meta_entry


class FilterFailed(Exception):
    """
    Evaluating ``when`` on a record failed: the record is left out.

    :ivar status: the error's status (404 for a missing label, 422 for a
        type error, 500 for anything unforeseen).
    :ivar message: the condition's error text.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Sample:
    """The ``ts`` and ``labels`` a :class:`RecordFilter` looks at."""

    __slots__ = ("ts", "labels")

    def __init__(self, ts: int, labels: dict) -> None:
        self.ts = ts
        self.labels = labels


class TransactionFilter:
    """
    The filters of one replication, with one state per entry.

    :param settings: the replication's
        :class:`~reduct_twisted.replication.settings.ReplicationSettings`
        (already validated: ``when`` compiles).
    """

    def __init__(self, settings) -> None:
        self.settings = settings
        self._entries: dict = {}

    def _state(self, entry: str):
        state = self._entries.get(entry)
        if state is None:
            s = self.settings
            sampler = None
            if s.include or s.exclude or s.each_n is not None or s.each_s is not None:
                sampler = RecordFilter(dict(s.include), dict(s.exclude), s.each_n, s.each_s)
            condition = None if s.when is None else compile_condition(s.when, strict=True)
            state = self._entries[entry] = (s.matches_entry(entry), sampler, condition)
        return state

    def accept(self, entry: str, ts: int, labels: dict) -> bool:
        """
        :param entry: the entry of the record.
        :param ts: its timestamp.
        :param labels: its labels (after the change, for a label update).
        :return: whether the change is replicated; counts for sampling.
        :raises FilterFailed: ``when`` could not be evaluated on the record.
        """
        wanted, sampler, condition = self._state(entry)
        if not wanted:
            return False
        if is_meta_entry(entry):
            # Attachments go with their entry, whatever the record filters
            # say (spec 1.20 §3.1).
            return True
        if sampler is not None and not sampler.accept(_Sample(ts, labels)):
            return False
        if condition is None:
            return True
        try:
            return condition.evaluate(RecordContext(ts, labels))
        except ConditionEvalError as exc:
            raise FilterFailed(exc.status, exc.message) from None
        except Exception as exc:  # a fault of the evaluator: still no silent skip
            raise FilterFailed(500, f"Failed to evaluate the condition: {exc!r}") from exc
