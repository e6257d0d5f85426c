"""
``GET|HEAD /api/v1/ready`` (API 1.18, spec 1.20 §5.1): the readiness probe,
anonymous, 200 with an empty body once the storage is loaded, over real
sockets; the same on the unprefixed path, like ``/alive``.  The 503 of an
engine not open is in ``tests/unit/test_ready.py``.
"""

import pytest_twisted

from tests.integration.conftest import running_server
from tests.integration.helpers import assert_error


@pytest_twisted.ensureDeferred
async def test_ready_answers_200_empty_without_a_token(tmp_path):
    """With authentication on, HEAD and GET /ready answer 200 and no body, no token needed."""
    async with running_server(tmp_path / "data", api_token="init-secret") as server:
        for method in ("HEAD", "GET"):
            for url in (server.api("/ready"), server.url + "/ready"):
                resp = await server.http.request(method, url)
                assert resp.code == 200, (method, url)
                assert await resp.content() == b""
                assert resp.headers.getRawHeaders("x-reduct-error") is None
                assert resp.headers.getRawHeaders("x-reduct-api") is not None
        # Not a catch-all: its neighbours still need the token.
        await assert_error(await server.http.get(server.api("/info")), 401,
                           "No bearer token in request header")


@pytest_twisted.ensureDeferred
async def test_ready_takes_no_other_method(server):
    """POST /ready is no route: a bare 405, like every wrong method."""
    resp = await server.http.post(server.api("/ready"), b"")
    await resp.content()
    assert resp.code == 405
