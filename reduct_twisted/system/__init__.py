# -*- test-case-name: tests.unit.test_interfaces,tests.unit.test_system_events -*-
"""
The ``$system`` bucket's event streams (spec 1.20 §8).

:class:`~reduct_twisted.system.events.SystemEvents` writes them (a service
of the daemon); :class:`NullSystemEvents` is what the other parts hold when
events are disabled (``RS_SYSTEM_EVENTS_ENABLED=false``): it drops every
event and knows no access times.  :func:`make_events` picks one from the
configuration.
"""

from twisted.application.service import Service
from twisted.logger import Logger
from zope.interface import implementer

from reduct_twisted.interfaces import ISystemEvents
from reduct_twisted.system.events import SystemEvents, instance_name

__all__ = ["NullSystemEvents", "SystemEvents", "make_events"]

log = Logger()

#: The 1.19 ``$audit`` settings 1.20 ignores (``config_system.py``).
_AUDIT_SETTINGS = {
    "audit_enabled": "RS_AUDIT_ENABLED",
    "audit_quota_size": "RS_AUDIT_QUOTA_SIZE",
    "audit_remote_verify_ssl": "RS_AUDIT_REMOTE_VERIFY_SSL",
    "audit_remote_ca_path": "RS_AUDIT_REMOTE_CA_PATH",
    "audit_remote_timeout": "RS_AUDIT_REMOTE_TIMEOUT",
}


@implementer(ISystemEvents)
class NullSystemEvents(Service):
    """System events disabled (``RS_SYSTEM_EVENTS_ENABLED=false``)."""

    enabled = False
    name = "system-events"

    def emit(self, stream, name, timestamp, status, message, payload) -> None:
        """Drop the event."""

    def last_access(self, token_name):
        """:return: ``None``: nothing is recorded."""
        return None

    def record_call(self, token, method, path, status, message, client_ip, started,
                    duration) -> None:
        """Drop the request."""

    def replication_pass(self, name, status, message, records, size, pending) -> None:
        """Drop the pass."""


def ignored_audit_settings(config) -> list:
    """:return: the ``RS_AUDIT_*`` variables set in ``config`` (ignored since 1.20)."""
    return [env for field, env in _AUDIT_SETTINGS.items() if getattr(config, field, None)]


def make_events(config, engine, clock):
    """
    The event streams ``config`` asks for: a ``SystemEvents`` writing to
    ``engine``'s ``$system`` bucket, or a ``NullSystemEvents``.  Warns about
    the ignored ``RS_AUDIT_*`` settings.
    """
    ignored = ignored_audit_settings(config)
    if ignored:
        log.warn("{names} set: ignored since API 1.20 (audit events go to bucket $system, "
                 "see RS_SYSTEM_EVENTS_*)", names=", ".join(ignored))
    if not config.system_events_enabled:
        return NullSystemEvents()
    return SystemEvents(engine, clock, instance_name(config.instance_name),
                        quota_size=config.system_events_quota_size)
