"""
The ``diagnostics`` of a replication (spec §3.13), counted as upstream does.

Upstream keeps 60 frames of one minute each.  ``ok`` and ``errored`` are
the sums over the frames kept, scaled to a full hour while fewer than 60
frames exist (a replication one minute old that sent 10 records reports
``ok: 600``, a rate per hour); ``errors`` holds, per status code, the plain
count over the frames kept and the last message.  Status codes are HTTP
codes, or upstream's negative codes for failures without an answer:
``-2`` timeout, ``-3`` connection error.

One difference: upstream moves to a new frame only when it counts
something, so an idle replication keeps showing its last hour forever; here
the frames follow the clock, and an hour without traffic reports zeros.
"""

from __future__ import annotations

import attr

#: Frames kept, and their length in seconds: one hour.
FRAME_COUNT = 60
FRAME_SECONDS = 60.0

#: Status of a failure to connect (upstream's ``ErrorCode::ConnectionError``).
CONNECTION_ERROR = -3
#: Status of a request that took too long (upstream's ``ErrorCode::Timeout``).
TIMEOUT = -2


@attr.s(slots=True)
class _Frame:
    index: int = attr.ib()
    ok: int = attr.ib(default=0)
    errored: int = attr.ib(default=0)
    #: status -> [count, last message]
    errors: dict = attr.ib(factory=dict)


class DiagnosticsCounter:
    """
    Counts replicated and failed records over the last hour.

    :param clock: provides ``seconds()``.
    """

    #: ``observer(status, message, count, size)`` told of every count (200
    #: for records delivered, ``size`` their bytes when known): the
    #: ``$system`` replications stream (``system/``).
    observer = None

    def __init__(self, clock) -> None:
        self._clock = clock
        #: Records delivered, and ``{status: records}`` failed, since the
        #: replication was made (never reset: ``/metrics``' counters).
        self.sent_total = 0
        self.errors_total: dict = {}
        self._first = self._index()
        self._frames: list = []

    def _index(self) -> int:
        return int(self._clock.seconds() // FRAME_SECONDS)

    def _expire(self, now: int) -> None:
        frames = self._frames
        while frames and frames[0].index <= now - FRAME_COUNT:
            frames.pop(0)

    def _frame(self) -> _Frame:
        now = self._index()
        self._expire(now)
        if not self._frames or self._frames[-1].index != now:
            self._frames.append(_Frame(now))
        return self._frames[-1]

    def ok(self, count: int = 1, size: int = 0) -> None:
        """``count`` records (``size`` bytes, when known) reached the destination."""
        if count:
            self.sent_total += count
            self._frame().ok += count
            if self.observer is not None:
                self.observer(200, "", count, size)

    def errored(self, status: int, message: str, count: int = 1) -> None:
        """``count`` records failed with ``status`` and ``message``."""
        if not count:
            return
        self.errors_total[status] = self.errors_total.get(status, 0) + count
        frame = self._frame()
        frame.errored += count
        entry = frame.errors.setdefault(status, [0, message])
        entry[0] += count
        entry[1] = message
        if self.observer is not None:
            self.observer(status, message, count, 0)

    def hourly(self) -> dict:
        """:return: ``{"ok": n, "errored": n, "errors": {"<status>": {"count", "last_message"}}}``."""
        now = self._index()
        self._expire(now)
        ok = sum(f.ok for f in self._frames)
        errored = sum(f.errored for f in self._frames)
        # Upstream divides by the share of the hour its frames cover.
        covered = min(FRAME_COUNT, now - self._first + 1)
        scale = FRAME_COUNT / covered
        errors: dict = {}
        for frame in self._frames:
            for status, (count, message) in frame.errors.items():
                entry = errors.setdefault(str(status), {"count": 0, "last_message": message})
                entry["count"] += count
                entry["last_message"] = message
        # Rust's round(): halves away from zero (Python's round() would go to even).
        return {"ok": int(ok * scale + 0.5), "errored": int(errored * scale + 0.5),
                "errors": errors}
