# -*- test-case-name: tests.integration.test_api -*-
"""
The HTTP API: ReductStore's v1 routes (and the legacy unprefixed v0 paths)
on a Klein app owned by :class:`ReductAPI`, and the one route table that
fills it (:data:`ROUTES`).

Handlers live in the route modules, one per group (``routes_server.py``,
``routes_buckets.py``, ``routes_records.py``, ``routes_entries.py``,
``routes_replications.py``); each takes the ``ReductAPI`` instance first
(Klein binds it), parses, calls the storage engine and answers.  Who may
call a route is the table's last column (``authz.py``), applied around the
handler when the routes are registered; the few routes whose permission
depends on the method or body, or which need the caller's token, are marked
``IN_HANDLER`` and call ``authz.authorize`` themselves.  The two hot
record routes are also reached without Klein, through ``fastpath.py``.
"""

from klein import Klein
from twisted.web.resource import Resource
from werkzeug.routing import PathConverter

from reduct_twisted.errors import ReductError
from reduct_twisted.http import (
    io,
    io_read,
    links,
    routes_buckets as buckets,
    routes_console as console,
    routes_entries as entries,
    routes_integrity as integrity,
    routes_lifecycles as lifecycles,
    routes_metrics as metrics,
    routes_records as records,
    routes_replications as replications,
    routes_server as server,
)
from reduct_twisted.http.authz import (
    AUTHENTICATED,
    FULL,
    IN_HANDLER,
    OPEN,
    READ,
    WRITE,
    checked,
)
from reduct_twisted.http.batch import BatchLimits
from reduct_twisted.http.errors import install_error_handlers, write_error_headers
from reduct_twisted.http.fastpath import FastPath
from reduct_twisted.http.headers import json_body
from reduct_twisted.http.params import entry_rename_target, rename_target
from reduct_twisted.system import NullSystemEvents
from reduct_twisted.ui import Console

#: Where a route is served: under ``/api/v1`` only, also under the
#: unprefixed pre-1.0 path (``<name>_v0`` endpoints), or only there.
V1, BOTH, V0 = "v1", "v1+v0", "v0"
#: Served at the base path itself, not an API route (the web console).
AT_BASE = "base"

#: Body-first permissions: the body (a JSON document, a rename's
#: ``new_name``) is refused before the token is looked at, as upstream does;
#: the handler gets it as its last argument.
FULL_JSON = FULL.body_first(json_body)
FULL_RENAME = FULL.body_first(rename_target)
WRITE_RENAME = WRITE.body_first(entry_rename_target)
#: A streamed upload: checked when its body is opened (``fastpath.py``).
WRITE_STREAMED = WRITE.on_open()

#: The route table: path (below ``/api/v1``), methods, handler, where
#: served, who may call it (``authz.py``: READ and WRITE concern the
#: route's ``<bucket>``).  Handler names are the Klein endpoint names.
ROUTES = (
    # server and tokens (spec §2)
    ("/info", ["GET"], server.info, BOTH, AUTHENTICATED),
    # AUTHENTICATED, then may_read(token, ...) per bucket: checked in the handler
    ("/list", ["GET"], server.list_buckets, BOTH, IN_HANDLER),
    ("/alive", ["GET", "HEAD"], server.alive, BOTH, OPEN),
    ("/ready", ["GET", "HEAD"], server.ready, BOTH, OPEN),
    # AUTHENTICATED, and the answer is the token: checked in the handler
    ("/me", ["GET"], server.me, V1, IN_HANDLER),
    ("/auth/refresh", ["POST"], server.refresh, V0, AUTHENTICATED),
    # Prometheus metrics (issue #18): {base}metrics, where scrapers look, and
    # under api/v1; AUTHENTICATED unless metrics_auth = off: checked in the handler
    ("/metrics", ["GET"], metrics.metrics, BOTH, IN_HANDLER),
    # tokens (spec §2.4; v2 bodies and rotation: spec 1.20 §4, issue #15)
    ("/tokens", ["GET"], server.list_tokens, V1, FULL),
    ("/tokens/<name>", ["POST"], server.create_token, V1, FULL.body_first(server.token_body)),
    ("/tokens/<name>", ["GET"], server.get_token, V1, FULL),
    ("/tokens/<name>", ["DELETE"], server.remove_token, V1, FULL),
    ("/tokens/<name>/rotate", ["POST"], server.rotate_token, V1, FULL),
    # the I/O API, batch protocol v2 (spec 1.20 §1)
    ("/io/<bucket>/write", ["POST"], io.io_write, V1, WRITE_STREAMED),
    # body first, then QUERY needs READ, REMOVE WRITE: checked in the handler
    ("/io/<bucket>/q", ["POST"], io.io_query, V1, IN_HANDLER),
    ("/io/<bucket>/read", ["GET", "HEAD"], io_read.io_read, V1, READ),
    ("/io/<bucket>/update", ["PATCH"], io.io_update, V1, WRITE),
    ("/io/<bucket>/remove", ["DELETE"], io.io_remove, V1, WRITE),
    # buckets (spec §3.1, §3.2)
    # GET needs READ, HEAD only AUTHENTICATED: checked in the handler
    ("/b/<bucket>", ["GET", "HEAD"], buckets.get_bucket, BOTH, IN_HANDLER),
    ("/b/<bucket>", ["POST"], buckets.create_bucket, BOTH, FULL_JSON),
    ("/b/<bucket>", ["PUT"], buckets.update_bucket, BOTH, FULL_JSON),
    ("/b/<bucket>", ["DELETE"], buckets.remove_bucket, BOTH, FULL),
    # Entry routes (spec 1.20 §2.2): <entry_path:entry> takes the rest of the
    # path, a/b/c included; the more specific rows (…/batch, …/q,
    # …/rename, the bucket rename) win where their suffix follows a "/".
    # records and batches (spec §2.3, §3.3, §3.4)
    ("/b/<bucket>/<entry_path:entry>", ["POST"], records.write_record, BOTH, WRITE_STREAMED),
    ("/b/<bucket>/<entry_path:entry>", ["GET", "HEAD"], records.read_record, BOTH, READ),
    ("/b/<bucket>/<entry_path:entry>/batch", ["POST"], records.write_batch, V1, WRITE_STREAMED),
    ("/b/<bucket>/<entry_path:entry>/batch", ["GET", "HEAD"], records.read_batch, V1, READ),
    # queries (spec §3.7, §3.10)
    ("/b/<bucket>/<entry_path:entry>/q", ["GET"], entries.query, BOTH, READ),
    # body first, then QUERY needs READ, REMOVE WRITE: checked in the handler
    ("/b/<bucket>/<entry_path:entry>/q", ["POST"], entries.post_query, V1, IN_HANDLER),
    ("/b/<bucket>/<entry_path:entry>/q", ["DELETE"], entries.remove_query, V1, WRITE),
    # label updates, removals, renames (spec §3.5-§3.8)
    ("/b/<bucket>/<entry_path:entry>", ["PATCH"], entries.update_record, V1, WRITE),
    ("/b/<bucket>/<entry_path:entry>/batch", ["PATCH"], entries.update_batch, V1, WRITE),
    # WRITE, after refusing a $meta entry (spec 1.20 §3.1): checked in the handler
    ("/b/<bucket>/<entry_path:entry>", ["DELETE"], entries.remove_entry, V1, IN_HANDLER),
    ("/b/<bucket>/<entry_path:entry>/batch", ["DELETE"], entries.remove_batch, V1, WRITE),
    ("/b/<bucket>/rename", ["PUT"], buckets.rename_bucket, V1, FULL_RENAME),
    ("/b/<bucket>/<entry_path:entry>/rename", ["PUT"], entries.rename_entry, V1, WRITE_RENAME),
    ("/b/<bucket>/<entry_path:entry>", ["PUT"], entries.no_such_put, V1, OPEN),
    ("/b/<bucket>/<entry_path:entry>/list", ["GET"], records.list_records, V0, READ),
    # replications (spec §3.13)
    ("/replications", ["GET"], replications.list_replications, V1, FULL),
    ("/replications/<name>", ["GET"], replications.get_replication, V1, FULL),
    ("/replications/<name>", ["POST"], replications.create_replication, V1, FULL_JSON),
    ("/replications/<name>", ["PUT"], replications.update_replication, V1, FULL_JSON),
    ("/replications/<name>", ["DELETE"], replications.remove_replication, V1, FULL),
    ("/replications/<name>/mode", ["PATCH"], replications.set_replication_mode, V1,
     FULL.body_first(replications.mode_body)),
    # lifecycle policies (spec 1.20 §7.1)
    ("/lifecycles", ["GET"], lifecycles.list_lifecycles, V1, FULL),
    ("/lifecycles/<name>", ["GET"], lifecycles.get_lifecycle, V1, FULL),
    ("/lifecycles/<name>", ["POST"], lifecycles.create_lifecycle, V1,
     FULL.body_first(lifecycles.settings_body)),
    ("/lifecycles/<name>", ["PUT"], lifecycles.update_lifecycle, V1,
     FULL.body_first(lifecycles.settings_body)),
    ("/lifecycles/<name>", ["DELETE"], lifecycles.remove_lifecycle, V1, FULL),
    ("/lifecycles/<name>/mode", ["PATCH"], lifecycles.set_lifecycle_mode, V1,
     FULL.body_first(lifecycles.mode_body)),
    # query links (spec 1.20 §6.1, §6.2; http/links.py)
    # body first, then READ on the body's bucket: checked in the handler
    ("/links<link_path:file_name>", ["POST"], links.create_link, V1, IN_HANDLER),
    # anonymous: the link's own token is checked by the handler (not the caller)
    ("/links<link_path:file_name>", ["GET", "HEAD"], links.read_link, V1, OPEN),
    # the integrity surface (issue #16; http/routes_integrity.py)
    ("/records/<bucket>/<entry_path:entry>", ["GET"], integrity.list_entry_records, V1, READ),
    ("/log/<bucket>/<entry_path:entry>", ["GET"], integrity.entry_log, V1, READ),
    ("/log-key", ["GET"], integrity.log_key, V1, AUTHENTICATED),
    # the web console (issue #18; http/routes_console.py, reduct_twisted/ui/):
    # anonymous files, its API calls carry the user's token
    ("/", ["GET", "HEAD"], console.console_root, AT_BASE, OPEN),
    ("/ui", ["GET", "HEAD"], console.console_slash, AT_BASE, OPEN),
    ("/ui/", ["GET", "HEAD"], console.console_index, AT_BASE, OPEN),
    ("/ui/<path:name>", ["GET", "HEAD"], console.console_file, AT_BASE, OPEN),
)


class EntryPathConverter(PathConverter):
    """
    The rest of the path as an entry name, ``/`` included (spec 1.20 §2.2):
    werkzeug's ``path`` but also with a leading ``/``, so that ``/b/x//a``
    reaches the handler and its 422 instead of a 404.
    """

    regex = ".+?"
    part_isolating = False  # spans segments (werkzeug guesses from "/" in the regex)


class LinkPathConverter(PathConverter):
    """
    A query link's file name (spec 1.20 §6.1): ``/`` and the rest of the
    path, slashes included, or nothing (upstream's catch-all also takes
    ``POST /api/v1/links``, which its v1.20.11 suite uses); the value is
    the name without its leading ``/``.
    """

    regex = "(?:/.*)?"
    part_isolating = False

    def to_python(self, value: str) -> str:
        return value[1:]

    def to_url(self, value: str) -> str:
        return "/" + super().to_url(value)


def add_routes(app: Klein, routes) -> dict:
    """
    Register each ``(path, methods, handler, where, permission)`` of
    ``routes`` on ``app``, the handler behind its permission
    (``authz.checked``).

    :return: ``{endpoint: handler behind its permission}`` (its
        ``permission`` attribute, for those the layer checks, is the row's).
    """
    endpoints = {}
    for path, methods, handler, where, permission in routes:
        route = checked(handler, permission)
        name = handler.__name__
        if where == AT_BASE:
            app.route(path, methods=methods, endpoint=name)(route)
            endpoints[name] = route
            continue
        if where != V1:
            legacy_name = name if where == V0 else name + "_v0"
            app.route(path, methods=methods, endpoint=legacy_name)(route)
            endpoints[legacy_name] = route
        if where != V0:
            app.route("/api/v1" + path, methods=methods, endpoint=name)(route)
            endpoints[name] = route
    return endpoints


class _NotFoundResource(Resource):
    """Answers every path outside the API base path: anonymous JSON 404."""

    isLeaf = True

    def render(self, request):
        # StreamingRequest.render has stamped the common headers already.
        return write_error_headers(request, ReductError("Not found", 404))


class RoutingKlein(Klein):
    """
    Klein that names the endpoint it runs on the request (``request.route``,
    the route label of ``/metrics``) before running it.
    """

    def execute_endpoint(self, endpoint, request, *args, **kwargs):
        request.route = endpoint
        return super().execute_endpoint(endpoint, request, *args, **kwargs)


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
    :param writers: the ``WriterSlots`` of ``RS_IO_MAX_WRITERS_IN_FLIGHT``
        (``writers.py``), or None for no limit.
    :param lifecycles: the ``LifecycleManager`` behind ``/api/v1/lifecycles``.
    :param links: the query links' ``reduct_twisted.links.Links``.
    :param log_key: the ``integrity.signing.LogKey`` signing the entry logs'
        heads, or None when there is no log (``integrity`` is not ``log``).
    """

    #: ``RS_RATE_LIMIT_*`` (``ratelimit.RateLimits``), set by ``wiring.apply_limits``.
    rate_limits = None
    #: The ``metrics.Metrics`` behind ``/metrics`` (None: ``metrics = off``) and
    #: whether it needs a token (``metrics_auth``); set by ``wiring.make_metrics``.
    metrics = None
    metrics_auth = True

    app = RoutingKlein()
    # ``a//b`` and ``/a`` are entry names to refuse (422), not paths to
    # redirect or miss (spec 1.20 §2.1).
    app.url_map.merge_slashes = False
    app.url_map.converters["entry_path"] = EntryPathConverter
    app.url_map.converters["link_path"] = LinkPathConverter
    install_error_handlers(app)
    #: ``{endpoint: handler behind its permission}``, as registered.
    endpoints = add_routes(app, ROUTES)
    # What the fast path (fastpath.py) applies on the hot record routes.
    _write_record_permission = endpoints["write_record"].permission
    _read_record = staticmethod(endpoints["read_record"])

    def __init__(
        self, engine, auth, reactor, threadpool, base_path: str = "/", syncer=None,
        batch_limits: BatchLimits = BatchLimits(),
        replications=None, writers=None, events=None, lifecycles=None, links=None,
        log_key=None,
    ) -> None:
        self.engine = engine
        self.base_path = base_path
        #: The web console's files (read once per process).
        self.console = Console(base_path)
        self.log_key = log_key
        self.lifecycles = lifecycles
        #: The query links' ``links.Links`` (codec and public URL), or None.
        self.links = links
        self.events = events if events is not None else NullSystemEvents()
        self.writers = writers
        self.batch_limits = batch_limits
        self.replications = replications
        self.syncer = syncer
        self.auth = auth
        self.reactor = reactor
        self.threadpool = threadpool
        self.base_segments = [s.encode("utf-8") for s in base_path.strip("/").split("/") if s]
        self._record_prefix = [b""] + self.base_segments + [b"api", b"v1", b"b"]
        self._io_prefix = [b""] + self.base_segments + [b"api", b"v1", b"io"]
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
