# -*- test-case-name: tests.unit.test_system_audit,tests.integration.test_system -*-
"""
The audit hook: every finished request, once, from ``ReductSite.log``
(which ``Request.finish`` calls), handed to the API's event streams
(``system/``; spec 1.20 §8.3).

A request is recorded when it was answered 401 (token name
``unauthorized``) or its bearer token was identified
(``request.reduct_token_name``, set by the auth check; the
``AUTHENTICATION-DISABLED`` name with authentication off).  Paths ending in
``/alive`` or ``/ready`` are never recorded.  The path is the URL path
without the query string; the message the response's ``x-reduct-error``;
the client address ``clientip.client_ip``'s; the duration runs from the
request's headers (``StreamingRequest.gotLength``) to its end.
"""

from __future__ import annotations

from reduct_twisted.http.clientip import client_ip

__all__ = ["audit_request"]

_SKIPPED = (b"/alive", b"/ready")
_ERROR = b"x-reduct-error"


def audit_request(events, request, now: float) -> None:
    """Hand ``request``, finished at ``now`` (seconds), to ``events.record_call`` if audited."""
    code = request.code
    if code == 401:
        token = "unauthorized"
    else:
        token = getattr(request, "reduct_token_name", None)
        if token is None:
            return
    path = request.path
    if path.endswith(_SKIPPED):
        return
    # (an answer below 300 carries no x-reduct-error: the header lookup is skipped)
    errors = request.responseHeaders.getRawHeaders(_ERROR) if code >= 300 else None
    started = getattr(request, "reduct_started", None)
    if started is None:
        started = now
    # Method, path and message as bytes: decoded once per aggregate, when written.
    events.record_call(
        token, request.method, path, code, errors[0] if errors else b"", client_ip(request),
        started, now - started if now > started else 0.0,
    )
