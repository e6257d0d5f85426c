# -*- test-case-name: tests.integration.test_api -*-
"""
The HTTP API: ReductStore's v1 routes (and the legacy unprefixed v0 paths)
as one Klein app bound to ``ReductAPI`` instances.

Handlers are thin: parse, ask ``auth`` (the one place permissions are
checked), call the storage engine, answer.  Record writes are the exception
in shape, not in thinness: ``open_write`` (``open_batch_write`` for batches,
see ``batch.py``) runs from the streaming request's ``gotLength`` (before
any body byte) and the route only finishes the sink.
"""

from functools import partial
from typing import Optional
from urllib.parse import parse_qs, unquote_to_bytes

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from reduct_twisted.auth.policy import Policy
from reduct_twisted.errors import NoContent, NotFound, ReductError, UnprocessableEntity
from reduct_twisted.http.batch import (
    BatchLimits, BatchReader, BatchWriteSink, Wait, batch_query_id, open_batch_write,
)
from reduct_twisted.wire import (
    ERROR_PREFIX, error_header, parse_batch_headers, time_headers,
)
from reduct_twisted.http.errors import install_error_handlers, write_error_headers
from reduct_twisted.http.headers import (
    content_type,
    parse_json_body,
    query_arg,
    record_labels,
    respond_empty,
    respond_json,
    timestamp_param,
    u64_param,
)
from reduct_twisted.http.params import (
    delete_query_kwargs,
    json_query,
    query_kwargs,
    remove_kwargs,
    rename_target,
)
from reduct_twisted.http.producers import send_record
from reduct_twisted.http.sinks import PrivateSegmentSink, SharedSegmentSink
from reduct_twisted.storage import PENDING

app = Klein()
install_error_handlers(app)

#: Receive buffer for connections streaming a large record (fewer, larger
#: chunks: about 2x upload throughput with the thread-pool writer).
LARGE_UPLOAD_RECV = 1 << 20


def route(path: str, methods, legacy: bool = True):
    """
    Register a handler under ``/api/v1`` and, if ``legacy``, under the
    unprefixed pre-1.0 path as well.
    """

    def deco(f):
        name = f.__name__
        if legacy:
            f = app.route(path, methods=methods, endpoint=name + "_v0")(f)
        return app.route("/api/v1" + path, methods=methods, endpoint=name)(f)

    return deco


#: Endpoints whose body is streamed into a sink opened by ``open_body``.
STREAMING_ENDPOINTS = frozenset({"write_record", "write_record_v0", "write_batch"})


def _query_args(query: bytes) -> dict:
    """
    ``parse_qs(query, keep_blank_values=True)``, with a shortcut for the
    usual record write query, a lone ``ts=<digits>``.
    """
    if query[:3] == b"ts=" and query[3:].isdigit():
        return {b"ts": [query[3:]]}
    return parse_qs(query, keep_blank_values=True)


def drive(clock, step) -> Deferred:
    """
    Call ``step()`` until it returns something other than ``PENDING`` or a
    ``Wait``, yielding to the reactor between calls (for ``Wait(s)``, for
    ``s`` seconds), so a long scan never blocks it.
    """
    pending = []

    def cancel(d):
        if pending and pending[0].active():
            pending[0].cancel()

    d = Deferred(cancel)

    def attempt():
        pending.clear()
        try:
            result = step()
        except Exception as exc:
            d.errback(exc)
            return
        if result is PENDING:
            pending.append(clock.callLater(0, attempt))
        elif isinstance(result, Wait):
            pending.append(clock.callLater(result.seconds, attempt))
        else:
            d.callback(result)

    attempt()
    return d


class _NotFoundResource(Resource):
    """Answers every path outside the API base path: anonymous JSON 404."""

    isLeaf = True

    def render(self, request):
        # StreamingRequest.render has stamped the common headers already.
        return write_error_headers(request, ReductError("Not found", 404))


class ReductAPI:
    """
    :param engine: the ``StorageEngine``.
    :param auth: the authorization policy engine (``OpenAccess`` for now).
    :param reactor: clock and ``callLater`` provider.
    :param threadpool: where large-record file I/O runs.
    :param base_path: ``RS_API_BASE_PATH``, normalised (``/`` or ``/x/``).
    :param syncer: the ``GroupSync`` that makes committed changes durable
        before they are answered (sync policy ``always``), or None (``none``).
    :param batch_limits: the server's ``BatchLimits`` of batched reads
        (``RS_IO_BATCH_*``); a query's directives override them.
    :param replications: the ``ReplicationManager`` behind
        ``/api/v1/replications`` (routes in ``replications.py``).
    """

    app = app

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

    def _authorize(self, request, policy: Policy, bucket: Optional[str] = None) -> dict:
        return self.auth.check(request.getHeader(b"authorization"), policy, bucket)

    # -- routing before the body (called from StreamingRequest.gotLength) --

    def open_body(self, request, length: Optional[int]):
        """
        Decide where the body of ``request`` goes, before it arrives.

        :return: a sink for streaming routes; None for routes that take a
            small buffered body.
        :raises ReductError: the request is refused before its body is read.
        """
        channel = request.channel
        raw_path, _, query = channel._path.partition(b"?")
        if channel._command == b"POST":
            names = self._record_names(raw_path)
            if names is not None:
                # The hot path: a plain record write needs no URL map.
                request.route_args = {"bucket": names[0], "entry": names[1]}
                return self.open_write(request, length, _query_args(query), *names)
        segments = [unquote_to_bytes(s) for s in raw_path.split(b"/")[1:]]
        base = self.base_segments
        if segments[: len(base)] != base:
            raise ReductError("Not found", 404)
        path_info = "/" + "/".join(s.decode("utf-8", "replace") for s in segments[len(base) :])
        adapter = self.app.url_map.bind("localhost", "/")
        try:
            rule, kwargs = adapter.match(
                path_info, method=channel._command.decode("ascii", "replace"), return_rule=True
            )
        except MethodNotAllowed:
            return None
        except HTTPException:
            raise ReductError("Not found", 404)
        if rule.endpoint not in STREAMING_ENDPOINTS:
            return None
        if rule.endpoint == "write_batch":
            sink = self.open_batch_write(request, length, **kwargs)
        else:
            args = parse_qs(query, keep_blank_values=True)
            sink = self.open_write(request, length, args, **kwargs)
        request.route_args = kwargs
        return sink

    def _record_names(self, raw_path: bytes):
        """
        ``(bucket, entry)`` if ``raw_path`` is plainly
        ``{base}api/v1/b/<bucket>/<entry>``, else None (Klein decides).
        """
        segments = raw_path.split(b"/")
        prefix = self._record_prefix
        if len(segments) != len(prefix) + 2 or segments[: len(prefix)] != prefix:
            return None
        try:
            bucket = unquote_to_bytes(segments[-2]).decode("utf-8")
            entry = unquote_to_bytes(segments[-1]).decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not bucket or not entry:
            return None
        return bucket, entry

    def direct_handler(self, request):
        """
        The handler for a request on the hot record routes, to be called
        without Klein's per-request machinery, or None to go through Klein.

        Record writes and reads are most of the traffic; resource traversal,
        a second werkzeug match and Klein's Deferred plumbing cost about as
        much as the work itself (issue #3).  These are the same handler
        methods Klein routes to, with the same error mapping; any path that
        is not plainly ``{base}api/v1/b/<bucket>/<entry>`` goes through Klein.
        """
        method = request.method
        if method == b"POST":
            if request.sink is None or request.route_args is None:
                return None
            if isinstance(request.sink, BatchWriteSink):
                return partial(self.write_batch, request, **request.route_args)
            return partial(self.write_record, request, **request.route_args)
        if method != b"GET" and method != b"HEAD":
            return None
        names = self._record_names(request.path)
        if names is None:
            return None
        bucket, entry = names
        return partial(self.read_record, request, bucket, entry)

    def open_write(self, request, length: Optional[int], args, bucket: str, entry: str):
        """
        Validate a record write and allocate its place (spec §2.3.1 order).
        """
        self._authorize(request, Policy.WRITE, bucket)
        ts = timestamp_param(args)
        if request.malformed_length:
            raise UnprocessableEntity("content-length header must be a number")
        if length == 0 and not request.requestHeaders.hasHeader(b"content-length"):
            raise UnprocessableEntity("content-length header is required")
        ctype = content_type(request)
        labels = record_labels(request.requestHeaders.getAllRawHeaders())
        alloc = self.engine.allocate(bucket, entry, ts, length, ctype, labels)
        if not alloc.private:
            return SharedSegmentSink(self.engine, alloc)
        transport = request.channel.transport
        if hasattr(transport, "bufferSize"):
            transport.bufferSize = LARGE_UPLOAD_RECV
        return PrivateSegmentSink(self.engine, alloc, self.reactor, self.threadpool, transport)

    def open_batch_write(self, request, length: Optional[int], bucket: str, entry: str):
        """
        Validate a batched write and return the sink its body goes to
        (spec §3.4; records are allocated as their bytes arrive).
        """
        self._authorize(request, Policy.WRITE, bucket)
        sink = open_batch_write(
            self.engine, self.reactor, self.threadpool, request, length, bucket, entry
        )
        transport = request.channel.transport
        if sink.has_large and hasattr(transport, "bufferSize"):
            transport.bufferSize = LARGE_UPLOAD_RECV
        return sink

    # -- server --------------------------------------------------------------

    @route("/info", ["GET"])
    def info(self, request):
        self._authorize(request, Policy.AUTHENTICATED)
        return respond_json(request, self.engine.info())

    @route("/list", ["GET"])
    def list_buckets(self, request):
        token = self._authorize(request, Policy.AUTHENTICATED)
        may_read = self.auth.may_read
        buckets = [b for b in self.engine.list_buckets() if may_read(token, b["name"])]
        return respond_json(request, {"buckets": buckets})

    @route("/alive", ["GET", "HEAD"])
    def alive(self, request):
        return respond_empty(request)

    @route("/me", ["GET"], legacy=False)
    def me(self, request):
        return respond_json(request, self._authorize(request, Policy.AUTHENTICATED))

    @app.route("/auth/refresh", methods=["POST"])
    def refresh(self, request):
        """
        Legacy v0 (≤ 0.9) access-token exchange.  Since 0.8 the API token
        itself is a valid bearer, so it is handed back unchanged.
        """
        self._authorize(request, Policy.AUTHENTICATED)
        header = request.getHeader(b"authorization") or b""
        token = header[len(b"Bearer ") :].decode("utf-8", "replace") if self.auth.enabled else ""
        expires = int(self.reactor.seconds()) + 300
        return respond_json(request, {"access_token": token, "expired_at": expires})

    # -- tokens (spec §2.4) --------------------------------------------------------

    @route("/tokens", ["GET"], legacy=False)
    def list_tokens(self, request):
        self._authorize(request, Policy.FULL_ACCESS)
        return respond_json(request, {"tokens": self.auth.list_tokens()})

    @route("/tokens/<name>", ["POST"], legacy=False)
    def create_token(self, request, name):
        # Spec order: a malformed body is refused before the token is looked at.
        body = parse_json_body(request.content.getvalue())
        self._authorize(request, Policy.FULL_ACCESS)
        created = self.auth.create_token(name, body)
        return self._when_saved(respond_json, request, created)

    @route("/tokens/<name>", ["GET"], legacy=False)
    def get_token(self, request, name):
        self._authorize(request, Policy.FULL_ACCESS)
        return respond_json(request, self.auth.get_token(name))

    @route("/tokens/<name>", ["DELETE"], legacy=False)
    def remove_token(self, request, name):
        self._authorize(request, Policy.FULL_ACCESS)
        self.auth.remove_token(name)
        return self._when_saved(respond_empty, request)

    def _when_saved(self, answer, *args):
        """``answer(*args)`` once the token file holds the change just made."""
        return self.auth.saved().addCallback(lambda _: answer(*args))

    # -- buckets -----------------------------------------------------------------

    @route("/b/<bucket>", ["GET", "HEAD"])
    def get_bucket(self, request, bucket):
        if request.method == b"HEAD":
            self._authorize(request, Policy.AUTHENTICATED)
            if not self.engine.has_bucket(bucket):
                raise NotFound(f"Bucket '{bucket}' is not found")
            return respond_empty(request)
        self._authorize(request, Policy.READ, bucket)
        return respond_json(request, self.engine.bucket_info(bucket))

    @route("/b/<bucket>", ["POST"])
    def create_bucket(self, request, bucket):
        return self._apply_settings(request, self.engine.create_bucket, bucket)

    @route("/b/<bucket>", ["PUT"])
    def update_bucket(self, request, bucket):
        return self._apply_settings(request, self.engine.update_bucket, bucket)

    def _apply_settings(self, request, operation, bucket):
        # A FULL_ACCESS bucket operation on a JSON settings body.  Spec order:
        # a malformed body is refused before the token is looked at.
        settings = parse_json_body(request.content.getvalue())
        self._authorize(request, Policy.FULL_ACCESS)
        operation(bucket, settings)
        return self._durable(respond_empty, request)

    @route("/b/<bucket>", ["DELETE"])
    def remove_bucket(self, request, bucket):
        self._authorize(request, Policy.FULL_ACCESS)
        self.engine.remove_bucket(bucket)
        self.auth.forget_bucket(bucket)
        return self._when_saved(self._durable, respond_empty, request)

    # -- records -----------------------------------------------------------------

    @route("/b/<bucket>/<entry>", ["POST"])
    def write_record(self, request, bucket, entry):
        sink = request.sink
        if sink is None:
            # No body framing at all, so gotLength skipped routing: run the
            # same checks now; they end in "content-length header is required".
            sink = self.open_write(request, 0, request.args, bucket, entry)
        if isinstance(sink, SharedSegmentSink):
            # Nothing to flush: commit now (and, without fsync, answer
            # without a Deferred).
            sink.finish_now()
            return self._durable(respond_empty, request)
        return sink.finish().addCallback(lambda _: self._durable(respond_empty, request))

    def _durable(self, answer, *args):
        """
        ``answer(*args)`` once what was just committed is on stable storage
        (sync policy ``always``), or at once (``none``).
        """
        if self.syncer is None:
            return answer(*args)
        return self.syncer.wait().addCallback(lambda _: answer(*args))

    @route("/b/<bucket>/<entry>", ["GET", "HEAD"])
    def read_record(self, request, bucket, entry):
        self._authorize(request, Policy.READ, bucket)
        ts = u64_param(request.args, "ts")
        if ts is None and query_arg(request.args, "q") is not None:
            qid = u64_param(request.args, "q", "'query' must be a number")
            d = drive(self.reactor, lambda: self.engine.query_next(bucket, entry, qid))
            return d.addCallback(self._answer_query_read, request)
        view = self.engine.read(bucket, entry, ts)
        return self._answer_record(request, view, last=b"1")

    def _answer_query_read(self, view, request):
        if view is None:
            raise NoContent("No content")
        return self._answer_record(request, view, last=b"1" if view.last else b"0")

    def _answer_record(self, request, view, last: bytes):
        record = view.record
        set_header = request.setHeader
        set_header(b"content-type", record.content_type.encode("utf-8"))
        set_header(b"content-length", b"%d" % record.size)
        set_header(b"x-reduct-time", b"%d" % record.ts)
        set_header(b"x-reduct-last", last)
        set_header(b"content-disposition", b"attachment")
        for name, value in record.labels.items():
            set_header(b"x-reduct-label-" + name.encode("utf-8"), value.encode("utf-8"))
        return send_record(request, view, self.engine.read_content)

    # -- batches (spec §3.3, §3.4) ---------------------------------------------------

    @route("/b/<bucket>/<entry>/batch", ["POST"], legacy=False)
    def write_batch(self, request, bucket, entry):
        sink = request.sink
        if sink is None:
            # No body framing at all, so gotLength skipped routing: run the
            # same checks now; they end in "content-length header is required".
            sink = self.open_batch_write(request, 0, bucket, entry)
        return sink.finish().addCallback(self._answer_batch_write, request)

    def _answer_batch_write(self, errors, request):
        for ts in sorted(errors):
            request.setHeader(ERROR_PREFIX + b"%d" % ts, error_header(errors[ts]))
        return self._durable(respond_empty, request)

    @route("/b/<bucket>/<entry>/batch", ["GET", "HEAD"], legacy=False)
    def read_batch(self, request, bucket, entry):
        self._authorize(request, Policy.READ, bucket)
        qid = batch_query_id(request.args)
        head = request.method == b"HEAD"
        limits, metadata_only = self._batch_limits(bucket, entry, qid)
        reader = BatchReader(self.engine, bucket, entry, qid, head or metadata_only, limits)
        d = drive(self.reactor, reader.step).addBoth(reader.answer, request)
        if metadata_only and not head:
            # A GET of an ``only_metadata`` query: the records' headers, no
            # body (the sizes are in the x-reduct-time-* headers).
            d.addCallback(self._no_body, request)
        return d

    def _batch_limits(self, bucket, entry, qid):
        # The server's BatchLimits with the query's directives applied, and
        # whether it was created with only_metadata.
        options = self.engine.query_options(bucket, entry, qid)
        if options is None:
            return self.batch_limits, False
        return self.batch_limits.overridden(options["io"]), options["only_metadata"]

    @staticmethod
    def _no_body(body, request):
        request.setHeader(b"content-length", b"0")
        return b""

    @route("/b/<bucket>/<entry>/q", ["GET"])
    def query(self, request, bucket, entry):
        self._authorize(request, Policy.READ, bucket)
        qid = self.engine.create_query(bucket, entry, **query_kwargs(request.args))
        return respond_json(request, {"id": qid})

    @route("/b/<bucket>/<entry>/q", ["POST"], legacy=False)
    def post_query(self, request, bucket, entry):
        """
        ``POST …/q`` (spec §3.10): QUERY creates a query as ``GET …/q``
        does; REMOVE removes the records it selects (§3.7).  A malformed
        body is refused before the token is looked at.
        """
        query_type, kwargs = json_query(parse_json_body(request.content.getvalue()))
        if query_type == "QUERY":
            self._authorize(request, Policy.READ, bucket)
            qid = self.engine.create_query(bucket, entry, **kwargs)
            return respond_json(request, {"id": qid})
        self._authorize(request, Policy.WRITE, bucket)
        return self._remove_by_query(request, bucket, entry, remove_kwargs(kwargs))

    @route("/b/<bucket>/<entry>/q", ["DELETE"], legacy=False)
    def remove_query(self, request, bucket, entry):
        """``DELETE …/q`` (spec §3.7; deprecated in 1.13, still served)."""
        self._authorize(request, Policy.WRITE, bucket)
        return self._remove_by_query(request, bucket, entry, delete_query_kwargs(request.args))

    def _remove_by_query(self, request, bucket, entry, kwargs):
        removal = self.engine.remove_records(bucket, entry, **kwargs)
        d = drive(self.reactor, removal.step)
        return d.addCallback(
            lambda count: self._durable(respond_json, request, {"removed_records": count})
        )

    # -- label updates, removals, renames (spec §3.5–§3.8) ---------------------------

    @route("/b/<bucket>/<entry>", ["PATCH"], legacy=False)
    def update_record(self, request, bucket, entry):
        self._authorize(request, Policy.WRITE, bucket)
        ts = timestamp_param(request.args)
        labels = record_labels(request.requestHeaders.getAllRawHeaders())
        return self._answer_single(self.engine.update_labels(bucket, entry, {ts: labels}), request)

    @route("/b/<bucket>/<entry>/batch", ["PATCH"], legacy=False)
    def update_batch(self, request, bucket, entry):
        self._authorize(request, Policy.WRITE, bucket)
        records = parse_batch_headers(request.requestHeaders.getAllRawHeaders())
        errors = self.engine.update_labels(bucket, entry, {r.ts: r.labels for r in records})
        return self._answer_batch_write(errors, request)

    @route("/b/<bucket>/<entry>", ["DELETE"], legacy=False)
    def remove_entry(self, request, bucket, entry):
        """Without parameters the whole entry (§3.5), else the record ``ts`` (§3.7)."""
        self._authorize(request, Policy.WRITE, bucket)
        if not request.args:
            self.engine.remove_entry(bucket, entry)
            return self._durable(respond_empty, request)
        ts = timestamp_param(request.args)
        return self._answer_single(self.engine.remove_stamps(bucket, entry, [ts]), request)

    @route("/b/<bucket>/<entry>/batch", ["DELETE"], legacy=False)
    def remove_batch(self, request, bucket, entry):
        self._authorize(request, Policy.WRITE, bucket)
        stamps = [ts for ts, _ in time_headers(request.requestHeaders.getAllRawHeaders())]
        return self._answer_batch_write(self.engine.remove_stamps(bucket, entry, stamps), request)

    def _answer_single(self, errors, request):
        # A one-record change: its error, if any, is the answer.
        for error in errors.values():
            raise error
        return self._durable(respond_empty, request)

    @route("/b/<bucket>/rename", ["PUT"], legacy=False)
    def rename_bucket(self, request, bucket):
        new_name = rename_target(request)
        self._authorize(request, Policy.FULL_ACCESS)
        self.engine.rename_bucket(bucket, new_name)
        self.auth.rename_bucket(bucket, new_name)
        return self._when_saved(self._durable, respond_empty, request)

    @route("/b/<bucket>/<entry>/rename", ["PUT"], legacy=False)
    def rename_entry(self, request, bucket, entry):
        new_name = rename_target(request)
        self._authorize(request, Policy.WRITE, bucket)
        self.engine.rename_entry(bucket, entry, new_name)
        return self._durable(respond_empty, request)

    @app.route("/b/<bucket>/<entry>/list", methods=["GET"])
    def list_records(self, request, bucket, entry):
        """Legacy v0 record list: uint64 values as JSON strings."""
        self._authorize(request, Policy.READ, bucket)
        start = u64_param(request.args, "start", required="'start' parameter is required")
        stop = u64_param(request.args, "stop", required="'stop' parameter is required")
        records = self.engine.list_records(bucket, entry, start, stop)
        if not records:
            raise NotFound(f"No records for time interval [{start}, {stop})")
        return respond_json(
            request, {"records": [{"ts": str(ts), "size": str(size)} for ts, size in records]}
        )


# Importing a route module registers its routes on ``app`` (it needs ``route``).
from reduct_twisted.http import replications  # noqa: E402

#: The modules whose routes are on ``app`` besides this one.
ROUTE_MODULES = (replications,)
