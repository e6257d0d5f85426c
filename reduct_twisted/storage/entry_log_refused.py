# -*- test-case-name: tests.unit.test_log_refused -*-
"""
The log of an entry whose ``.log/`` this build refuses (issue #16): a tree
log of a newer format version, a damaged format file, lost data files
(``treelog_files.refusal``, or a ``TreeLogError`` met later), or a removed
set of a newer format (``RemovedFormatError``, met when it is first used).

Records are sacred, the log is not ours to repair: a :class:`RefusedLog`
stands in for the entry's ``EntryLog`` (``LogBook.refuse``).  It is never
ready and never holds pending leaves, so writes, label updates, removals,
FIFO eviction and renames of the entry's records go on and nothing in its
``.log/`` is read again, written or removed (a newer build may still read
it).  The leaves of the records written meanwhile are not logged: a later
build that reads the log cannot prove them.  Reads of the log and the
listing answer :func:`conflict` (409).  The daemon's log gets the problem
once per entry (``LogBook.warn``).
"""

from reduct_twisted.errors import Conflict
from reduct_twisted.storage.disk.removedset import RemovedFormatError
from reduct_twisted.storage.disk.treelog_files import TreeLogError

__all__ = ["REFUSALS", "RefusedLog", "conflict", "reason", "set_aside"]

#: The errors that set an entry's log aside.
REFUSALS = (TreeLogError, RemovedFormatError)


class RefusedLog:
    """
    In place of an entry's ``EntryLog`` (see the module docstring).

    :ivar error: one of :data:`REFUSALS` (``str``: with the path; :func:`reason`: without).
    """

    tree = behind_from = None

    def __init__(self, entry, error) -> None:
        self.entry = entry
        self.error = error
        self.pending: dict = {}  # stays empty: nothing is ever appended

    def ready(self) -> bool:
        return False

    def committed(self, record, lines: bytes = None, numbers=()) -> None:
        """A record (or a write run's records) committed: not logged."""

    def flush(self) -> int:
        return 0

    def close(self) -> None:
        """No file of the log was opened."""


def reason(error) -> str:
    """Why ``error`` refuses a log, without a server path."""
    if isinstance(error, TreeLogError):
        return error.reason
    return "its removed-records file is of a newer format or damaged"


def conflict(bucket: str, entry: str, error) -> Conflict:
    """The 409 a read of a refused log answers: the entry and why, no server path."""
    return Conflict(f"The integrity log of entry '{bucket}/{entry}' cannot be read by this "
                    f"server: {reason(error)}; the entry's records are still kept and served")


def set_aside(book, entry, error) -> RefusedLog:
    """
    Set ``entry``'s log aside for this run (``error`` says why): its
    records go on, its ``.log/`` is left as it is; reported once through
    ``book`` (a ``LogBook``: its ``problems`` and ``warn``).
    """
    old = entry.__dict__.get("_log")
    if isinstance(old, RefusedLog):
        return old
    if old is not None:
        book.waiting.pop(id(old), None)
        old.pending.clear()
        old.close()
    log = entry._log = RefusedLog(entry, error)
    line = (f"Entry log refused: {error}; the entry's records are still written and read, "
            f"its log is left as it is (not appended to, nothing removed)")
    book.problems.append(line)
    if book.warn is not None:
        book.warn(line)
    return log
