# -*- test-case-name: tests.unit.test_logs_buffer -*-
"""
The daemon's log output written in batches (issue #17).

Twisted's ``FileLogObserver`` writes and flushes every line: with the access
log on (the default), one ``write(2)`` per request, a fifth of the access
log's cost.  :class:`LogBuffer` sits between the observer and the file
(``logs.twistd_observer``): lines logged while the reactor runs are kept
for at most :data:`DELAY` seconds or :data:`LIMIT` characters, then written
together with one ``write`` and one flush (like nginx's ``access_log ...
buffer= flush=``).

Lines are written at once when the reactor is not running (start-up
messages, a failure before it starts, after it stopped), when they come
from another thread and no batch is waiting (one that is takes them along:
its timer is the reactor's to cancel), when one of them is a warning or
worse (``urgent``), and before the reactor's shutdown completes.  What a ``kill -9`` can lose
is the last :data:`DELAY` seconds of INFO lines.
"""

from __future__ import annotations

import threading
from typing import IO, Any

from twisted.python.threadable import isInIOThread

__all__ = ["LogBuffer", "DELAY", "LIMIT"]

#: Longest a kept line waits, in seconds.
DELAY = 0.05
#: Characters kept at most before they are written.
LIMIT = 64 << 10


class LogBuffer:
    """
    A file-like output for ``FileLogObserver``: ``write`` keeps the text,
    ``flush`` writes it within :data:`DELAY` seconds (see the module docstring).

    :param out: the real output (a ``LogFile``, ``sys.stdout``).
    :param reactor: the reactor (default: the global one).
    :param in_io_thread: whether the caller is the reactor's thread.
    """

    def __init__(self, out: IO[Any], reactor: Any = None, in_io_thread=isInIOThread) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._out = out
        self._reactor = reactor
        self._in_io_thread = in_io_thread
        self._kept: list = []
        self._size = 0
        self._lock = threading.Lock()
        self._due = None
        #: Set by the observer for a line that must not wait (``logs_format``).
        self.urgent = False
        reactor.addSystemEventTrigger("after", "shutdown", self.write_kept)

    def write(self, text: str) -> None:
        with self._lock:
            self._kept.append(text)
            self._size += len(text)

    def flush(self) -> None:
        if self._due is not None and not self.urgent and self._size < LIMIT:
            return  # a window is open: its end writes this line too
        if self.urgent or self._size >= LIMIT or not self._in_io_thread() or not getattr(
                self._reactor, "running", False):
            self.write_kept()
        elif self._due is None:
            self._due = self._reactor.callLater(DELAY, self.write_kept)

    def write_kept(self) -> None:
        """Write and flush every line kept so far (one ``write``)."""
        with self._lock:
            due, self._due = self._due, None
            if due is not None and due.active():
                due.cancel()
            kept, self._kept, self._size = self._kept, [], 0
            if kept:
                try:
                    self._out.write(kept[0] if len(kept) == 1 else "".join(kept))
                    self._out.flush()
                except (OSError, ValueError):
                    pass  # a closed or failing output: nowhere to say so

    def __getattr__(self, name: str) -> Any:
        # ``fileno`` (``is_journal``), ``rotate``...: the real output's.
        return getattr(self._out, name)
