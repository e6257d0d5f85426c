# -*- test-case-name: tests.unit.test_entry_log_trees -*-
"""
How many entry logs keep their tree files open (``entry_log.py``).  An
open ``TreeLog`` holds three descriptors; an entry's log opens it on first
use and, without a bound, kept it until the entry closed, so writes spread
over 10,000 entries ran the daemon out of descriptors (``EMFILE``: the
batches failed).  :class:`OpenTrees` keeps the most recently used ones open
and closes the files of the least recently used beyond
:attr:`OpenTrees.limit` (``TreeLog.park``: each file is opened again when
next used, the log's state kept in memory).  A log whose tree is busy (a job at the leaf worker, a
catch-up or a hash build under way) is never closed.
"""

from collections import OrderedDict

from reduct_twisted.storage.fdlimit import share

__all__ = ["OpenTrees", "default_limit"]


def default_limit() -> int:
    """A sixteenth of the open-file limit, between 16 and 1,024 trees."""
    return share(16, 16, 1024)


class OpenTrees:
    """The entry logs whose tree is open, least recently used first."""

    def __init__(self, limit: int = None) -> None:
        self.limit = default_limit() if limit is None else limit
        self._logs: OrderedDict = OrderedDict()

    def used(self, log) -> None:
        """``log`` uses its (open) tree: it becomes the most recent; the oldest may close."""
        logs, key = self._logs, id(log)
        if key in logs:
            logs.move_to_end(key)
            return
        logs[key] = log
        if len(logs) > self.limit:
            self._close_oldest(key)

    def forget(self, log) -> None:
        """``log`` closed its files itself."""
        self._logs.pop(id(log), None)

    def __len__(self) -> int:
        return len(self._logs)

    def _close_oldest(self, keep: int) -> None:
        # ``keep``: the log being used now (its caller is about to use its tree).
        # O(closed + busy skipped): the oldest are taken off the front.
        logs, busy = self._logs, []
        while logs and len(logs) + len(busy) > self.limit:
            key, log = logs.popitem(last=False)
            tree = log.tree
            if tree is None:
                continue
            if (key == keep or log.inflight is not None or log.catching is not None
                    or tree.building):
                busy.append((key, log))
                continue
            tree.park()
        for key, log in reversed(busy):  # back at the front, in their order
            logs[key] = log
            logs.move_to_end(key, last=False)
