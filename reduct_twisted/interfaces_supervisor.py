# -*- test-case-name: tests.unit.test_sdnotify -*-
"""
The seam between the daemon and the service manager that runs it (systemd's
``sd_notify`` protocol, ``sdnotify.py``).  Depends on zope.interface alone,
like ``interfaces.py``.
"""

from zope.interface import Attribute, Interface

__all__ = ["ISupervisor"]


class ISupervisor(Interface):
    """
    Tells the service manager how the daemon is doing.  Every call is
    best-effort and never blocks nor raises: the daemon runs the same
    whether anything listens or not.
    """

    enabled = Attribute("Whether a service manager listens (NOTIFY_SOCKET is set).")

    watchdog_interval = Attribute(
        "Seconds between two watchdog pings the manager asks for "
        "(half of WATCHDOG_USEC), or None when it asks for none."
    )

    def ready(status):
        """Every listener is up: the daemon serves (``READY=1``), with a status line."""

    def stopping(status):
        """Shutdown has begun (``STOPPING=1``), with a status line."""

    def watchdog():
        """The reactor still turns (``WATCHDOG=1``)."""

    def status(text):
        """A free-form status line for ``systemctl status`` (``STATUS=``)."""
