"""
The parts of ``multi.py`` around the merge: which entries a multi-entry
query selects, the checks of a query that selects none, and the REMOVE
query over several entries (spec 1.20 §1.4).
"""

from reduct_twisted.errors import UnprocessableEntity
from reduct_twisted.storage.records import PENDING
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
