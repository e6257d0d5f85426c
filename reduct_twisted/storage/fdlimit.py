"""
Shares of the process's open-file limit for the storage's descriptor
caches: the block files' (``cache.FdCache``: a quarter) and the entry logs'
trees (``entry_log_trees.OpenTrees``: a sixteenth, three files each), so
that together they stay under half of it whatever it is (the daemon raises
its soft limit to the hard one at start: ``tuning.raise_open_files``).
"""

import resource

__all__ = ["share"]


def share(divisor: int, low: int, high: int) -> int:
    """The soft open-file limit divided by ``divisor``, kept within ``low … high``."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        return high
    return max(low, min(high, soft // divisor))
