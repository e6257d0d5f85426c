# -*- test-case-name: tests.integration.test_metrics -*-
"""
``GET {base}metrics`` (also ``{base}api/v1/metrics``): the daemon's
Prometheus metrics (``metrics.py``), in the text exposition format (or
OpenMetrics when the ``Accept`` header asks for it).

With ``metrics = off`` the route answers 404 like a path no route serves.
With authentication on it needs a valid token of any permission, as
``/info`` does, unless ``metrics_auth = off``: checked here, since the
table's permission column cannot depend on a setting.
"""

from reduct_twisted.auth.policy import Policy
from reduct_twisted.errors import ReductError
from reduct_twisted.http.authz import authorize


def metrics(api, request):
    registry = api.metrics
    if registry is None:
        raise ReductError("Not found", 404)
    if api.metrics_auth:
        authorize(api, request, Policy.AUTHENTICATED)
    accept = request.getHeader(b"accept") or b""
    body, content_type = registry.render(accept.decode("latin-1"))
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"cache-control", b"no-store")
    return body
