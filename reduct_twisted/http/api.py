# -*- test-case-name: tests.integration.test_api -*-
"""
The HTTP API: ReductStore's v1 routes (and the legacy unprefixed v0 paths)
on a Klein app owned by :class:`ReductAPI`, and the one route table that
fills it (:data:`ROUTES`).

Handlers live in the route modules, one per group (``routes_server.py``,
``routes_buckets.py``, ``routes_records.py``, ``routes_entries.py``,
``routes_replications.py``); each takes the ``ReductAPI`` instance first
(Klein binds it), parses, asks the access policy through
``authz.authorize``, calls the storage engine and answers.  The two hot
record routes are also reached without Klein, through ``fastpath.py``.
"""

from klein import Klein
from twisted.web.resource import Resource

from reduct_twisted.errors import ReductError
from reduct_twisted.http import (
    routes_buckets as buckets,
    routes_entries as entries,
    routes_records as records,
    routes_replications as replications,
    routes_server as server,
)
from reduct_twisted.http.batch import BatchLimits
from reduct_twisted.http.errors import install_error_handlers, write_error_headers
from reduct_twisted.http.fastpath import FastPath

#: Where a route is served: under ``/api/v1`` only, also under the
#: unprefixed pre-1.0 path (``<name>_v0`` endpoints), or only there.
V1, BOTH, V0 = "v1", "v1+v0", "v0"

#: The route table: path (below ``/api/v1``), methods, handler, where served.
#: Handler names are the Klein endpoint names.
ROUTES = (
    # server and tokens (spec §2)
    ("/info", ["GET"], server.info, BOTH),
    ("/list", ["GET"], server.list_buckets, BOTH),
    ("/alive", ["GET", "HEAD"], server.alive, BOTH),
    ("/me", ["GET"], server.me, V1),
    ("/auth/refresh", ["POST"], server.refresh, V0),
    ("/tokens", ["GET"], server.list_tokens, V1),
    ("/tokens/<name>", ["POST"], server.create_token, V1),
    ("/tokens/<name>", ["GET"], server.get_token, V1),
    ("/tokens/<name>", ["DELETE"], server.remove_token, V1),
    # buckets (spec §3.1, §3.2)
    ("/b/<bucket>", ["GET", "HEAD"], buckets.get_bucket, BOTH),
    ("/b/<bucket>", ["POST"], buckets.create_bucket, BOTH),
    ("/b/<bucket>", ["PUT"], buckets.update_bucket, BOTH),
    ("/b/<bucket>", ["DELETE"], buckets.remove_bucket, BOTH),
    # records and batches (spec §2.3, §3.3, §3.4)
    ("/b/<bucket>/<entry>", ["POST"], records.write_record, BOTH),
    ("/b/<bucket>/<entry>", ["GET", "HEAD"], records.read_record, BOTH),
    ("/b/<bucket>/<entry>/batch", ["POST"], records.write_batch, V1),
    ("/b/<bucket>/<entry>/batch", ["GET", "HEAD"], records.read_batch, V1),
    # queries (spec §3.7, §3.10)
    ("/b/<bucket>/<entry>/q", ["GET"], entries.query, BOTH),
    ("/b/<bucket>/<entry>/q", ["POST"], entries.post_query, V1),
    ("/b/<bucket>/<entry>/q", ["DELETE"], entries.remove_query, V1),
    # label updates, removals, renames (spec §3.5-§3.8)
    ("/b/<bucket>/<entry>", ["PATCH"], entries.update_record, V1),
    ("/b/<bucket>/<entry>/batch", ["PATCH"], entries.update_batch, V1),
    ("/b/<bucket>/<entry>", ["DELETE"], entries.remove_entry, V1),
    ("/b/<bucket>/<entry>/batch", ["DELETE"], entries.remove_batch, V1),
    ("/b/<bucket>/rename", ["PUT"], buckets.rename_bucket, V1),
    ("/b/<bucket>/<entry>/rename", ["PUT"], entries.rename_entry, V1),
    ("/b/<bucket>/<entry>/list", ["GET"], records.list_records, V0),
    # replications (spec §3.13)
    ("/replications", ["GET"], replications.list_replications, V1),
    ("/replications/<name>", ["GET"], replications.get_replication, V1),
    ("/replications/<name>", ["POST"], replications.create_replication, V1),
    ("/replications/<name>", ["PUT"], replications.update_replication, V1),
    ("/replications/<name>", ["DELETE"], replications.remove_replication, V1),
)


def add_routes(app: Klein, routes) -> None:
    """Register each ``(path, methods, handler, where)`` of ``routes`` on ``app``."""
    for path, methods, handler, where in routes:
        name = handler.__name__
        if where != V1:
            legacy_name = name if where == V0 else name + "_v0"
            app.route(path, methods=methods, endpoint=legacy_name)(handler)
        if where != V0:
            app.route("/api/v1" + path, methods=methods, endpoint=name)(handler)


class _NotFoundResource(Resource):
    """Answers every path outside the API base path: anonymous JSON 404."""

    isLeaf = True

    def render(self, request):
        # StreamingRequest.render has stamped the common headers already.
        return write_error_headers(request, ReductError("Not found", 404))


class ReductAPI(FastPath):
    """
    :param engine: the ``StorageEngine``.
    :param auth: the access policy (``auth.policy``: ``OpenAccess`` or
        ``TokenAccess``).
    :param reactor: clock and ``callLater`` provider.
    :param threadpool: where large-record file I/O runs.
    :param base_path: ``RS_API_BASE_PATH``, normalised (``/`` or ``/x/``).
    :param syncer: the ``GroupSync`` that makes committed changes durable
        before they are answered (sync policy ``always``), or None (``none``).
    :param batch_limits: the server's ``BatchLimits`` of batched reads
        (``RS_IO_BATCH_*``); a query's directives override them.
    :param replications: the ``ReplicationManager`` behind
        ``/api/v1/replications``.
    """

    app = Klein()
    install_error_handlers(app)
    add_routes(app, ROUTES)

    def __init__(
        self, engine, auth, reactor, threadpool, base_path: str = "/", syncer=None,
        batch_limits: BatchLimits = BatchLimits(),
        replications=None,
    ) -> None:
        self.engine = engine
        self.batch_limits = batch_limits
        self.replications = replications
        self.syncer = syncer
        self.auth = auth
        self.reactor = reactor
        self.threadpool = threadpool
        self.base_segments = [s.encode("utf-8") for s in base_path.strip("/").split("/") if s]
        self._record_prefix = [b""] + self.base_segments + [b"api", b"v1", b"b"]
        self._url_adapter = self.app.url_map.bind("localhost", "/")

    def resource(self):
        """The site root: the Klein resource, mounted under the base path."""
        target = self.app.resource()
        if not self.base_segments:
            return target
        not_found = _NotFoundResource()
        for segment in reversed(self.base_segments):
            parent = Resource()
            parent.putChild(segment, target)
            parent.getChild = lambda name, request: not_found
            target = parent
        return target

    def durable(self, answer, *args):
        """
        ``answer(*args)`` once what was just committed is on stable storage
        (sync policy ``always``), or at once (``none``).
        """
        if self.syncer is None:
            return answer(*args)
        return self.syncer.wait().addCallback(lambda _: answer(*args))

    def when_saved(self, answer, *args):
        """``answer(*args)`` once the token file holds the change just made."""
        return self.auth.saved().addCallback(lambda _: answer(*args))
