# -*- test-case-name: tests.unit.test_drain -*-
"""
``DaemonService``: the top of the daemon's service tree, whose children stop
one after the other.

Twisted's ``MultiService.stopService`` calls every child's ``stopService``
at once (last added first) and only then waits for their Deferreds: the
storage would close while the HTTP connections are still draining
(``http/drain.py``).  Here each child is stopped once the one added after
it has finished stopping, so the order written in ``tap.py`` is the order
things happen.

Exit status: since Twisted 20.3, ``twistd`` stopped by a signal kills itself
with that signal once the reactor has stopped (``app._exitWithSignal``), so
a drained SIGTERM would still look like a death by signal.  After an orderly
stop (every child stopped without error) the captured SIGTERM is cleared and
twistd exits 0, as upstream ReductStore does.  This uses the reactor's
private ``_exitSignal`` (``app._ISupportsExitSignalCapturing``); a reactor
without it is left alone.
"""

from __future__ import annotations

import signal
from typing import Any, Callable

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from reduct_twisted.logs import LevelFilteredService

log = Logger()


class DaemonService(LevelFilteredService):
    """
    A :class:`~reduct_twisted.logs.LevelFilteredService` that stops its
    children in sequence, last added first.  A child that fails to stop is
    logged and the next one stops anyway.

    :param reactor: the reactor whose captured SIGTERM an orderly stop
        clears (see the module docstring); ``None`` to leave it alone.
    :param supervisor: an ``ISupervisor`` (``sdnotify.py``) told
        ``STOPPING=1`` as the stop begins; ``None`` for none.
    """

    def __init__(
        self,
        observer_factory: Callable[[], Any] | None,
        level: str,
        reactor: Any = None,
        supervisor: Any = None,
    ) -> None:
        super().__init__(observer_factory, level)
        self._reactor = reactor
        self._supervisor = supervisor

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        if self._supervisor is not None:
            self._supervisor.stopping("Stopping: draining requests, then closing the storage")
        failed: list[str] = []
        d: Deferred[Any] = succeed(None)
        for child in reversed(list(self)):
            d.addCallback(_stop, child, failed)
        return d.addCallback(self._stopped, failed)

    def _stopped(self, _: object, failed: list[str]) -> None:
        reactor = self._reactor
        if not failed and getattr(reactor, "_exitSignal", None) == signal.SIGTERM:
            reactor._exitSignal = None


def _stop(_: object, child: IService, failed: list[str]) -> Deferred[None]:
    d = maybeDeferred(child.stopService)
    d.addErrback(_stop_failed, child, failed)
    return d


def _stop_failed(failure: Failure, child: IService, failed: list[str]) -> None:
    failed.append(child.name)
    log.failure("Stopping {name} failed", failure, name=child.name)
