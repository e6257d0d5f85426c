# -*- test-case-name: tests.unit.test_tuning -*-
"""
Process-wide settings the daemon makes once, when twistd builds it
(``tap.makeService``): the cyclic garbage collector's thresholds and the
limit on open files.
"""

from __future__ import annotations

import gc
import resource
from typing import Any

from twisted.logger import Logger

__all__ = ["GC_THRESHOLDS", "tune_process", "tune_gc", "raise_open_files"]

log = Logger()

#: The cyclic collector's thresholds for the daemon (CPython's are 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 10)
#: The open-file limit the daemon asks for at most (its soft limit is raised
#: towards the hard one, never beyond this).
MAX_OPEN_FILES = 1 << 20


def tune_process(reactor: Any) -> None:
    """Both settings below."""
    tune_gc(reactor)
    raise_open_files()


def tune_gc(reactor: Any) -> None:
    """
    Make the cyclic garbage collector cheap for a server (issue #17).  A
    request makes many short-lived objects that reference counting frees;
    at CPython's default every 700 allocations start a collection, and the
    older generations, which hold the storage's tables, are walked again
    and again: about 9 % of a batched write's CPU.  Collections are made
    rarer, and once the reactor runs the objects made while starting
    (configuration, route table, the storage's index) are frozen out of
    them (``gc.freeze``: they live as long as the process).
    """
    gc.set_threshold(*GC_THRESHOLDS)
    reactor.callWhenRunning(gc.freeze)


def raise_open_files(limits=resource) -> int:
    """
    Raise the soft limit on open files to the hard one (at most
    :data:`MAX_OPEN_FILES`).  Every entry written to keeps its integrity
    log's files open (three descriptors), so 10,000 entries need more than
    the usual soft limit of 1,024 (systemd's default keeps the soft limit
    low for programs using ``select()``; the reactor uses ``epoll``), and
    running out made writes to new entries fail.

    :return: the soft limit now.
    """
    soft, hard = limits.getrlimit(limits.RLIMIT_NOFILE)
    wanted = MAX_OPEN_FILES if hard == limits.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft != limits.RLIM_INFINITY and soft < wanted:
        try:
            limits.setrlimit(limits.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warn("Could not raise the open-file limit from {soft} to {wanted}: {error}",
                     soft=soft, wanted=wanted, error=exc)
            return soft
        return wanted
    return soft
