# -*- test-case-name: tests.unit.test_writers, tests.integration.test_writers_in_flight -*-
"""
``RS_IO_MAX_WRITERS_IN_FLIGHT`` (spec 1.20 §1.8, §9): at most so many
records are being written at once, over all requests.  A writer is one
record between the moment storage allocates it (``engine.upload``) and its
commit or abort: a single-record write, each record of a v1 batched write,
each record of an I/O API (v2) write.

* :class:`WriterSlots` counts the slots and queues the records waiting for
  one, first come first served; a wait ends after ``io_operation_timeout``
  seconds (on the injected clock) with 429 :data:`TOO_MANY_WRITERS`.
* :meth:`WriterSlots.open` opens a record's sink at once when a slot is
  free (no Deferred), else returns a :class:`SlotSink` that pauses reading
  the body (TCP backpressure, through a ``PauseGate`` handle) until the
  slot comes, then opens the record and hands it what was already read.

A record's sink holds its :class:`Slot` and releases it when the record is
committed, fails or is aborted (client gone, refused): ``sinks._Sink``.
Unset or 0, there is no ``WriterSlots`` at all (``api.writers`` is None)
and the write paths do not change.
"""

from collections import deque
from typing import Callable, Optional

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.logger import Logger
from zope.interface import implementer

from reduct_twisted.errors import BadRequest, InternalError, ReductError
from reduct_twisted.interfaces import IRecordSink

log = Logger()

#: The refusal of a record that found no free writer slot in time (spec 1.20 §1.8).
TOO_MANY_WRITERS = "in-flight writers limit exceeded: try again later"


def too_many_writers() -> ReductError:
    """:return: the 429 of a record that waited in vain for a writer slot."""
    return ReductError(TOO_MANY_WRITERS, 429)


class Slot:
    """One record's right to be written; :meth:`release` it exactly once (idempotent)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: "WriterSlots") -> None:
        self._owner: Optional[WriterSlots] = owner

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._release()


class _Waiter:
    __slots__ = ("deferred", "timer")


class WriterSlots:
    """
    A counter of ``limit`` writer slots with a first-in first-out queue of
    Deferreds waiting for one.

    :param limit: slots (at least 1).
    :param timeout: seconds a waiter waits before it fails with 429.
    :param clock: ``callLater`` provider (the reactor; ``task.Clock`` in tests).
    :ivar in_use: slots held now.
    """

    def __init__(self, limit: int, timeout: float, clock) -> None:
        if limit < 1:
            raise ValueError("a writer limit is at least 1")
        self.limit = limit
        self.timeout = timeout
        self._clock = clock
        self.in_use = 0
        self._waiters: deque = deque()

    @classmethod
    def from_config(cls, config, clock) -> Optional["WriterSlots"]:
        """The daemon's slots: None (no limit) when ``io_max_writers_in_flight`` is 0."""
        limit = config.io_max_writers_in_flight
        return cls(limit, config.io_operation_timeout, clock) if limit else None

    @property
    def waiting(self) -> int:
        """How many records wait for a slot."""
        return len(self._waiters)

    def try_acquire(self) -> Optional[Slot]:
        """:return: a slot if one is free and nobody waits before us, else None."""
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return Slot(self)
        return None

    def wait(self) -> Deferred:
        """
        Queue up for a slot.

        :return: a Deferred firing with a :class:`Slot` (the caller must
            release it), or failing with 429 after ``timeout`` seconds;
            cancelling it leaves the queue.
        """
        waiter = _Waiter()
        waiter.deferred = Deferred(lambda _: self._leave(waiter))
        waiter.timer = self._clock.callLater(self.timeout, self._expire, waiter)
        self._waiters.append(waiter)
        return waiter.deferred

    def acquire(self) -> Deferred:
        """:return: a Deferred of a slot: at once if one is free, else :meth:`wait`."""
        slot = self.try_acquire()
        if slot is not None:
            d: Deferred = Deferred()
            d.callback(slot)
            return d
        return self.wait()

    def open(self, open_sink: Callable, gate, refuse: Optional[Callable] = None,
             touch: Optional[Callable] = None):
        """
        A record's sink, holding a slot.

        :param open_sink: ``open_sink(gate)`` allocates the record and
            returns its sink (``gate.handle()`` is what it may pause); it
            raises ``ReductError`` for a refused record.
        :param gate: the connection's ``PauseGate``.
        :param refuse: ``refuse(err)`` answers the request at once when the
            wait fails before the body is complete (a single write); None
            (a batch): the record's bytes are dropped, ``finish`` fails.
        :param touch: called when a wait ends and the body flows again: the
            connection's ``resetTimeout`` (the body's stall timeout counts
            from there, not from before the wait).
        :return: the sink at once if a slot is free, else a :class:`SlotSink`.
        """
        slot = self.try_acquire()
        if slot is None:
            return SlotSink(self.wait(), open_sink, gate, refuse, touch)
        try:
            sink = open_sink(gate)
        except BaseException:
            slot.release()
            raise
        sink.slot = slot
        return sink

    def _leave(self, waiter: _Waiter) -> None:
        # Cancelled (the client went away while waiting).
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return
        if waiter.timer.active():
            waiter.timer.cancel()

    def _expire(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return
        waiter.deferred.errback(too_many_writers())

    def _release(self) -> None:
        self.in_use -= 1
        # A waiter's callback may release its slot again (its record was
        # refused): the loop looks at the count afresh each time.
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            waiter.timer.cancel()
            self.in_use += 1
            waiter.deferred.callback(Slot(self))


@implementer(IRecordSink)
class SlotSink:
    """
    A record waiting for a writer slot: the body is paused meanwhile (the
    bytes read before the pause took effect are held, at most one receive
    buffer); once the slot comes the record is opened and fed.  If it does
    not come in time, or the record is then refused, ``finish`` fails with
    that error and the rest of the record's bytes are dropped; a single
    write is answered at once through ``refuse``.

    :ivar waiting: True while queued for a slot (the connection's body
        timeout then does not run: ``ReductChannel.timeoutConnection``).
    """

    refusal: Optional[ReductError] = None

    def __init__(self, wait: Deferred, open_sink: Callable, gate, refuse=None,
                 touch=None) -> None:
        self._open_sink = open_sink
        self._touch = touch
        self._gate = gate
        self._pauser = gate.handle()
        self._refuse = refuse
        self._sink = None
        self._held: list = []
        self._finished: Optional[Deferred] = None
        self._done = False
        self.error: Optional[ReductError] = None
        self.waiting = True
        self._wait: Optional[Deferred] = wait
        self._pauser.pauseProducing()
        wait.addCallbacks(self._granted, self._not_granted)

    @property
    def done(self) -> bool:
        sink = self._sink
        return self._done if sink is None else sink.done

    def write(self, data) -> None:
        sink = self._sink
        if sink is not None:
            sink.write(data)
            self.refusal = sink.refusal
        elif not self._done:
            self._held.append(data)

    def _granted(self, slot: Slot) -> None:
        self.waiting, self._wait = False, None
        if self._done:
            slot.release()
            return
        try:
            sink = self._open_sink(self._gate)
        except Exception as exc:
            slot.release()
            if not isinstance(exc, ReductError):
                log.failure("Opening a record failed")
                exc = InternalError(f"Failed to write record: {exc}")
            self._fail(exc)
            return
        sink.slot = slot
        self._sink = sink
        held, self._held = self._held, []
        for chunk in held:
            sink.write(chunk)
        self._resume()
        if self._finished is not None:
            finished, self._finished = self._finished, None
            sink.finish().chainDeferred(finished)
        elif sink.refusal is not None and self._refuse is not None:
            self._refuse(sink.refusal)

    def _not_granted(self, failure) -> None:
        self.waiting, self._wait = False, None
        if failure.check(CancelledError) or self._done:
            return None
        self._fail(failure.value)

    def _fail(self, err: ReductError) -> None:
        # Nothing was allocated: the record's bytes are dropped as they come.
        self._done = True
        self.error = err
        self._held = []
        self._resume()
        finished, self._finished = self._finished, None
        if finished is not None:
            finished.errback(err)
        elif self._refuse is not None:
            self.refusal = err
            self._refuse(err)

    def _resume(self) -> None:
        self._pauser.resumeProducing()
        if self._touch is not None:
            self._touch()

    def finish(self) -> Deferred:
        """The record's bytes are all here: store it once it has its slot."""
        if self._sink is not None:
            return self._sink.finish()
        if self.error is not None:
            return fail(self.error)
        if self._done:
            return fail(BadRequest("Upload was aborted"))
        self._finished = Deferred(self._cancel_finish)
        return self._finished

    def _cancel_finish(self, finished: Deferred) -> None:
        # The request was cancelled (the client went away) while waiting.
        if self._finished is finished:
            self._finished = None
            self.abort()

    def abort(self) -> None:
        """Drop the record: leave the queue, or abort the opened record."""
        if self._sink is not None:
            self._sink.abort()
            return
        if self._done:
            return
        self._done = True
        self._held = []
        wait, self._wait = self._wait, None
        if wait is not None:
            wait.cancel()
        finished, self._finished = self._finished, None
        if finished is not None:
            finished.cancel()
        self._pauser.resumeProducing()
