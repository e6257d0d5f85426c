"""
The readiness probe's two answers without sockets (spec 1.20 §5.1): 200 and
no body over an open engine, 503 with upstream's text over one that is not
open (the daemon never listens before the engine is open, so only this
test reaches it).
"""

from tests.unit.test_http_errors import answer, api_stub, assert_error


def test_ready_when_the_storage_is_loaded(engine, clock):
    stub = api_stub(engine, clock)
    for method in ("GET", "HEAD"):
        response, body = answer(stub, method, "http://x/api/v1/ready")
        assert (response.code, body) == (200, b"")


def test_not_ready_before_the_storage_is_loaded(engine, clock):
    stub = api_stub(engine, clock)
    engine.close()
    response, body = answer(stub, "GET", "http://x/api/v1/ready")
    assert_error(response, body, 503, "The server is starting up, please try again later")
    response, body = answer(stub, "HEAD", "http://x/api/v1/ready")
    assert_error(response, body, 503, "The server is starting up, please try again later",
                 head=True)
    # /alive stays the liveness probe.
    response, body = answer(stub, "GET", "http://x/api/v1/alive")
    assert response.code == 200
