"""
Progress of ``export`` and ``import``: on a terminal a ``tqdm`` bar per
entry (bytes, rate, time left), redrawn in place; elsewhere (a log file,
CI, a pipe) one plain line per entry when it ends and one every
``interval`` seconds while it runs.  ``tqdm`` is a dependency for this: a
bar that measures rates, scales units and redraws without flicker is its
whole job, with no dependencies of its own.  The clock is injected so
tests drive the plain lines.
"""

import time

from tqdm import tqdm


class Progress:
    def __init__(self, stream, enabled: bool = True, tty: bool | None = None, clock=time.monotonic,
                 interval: float = 10.0):
        self.stream = stream
        self.enabled = enabled
        self.tty = (stream.isatty() if hasattr(stream, "isatty") else False) if tty is None else tty
        self.clock = clock
        self.interval = interval
        self._bar = None
        self.label = ""
        self.records = self.bytes = self.total_records = 0

    def start(self, label: str, total_records: int = 0, total_bytes: int = 0) -> None:
        self.label, self.total_records = label, total_records
        self.records = self.bytes = 0
        self.started = self._last = self.clock()
        if self.enabled and self.tty:
            self._bar = tqdm(total=total_bytes or None, desc=label, unit="B", unit_scale=True,
                             unit_divisor=1024, file=self.stream, leave=True, dynamic_ncols=True)

    def advance(self, records: int = 0, nbytes: int = 0) -> None:
        """``records`` more done, ``nbytes`` more moved (called per chunk)."""
        self.records += records
        self.bytes += nbytes
        if self._bar is not None:
            self._bar.update(nbytes)
            if records:
                self._bar.set_postfix_str(f"{self.records} records", refresh=False)
        elif self.enabled and not self.tty:
            now = self.clock()
            if now - self._last >= self.interval:
                self._last = now
                self._line(now)

    def note(self, text: str) -> None:
        """A message that must not be drawn over by the bar."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self.started, 1e-9)
        total = f"/{self.total_records}" if self.total_records else ""
        self.stream.write(f"{self.label}: {self.records}{total} records, {self.bytes} bytes, "
                          f"{self.bytes / elapsed / 1024:.1f} KiB/s" + (" done" if final else "") + "\n")
        self.stream.flush()

    def finish(self, say_empty: bool = True) -> None:
        """The entry's last line (none for an entry that had nothing, unless ``say_empty``)."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.records} records", refresh=False)
            self._bar.leave = say_empty or bool(self.records)  # an empty probe leaves no line
            self._bar.close()
            self._bar = None
        elif self.enabled and not self.tty and (say_empty or self.records):
            self._line(self.clock(), final=True)

    def close(self) -> None:
        """Leave the terminal clean (an interrupted entry's bar)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
