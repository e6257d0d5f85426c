# -*- test-case-name: tests.integration.test_api -*-
"""
Routes about the server and its tokens (spec §2): ``/info``, ``/list``,
``/alive``, ``/ready``, ``/me``, the legacy ``/auth/refresh`` and ``/tokens`` (§2.4).
Each handler takes the ``ReductAPI`` first; the table, with who may call
each route, is in ``api.py``.  ``/list`` and ``/me`` check the token
themselves: they need the caller's token object.
"""

from reduct_twisted.auth.policy import Policy
from reduct_twisted.auth.terms import INVALID_BODY, CreateRequest
from reduct_twisted.errors import ServiceUnavailable, UnprocessableEntity
from reduct_twisted.http.authz import authorize
from reduct_twisted.http.headers import parse_json_body, respond_empty, respond_json


def info(api, request):
    return respond_json(request, api.engine.info())


def list_buckets(api, request):
    token = authorize(api, request, Policy.AUTHENTICATED)
    may_read = api.auth.may_read
    buckets = [b for b in api.engine.list_buckets() if may_read(token, b["name"])]
    return respond_json(request, {"buckets": buckets})


def alive(api, request):
    return respond_empty(request)


def ready(api, request):
    """
    Readiness probe (1.18, spec 1.20 §5.1): 200 once the storage is loaded.
    The daemon opens the engine before it listens, so the 503 is for an
    API served over an engine not open (yet, or any more).
    """
    if not api.engine.is_open:
        raise ServiceUnavailable("The server is starting up, please try again later")
    return respond_empty(request)


def me(api, request):
    token = authorize(api, request, Policy.AUTHENTICATED)
    return respond_json(request, api.auth.describe(token))


def refresh(api, request):
    """
    Legacy v0 (≤ 0.9) access-token exchange.  Since 0.8 the API token
    itself is a valid bearer, so it is handed back unchanged.
    """
    header = request.getHeader(b"authorization") or b""
    token = header[len(b"Bearer ") :].decode("utf-8", "replace") if api.auth.enabled else ""
    expires = int(api.reactor.seconds()) + 300
    return respond_json(request, {"access_token": token, "expired_at": expires})


# -- tokens (spec §2.4) --------------------------------------------------------


def list_tokens(api, request):
    return respond_json(request, {"tokens": api.auth.list_tokens()})


def token_body(request) -> CreateRequest:
    """
    The body of ``POST /tokens/<name>``, read before the token is checked:
    the nested or the flat shape (spec 1.20 §4.2); anything else, unparsable
    JSON included, is ``422 "Invalid body"``.  An empty body is ``{}``.
    """
    try:
        body = parse_json_body(request.content.getvalue())
    except UnprocessableEntity:
        raise UnprocessableEntity(INVALID_BODY) from None
    return CreateRequest.parse(body)


def create_token(api, request, name, body):
    created = api.auth.create_token(name, body)
    return api.when_saved(respond_json, request, created)


def rotate_token(api, request, name):
    """``POST /tokens/<name>/rotate`` (spec 1.20 §4.5); the body is ignored."""
    rotated = api.auth.rotate_token(name)
    return api.when_saved(respond_json, request, rotated)


def get_token(api, request, name):
    return respond_json(request, api.auth.get_token(name))


def remove_token(api, request, name):
    api.auth.remove_token(name)
    return api.when_saved(respond_empty, request)
