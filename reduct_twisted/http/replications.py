# -*- test-case-name: tests.integration.test_replication_api -*-
"""
The replication API (spec §3.13), on the same Klein app as the rest of the
API (``api.py``, which imports this module): Klein binds the ``ReductAPI``
instance as ``self``, whose ``replications`` is the
:class:`~reduct_twisted.replication.manager.ReplicationManager`.

Every route needs full access.  A malformed body is refused before the
token is looked at, as for the other JSON endpoints (spec §1.4).  Changes
are answered once the registry file holds them.
"""

from reduct_twisted.auth.policy import Policy
from reduct_twisted.http.api import route
from reduct_twisted.http.headers import parse_json_body, respond_empty, respond_json


@route("/replications", ["GET"], legacy=False)
def list_replications(self, request):
    self._authorize(request, Policy.FULL_ACCESS)
    return respond_json(request, {"replications": self.replications.list()})


@route("/replications/<name>", ["GET"], legacy=False)
def get_replication(self, request, name):
    self._authorize(request, Policy.FULL_ACCESS)
    return respond_json(request, self.replications.get(name))


@route("/replications/<name>", ["POST"], legacy=False)
def create_replication(self, request, name):
    return _apply(self, request, self.replications.create, name)


@route("/replications/<name>", ["PUT"], legacy=False)
def update_replication(self, request, name):
    return _apply(self, request, self.replications.update, name)


def _apply(api, request, operation, name):
    settings = parse_json_body(request.content.getvalue())
    api._authorize(request, Policy.FULL_ACCESS)
    # The port the request came in on is ours (not there on a UNIX socket).
    saved = operation(name, settings, getattr(request.getHost(), "port", None))
    return saved.addCallback(lambda _: respond_empty(request))


@route("/replications/<name>", ["DELETE"], legacy=False)
def remove_replication(self, request, name):
    self._authorize(request, Policy.FULL_ACCESS)
    return self.replications.remove(name).addCallback(lambda _: respond_empty(request))
