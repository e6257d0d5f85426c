"""
The progress bar on stderr: records done of the entry's total, records and
bytes per second, time left.  On a terminal it redraws one line with ``\\r``
(at most ten times a second); elsewhere (a log file, CI) it prints a line
every ``interval`` seconds.  The clock is injected so tests drive it.
"""

import time


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return ""  # pragma: no cover


class Progress:
    def __init__(self, stream, clock=time.monotonic, tty: bool | None = None, interval: float = 10.0, enabled: bool = True):
        self.stream = stream
        self.clock = clock
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval if not self.tty else 0.1
        self.enabled = enabled
        self._drawn = False

    def start(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.bytes = 0
        self.started = self._last = self.clock()

    def set_total(self, total: int) -> None:
        self.total = max(total, self.done)

    def advance(self, records: int = 1, nbytes: int = 0) -> None:
        self.done += records
        self.bytes += nbytes
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.label}: {self.done}/{self.total} records"]
        if self.total:
            parts[0] += f" ({100 * self.done // self.total}%)"
        parts.append(f"{rate:.1f} rec/s, {_bytes(self.bytes / elapsed)}/s")
        if rate > 0 and self.total > self.done:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line(now))
            self._drawn = True
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """The entry's last line, kept on screen."""
        if not self.enabled:
            return
        now = self.clock()
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line(now) + "\n")
        else:
            self.stream.write(self.line(now) + "\n")
        self._drawn = False
        self.stream.flush()

    def clear(self) -> None:
        """Wipe a half-drawn terminal line before other output."""
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
