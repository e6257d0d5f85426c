# -*- test-case-name: tests.unit.test_sdnotify -*-
"""
systemd's readiness protocol (``sd_notify(3)``), without a dependency.

A service of ``Type=notify`` is given a datagram socket in ``$NOTIFY_SOCKET``
(a path, or an abstract name written ``@name``) and sends it newline-separated
``KEY=value`` assignments:

* ``READY=1`` once every listener is listening (tap.py gathers the
  listeners' listen results once the reactor runs), with ``STATUS=`` naming
  the addresses and ``MAINPID=``;
* ``STOPPING=1`` when shutdown begins (``shutdown.DaemonService``);
* ``WATCHDOG=1`` every ``WATCHDOG_USEC / 2`` when the unit sets
  ``WatchdogSec=`` (and ``WATCHDOG_PID``, if set, is this process), from a
  ``TimerService`` on the reactor: a reactor that hangs stops pinging, and
  systemd restarts the daemon, as the watchdog is meant to.

The socket is ``AF_UNIX``/``SOCK_DGRAM`` and non-blocking: a datagram that
cannot go at once is dropped with a warning, never waited for.  Without
``$NOTIFY_SOCKET`` (not run by systemd, or ``Type=simple``) every call does
nothing.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping

from twisted.application.internet import TimerService
from twisted.application.service import IService
from twisted.logger import Logger
from zope.interface import implementer

from reduct_twisted.interfaces_supervisor import ISupervisor

log = Logger()

__all__ = ["SystemdNotifier", "watchdog_service"]


@implementer(ISupervisor)
class SystemdNotifier:
    """
    Sends ``sd_notify`` datagrams to ``address``.

    :param address: the ``$NOTIFY_SOCKET`` value (``@`` starts an abstract
        name), or ``None``/empty to send nothing.
    :param watchdog_interval: seconds between watchdog pings, or ``None``.
    """

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self._address = _socket_address(address) if address else None
        self.enabled = self._address is not None
        self.watchdog_interval = watchdog_interval if self.enabled else None
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> SystemdNotifier:
        """
        The notifier systemd asks for in ``environ`` (``os.environ`` by
        default): ``NOTIFY_SOCKET``, and ``WATCHDOG_USEC`` unless
        ``WATCHDOG_PID`` names another process than ``pid`` (ours by default).
        """
        environ = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        interval = None
        usec = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and owner in ("", str(pid)):
            interval = int(usec) / 2e6
        return cls(environ.get("NOTIFY_SOCKET") or None, interval)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={_line(status)}\nMAINPID={os.getpid()}")

    def stopping(self, status: str) -> None:
        self._send(f"STOPPING=1\nSTATUS={_line(status)}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self._send(f"STATUS={_line(text)}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:  # BlockingIOError included: dropped, never waited for
            if not self._warned:
                self._warned = True
                log.warn(
                    "Cannot notify systemd at {address!r}: {reason}",
                    address=self._address, reason=exc.strerror or str(exc),
                )


def _socket_address(value: str) -> str | bytes:
    # An abstract socket is written "@name": its address starts with a NUL.
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")
    return value


def _line(text: str) -> str:
    # One assignment per line: a newline would start another one.
    return " ".join(text.splitlines())


def watchdog_service(supervisor: Any, reactor: Any) -> IService | None:
    """
    The service pinging ``supervisor``'s watchdog every
    ``watchdog_interval`` seconds on ``reactor`` (at once when it starts), or
    ``None`` when no watchdog is asked for.
    """
    interval = supervisor.watchdog_interval
    if not interval:
        return None
    service = TimerService(interval, supervisor.watchdog)
    service.clock = reactor
    service.setName("watchdog")
    return service
