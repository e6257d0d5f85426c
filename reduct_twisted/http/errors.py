# -*- test-case-name: tests.unit.test_http_errors -*-
"""
One place that turns errors into HTTP answers.

ReductStore's contract: the status code is the error class, the message goes
into the ``x-reduct-error`` header and a JSON ``{"detail": ...}`` body.
"""

from twisted.logger import Logger
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from reduct_twisted.errors import ReductError
from reduct_twisted.http.headers import json_bytes
from reduct_twisted.wire import header_safe

log = Logger()


#: Reason phrases twisted.web does not know (it would send "Unknown Status").
_REASONS = {422: b"Unprocessable Entity", 425: b"Too Early"}


def write_error_headers(request, err: ReductError) -> bytes:
    """
    Set status and headers of ``err`` on ``request`` and return the body.

    A 204 (``NoContent``) carries the header but no body and no content type;
    every other error gets ``{"detail": message}``.
    """
    request.setResponseCode(err.status, _REASONS.get(err.status))
    request.setHeader(b"x-reduct-error", header_safe(err.message))
    if err.status == 204:
        request.responseHeaders.removeHeader(b"content-type")
        request.responseHeaders.removeHeader(b"content-length")
        return b""
    body = json_bytes({"detail": err.message})
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _abort_if_started(request) -> bool:
    # Once a response has begun, an error can no longer be reported in its
    # status line; cutting the connection is the only honest signal.
    if request.startedWriting:
        transport = request.channel and request.channel.transport
        if transport is not None:
            transport.abortConnection()
        return True
    return False


def failure_body(request, failure) -> bytes:
    """
    Answer ``failure`` on ``request``: set status and headers, return the
    body.  The one mapping used by the Klein app and by the direct record
    routes (``StreamingRequest.process``).
    """
    error = failure.value
    if isinstance(error, MethodNotAllowed):
        # Upstream answers 405 from its framework: empty body, no x-reduct-error.
        request.setResponseCode(405)
        request.setHeader(b"content-length", b"0")
        return b""
    if isinstance(error, HTTPException):
        # No route matched; werkzeug's slash redirects (``//x``, ``x/``)
        # included: upstream has no such redirects and answers 404.
        error = ReductError("Not found", 404)
    elif not isinstance(error, ReductError):
        log.failure(
            "Unhandled error in {method} {uri}", failure, method=request.method, uri=request.uri
        )
        error = ReductError("Internal server error", 500)
    if _abort_if_started(request):
        return b""
    return write_error_headers(request, error)


def install_error_handlers(app) -> None:
    """
    Register the error mapping on a Klein app (class-bound handlers).
    """

    @app.handle_errors(Exception)
    def any_error(self, request, failure):
        return failure_body(request, failure)
