# -*- test-case-name: tests.integration.test_streaming -*-
"""
Request bodies streamed into block files as they arrive.

twisted.web buffers a whole request body before any resource runs.  We hook
in one step earlier, as Twisted's own #5511 discussion suggests: the site's
``requestFactory`` is ``StreamingRequest``, whose ``gotLength`` runs once all
headers are parsed and before the first body byte.  There the request is
routed against the Klein app's own URL map (``ReductSite.router``); a
streaming route opens a sink (checking auth, timestamp, bucket, quota and
duplicates first), and every chunk then goes straight to the sink from
``handleContentChunk``.  Klein renders the route as usual once the body is
complete, and the handler only finishes the sink.

An ``OPTIONS`` request is a CORS preflight (``cors.py``): it is never
routed nor authorized, its body (if any) is discarded, and ``process``
answers it.

A request that will fail anyway is refused right in ``gotLength``: with
``Expect: 100-continue`` the client never sends its body (Twisted sends
``100 Continue`` only after ``gotLength`` returns, and only if the header is
still there); without it a small body is drained and the error answered on
the same keep-alive connection, and a large one is answered at once followed
by a half-close.  A sink may also refuse mid-body (a chunked upload crossing
a HARD quota, ``refusal``): answered at once, then the same half-close.

The hooks used (``gotLength``, ``handleContentChunk``, ``channel._command``,
``_path``, ``_version``) are documented as internal; the integration tests in
``tests/integration/test_streaming.py`` pin their behaviour.
"""

from io import BytesIO
from typing import Optional
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web import server
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from reduct_twisted.errors import (
    BadRequest,
    InternalError,
    PayloadTooLarge,
    ReductError,
    UnprocessableEntity,
)
# ReductChannel and its helpers live in channel.py; re-exported for old imports.
from reduct_twisted.http.channel import (  # noqa: F401
    API_HEADER,
    HALF_CLOSE_GRACE,
    SERVER_HEADER,
    ReductChannel,
    _http_date,
)
from reduct_twisted.http.access import public_target
from reduct_twisted.http.audit import audit_request
from reduct_twisted.http.cors import NO_ORIGINS, CorsPolicy
from reduct_twisted.http.drain import ConnectionDrain
from reduct_twisted.http.errors import failure_body, write_error_headers
from reduct_twisted.http.sinks import BoundedBuffer, DiscardSink
from reduct_twisted.storage.settings import NAME_ERROR

log = Logger()

#: A refused body up to this size is drained so the connection can be reused.
DRAIN_LIMIT = 8 << 20

#: Largest body accepted by routes that read their (JSON) body whole.
MAX_BUFFERED_BODY = 1 << 20

#: Header bytes allowed beyond a batch's record metadata (the request line,
#: Host, Authorization, content headers, and each record header's name).
HEADER_SLACK = 64 << 10


class StreamingRequest(server.Request):
    """
    ``server.Request`` that streams bodies of streaming routes into a sink
    and stamps the ReductStore headers on every response.

    :ivar sink: the body's destination (a sink from ``sinks``), or None.
    :ivar early_error: the error decided before the body arrived, if any.
    """

    defaultContentType = None
    sink = None
    malformed_length = False
    #: Route arguments found by the router before the body arrived.
    route_args = None
    #: The endpoint of the route that took the request (the router's or
    #: Klein's), or None; and body bytes received (``/metrics``).
    route = None
    received = 0
    early_error: Optional[ReductError] = None
    _answered = False
    _abort_call = None

    def write(self, data) -> None:
        try:
            super().write(data)
        finally:
            # The header block joins the first body bytes (one send); with
            # none (HEAD, 204, an empty first write) it goes alone, now.
            send = getattr(self.channel, "send_held_head", None)
            if send is not None:
                send()

    def stamp(self) -> None:
        """
        Set the headers every response carries, on every answering path
        (the constant CORS lines are added by ``ReductChannel.writeHeaders``).
        """
        site = self.channel.site
        self._stamp_common(site)
        site.cors.echo(self)

    def _stamp_common(self, site) -> None:
        self.setHeader(b"server", SERVER_HEADER)
        self.setHeader(b"x-reduct-api", API_HEADER)
        self.setHeader(b"date", _http_date(site.reactor.seconds()))

    # -- body side ---------------------------------------------------------

    def gotLength(self, length: Optional[int]) -> None:
        # The start of the request for its audit event (audit.py).
        self.reduct_started = self.channel.site.reactor.seconds()
        drain = getattr(self.channel.site, "drain", None)
        if drain is not None and drain.draining:  # 503: the daemon is stopping
            self._refuse(drain.refusal(self), 0 if length == 0 else None)
            return
        if self.channel._command == b"OPTIONS":
            self._preflight_body(length)
            return
        limits = getattr(self.channel.site, "rate_limits", None)
        if limits is not None:  # RS_RATE_LIMIT_API (ratelimit.py)
            refusal = limits.request(self)
            if refusal is not None:
                self._refuse(refusal, length)
                return
        refusal = self._malformed_target()
        if refusal is not None:
            self._refuse(refusal, length)
            return
        router = getattr(self.channel.site, "router", None)
        if router is None or (length == 0 and not self._has_declared_body()):
            return super().gotLength(length)
        try:
            self.sink = router.open_body(self, length)
        except ReductError as err:
            self._refuse(err, length)
            return
        except Exception:
            log.failure(
                "Unexpected error while routing {path!r}",
                path=public_target(self.channel._path[:200]),
            )
            self._refuse(InternalError("Internal server error"), length)
            return
        if self.sink is not None:
            self.content = BytesIO()
        elif self.malformed_length:
            self._refuse(BadRequest("Invalid content-length header"), None)
        elif length is not None and length > MAX_BUFFERED_BODY:
            self._refuse(PayloadTooLarge("Request body is too large"), length)
        else:
            # Chunked bodies of unknown length are capped as they arrive.
            self.content = BoundedBuffer(MAX_BUFFERED_BODY)

    def _preflight_body(self, length: Optional[int]) -> None:
        # A preflight is answered whatever its path, headers or body: the
        # body is read and dropped (unless its framing is unknown).
        if self.malformed_length:
            self._refuse(BadRequest("Invalid content-length header"), None)
        elif length == 0 and not self._has_declared_body():
            super().gotLength(length)
        else:
            self.sink = DiscardSink()
            self.content = BytesIO()

    def _malformed_target(self) -> Optional[ReductError]:
        """
        The refusal for a request line or Host no route could handle, or None.

        * An encoded slash outside an entry path can only be part of a
          name (every segment of the API is a fixed word or a name); the
          routers would take it as a separator and address another bucket.
          In an entry path it is a separator (``a%2Fb`` is ``a/b``, spec
          1.20 §2.2).
        * A path or Host that is not UTF-8 once percent-decoded cannot name
          anything (and the URL router cannot even decode it).
        """
        path = self.channel._path.partition(b"?")[0]
        if b"%" in path:
            if b"%2f" in path.lower():
                router = getattr(self.channel.site, "router", None)
                if router is None or not router.encoded_slash_ok(path):
                    return UnprocessableEntity(NAME_ERROR)
            path = unquote_to_bytes(path)
        try:
            path.decode("utf-8")
        except UnicodeDecodeError:
            return UnprocessableEntity(NAME_ERROR)
        for host in self.requestHeaders.getRawHeaders(b"host", ()):
            try:
                host.decode("ascii")
            except UnicodeDecodeError:
                return BadRequest("Invalid Host header")
        return None

    def getRequestHostname(self) -> bytes:
        # Klein hands the Host to werkzeug, whose IDNA encoding raises on an
        # empty or over-long label (``a..b``, ``.``, 64 letters): a 500 and a
        # critical traceback (issue #12).  The Host means nothing to the API:
        # answer such a request as if it named this server.
        host = super().getRequestHostname()
        try:
            host.decode("ascii").encode("idna")
        except UnicodeError:
            return b"localhost"
        return host

    def _has_declared_body(self) -> bool:
        return self.requestHeaders.hasHeader(b"content-length")

    def handleContentChunk(self, data: bytes) -> None:
        self.received += len(data)
        sink = self.sink
        if sink is not None:
            sink.write(data)
            refusal = getattr(sink, "refusal", None)
            if refusal is not None:
                # Refused mid-body (a HARD quota): answer now, drop the rest.
                self._refuse(refusal, None, mid_body=True)
        else:
            super().handleContentChunk(data)
            content = self.content
            if getattr(content, "overflow", False) and self.early_error is None:
                self.early_error = PayloadTooLarge("Request body is too large")

    def connectionLost(self, reason) -> None:
        if not self.finished and self.channel is not None:
            # Its access line: an aborted upload, a cut download (access.py).
            access = getattr(self.channel.site, "access_log", None)
            if access is not None and getattr(self, "reduct_started", None) is not None:
                access.lost(self)
        sink = self.sink
        if sink is not None and not sink.done:
            sink.abort()
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        super().connectionLost(reason)

    # -- early refusal -----------------------------------------------------

    def refuse_body(self, err: ReductError) -> None:
        """
        The sink gives up between two chunks of the body (its record found
        no writer slot in time, ``writers.py``): answer ``err`` now and drop
        the rest, as for a refusal mid-body.
        """
        if self._answered or self.finished or self._disconnected:
            return
        self._refuse(err, None, mid_body=True)

    def _refuse(self, err: ReductError, length: Optional[int], mid_body=False) -> None:
        # Twisted frames a body only for length None (chunked) or > 0; with 0
        # it calls allContentReceived right after gotLength, so the request
        # must still be there: never finish() it early in that case.
        # Mid-body, the rest may be long or endless: answer and half-close.
        body_follows = length != 0 and not self.malformed_length and not mid_body
        if self.malformed_length:
            length = None  # unknown framing: never try to drain it
        self.early_error = err
        self.sink = DiscardSink()
        self.content = BytesIO()
        expect = self.requestHeaders.getRawHeaders(b"expect")
        if expect:
            # Never invite a body that will be refused.
            self.requestHeaders.removeHeader(b"expect")
        if body_follows and expect and expect[0].lower() == b"100-continue":
            # The client waits for "100 Continue" before sending its body:
            # answer now and close, so not a byte of it is transferred.
            self._answer_now(err)
            self.finish()
        elif length is not None and length <= DRAIN_LIMIT:
            pass  # drain it (or there is none); process() answers
        else:
            # Too big to drain, or framing unknown: answer at once, half-close
            # so the client can read the answer (a full close with unread data
            # sends a RST), and cut the connection if the body keeps coming.
            self._answer_now(err)
            self.channel.transport.loseWriteConnection()
            reactor = self.channel.site.reactor
            self._abort_call = reactor.callLater(
                HALF_CLOSE_GRACE, self.channel.transport.abortConnection
            )

    def _answer_now(self, err: ReductError) -> None:
        channel = self.channel
        self.method = channel._command
        self.clientproto = channel._version
        self.uri = channel._path
        self.path = self.uri.split(b"?", 1)[0]
        self._answered = True
        channel.persistent = False
        self.stamp()
        self.setHeader(b"connection", b"close")
        body = write_error_headers(self, err)
        self.write(body)

    # -- rendering -----------------------------------------------------------

    def process(self) -> None:
        if self._answered:
            # The answer went out in gotLength; the body has now been read.
            if self._abort_call is not None and self._abort_call.active():
                self._abort_call.cancel()
            self.channel.transport.loseConnection()
            return
        if self.method == b"OPTIONS":
            self._answer_preflight()
            return
        if self.early_error is not None:
            self.stamp()
            body = write_error_headers(self, self.early_error)
            self.write(body)
            self.finish()
            return
        router = getattr(self.channel.site, "router", None)
        handler = router.direct_handler(self) if router is not None else None
        if handler is None:
            super().process()
            return
        # What server.Request.process and Klein would do for this request,
        # minus traversal and routing (see ReductAPI.direct_handler).
        self.site = self.channel.site
        self.stamp()
        try:
            body = handler()
        except BaseException:
            body = self._direct_failed(Failure())
        if not isinstance(body, Deferred):
            # Answered synchronously (small records): no Deferred plumbing.
            self._direct_answer(body)
            return
        d = body
        self.notifyFinish().addErrback(lambda _: d.cancel())
        d.addErrback(self._direct_failed)
        d.addCallback(self._direct_answer)

    def _answer_preflight(self) -> None:
        channel = self.channel
        self.site = site = channel.site
        self._stamp_common(site)
        site.cors.echo(self)
        self.setHeader(b"content-length", b"0")
        # finish() writes the headers at once: with the preflight's lines.
        channel.cors_lines = site.cors.preflight_lines
        try:
            self.finish()
        finally:
            channel.cors_lines = site.cors.response_lines

    def _direct_failed(self, failure):
        if self._disconnected or self.finished:
            if not failure.check(CancelledError):
                log.failure("Error after the client went away", failure)
            return None
        return failure_body(self, failure)

    def _direct_answer(self, body) -> None:
        if body is None or self._disconnected or self.finished:
            return
        if body:
            self.write(body)
        self.finish()

    def render(self, resrc) -> None:
        self.stamp()
        super().render(resrc)


class ReductSite(server.Site):
    """
    The daemon's ``Site``: streaming requests, lowercase header names, no
    form parsing (it would parse every POST's content type and can hold
    form-typed bodies in memory several times over), no tracebacks, and
    our own access line (``access.py``, ``access_log``) instead of
    Twisted's combined log format (+40 µs per request; issue #3 measured it).

    :ivar router: decides, from the request line and headers alone, where a
        body goes (``ReductAPI``).
    :param timeout: seconds of silence after which a connection between
        requests is closed (``idle_timeout``).
    :param header_timeout: seconds a request's line and headers may take.
    :param io_timeout: seconds of silence after which a connection in the
        middle of a request body is closed (``io_operation_timeout``).
    :param cors: the CORS policy (``cors_allow_origin``); no origin allowed
        by default.
    :param max_batch_records: ``io_batch_max_records``: requests may carry
        15 more headers than this (at least ``ReductChannel.maxHeaders``).
    :param max_batch_metadata: ``io_batch_max_metadata_size``: the request
        header buffer, and the longest header line, hold this much plus
        :data:`HEADER_SLACK` (at least ``ReductChannel``'s own limits).
    """

    requestFactory = StreamingRequest
    protocol = ReductChannel
    displayTracebacks = False
    #: ``RS_RATE_LIMIT_*`` (``ratelimit.RateLimits``), set by ``wiring.apply_limits``.
    rate_limits = None
    #: ``metrics.Metrics``, told of every finished request; set by ``wiring.make_metrics``.
    metrics = None
    #: The access log (``access.AccessLog``), or None for none (``site.make_site``).
    access_log = None

    def __init__(
        self,
        resource,
        router,
        reactor,
        timeout: float = 60,
        header_timeout: float = 10,
        io_timeout: float = 30,
        cors: CorsPolicy = NO_ORIGINS,
        max_batch_records: int = 0,
        max_batch_metadata: int = 0,
    ) -> None:
        super().__init__(
            resource, parsePOSTFormSubmission=False, reactor=reactor, timeout=timeout
        )
        self.router = router
        self.reactor = reactor
        self.header_timeout = header_timeout
        self.io_timeout = io_timeout
        self.cors = cors
        # Upstream caps a request at io_batch_max_records + 15 headers and
        # io_batch_max_metadata_size header bytes.  Ours are higher already
        # (batches of more records work today); raise them only when the
        # batch settings need more.
        self.max_headers = max(ReductChannel.maxHeaders, max_batch_records + 15)
        self.total_headers_size = max(
            ReductChannel.totalHeadersSize, max_batch_metadata + HEADER_SLACK
        )
        self.max_line_length = max(ReductChannel.MAX_LENGTH, max_batch_metadata + HEADER_SLACK)
        #: Open connections, drained when the daemon stops (``drain.py``).
        self.drain = ConnectionDrain(reactor)

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.cors_lines = self.cors.response_lines
        channel.maxHeaders = self.max_headers
        channel.totalHeadersSize = self.total_headers_size
        channel.MAX_LENGTH = self.max_line_length
        self.drain.connection_made(channel)
        return channel

    def log(self, request) -> None:
        # Called once by every finished request: its metrics (metrics.py),
        # its access line (access.py) and its audit event (audit.py).
        now = self.reactor.seconds()
        if self.metrics is not None:
            self.metrics.request_done(request, now)
        access = self.access_log
        if access is not None:
            access.finished(request, now)
        events = getattr(self.router, "events", None)
        if events is not None and events.enabled:
            audit_request(events, request, now)
