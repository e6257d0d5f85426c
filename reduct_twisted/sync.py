# -*- test-case-name: tests.unit.test_sync -*-
"""
Group commit: many writes, one round of ``fsync``, every one of them
acknowledged after it.

With the ``always`` sync policy (the default) a write is answered only once
its bytes and its metadata are on stable storage.  Calling ``fsync`` per
record would cap small-record throughput at the disk's flush rate, so
``GroupSync`` batches: a caller asks ``wait()`` after committing its record;
if no round is running, one starts at once and takes every file and
directory the engine has dirtied so far (``engine.take_dirty()``, on the
reactor thread); while it runs in a worker thread, further callers queue up
and are all served by the next round.  Under load a round serves every write
committed during the previous one, so the flush cost is shared.

``fsync`` never runs on the reactor thread.  A round that fails (``EIO``,
a file system gone read-only) fails its waiters with a 500: the client must
not take the write for durable.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from reduct_twisted.errors import InternalError

log = Logger()

#: The sync policies: ``always`` answers writes after fsync (survives power
#: loss), ``none`` answers once the bytes are in the page cache (survives a
#: crash of the process, not of the machine).
SYNC_POLICIES = ("always", "none")


def fsync_paths(files: Iterable[str], directories: Iterable[str]) -> None:
    """
    ``fsync`` each file, then each directory (so new names are durable too).
    Paths removed meanwhile are skipped.  Runs in a worker thread.

    :raises OSError: the first failure other than a vanished path.
    """
    # fdatasync for files: their data and size (what a reader needs), not
    # their timestamps; directories need fsync for their entries.
    for path, flags, flush in [(f, os.O_RDONLY, os.fdatasync) for f in files] + [
        (d, os.O_RDONLY | os.O_DIRECTORY, os.fsync) for d in directories
    ]:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            continue
        try:
            flush(fd)
        finally:
            os.close(fd)


class GroupSync:
    """
    :param take_dirty: ``() -> (files, directories)`` written since the last
        call (``StorageEngine.take_dirty``); called on the reactor thread.
    :param run_in_thread: ``run_in_thread(f, *args) -> Deferred``.
    :param sync: what a round runs in the thread; :func:`fsync_paths`.
    :param timer: the monotonic clock a round's duration is read from.
    :ivar observer: ``observer(seconds, writes, failed)`` told at the end of
        every round (``/metrics``: ``metrics.Metrics.sync_round``), or None.
    """

    observer = None

    def __init__(
        self,
        take_dirty: Callable[[], tuple],
        run_in_thread: Callable[..., Deferred],
        sync: Callable[[Iterable[str], Iterable[str]], None] = fsync_paths,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._take_dirty = take_dirty
        self._run_in_thread = run_in_thread
        self._sync = sync
        self._timer = timer
        self._round_started = 0.0
        self._waiting: list[Deferred] = []
        self._running = False
        #: Rounds run and callers served (for diagnostics and tests).
        self.rounds = 0
        self.served = 0

    def wait(self) -> Deferred:
        """
        :return: a Deferred that fires (with None) once everything committed
            before this call is on stable storage, or fails with
            ``InternalError`` if the sync failed.
        """
        d = Deferred()
        self._waiting.append(d)
        if not self._running:
            self._start()
        return d

    def _start(self) -> None:
        waiters, self._waiting = self._waiting, []
        self._running = True
        self._round_started = self._timer()
        try:
            files, directories = self._take_dirty()
            d = self._run_in_thread(self._sync, sorted(files), sorted(directories))
        except Exception:
            d = Deferred()
            d.errback(Failure())
        d.addBoth(self._finished, waiters)

    def _finished(self, result, waiters: list[Deferred]) -> None:
        self._running = False
        self.rounds += 1
        self.served += len(waiters)
        if self.observer is not None:
            self.observer(self._timer() - self._round_started, len(waiters),
                          isinstance(result, Failure))
        if isinstance(result, Failure):
            reason = result.value
            text = getattr(reason, "strerror", None) or str(reason)
            log.error("Sync of written data failed: {reason}", reason=text)
            for d in waiters:
                d.errback(InternalError(f"Failed to sync data to disk: {text}"))
        else:
            for d in waiters:
                d.callback(None)
        if self._waiting:
            self._start()
