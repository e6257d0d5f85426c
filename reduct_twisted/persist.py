# -*- test-case-name: tests.unit.test_tokens -*-
"""
Small files that must survive a crash whole: written atomically (temporary
file, fsync, rename, fsync of the directory), and successive snapshots of
one file written in a worker thread, one at a time.  Used by the token
store (``auth/tokens.py``) and the replication registry
(``replication/``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Callable, Optional

from twisted.internet import defer
from twisted.python.failure import Failure


def write_atomically(path: str, data: bytes) -> None:
    """
    Replace the file ``path`` with ``data`` so that a crash leaves either
    the old or the new contents: write a temporary file (mode 0600) in the
    same directory, fsync it, rename it over ``path``, fsync the directory.
    Blocking; the daemon runs it in a worker thread.

    :raises OSError: writing failed (``path`` is then unchanged).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # The rename is durable only once the directory is.
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_temporaries(path: str) -> None:
    """Delete what a crash in :func:`write_atomically` may have left."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = os.path.basename(path) + "."
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if name.startswith(prefix) and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))


class SnapshotWriter:
    """
    Writes successive contents of one file in a worker thread, one write at
    a time, skipping contents that a newer one replaces before its turn.

    :param path: the file, written with :func:`write_atomically`.
    :param run_in_thread: ``run_in_thread(f, *args) -> Deferred`` runs
        ``f(*args)`` away from the reactor (e.g. ``deferToThreadPool``).
    """

    def __init__(self, path: str, run_in_thread: Callable[..., defer.Deferred]) -> None:
        self.path = path
        self._run_in_thread = run_in_thread
        self._running = False
        self._pending: Optional[bytes] = None
        self._pending_waiters: list = []
        self._idle_waiters: list = []

    def __repr__(self) -> str:
        return f"<SnapshotWriter {self.path!r} running={self._running}>"

    def write(self, data: bytes) -> defer.Deferred:
        """
        Put ``data`` in the file, after the write in progress if any.

        :return: a Deferred that fires with ``None`` once ``data`` or newer
            contents are on disk, or fails as the write that was to store it.
        """
        waiter: defer.Deferred = defer.Deferred()
        if self._running:
            # Only the newest contents matter: replace what was waiting.
            self._pending = data
            self._pending_waiters.append(waiter)
        else:
            self._start(data, [waiter])
        return waiter

    def idle(self) -> defer.Deferred:
        """:return: a Deferred that fires once no write is running or waiting."""
        if not self._running:
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _start(self, data: bytes, waiters: list) -> None:
        self._running = True
        done = defer.maybeDeferred(self._run_in_thread, write_atomically, self.path, data)
        done.addBoth(self._finished, waiters)

    def _finished(self, result: Any, waiters: list) -> None:
        # Still "running" while the waiters' callbacks run, so a write they
        # make waits for (and replaces) the pending one instead of racing it.
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)
        if self._pending_waiters:
            data, waiters = self._pending, self._pending_waiters
            self._pending, self._pending_waiters = None, []
            self._start(data, waiters)
            return
        self._running = False
        idle, self._idle_waiters = self._idle_waiters, []
        for waiter in idle:
            waiter.callback(None)
