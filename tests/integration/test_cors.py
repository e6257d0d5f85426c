"""
CORS (spec §3.15) against the real daemon: upstream's http_test.py cases
(``RS_CORS_ALLOW_ORIGIN`` with two origins, GET and OPTIONS of
``/api/v1/info``), a daemon without the variable, ``*``, and the paths that
answer outside the Klein routes: errors, 404s, early refusals and the
direct record write and read.
"""

import pytest_twisted

from reduct_twisted.config import load_config
from tests.integration.conftest import running_server
from tests.integration.helpers import body_of, port_of, raw_request
from tests.integration.test_batch import new_query, split_raw_response, write_batch

ORIGINS = "https://first-allowed-origin.com, https://second-allowed-origin.com"
FIRST = "https://first-allowed-origin.com"
SECOND = "https://second-allowed-origin.com"
OTHER = "https://disallowed-origin.com"
VARY = "origin, access-control-request-method, access-control-request-headers"


def cors_server(tmp_path, value=ORIGINS, **config):
    """
    A daemon started with ``RS_CORS_ALLOW_ORIGIN=value`` (as upstream's tests
    run it), for ``async with``.
    """
    origins = load_config({}, {"RS_CORS_ALLOW_ORIGIN": value}, None).cors_allow_origin
    return running_server(tmp_path / "data", cors_allow_origin=origins, **config)


def header(resp, name):
    values = resp.headers.getRawHeaders(name)
    return values[-1] if values else None


async def call(server, method, path, origin=None, token=None, data=None, headers=None):
    hdrs = dict(headers or {})
    if origin is not None:
        hdrs["Origin"] = [origin]
    if token is not None:
        hdrs["Authorization"] = [f"Bearer {token}"]
    resp = await server.http.request(method, server.api(path), headers=hdrs, data=data)
    return resp, await body_of(resp)


def assert_normal(resp, allowed):
    """The CORS headers of a response that is not a preflight."""
    assert header(resp, "access-control-allow-origin") == allowed
    assert header(resp, "access-control-expose-headers") == "*"
    assert header(resp, "vary") == VARY
    assert header(resp, "access-control-allow-methods") is None
    assert header(resp, "x-reduct-api") == "1.20"


def assert_preflight(resp, body, allowed):
    assert resp.code == 200 and body == b""
    assert resp.length == 0  # twisted.web.client keeps content-length for framing
    assert header(resp, "access-control-allow-methods") == "*"
    assert header(resp, "access-control-allow-headers") == "*"
    assert header(resp, "access-control-allow-origin") == allowed
    assert header(resp, "vary") == VARY
    assert header(resp, "access-control-expose-headers") is None
    assert header(resp, "x-reduct-api") == "1.20"
    assert header(resp, "server").startswith("ReductStore 1.")
    assert header(resp, "content-type") is None


@pytest_twisted.ensureDeferred
async def test_upstream_cors_cases(tmp_path):
    """Both listed origins are echoed on GET and OPTIONS; another origin is not, status 200."""
    async with cors_server(tmp_path) as server:
        for origin in (FIRST, SECOND):
            resp, _ = await call(server, "GET", "/info", origin)
            assert resp.code == 200
            assert_normal(resp, origin)
            resp, body = await call(server, "OPTIONS", "/info", origin)
            assert_preflight(resp, body, origin)
        resp, _ = await call(server, "GET", "/info", OTHER)
        assert resp.code == 200
        assert_normal(resp, None)
        resp, body = await call(server, "OPTIONS", "/info", OTHER)
        assert_preflight(resp, body, None)
        resp, _ = await call(server, "GET", "/info")
        assert_normal(resp, None)


@pytest_twisted.ensureDeferred
async def test_without_the_variable(server):
    """No RS_CORS_ALLOW_ORIGIN: no origin is allowed, a preflight is still answered 200."""
    resp, _ = await call(server, "GET", "/info", FIRST)
    assert resp.code == 200
    assert_normal(resp, None)
    resp, body = await call(server, "OPTIONS", "/info", FIRST)
    assert_preflight(resp, body, None)


@pytest_twisted.ensureDeferred
async def test_any_origin(tmp_path):
    """``*`` allows every origin: ``access-control-allow-origin: *``, with or without Origin."""
    async with cors_server(tmp_path, f"{FIRST}, *") as server:
        for origin in (OTHER, None):
            resp, _ = await call(server, "GET", "/info", origin)
            assert_normal(resp, "*")
            resp, body = await call(server, "OPTIONS", "/b/x/y", origin)
            assert_preflight(resp, body, "*")


@pytest_twisted.ensureDeferred
async def test_errors_and_preflights_with_authentication(tmp_path):
    """401s, 404s and early refusals carry the CORS headers; a preflight needs no token."""
    async with cors_server(tmp_path, api_token="secret") as server:
        resp, _ = await call(server, "GET", "/info", FIRST)
        assert resp.code == 401
        assert header(resp, "x-reduct-error") == "No bearer token in request header"
        assert_normal(resp, FIRST)
        resp, _ = await call(server, "GET", "/NOTEXIST/XXXX", SECOND, token="secret")
        assert resp.code == 404
        assert_normal(resp, SECOND)
        resp = await server.http.get(server.url + "/bad-path/api/v1/info",
                                     headers={"Origin": [FIRST]})
        await body_of(resp)
        assert resp.code == 404
        assert_normal(resp, FIRST)
        # refused in gotLength, before the body: the direct write path
        resp, _ = await call(server, "POST", "/b/nope/e?ts=1", FIRST, token="wrong", data=b"x")
        assert resp.code == 401
        assert header(resp, "x-reduct-error") == "Invalid token"
        assert_normal(resp, FIRST)
        # a preflight is answered whatever the token, path or method asked for
        for path in ("/info", "/tokens", "/b/nope/e/batch", "/NOTEXIST"):
            resp, body = await call(
                server, "OPTIONS", path, FIRST,
                headers={"Access-Control-Request-Method": ["DELETE"],
                         "Access-Control-Request-Headers": ["authorization"]},
            )
            assert_preflight(resp, body, FIRST)


@pytest_twisted.ensureDeferred
async def test_record_write_and_read_carry_cors(tmp_path):
    """The direct record routes (POST, GET of ``/b/<bucket>/<entry>``) and batches carry them."""
    async with cors_server(tmp_path) as server:
        resp, _ = await call(server, "POST", "/b/bkt", FIRST)
        assert resp.code == 200
        assert_normal(resp, FIRST)
        resp, _ = await call(server, "POST", "/b/bkt/e?ts=1", FIRST, data=b"abc")
        assert resp.code == 200
        assert_normal(resp, FIRST)
        resp, body = await call(server, "GET", "/b/bkt/e?ts=1", SECOND)
        assert resp.code == 200 and body == b"abc"
        assert_normal(resp, SECOND)
        resp, _ = await call(server, "HEAD", "/b/bkt/e?ts=1", OTHER)
        assert resp.code == 200
        assert_normal(resp, None)
        resp, _ = await call(server, "GET", "/b/bkt/e?ts=2", FIRST)
        assert resp.code == 404
        assert_normal(resp, FIRST)

        resp = await write_batch(server, "e", [(5, b"five", None, {})], bucket="bkt",
                                 headers={"Origin": [SECOND]})
        assert resp.code == 200
        assert_normal(resp, SECOND)
        qid = await new_query(server, "e", bucket="bkt")
        resp, body = await call(server, "GET", f"/b/bkt/e/batch?q={qid}", FIRST)
        assert resp.code == 200 and body == b"abcfive"
        assert_normal(resp, FIRST)


@pytest_twisted.ensureDeferred
async def test_preflight_on_the_wire(tmp_path):
    """
    Header names go out in lowercase; a preflight's body is read and
    dropped, and the connection stays usable for the next request.
    """
    async with cors_server(tmp_path) as server:
        raw = await raw_request(
            port_of(server),
            b"OPTIONS /api/v1/b/x/y?ts=1 HTTP/1.1\r\nHost: x\r\nOrigin: " + FIRST.encode()
            + b"\r\nContent-Length: 5\r\n\r\nhello"
            + b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nOrigin: " + SECOND.encode()
            + b"\r\nConnection: close\r\n\r\n",
            read_until_close=True,
        )
        first, _, second = raw.partition(b"HTTP/1.1 200 OK\r\n")[2].partition(b"HTTP/1.1 ")
        status, lines, body = split_raw_response(b"HTTP/1.1 200 OK\r\n" + first)
        assert body == b""
        assert f"access-control-allow-origin: {FIRST}" in lines
        assert "access-control-allow-methods: *" in lines
        assert "access-control-allow-headers: *" in lines
        assert f"vary: {VARY}" in lines
        assert "content-length: 0" in lines
        assert all(line.split(":")[0] == line.split(":")[0].lower() for line in lines)
        status, lines, _ = split_raw_response(b"HTTP/1.1 " + second)
        assert status == "HTTP/1.1 200 OK"
        assert f"access-control-allow-origin: {SECOND}" in lines
        assert "access-control-expose-headers: *" in lines
        assert all(line.split(":")[0] == line.split(":")[0].lower() for line in lines)
