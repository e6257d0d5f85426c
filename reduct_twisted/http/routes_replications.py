# -*- test-case-name: tests.integration.test_replication_api -*-
"""
The replication API (spec §3.13).  Each handler takes the ``ReductAPI``
first, whose ``replications`` is the
:class:`~reduct_twisted.replication.manager.ReplicationManager`; the table
is in ``api.py``.

Every route needs full access (the table's column).  A malformed body is
refused before the token is looked at, as for the other JSON endpoints
(spec §1.4).  Changes are answered once the registry file holds them.
"""

from reduct_twisted.http.headers import json_body, respond_empty, respond_json
from reduct_twisted.replication.settings import parse_mode


def mode_body(request) -> str:
    """The body of ``PATCH …/mode``, parsed before the token is looked at: its mode."""
    return parse_mode(json_body(request))


def list_replications(api, request):
    return respond_json(request, {"replications": api.replications.list()})


def get_replication(api, request, name):
    return respond_json(request, api.replications.get(name))


def create_replication(api, request, name, settings):
    return _apply(api, request, api.replications.create, name, settings)


def update_replication(api, request, name, settings):
    return _apply(api, request, api.replications.update, name, settings)


def _apply(api, request, operation, name, settings):
    # The port the request came in on is ours (not there on a UNIX socket).
    saved = operation(name, settings, getattr(request.getHost(), "port", None))
    return saved.addCallback(lambda _: respond_empty(request))


def set_replication_mode(api, request, name, mode):
    """``PATCH /replications/:name/mode`` [1.18]: only the mode changes."""
    saved = api.replications.set_mode(name, mode)
    return saved.addCallback(lambda _: respond_empty(request))


def remove_replication(api, request, name):
    return api.replications.remove(name).addCallback(lambda _: respond_empty(request))
