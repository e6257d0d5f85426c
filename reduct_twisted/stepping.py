# -*- test-case-name: tests.unit.test_batch,tests.unit.test_lifecycle_runs -*-
"""
Work in bounded slices on the reactor: :func:`drive` calls a step until it
has an answer, yielding between calls, so a long scan never blocks the
reactor.  Used by the HTTP routes (queries, batched reads, removals, link
lookups) and the lifecycle runs.
"""

import attr
from twisted.internet.defer import Deferred

from reduct_twisted.storage import PENDING

__all__ = ["Wait", "drive"]


@attr.s(frozen=True, slots=True)
class Wait:
    """What a step returns to be called again in ``seconds`` (:func:`drive`)."""

    seconds: float = attr.ib()


def drive(clock, step) -> Deferred:
    """
    Call ``step()`` until it returns something other than ``PENDING`` or a
    :class:`Wait`, yielding to the reactor between calls (for ``Wait(s)``,
    for ``s`` seconds); cancelling the Deferred stops it.
    """
    return _Driver(clock, step).start()


class _Driver:
    """
    :func:`drive`'s state.  Nothing refers back to it once it has its
    answer, so it and what it holds (the step, and through it a whole
    batch) go when the answer has been used: a closure calling itself
    again would be a reference cycle, left to the garbage collector (for
    batched reads, 13 % of the daemon's time in collections).
    """

    __slots__ = ("_clock", "_step", "_done", "_pending")

    def __init__(self, clock, step) -> None:
        self._clock, self._step = clock, step
        self._pending = None
        self._done = Deferred(self._cancel)

    def start(self) -> Deferred:
        done = self._done
        self._attempt()
        return done

    def _cancel(self, _) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending.active():
            pending.cancel()

    def _attempt(self) -> None:
        self._pending = None
        try:
            result = self._step()
        except Exception as exc:
            self._finish().errback(exc)
            return
        if result is PENDING:
            self._pending = self._clock.callLater(0, self._attempt)
        elif isinstance(result, Wait):
            self._pending = self._clock.callLater(result.seconds, self._attempt)
        else:
            self._finish().callback(result)

    def _finish(self) -> Deferred:
        done, self._done, self._step = self._done, None, None
        return done
