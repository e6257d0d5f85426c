# -*- test-case-name: tests.unit.test_tuning -*-
"""
Process-wide settings the daemon makes once, when twistd builds it
(``tap.makeService``): the cyclic garbage collector's thresholds, the C
allocator's thresholds and the limit on open files.
"""

from __future__ import annotations

import ctypes
import gc
import resource
from typing import Any

from twisted.logger import Logger

__all__ = ["GC_THRESHOLDS", "MALLOC_THRESHOLDS", "tune_process", "tune_gc", "tune_malloc",
           "raise_open_files"]

log = Logger()

#: The cyclic collector's thresholds for the daemon (CPython's are 700, 10, 10).
GC_THRESHOLDS = (50_000, 20, 10)
#: glibc's ``mallopt`` parameters (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``)
#: and the values the daemon sets: blocks up to 4 MiB come from the heap
#: (a large upload's 1 MiB reads), and up to 64 MiB of freed heap is kept.
MALLOC_THRESHOLDS = ((-3, 4 << 20), (-1, 64 << 20))
#: The open-file limit the daemon asks for at most (its soft limit is raised
#: towards the hard one, never beyond this).
MAX_OPEN_FILES = 1 << 20


def tune_process(reactor: Any) -> None:
    """The settings below."""
    tune_gc(reactor)
    tune_malloc()
    raise_open_files()


def tune_malloc(libc: Any = None) -> bool:
    """
    Keep glibc's allocator from handing memory back to the kernel and
    asking for it again, read after read (issue #17).  A large upload reads
    its socket 1 MiB at a time; by default glibc moves its threshold for
    ``mmap`` up to such a block only after freeing one, and trims the top
    of the heap once 2 MiB there are free, so the heap grew and shrank
    hundreds of times a GiB (``brk``), and every page came back zeroed by a
    page fault: on a 2-vCPU VM a 1 GiB curl upload with ``integrity=off``
    took 0.64 s of daemon CPU at 1,859 MB/s (medians of 4 rounds), and
    0.55 s at 1,988 MB/s with :data:`MALLOC_THRESHOLDS`.
    Setting them fixes both (and turns off the moving threshold); the
    freed memory kept is bounded by what was in use at once.

    :param libc: the C library (default: this process's), for tests.
    :return: whether they were set (False off glibc: musl has no ``mallopt``).
    """
    try:
        libc = ctypes.CDLL(None) if libc is None else libc
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # Each is tried, whether the one before was taken or not.
    return all([mallopt(param, value) == 1 for param, value in MALLOC_THRESHOLDS])


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
