# -*- test-case-name: tests.unit.test_lifecycle_runs -*-
"""
One lifecycle policy and its loop (spec 1.20 §7.4): sleep ``interval``,
run, repeat; the first run comes one interval after creation or start.  A
PUT replaces the settings and restarts the timer (a delete run in progress
is cancelled between slices; a compress run, whose work is in the thread
pool, is left to finish, its result ignored, and stopping the service
waits for it); a mode change applies from the next run;
``disabled`` skips runs (no event, ``last_run`` unchanged); ``dry_run``
counts only.

Window (``actions.window``): without system events every run covers
``[first, effective_stop)``.  With them (``events.enabled``) a run covers at
most 24 intervals past the policy's progress, and a run that affected
nothing and did not reach ``effective_stop`` is repeated after 100 ms.  The
progress is kept in memory (upstream reads it back from the newest
``$system`` lifecycle event): after a restart it starts again at the oldest
selected record, which only costs the runs that find nothing.

After each run an event goes to ``events.emit("lifecycle", …)`` (spec 1.20
§8.3): timestamp = end of the run, status 200 or the error's, message the
error text; on error the counts are 0 and ``caught_up`` is false.
"""

from __future__ import annotations

from datetime import datetime, timezone

import attr
from twisted.internet.defer import (
    CancelledError, Deferred, DeferredList, maybeDeferred, succeed,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from reduct_twisted.lifecycle import actions
from reduct_twisted.lifecycle.settings import DELETE, DISABLED, DRY_RUN

log = Logger()

#: Seconds before a bounded run that found nothing is repeated.
RETRY_DELAY = 0.1
#: A bounded run covers at most this many intervals past the progress.
SPAN_INTERVALS = 24


@attr.s(auto_attribs=True)
class Runtime:
    """
    What every policy of a manager runs with.

    :ivar engine: the open ``StorageEngine``.
    :ivar clock: schedules the runs and tells ``now`` (``seconds``,
        ``callLater``); a ``task.Clock`` in tests.
    :ivar reactor: where the slices of a run are scheduled (``callLater(0,
        …)``); usually the same as ``clock``.
    :ivar events: the ``ISystemEvents`` the runs are reported to.
    :ivar runs: ``{(policy, type, status): [runs, records]}``: the runs
        ended since the manager was made and the records they processed
        (``/metrics``' counters).
    """

    engine: object
    clock: object
    reactor: object
    events: object
    runs: dict = attr.Factory(dict)


def rfc3339(seconds: float) -> str:
    """:return: ``seconds`` since the epoch as RFC 3339 UTC, microseconds."""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Policy:
    """
    :param name: the policy's name.
    :param settings: its valid ``LifecycleSettings``.
    :param runtime: the shared :class:`Runtime`.
    :param provisioned: it comes from ``RS_LIFECYCLE_*``.
    :ivar last_run: when the most recent run started (seconds), or None.
    :ivar progress: where the last bounded run ended (µs), or None.
    """

    def __init__(self, name: str, settings, runtime: Runtime, provisioned: bool = False):
        self.name = name
        self.settings = settings
        self.runtime = runtime
        self.provisioned = provisioned
        self.last_run = None
        self.progress = None
        self._active = False
        self._timer = None
        self._running = None
        #: Runs left to finish in the thread pool (see the module docstring).
        self._finishing: list = []
        self._generation = 0

    def info(self, is_running: bool) -> dict:
        """:return: the ``LifecycleInfo`` object (spec 1.20 §7.3)."""
        return {
            "name": self.name,
            "is_provisioned": self.provisioned,
            "is_running": is_running,
            "type": self.settings.type,
            "mode": self.settings.mode,
            "last_run": None if self.last_run is None else rfc3339(self.last_run),
        }

    # -- the loop ------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop: the first run one interval from now."""
        self._active = True
        self._schedule(self.settings.interval_us / 1e6)

    def stop(self) -> Deferred:
        """
        Stop the loop; a delete run in progress is cancelled between slices.

        :return: a Deferred firing once no run of this policy is in progress.
        """
        self._active = False
        self._cancel()
        waits = []
        for finishing in self._finishing:
            waits.append(Deferred())
            finishing.addBoth(lambda _, wait=waits[-1]: wait.callback(None))
        return DeferredList(waits) if waits else succeed(None)

    def replace(self, settings) -> None:
        """New settings (PUT): the timer restarts, the progress is forgotten."""
        self._cancel()
        self.settings = settings
        self.progress = None
        if self._active:
            self._schedule(settings.interval_us / 1e6)

    def set_mode(self, mode: str) -> None:
        """Change only the mode; it applies from the next run."""
        self.settings = attr.evolve(self.settings, mode=mode)

    def _cancel(self) -> None:
        self._generation += 1
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        running, self._running = self._running, None
        if running is None:
            return
        if self.settings.type == DELETE:
            running.cancel()
        else:
            # Compression works in the thread pool: let it end, then forget it.
            finished = Deferred()
            self._finishing.append(finished)

            def ended(result):
                self._finishing.remove(finished)
                finished.callback(None)
                return result

            running.addBoth(ended)

    def _schedule(self, delay: float) -> None:
        self._timer = self.runtime.clock.callLater(delay, self.run)

    def run(self) -> None:
        """One run now (the timer's callable)."""
        self._timer = None
        if self.settings.mode == DISABLED:
            self._schedule(self.settings.interval_us / 1e6)
            return
        started = self.runtime.clock.seconds()
        self.last_run = started
        generation = self._generation
        running = maybeDeferred(self._execute, started)
        if running.called:  # finished at once: nothing to cancel later
            running.addBoth(self._finished, generation, started)
        else:
            self._running = running
            running.addBoth(self._finished, generation, started)

    @property
    def _bounded(self) -> bool:
        return bool(getattr(self.runtime.events, "enabled", False))

    def _execute(self, now: float):
        settings, engine = self.settings, self.runtime.engine
        entries = actions.select_entries(engine, settings.bucket, settings.entries)
        interval = settings.interval_us
        span = SPAN_INTERVALS * interval if self._bounded else None
        found = actions.window(entries, int(now * 1_000_000), settings.older_than_us,
                               self.progress, span)
        if found is None:
            return 0, 0, True, None
        first, stop, effective_stop = found
        names = [name for name, _, _ in entries]
        dry_run = settings.mode == DRY_RUN
        if settings.type == DELETE:
            done = actions.delete(engine, self.runtime.reactor, settings.bucket, names, first,
                                  stop, settings.when, dry_run)
        else:
            done = actions.compress(engine, settings.bucket, names, stop, dry_run)
        return done.addCallback(lambda counts: (*counts, stop >= effective_stop, stop))

    def _finished(self, result, generation: int, started: float) -> None:
        if generation != self._generation:
            return  # replaced, stopped or removed meanwhile: nothing to report
        self._running = None
        if isinstance(result, Failure):
            if result.check(CancelledError):
                return
            error = result.value
            status = getattr(error, "status", 500)
            message = getattr(error, "message", None) or str(error) or type(error).__name__
            if status >= 500:
                log.failure("Lifecycle {name} failed", result, name=self.name)
            else:
                log.warn("Lifecycle {name} failed: {message}", name=self.name, message=message)
            records, blocks, caught_up, last_ts = 0, 0, False, None
        else:
            status, message = 200, ""
            records, blocks, caught_up, last_ts = result
            if last_ts is not None and self._bounded:
                self.progress = last_ts
        end = self.runtime.clock.seconds()
        self._emit(end, started, status, message, records, blocks, caught_up, last_ts)
        if not self._active:
            return
        if self._bounded and status == 200 and not caught_up and not records:
            self._schedule(RETRY_DELAY)
        else:
            self._schedule(self.settings.interval_us / 1e6)

    def _emit(self, end, started, status, message, records, blocks, caught_up, last_ts):
        counted = self.runtime.runs.setdefault((self.name, self.settings.type, status), [0, 0])
        counted[0] += 1
        counted[1] += records
        payload = {
            "policy_name": self.name,
            "action_type": self.settings.type,
            "bucket": self.settings.bucket,
            "duration": max(0.0, end - started),
            "processed_records": records,
            "processed_blocks": blocks,
            "caught_up": caught_up,
            "last_processed_ts": last_ts,
        }
        try:
            self.runtime.events.emit("lifecycle", self.name, int(end * 1_000_000), status,
                                     message, payload)
        except Exception:  # the contract says never; a run must not die of it
            log.failure("Lifecycle {name}: the event was not recorded", name=self.name)
