"""
The query-link routes without sockets (``treq.testing.StubTreq`` over the
Klein resource ``wiring.assemble`` builds, on a ``task.Clock``): the link's
expiry to the second, the issuing token's expiry (``401 "Token has
expired"``), and the lookup running in bounded slices, yielding to the
reactor between them (or, for a plain query, starting at the record).
"""

import json

import pytest
from treq.testing import StubTreq

from reduct_twisted.config import Config
from reduct_twisted.http import links as link_routes
from reduct_twisted.provision import parse_provisioning
from reduct_twisted.storage.testing import write_record
from reduct_twisted.wiring import assemble
from tests.unit.test_http_errors import result_of

API_TOKEN = "init-secret"
READER = {"RS_TOKEN_R_NAME": "reader", "RS_TOKEN_R_VALUE": "reader-secret",
          "RS_TOKEN_R_READ": "data"}


def build(engine, clock, environ=None, **config):
    config = Config(data_path=engine.data_path, sync="none", **config)
    parts = assemble(engine, config, clock, None, parse_provisioning(environ or {}))
    return parts.api, StubTreq(parts.site.resource)


def send(stub, method, url, **kwargs):
    d = stub.request(method, url, **kwargs)
    stub.flush()
    return d


def answer(stub, method, url, **kwargs):
    response = result_of(send(stub, method, url, **kwargs))
    body = stub.content(response)
    stub.flush()
    return response, result_of(body)


def create(stub, headers=None, **fields):
    body = {"bucket": "data", "entry": "e", "query": {"query_type": "QUERY"},
            "expire_at": 1000, "base_url": "http://x"}
    body.update(fields)
    response, content = answer(stub, "POST", "http://x/api/v1/links/f.bin",
                               data=json.dumps(body).encode(), headers=headers or {})
    assert response.code == 200, content
    return json.loads(content)["link"]


def error_of(response):
    return response.headers.getRawHeaders(b"x-reduct-error")[0].decode()


def test_link_expires_after_its_second(engine, clock):
    """``expire_at`` (UNIX seconds) is the last second the link works."""
    engine.create_bucket("data", None)
    write_record(engine, "data", "e", 1, b"x")
    _, stub = build(engine, clock)
    clock.advance(990)
    link = create(stub, record_entry="e", record_timestamp=1)
    clock.advance(10)
    response, body = answer(stub, "GET", link)
    assert (response.code, body) == (200, b"x")
    clock.advance(1)
    response, body = answer(stub, "GET", link)
    assert response.code == 422
    assert error_of(response) == "Query link has expired"
    assert json.loads(body) == {"detail": "Query link has expired"}


def test_expired_issuing_token(engine, clock):
    """
    The issuing token's own expiry (``RS_TOKEN_<ID>_EXPIRES_AT``, tokens v2):
    ``401 "Token has expired"`` from that second on, checked after the
    link's own expiry.
    """
    engine.create_bucket("data", None)
    write_record(engine, "data", "e", 1, b"x")
    environ = dict(READER, RS_TOKEN_R_EXPIRES_AT="1970-01-01T00:16:40Z")  # 1000 s
    _, stub = build(engine, clock, environ, api_token=API_TOKEN)
    link = create(stub, {"Authorization": "Bearer reader-secret"}, record_entry="e",
                  record_timestamp=1, expire_at=5000)
    assert "&i=reader&" in link
    clock.advance(999)
    assert answer(stub, "GET", link)[1] == b"x"
    clock.advance(1)
    response, _ = answer(stub, "GET", link)
    assert response.code == 401 and error_of(response) == "Token has expired"
    clock.advance(4001)
    response, _ = answer(stub, "GET", link)
    assert response.code == 422 and error_of(response) == "Query link has expired"


@pytest.mark.parametrize("identity", [True, False])
def test_lookup_yields_between_slices(engine, clock, identity):
    """
    A record deep in the query's result is reached in slices of
    ``SLICE`` records, the reactor turning between them (``drive``); the
    lookup's query is dropped afterwards.
    """
    engine.create_bucket("data", None)
    count = 2 * link_routes.SLICE + 10
    for ts in range(1, count + 1):
        write_record(engine, "data", "e", ts, b"r%d" % ts)
    _, stub = build(engine, clock)
    # each_n: every record counts, so the whole query is scanned.
    query = {"query_type": "QUERY", "each_n": 1}
    fields = ({"record_entry": "e", "record_timestamp": count} if identity
              else {"index": count - 1})
    fields["query"] = query
    link = create(stub, **fields)
    turns = []
    call_later = clock.callLater

    def counting(delay, *args, **kwargs):
        turns.append(delay)
        return call_later(delay, *args, **kwargs)

    clock.callLater = counting
    d = send(stub, "GET", link)
    results = []
    d.addBoth(results.append)
    assert not results  # the first slice ended without the record
    clock.advance(0)
    stub.flush()
    assert results
    assert turns == [0, 0]  # three slices: two returns to the reactor
    body = stub.content(results[0])
    stub.flush()
    assert result_of(body) == b"r%d" % count
    assert engine._multi._live == {}


def test_identity_lookup_of_a_plain_query_starts_at_the_record(engine, clock):
    """
    Without options depending on earlier records the lookup starts at the
    record's timestamp: no slice boundary is crossed however deep it is, and
    ``start``/``stop``/labels still decide.
    """
    engine.create_bucket("data", None)
    count = 3 * link_routes.SLICE
    for ts in range(1, count + 1):
        write_record(engine, "data", "e", ts, b"r%d" % ts, labels={"odd": str(ts % 2)})
    _, stub = build(engine, clock)
    turns = []
    call_later = clock.callLater
    clock.callLater = lambda delay, *a, **kw: turns.append(delay) or call_later(delay, *a, **kw)
    link = create(stub, record_entry="e", record_timestamp=count)
    assert answer(stub, "GET", link)[1] == b"r%d" % count
    assert turns == []
    query = {"query_type": "QUERY", "start": 10, "stop": 20, "include": {"odd": "1"}}
    link = create(stub, record_entry="e", record_timestamp=11, query=query)
    assert answer(stub, "GET", link)[1] == b"r11"
    for ts in (12, 9, 21):
        response, _ = answer(stub, "GET", link + f"&e=e&ts={ts}")
        assert response.code == 404, ts
        assert error_of(response) == f"Record e/{ts} not found in query result"
    assert engine._multi._live == {}
