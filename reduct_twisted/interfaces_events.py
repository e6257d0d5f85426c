# -*- test-case-name: tests.unit.test_interfaces -*-
"""
The ``$system`` event streams' seam (spec 1.20 §8), re-exported by
``reduct_twisted.interfaces`` (see there).  Depends on zope.interface alone.
"""

from zope.interface import Attribute, Interface

__all__ = ["ISystemEvents"]


class ISystemEvents(Interface):
    """
    The ``$system`` event streams (spec 1.20 §8): audit aggregates, usage
    statistics, replication and lifecycle runs, written as records of
    entries ``<stream>/<instance>/<name>``.  Callers hand events over and go
    on: an implementation queues them and writes them in batches, never on
    the caller's time, and a failure to write one never reaches the caller.
    """

    enabled = Attribute("Whether events are recorded at all (RS_SYSTEM_EVENTS_ENABLED).")

    def emit(stream, name, timestamp, status, message, payload):
        """
        Queue one event.

        :param stream: ``audit``, ``usage``, ``replications`` or ``lifecycle``.
        :param name: the last entry segment (token, ``total``, replication or
            policy name; sanitized by the implementation).
        :param timestamp: the event time, microseconds since the epoch.
        :param status: the HTTP-like status code (label ``status``).
        :param message: ``""`` on success, else the error text.
        :param payload: the stream's own fields (a JSON-able dict), written
            after ``timestamp``, ``instance``, ``status``, ``message``.
        """

    def last_access(token_name):
        """
        :return: the newest audit event time of ``token_name`` in
            microseconds (spec 1.20 §4.4), or ``None``; never blocks.
        """

    def record_call(token, method, path, status, message, client_ip, started, duration):
        """
        Count one finished request for the audit stream (aggregated, never
        written on the caller's time; ``http/audit.py`` calls it).

        :param token: the caller's token name (``unauthorized`` for a 401).
        :param path: the URL path without the query string (``method``, ``path``
            and ``message`` may be bytes: decoded when written).
        :param status: the response status; ``message`` its
            ``x-reduct-error`` or ``""``.
        :param client_ip: ``http.clientip.client_ip``'s answer (or ``None``).
        :param started: when the request started, seconds since the epoch;
            ``duration``: seconds it took.
        """

    def replication_pass(name, status, message, records, size, pending):
        """
        Count one pass of replication ``name`` for the replications stream:
        ``records`` records (``size`` bytes when known) delivered (``status``
        200) or failed (``status``, ``message``); ``pending`` still waiting.
        """
