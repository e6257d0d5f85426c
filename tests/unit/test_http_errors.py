"""
The error contract (``http/errors.py``) without sockets: every error class of
``reduct_twisted.errors`` becomes its status, an ``x-reduct-error`` header and
a JSON ``{"detail": ...}`` body; routing errors (404, 405) and unexpected
exceptions are mapped too; a HEAD answer never carries a body.

What this covers: ``treq.testing.StubTreq`` drives the Klein resources in
memory, (1) a tiny Klein app that raises each error through
``install_error_handlers``, and (2) the real API resource built by
``wiring.assemble`` on a ``tmp_path`` engine and a ``task.Clock`` (404 bucket, 409,
422 bad name, 401/403 with ``TokenAccess``, unknown route, 405).

What it cannot cover: StubTreq wraps the resource in its own
``twisted.web.server.Site`` with the default ``Request`` and ``HTTPChannel``,
so our ``requestFactory`` (``StreamingRequest``) and ``ReductChannel`` never
run here (STYLE.md §4).  Missing from these answers, and tested over real
sockets instead: the headers ``StreamingRequest.stamp`` adds (``server``,
``x-reduct-api``, ``date``, CORS) and the lowercase names
``ReductChannel.writeHeaders`` writes; errors decided before the body in
``gotLength`` (refused writes, ``Expect: 100-continue``, the draining 503)
and mid-body refusals; the direct record routes answered by
``StreamingRequest.process`` through ``failure_body``; streamed record and
batch writes (``request.sink``).  Those are in
``tests/integration/test_streaming.py``, ``test_api.py``, ``test_auth.py``,
``test_batch.py``, ``test_drain.py`` and ``test_hostile_http.py``; the 400s
of Twisted's own parser are in ``tests/unit/test_bad_requests.py``
(``ReductChannel`` over a ``StringTransport``).
"""

import json

import pytest
from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed

from reduct_twisted import errors
from reduct_twisted.config import Config
from reduct_twisted.errors import Conflict, ReductError, UnprocessableEntity
from reduct_twisted.http.errors import install_error_handlers
from reduct_twisted.provision import parse_provisioning
from reduct_twisted.wiring import assemble
from tests.unit.conftest import error_message

#: Every error class the core may raise: ReductError's subclasses.
ERROR_CLASSES = sorted(
    (value for value in vars(errors).values()
     if isinstance(value, type) and issubclass(value, ReductError) and value is not ReductError),
    key=lambda cls: cls.status,
)


def result_of(d: Deferred):
    """The result of a Deferred that must have fired already (a failure is raised)."""
    results = []
    d.addBoth(results.append)
    assert results, f"{d!r} has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def answer(stub: StubTreq, method: str, url: str, headers=None, data=None):
    """
    Send one request through ``stub`` and return ``(response, body)``.
    """
    d = stub.request(method, url, headers=headers, data=data)
    stub.flush()
    response = result_of(d)
    body = stub.content(response)
    stub.flush()
    return response, result_of(body)


def error_header(response):
    """The ``x-reduct-error`` values of ``response`` (bytes)."""
    return response.headers.getRawHeaders(b"x-reduct-error")


def assert_error(response, body: bytes, status: int, message: str, head: bool = False):
    """``response`` is ReductStore's answer to an error ``status`` with ``message``."""
    assert response.code == status
    assert error_header(response) == [message.encode("utf-8")]
    if head:
        assert body == b""
        return
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert json.loads(body) == {"detail": message}
    # (Twisted's client takes Content-Length out of the headers into ``length``.)
    assert response.length == len(body)


# -- a tiny app raising each error ---------------------------------------------------


class Raiser:
    """A Klein app with the daemon's error handlers whose routes raise."""

    app = Klein()
    install_error_handlers(app)

    def __init__(self):
        self.pending = []

    @app.route("/raise/<name>", methods=["GET", "HEAD"])
    def raise_named(self, request, name):
        raise getattr(errors, name)(f"{name} was raised")

    @app.route("/later/<name>", methods=["GET"])
    def fail_later(self, request, name):
        # The same error, from a Deferred that fails after the handler returned.
        d = Deferred()
        d.errback(getattr(errors, name)(f"{name} was raised"))
        return d

    @app.route("/unparsable", methods=["GET"])
    def unparsable(self, request):
        raise errors.NotFound("two\nlines")

    @app.route("/bug", methods=["GET", "HEAD"])
    def bug(self, request):
        raise ValueError("a bug, not an answer")

    @app.route("/custom", methods=["GET"])
    def custom(self, request):
        raise ReductError("I'm a teapot", 418)

    @app.route("/half", methods=["GET"])
    def half(self, request):
        # The response has begun when the error comes.
        request.setHeader(b"content-length", b"100")
        request.write(b"the first bytes")
        d = Deferred()
        self.pending.append(d)
        return d

    @app.route("/post-only", methods=["POST"])
    def post_only(self, request):
        return b""


@pytest.fixture
def app():
    return Raiser()


@pytest.fixture
def raiser(app):
    return StubTreq(app.app.resource())


def test_every_error_class_is_known():
    """The table below the tests covers each status of errors.py once (a new class must join it)."""
    assert [cls.status for cls in ERROR_CLASSES] == [
        204, 400, 401, 403, 404, 409, 413, 422, 425, 500, 503, 507,
    ]


@pytest.mark.parametrize("cls", [c for c in ERROR_CLASSES if c.status != 204],
                         ids=lambda c: c.__name__)
def test_error_class_becomes_status_header_and_detail(raiser, cls):
    """Each error class is answered with its status, its message in x-reduct-error and in detail."""
    response, body = answer(raiser, "GET", f"http://x/raise/{cls.__name__}")
    assert_error(response, body, cls.status, f"{cls.__name__} was raised")


@pytest.mark.parametrize("cls", [c for c in ERROR_CLASSES if c.status != 204],
                         ids=lambda c: c.__name__)
def test_error_from_a_failed_deferred_is_mapped_the_same(raiser, cls):
    """An error that fails the handler's Deferred gets the same answer as one raised at once."""
    response, body = answer(raiser, "GET", f"http://x/later/{cls.__name__}")
    assert_error(response, body, cls.status, f"{cls.__name__} was raised")


@pytest.mark.parametrize("cls", [c for c in ERROR_CLASSES if c.status != 204],
                         ids=lambda c: c.__name__)
def test_head_error_has_header_but_no_body(raiser, cls):
    """A HEAD request gets the status and x-reduct-error, and no body."""
    response, body = answer(raiser, "HEAD", f"http://x/raise/{cls.__name__}")
    assert_error(response, body, cls.status, f"{cls.__name__} was raised", head=True)


def test_reason_phrases_twisted_does_not_know(raiser):
    """422 and 425 carry their reason phrase, not Twisted's "Unknown Status"."""
    for name, phrase in (("UnprocessableEntity", b"Unprocessable Entity"),
                         ("TooEarly", b"Too Early")):
        response, _ = answer(raiser, "GET", f"http://x/raise/{name}")
        assert response.phrase == phrase


def test_no_content_has_header_but_no_body_or_type(raiser):
    """NoContent (204) carries x-reduct-error but no body and no content type."""
    response, body = answer(raiser, "GET", "http://x/raise/NoContent")
    assert response.code == 204
    assert error_header(response) == [b"NoContent was raised"]
    assert body == b""
    assert not response.headers.hasHeader(b"content-type")


def test_message_unfit_for_a_header_is_replaced_there_only(raiser):
    """A message with a newline becomes "Unparsable message" in the header; detail keeps it."""
    response, body = answer(raiser, "GET", "http://x/unparsable")
    assert response.code == 404
    assert error_header(response) == [b"Unparsable message"]
    assert json.loads(body) == {"detail": "two\nlines"}


def test_reduct_error_with_any_status(raiser):
    """A bare ReductError is answered with the status it was given."""
    response, body = answer(raiser, "GET", "http://x/custom")
    assert_error(response, body, 418, "I'm a teapot")


def test_unexpected_exception_is_logged_and_answered_500(raiser, log_events):
    """Any other exception is logged with its traceback and answered 500 "Internal server error"."""
    response, body = answer(raiser, "GET", "http://x/bug")
    assert_error(response, body, 500, "Internal server error")
    failures = [e for e in log_events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_level"] == LogLevel.critical
    assert failures[0]["log_failure"].check(ValueError)


def test_unexpected_exception_on_head_has_no_body(raiser, log_events):
    """A HEAD request failing unexpectedly gets the 500 header and no body."""
    response, body = answer(raiser, "HEAD", "http://x/bug")
    assert_error(response, body, 500, "Internal server error", head=True)


def test_error_after_the_response_began_cuts_the_connection(app, raiser):
    """An error once the body has begun is not written into it: the connection is aborted."""
    d = raiser.request("GET", "http://x/half")
    raiser.flush()
    response = result_of(d)
    assert response.code == 200
    received = []
    body = raiser.collect(response, received.append)
    app.pending.pop().errback(errors.NotFound("too late"))
    raiser.flush()
    with pytest.raises(ResponseFailed):
        result_of(body)
    assert b"".join(received) == b"the first bytes"


def test_unknown_route_is_a_reduct_404(raiser):
    """A path no route matches is a 404 "Not found" with x-reduct-error."""
    response, body = answer(raiser, "GET", "http://x/nowhere")
    assert_error(response, body, 404, "Not found")


def test_unknown_route_on_head_has_no_body(raiser):
    """A HEAD to a path no route matches is a 404 with x-reduct-error and no body."""
    response, body = answer(raiser, "HEAD", "http://x/nowhere")
    assert_error(response, body, 404, "Not found", head=True)


def test_wrong_method_is_a_bare_405(raiser):
    """A known path with the wrong method is a 405 with an empty body and no x-reduct-error."""
    response, body = answer(raiser, "GET", "http://x/post-only")
    assert response.code == 405
    assert body == b""
    assert error_header(response) is None
    assert response.length == 0


# -- the real API resource -----------------------------------------------------------

#: The init token, and a provisioned token that may read bucket "data" only.
API_TOKEN = "init-secret"
READER = {
    "RS_TOKEN_R_NAME": "reader",
    "RS_TOKEN_R_VALUE": "reader-secret",
    "RS_TOKEN_R_READ": "data",
}


def api_stub(engine, clock, environ=None, **config):
    """
    StubTreq over the Klein resource of the site ``wiring.assemble`` builds.  No
    thread pool: sync policy ``none``, and nothing here writes the token file.
    """
    config = Config(data_path=engine.data_path, sync="none", **config)
    site = assemble(engine, config, clock, None, parse_provisioning(environ or {})).site
    return StubTreq(site.resource)


@pytest.fixture
def open_api(engine, clock):
    """The API with authentication disabled."""
    return api_stub(engine, clock)


@pytest.fixture
def token_api(engine, clock):
    """The API with authentication on (``TokenAccess``) and a read-only token."""
    return api_stub(engine, clock, READER, api_token=API_TOKEN)


def bearer(value: str) -> dict:
    return {b"authorization": [b"Bearer " + value.encode("ascii")]}


API = "http://localhost/api/v1"


def test_missing_bucket_is_404(open_api):
    """GET of a missing bucket is a 404 naming it."""
    response, body = answer(open_api, "GET", f"{API}/b/missing")
    assert_error(response, body, 404, "Bucket 'missing' is not found")


def test_missing_bucket_on_head_has_no_body(open_api):
    """HEAD of a missing bucket is a 404 with x-reduct-error and no body."""
    response, body = answer(open_api, "HEAD", f"{API}/b/missing")
    assert_error(response, body, 404, "Bucket 'missing' is not found", head=True)


def test_bad_bucket_name_is_422(open_api, engine):
    """Creating a bucket with a bad name is a 422 with the engine's message."""
    message = error_message(UnprocessableEntity, engine.create_bucket, "bad name", None)
    response, body = answer(open_api, "POST", f"{API}/b/bad%20name")
    assert_error(response, body, 422, message)


def test_existing_bucket_is_409(open_api, engine):
    """Creating a bucket twice is a 409 with the engine's message."""
    response, _ = answer(open_api, "POST", f"{API}/b/data")
    assert response.code == 200
    message = error_message(Conflict, engine.create_bucket, "data", None)
    response, body = answer(open_api, "POST", f"{API}/b/data")
    assert_error(response, body, 409, message)


def test_unknown_api_route_is_404(open_api):
    """A path under the API that no route matches is a 404 "Not found"."""
    response, body = answer(open_api, "GET", f"{API}/nowhere/at/all")
    assert_error(response, body, 404, "Not found")


def test_wrong_method_on_api_route_is_bare_405(open_api):
    """A wrong method on an API route is a 405 with an empty body and no x-reduct-error."""
    response, body = answer(open_api, "PUT", f"{API}/info")
    assert response.code == 405
    assert body == b""
    assert error_header(response) is None


def test_no_token_is_401(token_api):
    """With authentication on, a request without a bearer token is a 401."""
    response, body = answer(token_api, "GET", f"{API}/info")
    assert_error(response, body, 401, "No bearer token in request header")


def test_unknown_token_is_401(token_api):
    """An unknown bearer token is a 401 "Invalid token"."""
    response, body = answer(token_api, "GET", f"{API}/info", headers=bearer("nope"))
    assert_error(response, body, 401, "Invalid token")


def test_unknown_token_on_head_has_no_body(token_api):
    """A HEAD with an unknown token is a 401 with x-reduct-error and no body."""
    response, body = answer(token_api, "HEAD", f"{API}/b/data", headers=bearer("nope"))
    assert_error(response, body, 401, "Invalid token", head=True)


def test_token_without_full_access_is_403(token_api):
    """A read-only token asking for the token list is a 403 naming the token."""
    response, body = answer(token_api, "GET", f"{API}/tokens", headers=bearer("reader-secret"))
    assert_error(response, body, 403, "Token 'reader' doesn't have full access")


def test_token_without_read_access_is_403(token_api, engine):
    """A token reading a bucket outside its list is a 403 naming token and bucket."""
    engine.create_bucket("other", None)
    response, body = answer(token_api, "GET", f"{API}/b/other", headers=bearer("reader-secret"))
    assert_error(response, body, 403, "Token 'reader' doesn't have read access to bucket 'other'")


def test_token_with_read_access_passes(token_api, engine):
    """The same token reads its own bucket: the 403 above is about permissions, not the token."""
    engine.create_bucket("data", None)
    response, body = answer(token_api, "GET", f"{API}/b/data", headers=bearer("reader-secret"))
    assert response.code == 200
    assert error_header(response) is None
    assert json.loads(body)["info"]["name"] == "data"


def test_me_reports_the_clock(open_api, clock):
    """With authentication off, /me is the pseudo-token created at the clock's second."""
    clock.advance(86400)
    response, body = answer(open_api, "GET", f"{API}/me")
    assert response.code == 200
    token = json.loads(body)
    assert token["name"] == "AUTHENTICATION-DISABLED"
    assert token["created_at"] == "1970-01-02T00:00:00.000000Z"
