# -*- test-case-name: tests.unit.test_logs_format,tests.integration.test_logs -*-
"""
How the daemon's log lines look (issue #18), for ``logs.twistd_observer``:

* ``text`` (``log_format``, the default): twistd's own lines,
  ``<RFC 3339 time> [<system>] <message>``;
* ``json``: one JSON object per line, ``twisted.logger``'s
  ``jsonFileLogObserver`` (``eventAsJSON``; no record separator).  Every
  key of the event is kept (the access line's ``client``, ``token``,
  ``method``, ``path``, ``status``, ``bytes``, ``duration_ms``, ``cut``), and
  ``log_text`` adds the message as the text format renders it;
* under systemd, when ``$JOURNAL_STREAM`` names the device and inode of the
  file written to (:func:`is_journal`), every line starts with the syslog
  priority of its event's level (``<3>`` error ... ``<7>`` debug, see
  :data:`PRIORITIES`), which journald strips and keeps, and the text format
  drops its timestamp (journald stamps each line).  A message of several
  lines (a traceback) has the prefix on each, so each keeps its priority.
"""

from __future__ import annotations

import os
from typing import IO, Any, Callable, Mapping, Optional

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    eventAsJSON,
    eventAsText,
    formatEvent,
    formatTime,
    jsonFileLogObserver,
)
from zope.interface import implementer

__all__ = ["PRIORITIES", "is_journal", "make_observer"]

#: syslog priority (``sd-daemon(3)``) of each Twisted log level.
PRIORITIES: Mapping[LogLevel, int] = {
    LogLevel.critical: 2,
    LogLevel.error: 3,
    LogLevel.warn: 4,
    LogLevel.info: 6,
    LogLevel.debug: 7,
}

#: The priority of an event without a level (legacy ``log.msg``): info.
DEFAULT_PRIORITY = 6


def is_journal(out: IO[Any], environ: Optional[Mapping[str, str]] = None) -> bool:
    """
    Whether ``out`` is the journal's stream: ``$JOURNAL_STREAM``
    (``<device>:<inode>``, set by systemd when stdout or stderr is
    connected to the journal) names the file ``out`` writes to.  A child
    whose output was redirected inherits the variable but not the stream,
    hence the comparison (``systemd.exec(5)``).
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        stat = os.fstat(out.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (AttributeError, OSError, ValueError):
        return False


def _priority(event: LogEvent) -> str:
    return "<%d>" % PRIORITIES.get(event.get("log_level"), DEFAULT_PRIORITY)  # type: ignore[arg-type]


_time_cache: list = [None, ""]


def _time(when: Optional[float]) -> str:
    """twistd's timestamp (``formatTime``), made once per second."""
    if when is None:
        return formatTime(when)
    second = int(when)
    if second != _time_cache[0]:
        _time_cache[1] = formatTime(second)
        _time_cache[0] = second
    return _time_cache[1]


def _system(event: LogEvent) -> str:
    """The ``[system]`` of a line, as ``twisted.logger`` writes it."""
    system = event.get("log_system")
    if system is not None:
        return str(system)
    level = event.get("log_level")
    return f"{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}"


def _message(event: LogEvent, timestamp: bool) -> Optional[str]:
    """
    ``[system] message`` (after a timestamp if ``timestamp``) as twistd
    writes it, more lines indented by a tab.  An event that carries its
    line already rendered (``log_text``, the access log's) is not formatted
    again.
    """
    text = event.get("log_text")
    if text is None or "log_failure" in event:
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        if not text:
            return None
        text = text.replace("\n", "\n\t")
    if timestamp:
        return f"{_time(event.get('log_time'))} [{_system(event)}] {text}"
    return f"[{_system(event)}] {text}"


def classic_text(event: LogEvent) -> Optional[str]:
    """The line of ``event`` as twistd's text observer writes it."""
    text = _message(event, True)
    return None if text is None else text + "\n"


def journal_text(event: LogEvent) -> Optional[str]:
    """The text line of ``event`` for the journal: priority, no timestamp."""
    text = _message(event, False)
    if text is None:
        return None
    prefix = _priority(event)
    # A prefix on every line (of a traceback, say).
    return "".join(f"{prefix}{line}\n" for line in text.split("\n"))


def _with_text(event: LogEvent) -> LogEvent:
    """``event`` with ``log_text``, its message as the text format renders it."""
    if "log_text" in event:
        return event
    return dict(event, log_text=formatEvent(event))


@implementer(ILogObserver)
class _WithText:
    """Hands ``observer`` each event with ``log_text`` added (a copy)."""

    def __init__(self, observer: Callable[[LogEvent], None]) -> None:
        self._observer = observer

    def __call__(self, event: LogEvent) -> None:
        self._observer(_with_text(event))


def journal_json(event: LogEvent) -> str:
    """The JSON line of ``event`` for the journal: priority, then the object."""
    return f"{_priority(event)}{eventAsJSON(event)}\n"


def make_observer(out: IO[Any], log_format: str = "text", journal: bool = False) -> ILogObserver:
    """
    The observer writing events to ``out`` in ``log_format`` (``text`` or
    ``json``), with the journal's priority prefixes if ``journal``.
    """
    if log_format == "json":
        if journal:
            return _WithText(FileLogObserver(out, journal_json))
        return _WithText(jsonFileLogObserver(out, recordSeparator=""))
    return FileLogObserver(out, journal_text if journal else classic_text)
