# -*- test-case-name: tests.unit.test_interfaces -*-
"""
The ``$system`` bucket's event streams (spec 1.20 §8).

:class:`NullSystemEvents` is what the other parts hold when events are
disabled: it drops every event and knows no access times.
"""

from zope.interface import implementer

from reduct_twisted.interfaces import ISystemEvents

__all__ = ["NullSystemEvents"]


@implementer(ISystemEvents)
class NullSystemEvents:
    """System events disabled (``RS_SYSTEM_EVENTS_ENABLED=false``)."""

    enabled = False

    def emit(self, stream, name, timestamp, status, message, payload) -> None:
        """Drop the event."""

    def last_access(self, token_name):
        """:return: ``None``: nothing is recorded."""
        return None
