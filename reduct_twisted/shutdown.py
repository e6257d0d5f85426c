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
"""

from __future__ import annotations

from typing import Any

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
    """

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        d: Deferred[Any] = succeed(None)
        for child in reversed(list(self)):
            d.addCallback(_stop, child)
        return d


def _stop(_: object, child: IService) -> Deferred[None]:
    d = maybeDeferred(child.stopService)
    d.addErrback(_stop_failed, child)
    return d


def _stop_failed(failure: Failure, child: IService) -> None:
    log.failure("Stopping {name} failed", failure, name=child.name)
