# -*- test-case-name: tests.unit.test_drain -*-
"""
Letting requests in flight finish when the daemon stops (issue #12, item 3).

``twistd`` stops the reactor on SIGTERM; the service tree stops the
listeners first (no new connection is accepted), then
:class:`DrainService` asks the site's :class:`ConnectionDrain` to drain:

* an idle keep-alive connection (no request on it) is closed at once (once
  the end of its last answer, possibly still in the socket's buffer, is
  sent);
* a connection with a request in progress is waited for: it may finish the
  request (an upload, a batched write or read, a download), gets
  ``connection: close`` on its answer if not written yet, and is closed
  after it;
* a request whose headers complete from now on (a connection that was in
  the middle of sending one) is answered 503 "Server is shutting down" and
  its connection closed (``StreamingRequest.gotLength`` checks
  ``draining`` and answers :meth:`ConnectionDrain.refusal`);
* the ``on_start`` callbacks run (the storage engine ends its continuous
  queries, so a batched read waiting for a new record answers at once
  instead of holding the stop for its whole ``record_timeout``).

Draining is over when the last of those connections is gone (its answer
flushed to the socket: ``connectionLost``, not just ``finish``, or the
reactor would drop the unsent bytes; a connection opened meanwhile, which
the stopped listeners make impossible, is not waited for).  After
``shutdown_timeout`` seconds the connections left are aborted: an
unfinished upload's sink aborts its allocation there
(``StreamingRequest.connectionLost``), so it leaves no record.  Only then
do the replication senders and the storage stop.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from reduct_twisted.errors import ReductError, ServiceUnavailable

log = Logger()

#: Seconds to wait for aborted connections to report that they are gone.
ABORT_GRACE = 1.0

SHUTTING_DOWN = "Server is shutting down"


class ConnectionDrain:
    """
    Tracks the open connections of one site and drains them on request.

    The site calls :meth:`connection_made` for each channel it builds and
    the channel calls :meth:`connection_lost` when it is gone; a request
    whose headers are in while :attr:`draining` is answered :meth:`refusal`.

    :param clock: ``callLater`` provider for the deadline.
    :ivar draining: True from :meth:`drain` on.
    :ivar on_start: callables run (without arguments) when draining starts.
    """

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._channels: set = set()
        self._waiting: set = set()
        self._waiters: list[Deferred[None]] = []
        self._finished = False
        self._calls: list = []
        self.draining = False
        self.on_start: list[Callable[[], object]] = []

    @property
    def open_connections(self) -> int:
        """How many connections of the site are open."""
        return len(self._channels)

    def connection_made(self, channel: Any) -> None:
        """``channel`` was built for a new connection."""
        self._channels.add(channel)

    def connection_lost(self, channel: Any) -> None:
        """``channel``'s connection is gone."""
        self._channels.discard(channel)
        if channel in self._waiting:
            self._waiting.discard(channel)
            if not self._waiting:
                self._finish()

    def refusal(self, request: Any) -> ReductError:
        """
        The answer to ``request``, whose headers were completed while
        draining: its connection is marked to close after the answer.
        """
        request.channel.persistent = False
        request.setHeader(b"connection", b"close")
        return ServiceUnavailable(SHUTTING_DOWN)

    def drain(self, timeout: float) -> Deferred[None]:
        """
        Start draining (see the module docstring).

        :param timeout: seconds the requests in progress may take.
        :return: a Deferred firing once no connection is waited for.
        """
        if self._finished:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._waiters.append(done)
        if self.draining:
            return done
        self.draining = True
        busy = 0
        for channel in list(self._channels):
            self._waiting.add(channel)
            if channel.requests:
                busy += 1
                self._close_after_answer(channel)
            else:
                channel.transport.loseConnection()
        for callback in self.on_start:
            try:
                callback()
            except Exception:
                log.failure("Stopping: {callback!r} failed", callback=callback)
        if not self._waiting:
            self._finish()
            return done
        log.info(
            "Stopping: waiting up to {timeout}s for {count} request(s) in progress; "
            "closing {idle} idle connection(s)",
            timeout=timeout,
            count=busy,
            idle=len(self._waiting) - busy,
        )
        self._calls.append(self._clock.callLater(timeout, self._abort_rest, timeout))
        return done

    @staticmethod
    def _close_after_answer(channel: Any) -> None:
        # Twisted closes a non-persistent channel once its request is done;
        # answers not started yet say so.
        channel.persistent = False
        for request in channel.requests:
            if not request.startedWriting:
                request.setHeader(b"connection", b"close")

    def _abort_rest(self, timeout: float) -> None:
        log.warn(
            "Stopping: aborting {count} connection(s) still open after {timeout}s "
            "(unfinished uploads are dropped)",
            count=len(self._waiting),
            timeout=timeout,
        )
        for channel in list(self._waiting):
            channel.transport.abortConnection()
        if self._waiting:
            # Aborted connections report their loss in the next reactor turn.
            self._calls.append(self._clock.callLater(ABORT_GRACE, self._finish))

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._waiting.clear()
        calls, self._calls = self._calls, []
        for call in calls:
            if call.active():
                call.cancel()
        waiters, self._waiters = self._waiters, []
        for done in waiters:
            done.callback(None)


class DrainService(Service):
    """
    Drains ``drain`` when stopped; the service tree stops it after the
    listeners and before the replication senders and the storage (see
    ``tap.py``).

    :param timeout: ``shutdown_timeout``.
    """

    name = "drain"

    def __init__(self, drain: ConnectionDrain, timeout: float) -> None:
        self.drain = drain
        self.timeout = timeout

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.drain.drain(self.timeout)
