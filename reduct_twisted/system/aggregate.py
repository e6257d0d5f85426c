# -*- test-case-name: tests.unit.test_system_events -*-
"""
The aggregation windows of the audit and replication streams (spec 1.20
§8.3), as plain bookkeeping: nothing here writes or schedules anything.

* :class:`AuditAggregates`: requests with the same (token, method, path,
  status, message, client IP) are summed; an aggregate is due 5 s after its
  last request or 60 s after its first, whichever comes first.  Its event
  time is its first request's.
* :class:`ReplicationAggregates`: one running aggregate per replication,
  keyed by its status code; it is due when the status changes (the old one
  is closed at once), 5 s after its last pass, or 60 s after its first.

Both are asked :meth:`due` once a tick (``events.py``); the number of open
aggregates is bounded (:data:`MAX_OPEN`): beyond it, every aggregate is due
at the next tick.
"""

from __future__ import annotations

__all__ = ["AuditAggregates", "ReplicationAggregates", "IDLE", "SPAN", "MAX_OPEN"]

#: An aggregate is written this many seconds after its last call ...
IDLE = 5.0
#: ... or this many seconds after its first, whichever comes first.
SPAN = 60.0
#: Open audit aggregates beyond which all are written at the next tick.
MAX_OPEN = 10_000

# Fields of an open audit aggregate (a list, updated in place).
_FIRST, _LAST, _COUNT, _DURATION = range(4)


class AuditAggregates:
    """
    Open audit aggregates.  :meth:`add` is on every audited request's path:
    one tuple, one dict lookup, three stores.
    """

    __slots__ = ("_open", "idle", "span")

    def __init__(self, idle: float = IDLE, span: float = SPAN) -> None:
        self._open: dict = {}
        self.idle = idle
        self.span = span

    def __len__(self) -> int:
        return len(self._open)

    def add(self, token: str, method: str, path: str, status: int, message: str,
            client_ip, started: float, duration: float) -> None:
        """
        Count one finished request.

        :param method: ``path``, ``message``: text, or bytes (decoded as
            UTF-8 when the aggregate is written).
        :param started: when it started (seconds since the epoch).
        :param duration: how long it took, in seconds.
        """
        key = (token, method, path, status, message, client_ip)
        found = self._open.get(key)
        if found is None:
            self._open[key] = [started, started + duration, 1, duration]
        else:
            found[_LAST] = started + duration
            found[_COUNT] += 1
            found[_DURATION] += duration

    def due(self, now: float, everything: bool = False) -> list:
        """
        Take the aggregates due at ``now`` (all of them with ``everything``,
        or when more than :data:`MAX_OPEN` are open).

        :return: one ``(token, timestamp_us, status, message, payload)`` per
            aggregate, oldest first.
        """
        everything = everything or len(self._open) > MAX_OPEN
        taken = []
        for key, agg in self._open.items():
            if everything or now - agg[_LAST] >= self.idle or now - agg[_FIRST] >= self.span:
                taken.append((key, agg))
        for key, _ in taken:
            del self._open[key]
        taken.sort(key=lambda item: item[1][_FIRST])
        return [
            (token, int(agg[_FIRST] * 1_000_000), status, _text(message), {
                "token_name": token,
                "method": _text(method),
                "path": _text(path),
                "client_ip": client_ip,
                "call_count": agg[_COUNT],
                "duration": agg[_DURATION],
            })
            for (token, method, path, status, message, client_ip), agg in taken
        ]


def _text(value) -> str:
    """``value`` as text: the HTTP layer hands over bytes (decoded here, once per aggregate)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class _Run:
    """The running aggregate of one replication."""

    __slots__ = ("status", "message", "first", "last", "written", "failed", "size", "pending")

    def __init__(self, status: int, now: float) -> None:
        self.status = status
        self.message = ""
        self.first = self.last = now
        self.written = self.failed = self.size = self.pending = 0


class ReplicationAggregates:
    """The running aggregates of the replications, one each."""

    __slots__ = ("_runs", "_closed", "idle", "span")

    def __init__(self, idle: float = IDLE, span: float = SPAN) -> None:
        self._runs: dict = {}
        self._closed: list = []
        self.idle = idle
        self.span = span

    def add(self, name: str, status: int, message: str, records: int, size: int,
            pending: int, now: float) -> None:
        """
        Count one pass of replication ``name``: ``records`` records (of
        ``size`` bytes, when known) delivered (``status`` 200) or failed
        with ``status`` and ``message``; ``pending`` still waiting.
        """
        run = self._runs.get(name)
        if run is not None and run.status != status:
            self._closed.append((name, run))
            run = None
        if run is None:
            run = self._runs[name] = _Run(status, now)
        run.last = now
        run.pending = pending
        if status == 200:
            run.written += records
            run.size += size
        else:
            run.failed += records
            run.message = message

    def due(self, now: float, everything: bool = False) -> list:
        """
        :return: one ``(name, timestamp_us, status, message, payload)`` per
            aggregate closed or due at ``now``, oldest first.
        """
        taken, self._closed = self._closed, []
        for name, run in list(self._runs.items()):
            if everything or now - run.last >= self.idle or now - run.first >= self.span:
                taken.append((name, run))
                del self._runs[name]
        taken.sort(key=lambda item: item[1].first)
        return [
            (name, int(run.first * 1_000_000), run.status, run.message, {
                "status": run.status,
                "pending_records": run.pending,
                "written_records": run.written if run.status == 200 else 0,
                "failed_records": run.failed if run.status != 200 else 0,
                "replicated_data_size": run.size,
                "duration": max(0.0, run.last - run.first),
            })
            for name, run in taken
        ]
