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
    pending = []

    def cancel(d):
        if pending and pending[0].active():
            pending[0].cancel()

    d = Deferred(cancel)

    def attempt():
        pending.clear()
        try:
            result = step()
        except Exception as exc:
            d.errback(exc)
            return
        if result is PENDING:
            pending.append(clock.callLater(0, attempt))
        elif isinstance(result, Wait):
            pending.append(clock.callLater(result.seconds, attempt))
        else:
            d.callback(result)

    attempt()
    return d
