"""
Which records of a time-ordered stream a query keeps by labels and
sampling (spec §3.5): :class:`RecordFilter`, used by ``query.py``.
"""

import attr

from reduct_twisted.errors import UnprocessableEntity


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
