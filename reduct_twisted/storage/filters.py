"""
Which records of a time-ordered stream a query keeps (spec §3.5): by
labels and sampling (:class:`RecordFilter`), then by its ``when`` with
the context directives and its ``limit`` (:class:`MatchQueue`); used by
``query.py``.
"""

import attr

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.records import FINISHED
from reduct_twisted.storage.when import ConditionEvalError, RecordContext


@attr.s(eq=False)
class RecordFilter:
    """
    Which records of a time-ordered stream to keep: by labels, then by
    sampling (spec §3.5).  Stateful: sampling depends on what was kept
    before, so one filter serves one stream.

    :ivar include: labels that must all be equal.
    :ivar exclude: labels that drop a record when all are equal.
    :ivar each_n: keep every n-th record left by the other filters, or ``None``.
    :ivar each_s: minimal distance in seconds between kept records, or ``None``.
    :raises UnprocessableEntity: ``each_n`` or ``each_s`` not positive.
    """

    include: dict = attr.ib(factory=dict)
    exclude: dict = attr.ib(factory=dict)
    each_n = attr.ib(default=None)
    each_s = attr.ib(default=None)
    _each_n_seen: int = attr.ib(default=0)
    _each_s_last = attr.ib(default=None)

    def __attrs_post_init__(self) -> None:
        if self.each_n is not None and self.each_n <= 0:
            raise UnprocessableEntity("'each_n' must be greater than 0")
        if self.each_s is not None and self.each_s <= 0:
            raise UnprocessableEntity("Time must be greater than 0 seconds")

    @property
    def passes_all(self) -> bool:
        """Whether :meth:`accept` keeps every record (no label or sampling filter)."""
        return (not self.include and not self.exclude and self.each_n is None
                and self.each_s is None)

    def accept(self, record) -> bool:
        """
        :param record: the next record of the stream (ascending timestamps).
        :return: whether to keep it; a kept record counts for sampling.
        """
        # Filter order of spec §3.5: include, exclude, each_s, each_n.
        labels = record.labels
        if any(labels.get(k) != v for k, v in self.include.items()):
            return False
        if self.exclude and all(labels.get(k) == v for k, v in self.exclude.items()):
            return False
        if self.each_s is not None:
            if self._each_s_last is not None and record.ts - self._each_s_last < self.each_s * 1e6:
                return False
            self._each_s_last = record.ts
        if self.each_n is not None:
            self._each_n_seen += 1
            if (self._each_n_seen - 1) % self.each_n:
                return False
        return True


class MatchQueue:
    """
    The ``when`` condition with its ``#ctx_before``/``#ctx_after`` context
    and the ``limit`` of a ``Query`` (which holds the state: ``condition``,
    ``limit``, ``returned``, ``error``, ``_ready``, ``_before``,
    ``_after_count``, ``_after_ts``): records the condition lets out wait in
    ``_ready``, so a match can release the context records before it.
    """

    def _done(self) -> bool:
        # limit comes last in spec §3.5, after the filter; $limit ends the query.
        if self.limit is not None and self.returned >= self.limit:
            return True
        return self.condition is not None and self.condition.exhausted and not self._ready

    def _offer(self, block, record) -> None:
        # The when filter with its context (upstream's WhenFilter): the
        # record joins the "before" buffer; a match, or a record inside the
        # "after" window of a match, releases the whole buffer.
        condition = self.condition
        if condition is None:
            self._ready.append((block, record))
            return
        before = self._before
        before.append((block, record))
        if condition.ctx_before_us is not None:
            while record.ts - before[0][1].ts > condition.ctx_before_us:
                before.popleft()
        elif len(before) > condition.ctx_before_records + 1:
            before.popleft()
        try:
            matched = condition.evaluate(RecordContext(record.ts, record.labels))
        except ConditionEvalError as exc:
            self.error = exc
            raise
        if condition.ctx_after_us is not None:
            if matched:
                self._after_ts = record.ts
            after = self._after_ts
            keep = after is not None and after + condition.ctx_after_us >= record.ts
        else:
            self._after_count = condition.ctx_after_records if matched else self._after_count - 1
            keep = self._after_count >= 0
        if keep:
            self._ready.extend(before)
            before.clear()

    def _take(self):
        # The next queued record still stored, counted against the limit.
        while self._ready:
            if self.limit is not None and self.returned >= self.limit:
                return None
            block, record = self._ready.popleft()
            if block.removed or record.state != FINISHED:
                continue
            self.returned += 1
            return block, record, self.limit is not None and self.returned >= self.limit
        return None
