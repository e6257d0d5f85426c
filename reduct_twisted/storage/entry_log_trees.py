# -*- test-case-name: tests.unit.test_entry_log_trees -*-
"""
How many entry logs keep their tree files open (``entry_log.py``).  An
open ``TreeLog`` holds three descriptors; an entry's log opens it on first
use and, without a bound, kept it until the entry closed, so writes spread
over 10,000 entries ran the daemon out of descriptors (``EMFILE``: the
batches failed).  :class:`OpenTrees` keeps the most recently used ones open
and closes the least recently used beyond :attr:`OpenTrees.limit`; a closed
one is opened again on its next use (``EntryLog.open``: the files are read
back as at any open).  A log whose tree is busy (a job at the leaf worker, a
catch-up or a hash build under way) is never closed.
"""

import resource
from collections import OrderedDict

__all__ = ["OpenTrees", "default_limit"]


def default_limit() -> int:
    """A sixteenth of the open-file limit, between 16 and 1,024 trees."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 16))


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
        logs, excess = self._logs, len(self._logs) - self.limit
        for key, log in list(logs.items()):
            if excess <= 0:
                break
            if key == keep:
                continue
            tree = log.tree
            if tree is None:
                del logs[key]
                excess -= 1
            elif log.inflight is None and log.catching is None and not tree.building:
                tree.close()
                log.tree = None
                del logs[key]
                excess -= 1
