"""
Log level filtering for a daemon started by ``twistd``.

``twistd`` has no log level option: the observer it installs writes every
event.  Twisted's documented hook for replacing that observer is an
``ILogObserver`` component on the ``Application``
(:meth:`twisted.application.app.AppLogger.start` uses it when ``--logger`` is
not given).  A plugin never sees the ``Application``: twistd creates it after
``makeService`` and attaches our service to it.  So the top-level service
(:class:`LevelFilteredService`) sets that component when it is attached, with
an observer built from twistd's own ``--logfile``/``--syslog``/``--nodaemon``
options (:func:`twistd_observer`) and wrapped in a ``FilteringLogObserver``.
Every event, including Twisted's own and the legacy ``twisted.python.log``
ones, passes the filter, because this observer is the only one twistd adds.

The lines are twistd's text, or JSON (``log_format``), with journald
priorities when stdout is the journal: see ``logs_format.py``.

With ``twistd --logger=...`` the user's factory wins and no filter is added;
``twist`` has its own ``--log-level`` and never creates an ``Application``.
"""

from __future__ import annotations

import signal
import sys
from typing import Any, Callable, Mapping

import attrs
from twisted.application.service import MultiService
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    PredicateResult,
)
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile
from zope.interface import implementer

from reduct_twisted.logs_buffer import LogBuffer
from reduct_twisted.logs_format import is_journal, make_observer

#: Our level names (see ``reduct_twisted.config_values.LOG_LEVELS``) to Twisted's.
#: Twisted has nothing below ``debug``, so ``TRACE`` is ``debug``.
TWISTED_LEVELS: Mapping[str, LogLevel] = {
    "TRACE": LogLevel.debug,
    "DEBUG": LogLevel.debug,
    "INFO": LogLevel.info,
    "WARN": LogLevel.warn,
    "ERROR": LogLevel.error,
}


@implementer(ILogFilterPredicate)
@attrs.frozen
class MinimumLevel:
    """
    Drop events below ``level``.  Unlike ``LogLevelFilterPredicate`` it lets
    through events with no level or no namespace: nothing is lost silently.
    """

    level: LogLevel

    def __call__(self, event: LogEvent) -> PredicateResult:
        level = event.get("log_level")
        if level is not None and level < self.level:
            return PredicateResult.no
        return PredicateResult.maybe


def filtered(observer: ILogObserver, level: str) -> ILogObserver:
    """
    Wrap ``observer`` so it only sees events at ``level`` or above.

    :param level: one of ``reduct_twisted.config_values.LOG_LEVELS``.
    """
    return FilteringLogObserver(observer, [MinimumLevel(TWISTED_LEVELS[level])])


def buffered(out: Any, log_format: str, journal: bool = False,
             batched: bool = False) -> ILogObserver:
    """
    ``make_observer`` writing to ``out``; with ``batched``, through a
    ``LogBuffer``: INFO and DEBUG lines in batches, a warning or worse at
    once (with what was kept).
    """
    if not batched:
        return make_observer(out, log_format, journal)
    buffer = LogBuffer(out)
    observer = make_observer(buffer, log_format, journal)

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        level = event.get("log_level")
        buffer.urgent = (level is not None and level > LogLevel.info) or "log_failure" in event
        observer(event)

    return observe


def twistd_observer(server_options: Mapping[str, Any], log_format: str = "text",
                    batched: bool = False) -> ILogObserver:
    """
    Make the observer twistd itself would make for ``server_options`` (see
    ``twisted.scripts._twistd_unix.UnixAppLogger``): syslog with ``--syslog``,
    stdout with ``--nodaemon`` and no ``--logfile`` (or ``--logfile -``),
    otherwise a ``LogFile`` (``twistd.log`` by default) rotated on SIGUSR1.
    Its lines are in ``log_format`` (``text`` or ``json``), with syslog
    priorities when stdout is the journal (``logs_format.py``); with
    ``batched`` (the daemon's), INFO lines are written in batches
    (``logs_buffer.py``).
    """
    if server_options.get("syslog"):
        from twisted.python.syslog import SyslogObserver

        prefix = server_options.get("prefix") or "twisted"
        return LegacyLogObserverWrapper(SyslogObserver(prefix).emit)
    name = server_options.get("logfile") or ""
    nodaemon = bool(server_options.get("nodaemon"))
    if name == "-" and not nodaemon:
        sys.exit("Daemons cannot log to stdout, exiting!")
    if name == "-" or (nodaemon and not name):
        return buffered(sys.stdout, log_format, is_journal(sys.stdout), batched)
    logfile = LogFile.fromFullPath(name or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(logfile.rotate)  # type: ignore[attr-defined]

        signal.signal(signal.SIGUSR1, rotate)
    return buffered(logfile, log_format, batched=batched)


class LevelFilteredService(MultiService):
    """
    A ``MultiService`` that, when attached to a twistd ``Application``, gives
    it a level-filtered ``ILogObserver`` component (see the module docstring).

    :ivar observer_factory: makes the unfiltered observer, or ``None`` to
        leave twistd's logging alone (not run by twistd, or ``--logger``).
    :ivar level: the minimum level to let through.
    """

    def __init__(self, observer_factory: Callable[[], ILogObserver] | None, level: str) -> None:
        super().__init__()
        self.observer_factory = observer_factory
        self.level = level

    def setServiceParent(self, parent: Any) -> None:
        if (
            self.observer_factory is not None
            and isinstance(parent, Componentized)
            and parent.getComponent(ILogObserver, None) is None
        ):
            observer = filtered(self.observer_factory(), self.level)
            parent.setComponent(ILogObserver, observer)
        super().setServiceParent(parent)


def observer_factory_for(options: Any) -> Callable[[], ILogObserver] | None:
    """
    The unfiltered observer factory for our sub-command ``options`` (in
    their configuration's ``log_format``), or
    ``None`` when they were not parsed by twistd (no ``parent`` with twistd's
    logging options) or when twistd was given ``--logger``.
    """
    parent = getattr(options, "parent", None)
    if parent is None or "logfile" not in parent or parent.get("logger"):
        return None
    log_format = getattr(getattr(options, "config", None), "log_format", "text")
    return lambda: twistd_observer(parent, log_format, batched=True)
