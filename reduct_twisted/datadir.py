# -*- test-case-name: tests.unit.test_datadir -*-
"""
One daemon per data directory: the exclusive lock on ``<data_path>/.lock``.

``tap.makeService`` calls :func:`claim_data_dir` before the storage engine
opens, so neither recovery, the trash nor anything else touches a directory
another daemon is using:

1. the directory is classified, reading only (``storage/disk/layout.py``): one
   that is not ours is refused before anything, not even ``.lock``, is
   created in it;
2. ``.lock`` is opened (created if missing, never truncated) and locked with
   ``flock(LOCK_EX | LOCK_NB)``.  An ``flock`` lock belongs to the open file
   description: it survives twistd's daemonising fork (``fcntl``/``lockf``
   locks are per process and would not) and the kernel drops it when the
   last descriptor closes, so a process killed with SIGKILL leaves no stale
   lock; the file's content is never what decides;
3. only once the lock is held is the file rewritten with the holder's PID
   and start time (JSON), which a refused daemon reads to name the holder.

If the lock is held, the daemon stops at once with one line naming the lock
and the holder's PID, or, with ``lock_file_timeout`` > 0, prints one line
that it waits as a passive stand-by and polls until the holder is gone
(then takes over) or the time is up.  This runs in ``makeService``, before
the reactor, so a plain blocking poll is fine.

The lock is held for the daemon's whole life: ``StorageService`` writes the
PID again once started (after daemonising it changed) and releases the lock
at the very end of its stop, after the engine is closed.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

from twisted.logger import Logger

from reduct_twisted.storage.disk import layout

log = Logger()

#: Seconds between two attempts while waiting for the lock.
POLL_INTERVAL = 0.1


class DataDirLocked(Exception):
    """Another process holds the lock; ``str()`` is one line naming it."""


class DataDirLock:
    """
    The lock file of one data directory.

    :param data_path: the data directory (must exist).
    :ivar path: the lock file.
    """

    def __init__(self, data_path: str) -> None:
        self.data_path = data_path
        self.path = os.path.join(data_path, layout.LOCK_FILE)
        self._fd: int | None = None
        self._recorded_pid: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """
        :return: whether the lock is now held (``False``: another holds it;
            nothing was written).
        :raises OSError: the lock file cannot be opened.
        """
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def holder(self) -> str:
        """:return: who holds the lock, from what the holder wrote (e.g. ``PID 12``)."""
        try:
            with open(self.path, "rb") as f:
                owner = json.loads(f.read(4096))
            pid, started = int(owner["pid"]), owner.get("started")
        except (OSError, ValueError, TypeError, KeyError):
            return "an unknown PID (the holder has not written it yet)"
        return f"PID {pid}" + (f", started {started}" if started else "")

    def record_owner(self) -> None:
        """Write this process's PID and the time into the held lock file (if it changed)."""
        pid = os.getpid()
        if self._fd is None or pid == self._recorded_pid:
            return
        started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = json.dumps({"pid": pid, "started": started}) + "\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data.encode("ascii"), 0)
        self._recorded_pid = pid

    def release(self) -> None:
        """Let the lock go (closing the descriptor); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # at interpreter exit the kernel releases it anyway
            pass


def claim_data_dir(
    data_path: str,
    timeout: float = 0.0,
    *,
    poll: float = POLL_INTERVAL,
    say: Callable[[str], Any] | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> DataDirLock:
    """
    Check the data directory, create it if missing and lock it (see the
    module docstring).

    :param timeout: seconds to wait for a held lock (``0``: give up at once).
    :param poll: seconds between two tries while waiting
        (``RS_LOCK_FILE_POLLING_INTERVAL``).
    :param say: prints the one "waiting" line (stderr by default).
    :return: the held lock.
    :raises DataDirRefused: the directory is not ours; nothing was changed.
    :raises DataDirLocked: another process holds it (past ``timeout``).
    :raises OSError: the directory or its lock file cannot be used.
    """
    if say is None:
        def say(line: str) -> None:
            print(line, file=sys.stderr, flush=True)
    layout.classify(data_path)
    os.makedirs(data_path, exist_ok=True)
    lock = DataDirLock(data_path)
    if not lock.try_acquire():
        if timeout <= 0:
            raise DataDirLocked(
                f"data directory {data_path} is in use: {lock.path} is held by "
                f"{lock.holder()}; not starting (set RS_LOCK_FILE_TIMEOUT to wait)"
            )
        say(f"reduct: {lock.path} is held by {lock.holder()}; waiting up to {timeout:g}s "
            f"for it as a passive stand-by")
        deadline = monotonic() + timeout
        while not lock.try_acquire():
            if monotonic() >= deadline:
                raise DataDirLocked(
                    f"data directory {data_path} is still in use after {timeout:g}s: "
                    f"{lock.path} is held by {lock.holder()}; not starting"
                )
            sleep(poll)
        log.info("Took over the lock {path}", path=lock.path)
    lock.record_owner()
    return lock
