"""
``stepping.drive`` (bounded slices on the reactor) leaves nothing for the
garbage collector: once it has answered, what its step held is freed by
reference counting.
"""

import gc
import weakref

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock

from reduct_twisted.stepping import Wait, drive
from reduct_twisted.storage import PENDING
from tests.unit.test_sinks import results


class Batch:
    """A step's owner, as a batched read's reader is (``drive(clock, reader.step)``)."""

    def __init__(self, script) -> None:
        self.script = script

    def step(self):
        return self.script.pop(0)


def _freed_without_collector(run) -> bool:
    enabled = gc.isenabled()
    gc.disable()
    try:
        return run()
    finally:
        if enabled:
            gc.enable()


def test_drive_leaves_no_cycle_once_answered():
    """A self-scheduling closure was a cycle that kept the whole batch
    (its reader, encoder and header rows) until the collector ran."""
    clock = Clock()

    def run():
        batch = Batch([PENDING, Wait(1.0), "done"])
        gone = weakref.ref(batch)
        d = drive(clock, batch.step)
        clock.advance(0)
        clock.advance(1.0)
        assert results(d) == "done"
        del d, batch
        return gone() is None

    assert _freed_without_collector(run)


def test_drive_leaves_no_cycle_after_a_failed_step():
    clock = Clock()

    def run():
        batch = Batch([PENDING])
        gone = weakref.ref(batch)
        d = drive(clock, batch.step)
        failures = []
        d.addErrback(failures.append)
        clock.advance(0)  # the script is empty: IndexError
        assert failures and failures[0].check(IndexError)
        del d, batch, failures
        return gone() is None

    assert _freed_without_collector(run)


def test_cancelling_stops_the_steps():
    clock = Clock()
    batch = Batch([PENDING, PENDING, "done"])
    d = drive(clock, batch.step)
    d.addErrback(lambda f: f.trap(CancelledError))
    d.cancel()
    clock.advance(0)
    assert batch.script == [PENDING, "done"] and clock.getDelayedCalls() == []
