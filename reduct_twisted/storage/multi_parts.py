"""
The parts of ``multi.py`` around the merge: which entries a multi-entry
query selects, the checks of a query that selects none, the REMOVE query
over several entries (spec 1.20 §1.4) and the engine's methods
(:class:`MultiMethods`, re-exported by ``multi.py``).
"""

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.records import PENDING
from reduct_twisted.storage.readahead import MultiMark, claim, read_ahead
from reduct_twisted.storage.removal import start_removal
from reduct_twisted.storage.settings import is_meta_entry
from reduct_twisted.storage.when import compile_condition
from reduct_twisted.storage.when.extensions import check_extensions

#: The text of a query whose start lies after its stop.
START_AFTER_STOP = "Start time must be before stop time"


def select_entries(bucket, patterns, remove: bool = False) -> list:
    """
    The entries of ``bucket`` a query's ``entries`` selects (§1.4), by name.

    :param patterns: the ``entries`` list, or None: every entry but the
        ``$meta`` ones, as with an item ``*``.  An item equal to a name
        selects it (a ``$meta`` entry too, unless ``remove``); an item
        ending with ``*`` selects the names starting with the text before
        it (never ``$meta``).  Names matching nothing are ignored.
    :param remove: for a REMOVE query: ``$meta`` entries are never selected.
    :return: the :class:`~reduct_twisted.storage.entry.Entry` objects, by name.
    """
    names = sorted(bucket.entries)
    if patterns is None or "*" in patterns:
        chosen = [n for n in names if not is_meta_entry(n)]
    else:
        exact = set(patterns)
        prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
        chosen = [
            n for n in names
            if (n in exact and not (remove and is_meta_entry(n)))
            or (prefixes and not is_meta_entry(n) and n.startswith(prefixes))
        ]
    return [bucket.entries[n] for n in chosen]


def check_alone(qid: int, options: dict) -> None:
    """No entry selected: the options are still checked as a part would."""
    when = options.get("when")
    condition = None if when is None else compile_condition(when, options.get("strict", False))
    start, stop = options.get("start"), options.get("stop")
    if start is not None and stop is not None and start > stop:
        raise UnprocessableEntity(START_AFTER_STOP)
    for name, value in (("each_n", "'each_n' must be greater than 0"),
                        ("each_s", "Time must be greater than 0 seconds")):
        if options.get(name) is not None and options[name] <= 0:
            raise UnprocessableEntity(value)
    check_extensions(options.get("ext"), condition, qid)


class MultiRemoval:
    """
    A REMOVE query over several entries (§1.4): the per-entry removals of
    ``removal.py``, one after the other; :meth:`step` returns ``PENDING``
    or, at the end, the sum of their counts.
    """

    def __init__(self, removals) -> None:
        self._removals = list(removals)
        self._removed = 0

    def step(self):
        while self._removals:
            result = self._removals[0].step()
            if result is PENDING:
                return PENDING
            self._removed += result
            self._removals.pop(0)
        return self._removed


class MultiMethods:
    """The I/O API's queries of a ``StorageEngine`` (see the module docstring)."""

    def create_multi_query(self, bucket: str, entries=None, **options) -> int:
        """
        Create a query over the entries of ``bucket`` that ``entries``
        selects (spec 1.20 §1.4; :func:`select_entries`).

        :param options: the keyword arguments of ``create_query``.
        :return: the query id.
        :raises NotFound: no such bucket.
        :raises UnprocessableEntity: a bad option.
        """
        return self._multi.create(self._bucket(bucket), entries, self.clock.seconds(), **options)

    def multi_next(self, bucket: str, qid: int, budget: int = 2000, accept=None):
        """
        The next record of multi-entry query ``qid``; refreshes its TTL.

        :param accept: ``accept(entry name) -> bool``; a record refused
            stays the next one and :data:`HELD` is returned.
        :return: ``(entry name, RecordView)`` (with only the
            ``#select_labels`` labels, if any); ``None`` if nothing (more)
            matches now; ``PENDING`` if the budget ran out; ``HELD``.
        :raises NotFound: no such bucket or query (or it expired).
        :raises ConditionEvalError: the query's strict ``when`` failed.
        """
        owner = self._bucket(bucket)
        multi = self._multi
        result = multi.next(owner, qid, self.clock.seconds(), budget, accept)
        if result.__class__ is not tuple:
            return result
        name, block, record = result
        self.traffic.read(bucket, record.size)
        view = block.view(record)
        query = multi.find(owner, qid)
        select = None if query is None else query.select_labels
        if select is not None:
            view.record.labels = {k: v for k, v in view.record.labels.items() if k in select}
        return name, view

    def multi_take(self, bucket: str, qid: int, visit, reader=None, budget: int = 2000,
                   accept=None, visit_run=None):
        """
        A batch of multi-entry query ``qid``: ``multi_next`` record after
        record, each handed to ``visit(entry name, ts, size, content_type,
        labels)`` (its content first added to ``reader``), as ``query_take``.

        :param visit_run: ``visit_run(entry name, records) -> (taken,
            full)``, or None: without ``#select_labels``, runs of one
            entry's stored records that come next in the merge go to it
            instead of to ``visit`` one by one (as ``query_take``'s).

        :return: ``FULL``, ``None``, ``PENDING`` or ``HELD`` (``accept``
            refused the next record, which stays the next one).
        :raises NotFound: no such bucket or query (or it expired).
        :raises ConditionEvalError: the query's strict ``when`` failed.
        :raises InternalError: a record's data file cannot be opened.
        """
        owner = self._bucket(bucket)
        multi = self._multi
        query = multi.find(owner, qid)
        select = None if query is None else query.select_labels
        emit, counted = self._emitter(select, visit, reader)
        run = None
        if visit_run is not None and select is None:
            run = self._run_emitter(visit_run, reader, counted)
        mark = None if query is None else query.mark
        if mark is not None:
            emit, run = mark.noting(emit, run)
        try:
            return multi.next(owner, qid, self.clock.seconds(), budget, accept, emit, run)
        finally:
            if mark is None:
                self._count_read(bucket, counted)
            else:  # a read-ahead: its traffic counts once it is used
                mark.count(counted)

    def multi_read_ahead(self, bucket: str, qid: int, take) -> bool:
        """
        Take the next batch of multi-entry query ``qid`` now, for its next
        read (see ``readahead.py``): ``take(reader)`` takes it through
        :meth:`multi_take` with ``reader`` (a ``PlannedReader``) and returns
        what the read will need, or None (no batch to keep: the query is
        then as it was).

        :return: whether a batch is kept (for :meth:`multi_claim`).
        """
        owner = self._buckets.get(bucket) if self.is_open else None  # (not while stopping)
        multi = self._multi
        query = None if owner is None else multi.find(owner, qid)
        if query is None or query.kept is not None or not MultiMark.plannable(query):
            return False
        return read_ahead(query, MultiMark(query), take)

    def multi_claim(self, bucket: str, qid: int, use: bool = True):
        """
        The batch :meth:`multi_read_ahead` kept for query ``qid``, if any,
        if ``use`` and if nothing it read has changed since: ``(what
        ``take`` returned, a ContentReader over its contents)``, its traffic
        counted and the query's TTL refreshed.  Otherwise None, the query as
        before the read-ahead (an expired one is dropped).
        """
        owner = self._buckets.get(bucket)
        multi = self._multi
        query = None if owner is None else multi.find(owner, qid)
        if query is None or query.kept is None:
            return None
        now = self.clock.seconds()
        if query.expired(now):
            multi.discard(qid)
            return None
        return claim(query, now, use, self._open_planned,
                     lambda counted: self._count_read(bucket, counted))

    def discard_multi_query(self, qid: int) -> None:
        """Drop multi-entry query ``qid`` before its end or TTL (a query link's lookup)."""
        self._multi.discard(qid)

    def multi_options(self, bucket: str, qid: int):
        """
        :return: None if there is no such query, else ``{"only_metadata":
            bool, "io": IoOverrides or None, "continuous": bool}``.
        """
        owner = self._buckets.get(bucket)
        query = None if owner is None else self._multi.find(owner, qid)
        if query is None:
            return None
        return {"only_metadata": query.only_metadata, "io": query.io,
                "continuous": query.continuous}

    def remove_multi(self, bucket: str, entries=None, **query) -> MultiRemoval:
        """
        Prepare a REMOVE query over several entries (§1.4): ``$meta``
        entries are never touched; drive ``step()`` until it returns the count.

        :param query: the keyword arguments of ``remove_records``.
        :raises NotFound: no such bucket.
        :raises UnprocessableEntity: a bad query parameter.
        """
        owner = self._bucket(bucket)
        now = self.clock.seconds()
        removals = []
        for entry in select_entries(owner, entries, remove=True):
            try:
                removals.append(
                    start_removal(self._context, self._queries, owner, entry.name, now, query))
            except UnprocessableEntity as err:
                if err.message != START_AFTER_STOP or query.get("stop") is not None:
                    raise  # else: this entry ends before start, nothing to remove
        return MultiRemoval(removals)
