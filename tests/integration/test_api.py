"""
The HTTP API against the real daemon over real sockets: every status code
and error text of spec §1.4 and §2 that applies to this release.
"""

import json
import re

import pytest_twisted

from tests.integration.helpers import assert_error, port_of, raw_request

U64_MAX = 2**64 - 1


async def create_bucket(server, name="b", settings=None):
    resp = await server.http.post(
        server.api(f"/b/{name}"), data=json.dumps(settings).encode() if settings else b""
    )
    assert resp.code == 200, await resp.content()
    await resp.content()


async def write(server, ts, data=b"x", bucket="b", entry="e", headers=None):
    resp = await server.http.post(
        server.api(f"/b/{bucket}/{entry}"), params={"ts": str(ts)}, data=data, headers=headers or {}
    )
    body = await resp.content()
    return resp, body


# -- cross-cutting ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_headers_on_every_response(server):
    """server, x-reduct-api and exact JSON content type are on successes, errors and 404s."""
    for path in ("/info", "/b/missing", "/NOTEXIST/XXXX"):
        resp = await server.http.get(server.api(path))
        await resp.content()
        assert re.fullmatch(r"ReductStore 1\.\d+\.\d+", resp.headers.getRawHeaders("server")[0])
        assert resp.headers.getRawHeaders("x-reduct-api") == ["1.20"]
        assert resp.headers.getRawHeaders("content-type") == ["application/json"]


@pytest_twisted.ensureDeferred
async def test_header_names_are_lowercase_on_the_wire(server):
    """Header names go out lowercase (clients match x-reduct-* case-sensitively)."""
    await create_bucket(server)
    resp, _ = await write(server, 1, b"abc", headers={"x-reduct-label-Foo": "Bar"})
    assert resp.code == 200
    raw = await raw_request(
        port_of(server), b"GET /api/v1/b/b/e?ts=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        read_until_close=True,
    )
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    names = [line.split(b":", 1)[0] for line in head]
    assert names and all(n == n.lower() for n in names), names
    assert b"x-reduct-label-foo: Bar" in head
    assert b"x-reduct-time: 1" in head


@pytest_twisted.ensureDeferred
async def test_unknown_paths_are_404_not_found(server):
    """Paths matching no route, and a wrong base path, answer 404 'Not found'."""
    for url in (server.api("/NOTEXIST"), server.api("/NOTEXIST/XXXX"), server.url + "/bad-path/api/v1/info"):
        await assert_error(await server.http.get(url), 404, "Not found")


@pytest_twisted.ensureDeferred
async def test_wrong_method_is_405_without_error_header(server):
    """A known path with an unsupported method: 405, empty body, no x-reduct-error."""
    resp = await server.http.put(server.api("/info"), data=b"")
    body = await resp.content()
    assert resp.code == 405
    assert body == b""
    assert not resp.headers.hasHeader("x-reduct-error")


@pytest_twisted.ensureDeferred
async def test_oversized_json_body_is_413(server):
    """A body too large for a JSON endpoint is refused, not buffered."""
    resp = await server.http.post(server.api("/b/big"), data=b" " * (2 << 20))
    await assert_error(resp, 413, "Request body is too large")


# -- server API -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_info_without_buckets(server):
    """/info reports the version, u64::MAX oldest record and the bucket defaults."""
    resp = await server.http.get(server.api("/info"))
    info = json.loads(await resp.content())
    assert resp.code == 200
    assert info["version"] == "1.20.0"
    assert info["bucket_count"] == 0 and info["usage"] == 0
    assert info["oldest_record"] == U64_MAX and info["latest_record"] == 0
    assert isinstance(info["uptime"], int)
    assert info["license"] is None
    assert info["defaults"] == {
        "bucket": {"max_block_size": 64000000, "max_block_records": 1024, "quota_type": "NONE", "quota_size": 0}
    }


@pytest_twisted.ensureDeferred
async def test_stats_include_metadata_overhead(server):
    """Sizes are content plus per-record metadata: 40, 43 and 83 for the upstream test records."""
    await create_bucket(server, "bucket_1")
    await write(server, 1_000_000, b"somedata", bucket="bucket_1", entry="entry_1")
    await write(server, 2_000_000, b"anotherdata", bucket="bucket_1", entry="entry_2")
    info = json.loads(await (await server.http.get(server.api("/info"))).content())
    assert (info["bucket_count"], info["usage"]) == (1, 83)
    assert (info["oldest_record"], info["latest_record"]) == (1_000_000, 2_000_000)
    listing = json.loads(await (await server.http.get(server.api("/list"))).content())
    assert listing == {"buckets": [{
        "name": "bucket_1", "entry_count": 2, "size": 83, "oldest_record": 1_000_000,
        "latest_record": 2_000_000, "is_provisioned": False, "status": "READY"}]}
    bucket = json.loads(await (await server.http.get(server.api("/b/bucket_1"))).content())
    assert [(e["name"], e["size"], e["record_count"], e["block_count"]) for e in bucket["entries"]] == [
        ("entry_1", 40, 1, 1), ("entry_2", 43, 1, 1)]


@pytest_twisted.ensureDeferred
async def test_alive_and_me(server):
    """HEAD and GET /alive answer 200; /me is the AUTHENTICATION-DISABLED token."""
    for method in ("HEAD", "GET"):
        resp = await server.http.request(method, server.api("/alive"))
        assert resp.code == 200 and await resp.content() == b""
    me = json.loads(await (await server.http.get(server.api("/me"))).content())
    assert me["name"] == "AUTHENTICATION-DISABLED"
    assert me["permissions"] == {"full_access": True, "read": [], "write": []}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", me["created_at"])


@pytest_twisted.ensureDeferred
async def test_token_api_with_authentication_disabled(server):
    """Token list is empty, create/show say auth is disabled, delete is a no-op."""
    resp = await server.http.get(server.api("/tokens"))
    assert json.loads(await resp.content()) == {"tokens": []}
    await assert_error(await server.http.post(server.api("/tokens/t"), data=b"{}"), 400, "Authentication is disabled")
    await assert_error(await server.http.get(server.api("/tokens/t")), 400, "Authentication is disabled")
    resp = await server.http.delete(server.api("/tokens/t"))
    assert resp.code == 200 and await resp.content() == b""


# -- bucket API ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_bucket_lifecycle(server):
    """Create with partial settings, read back, update keeping unset fields, remove."""
    await create_bucket(server, "b", {"max_block_size": 1000, "quota_type": None})
    data = json.loads(await (await server.http.get(server.api("/b/b"))).content())
    assert data["settings"] == {"max_block_size": 1000, "max_block_records": 1024, "quota_type": "NONE", "quota_size": 0}
    # status: spec 1.20 §5.4/§10.5 (the 1.20 behaviour wins over the 1.17 dict)
    assert data["info"] == {"name": "b", "entry_count": 0, "size": 0, "oldest_record": U64_MAX,
                            "latest_record": 0, "is_provisioned": False, "status": "READY"}
    assert data["entries"] == []
    resp = await server.http.put(server.api("/b/b"), data=json.dumps({"quota_type": "FIFO", "quota_size": 500, "max_block_size": None}).encode())
    assert resp.code == 200 and await resp.content() == b""
    data = json.loads(await (await server.http.get(server.api("/b/b"))).content())
    assert data["settings"] == {"max_block_size": 1000, "max_block_records": 1024, "quota_type": "FIFO", "quota_size": 500}
    resp = await server.http.head(server.api("/b/b"))
    assert resp.code == 200
    resp = await server.http.delete(server.api("/b/b"))
    assert resp.code == 200 and await resp.content() == b""
    await assert_error(await server.http.get(server.api("/b/b")), 404, "Bucket 'b' is not found")
    await assert_error(await server.http.head(server.api("/b/b")), 404, "Bucket 'b' is not found")
    await assert_error(await server.http.delete(server.api("/b/b")), 404, "Bucket 'b' is not found")
    await assert_error(await server.http.put(server.api("/b/b"), data=b"{}"), 404, "Bucket 'b' is not found")


@pytest_twisted.ensureDeferred
async def test_bucket_errors(server):
    """409 on a second create, 422 for names, JSON and settings types."""
    await create_bucket(server, "b")
    await assert_error(await server.http.post(server.api("/b/b")), 409, "Bucket 'b' already exists")
    await assert_error(await server.http.post(server.api("/b/bad%20name")), 422,
                       "Bucket or entry name can contain only letters, digests and [-,_] symbols")
    resp = await server.http.post(server.api("/b/c"), data=b"xxx")
    assert resp.code == 422 and resp.headers.getRawHeaders("x-reduct-error")[0].startswith("Invalid JSON")
    await resp.content()
    await assert_error(await server.http.post(server.api("/b/c"), data=b'{"quota_type": "BAD"}'), 422, "Invalid quota type")
    await assert_error(await server.http.post(server.api("/b/c"), data=b'{"quota_type": 1}'), 422,
                       "Failed to parse quota type: 1")
    resp = await server.http.post(server.api("/b/c"), data=b'{"max_block_size": "10"}')
    assert resp.code == 422
    await resp.content()
    resp = await server.http.get(server.api("/b/c"))
    assert resp.code == 404, "a refused create must not leave a bucket behind"
    await resp.content()


# -- entry API: write / read ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_write_and_read_with_labels_and_content_type(server):
    """A record keeps its bytes, content type and labels (names lowercased)."""
    await create_bucket(server)
    resp, _ = await write(server, 1000, b"some data", headers={
        "content-type": "text/plain; charset=utf-8", "x-reduct-label-Camera": "front", "x-reduct-label-x": "[a,b]"})
    assert resp.code == 200
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "1000"})
    assert await resp.content() == b"some data"
    h = resp.headers
    assert h.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    assert resp.length == 9  # twisted.web.client keeps content-length for framing
    assert h.getRawHeaders("x-reduct-time") == ["1000"]
    assert h.getRawHeaders("x-reduct-last") == ["1"]
    assert h.getRawHeaders("x-reduct-label-camera") == ["front"]
    assert h.getRawHeaders("x-reduct-label-x") == ["[a,b]"]


@pytest_twisted.ensureDeferred
async def test_read_latest_and_head(server):
    """No ts reads the latest record; HEAD has every header and no body."""
    await create_bucket(server)
    for ts in (3000, 1000, 2000):
        await write(server, ts, b"r%d" % ts)
    resp = await server.http.get(server.api("/b/b/e"))
    assert await resp.content() == b"r3000"
    assert resp.headers.getRawHeaders("x-reduct-time") == ["3000"]
    resp = await server.http.head(server.api("/b/b/e"), params={"ts": "1000"})
    assert await resp.content() == b""
    assert resp.headers.getRawHeaders("content-length") == ["5"]
    assert resp.headers.getRawHeaders("x-reduct-time") == ["1000"]


@pytest_twisted.ensureDeferred
async def test_write_errors(server):
    """ts required and u64, bucket must exist, duplicates 409, labels UTF-8."""
    await create_bucket(server)
    resp = await server.http.post(server.api("/b/b/e"), data=b"x")
    await assert_error(resp, 422, "'ts' parameter is required")
    for bad in ("-1", "abc", str(2**64), "1.5"):
        resp, _ = await write(server, bad)
        assert resp.code == 422, bad
        assert resp.headers.getRawHeaders("x-reduct-error") == ["'ts' must be an unix timestamp in microseconds"]
    resp = await server.http.post(server.api("/b/nob/e"), params={"ts": "1"}, data=b"x")
    await assert_error(resp, 404, "Bucket 'nob' is not found")
    resp, _ = await write(server, 7, b"first")
    assert resp.code == 200
    resp = await server.http.post(server.api("/b/b/e"), params={"ts": "7"}, data=b"again")
    await assert_error(resp, 409, "A record with timestamp 7 already exists")
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "7"})
    assert await resp.content() == b"first", "a refused duplicate must not touch the stored record"
    resp = await server.http.post(server.api("/b/b/bad%20entry"), params={"ts": "1"}, data=b"x")
    # The entry text of API 1.19 (spec 1.20 §2.1, §12): entry names are paths now.
    await assert_error(resp, 422, "Entry name can contain only letters, digits and [-,_,/] symbols or end with \'/$meta\'")


@pytest_twisted.ensureDeferred
async def test_label_values_must_be_utf8(server):
    """A label value that is not UTF-8 is a 422 naming the header."""
    await create_bucket(server)
    raw = await raw_request(port_of(server), b"POST /api/v1/b/b/e?ts=1 HTTP/1.1\r\nHost: x\r\n"
                            b"x-reduct-label-bad: \xff\xfe\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
                            read_until_close=True)
    assert raw.startswith(b"HTTP/1.1 422")
    assert b"x-reduct-error: Label values for x-reduct-label-bad must be valid UTF-8 strings" in raw


@pytest_twisted.ensureDeferred
async def test_write_without_content_length_is_422(server):
    """A POST with neither Content-Length nor chunked framing needs a content length."""
    await create_bucket(server)
    raw = await raw_request(port_of(server), b"POST /api/v1/b/b/e?ts=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            read_until_close=True)
    assert raw.startswith(b"HTTP/1.1 422")
    assert b"x-reduct-error: content-length header is required" in raw


@pytest_twisted.ensureDeferred
async def test_read_errors(server):
    """404 texts for bucket, entry and record; 422 for malformed ts and q."""
    await create_bucket(server)
    await write(server, 1, b"x")
    await assert_error(await server.http.get(server.api("/b/nob/e")), 404, "Bucket 'nob' is not found")
    await assert_error(await server.http.get(server.api("/b/b/none")), 404, "Entry 'none' not found in bucket 'b'")
    await assert_error(await server.http.get(server.api("/b/b/e"), params={"ts": "5"}), 404,
                       "Record 5 not found in block b/e/1")
    await assert_error(await server.http.get(server.api("/b/b/e"), params={"ts": "x"}), 422,
                       "'ts' must be an unix timestamp in microseconds")
    await assert_error(await server.http.get(server.api("/b/b/e"), params={"q": "x"}), 422, "'query' must be a number")


@pytest_twisted.ensureDeferred
async def test_empty_record(server):
    """A zero-length record is stored and read back with content-length 0."""
    await create_bucket(server)
    resp, _ = await write(server, 10, b"")
    assert resp.code == 200
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "10"})
    assert await resp.content() == b""
    assert resp.length == 0


# -- queries -----------------------------------------------------------------------


async def query_ids(server, params, entry="e"):
    resp = await server.http.get(server.api(f"/b/b/{entry}/q"), params=params)
    body = await resp.content()
    assert resp.code == 200, body
    return json.loads(body)["id"]


async def drain(server, qid, entry="e"):
    """Read a query to its end; return the timestamps and the final response."""
    seen = []
    while True:
        resp = await server.http.get(server.api(f"/b/b/{entry}"), params={"q": str(qid)})
        body = await resp.content()
        if resp.code != 200:
            return seen, resp
        assert resp.headers.getRawHeaders("x-reduct-last") in (["0"], ["1"])
        seen.append((int(resp.headers.getRawHeaders("x-reduct-time")[0]), body))


@pytest_twisted.ensureDeferred
async def test_query_lifecycle(server):
    """A query returns [start, stop) in order, then 204 'No content', then 404."""
    await create_bucket(server)
    for ts in (1000, 1100, 1200, 900):
        await write(server, ts, b"v%d" % ts)
    qid = await query_ids(server, {"start": "1000", "stop": "1200"})
    seen, last = await drain(server, qid)
    assert seen == [(1000, b"v1000"), (1100, b"v1100")]
    assert last.code == 204
    assert last.headers.getRawHeaders("x-reduct-error") == ["No content"]
    await assert_error(await server.http.get(server.api("/b/b/e"), params={"q": str(qid)}), 404,
                       f"Query {qid} not found and it might have expired. Check TTL in your query request.")
    # defaults: all records, stop = latest + 1
    seen, _ = await drain(server, await query_ids(server, {}))
    assert [ts for ts, _ in seen] == [900, 1000, 1100, 1200]


@pytest_twisted.ensureDeferred
async def test_query_filters(server):
    """include, exclude (all pairs), limit, each_n and each_s select the right records."""
    await create_bucket(server)
    labels = {1000: ("1", "x"), 2000: ("2", "x"), 3000: ("1", "y"), 4000: ("1", "x")}
    for ts, (a, b) in labels.items():
        await write(server, ts, b"d", headers={"x-reduct-label-a": a, "x-reduct-label-b": b})

    async def run(params):
        seen, _ = await drain(server, await query_ids(server, params))
        return [ts for ts, _ in seen]

    assert await run({"include-a": "1"}) == [1000, 3000, 4000]
    assert await run({"include-a": "1", "include-b": "x"}) == [1000, 4000]
    assert await run({"exclude-a": "1", "exclude-b": "x"}) == [2000, 3000]
    assert await run({"limit": "2"}) == [1000, 2000]
    assert await run({"each_n": "2"}) == [1000, 3000]
    assert await run({"each_s": "0.002"}) == [1000, 3000]


@pytest_twisted.ensureDeferred
async def test_query_parameter_errors(server):
    """Every malformed query parameter gets its upstream 422 text."""
    await create_bucket(server)
    await write(server, 1000, b"x")
    cases = [
        ({"start": "x"}, "'start' must be an unix timestamp in microseconds"),
        ({"stop": "-1"}, "'stop' must be an unix timestamp in microseconds"),
        ({"ttl": "x"}, "'ttl' must be in seconds as an unsigned integer"),
        ({"continuous": "yes"}, "'continue' must be a bool value"),
        ({"limit": "x"}, "'limit' must unsigned integer"),
        ({"each_n": "x"}, "'each_n' must unsigned integer"),
        ({"each_n": "0"}, "'each_n' must be greater than 0"),
        ({"each_s": "x"}, "'each_s' must be a float value"),
        ({"each_s": "0"}, "Time must be greater than 0 seconds"),
        ({"start": "2000"}, "Start time must be before stop time"),
    ]
    for params, message in cases:
        await assert_error(await server.http.get(server.api("/b/b/e/q"), params=params), 422, message)
    await assert_error(await server.http.get(server.api("/b/b/none/q")), 404, "Entry 'none' not found in bucket 'b'")
    await assert_error(await server.http.get(server.api("/b/nob/e/q")), 404, "Bucket 'nob' is not found")


@pytest_twisted.ensureDeferred
async def test_query_ttl_zero_expires_at_once(server):
    """ttl=0: the first read already finds the query gone."""
    await create_bucket(server)
    await write(server, 1000, b"x")
    qid = await query_ids(server, {"ttl": "0"})
    resp = await server.http.get(server.api("/b/b/e"), params={"q": str(qid)})
    assert resp.code == 404
    await resp.content()


@pytest_twisted.ensureDeferred
async def test_continuous_query_sees_new_records(server):
    """A continuous query answers 204 while idle and then delivers later writes."""
    await create_bucket(server)
    await write(server, 1000, b"a")
    qid = await query_ids(server, {"start": "1001", "continuous": "true"})
    for _ in range(2):
        resp = await server.http.get(server.api("/b/b/e"), params={"q": str(qid)})
        assert resp.code == 204
        await resp.content()
    await write(server, 2000, b"b")
    resp = await server.http.get(server.api("/b/b/e"), params={"q": str(qid)})
    assert resp.code == 200 and await resp.content() == b"b"


@pytest_twisted.ensureDeferred
async def test_query_id_of_another_entry_is_404(server):
    """Query ids are looked up in the entry named in the URL."""
    await create_bucket(server)
    await write(server, 1, b"x", entry="e1")
    await write(server, 1, b"x", entry="e2")
    qid = await query_ids(server, {}, entry="e1")
    resp = await server.http.get(server.api("/b/b/e2"), params={"q": str(qid)})
    assert resp.code == 404
    await resp.content()


# -- quota ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_fifo_quota_removes_oldest_blocks(server):
    """FIFO drops whole oldest blocks before accepting a write; oversize is a 500."""
    await create_bucket(server, "b", {"quota_type": "FIFO", "quota_size": 3000, "max_block_records": 2})
    for ts in range(1, 7):
        resp, _ = await write(server, ts, b"x" * 700)
        assert resp.code == 200
    data = json.loads(await (await server.http.get(server.api("/b/b"))).content())
    assert data["info"]["size"] <= 3000
    assert data["entries"][0]["oldest_record"] > 1
    await assert_error(await server.http.get(server.api("/b/b/e"), params={"ts": "1"}), 404,
                       "Record 1 not found in entry b/e")
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "6"})
    assert await resp.content() == b"x" * 700
    before = json.loads(await (await server.http.get(server.api("/b/b"))).content())
    resp, _ = await write(server, 100, b"y" * 5000)
    assert resp.code == 500
    assert resp.headers.getRawHeaders("x-reduct-error") == ["Failed to keep quota of 'b'"]
    after = json.loads(await (await server.http.get(server.api("/b/b"))).content())
    assert after == before, "a record that can never fit must not evict anything"


# -- legacy v0 paths ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_legacy_unprefixed_paths(server):
    """The pre-1.0 paths serve the same API; /list of records uses string integers."""
    resp = await server.http.post(server.url + "/b/old")
    assert resp.code == 200
    await resp.content()
    for ts, data in ((1000, b"123456789"), (2000, b"ab")):
        resp = await server.http.post(server.url + "/b/old/e", params={"ts": str(ts)}, data=data)
        assert resp.code == 200
        await resp.content()
    resp = await server.http.get(server.url + "/b/old/e", params={"ts": "1000"})
    assert await resp.content() == b"123456789"
    info = json.loads(await (await server.http.get(server.url + "/info")).content())
    assert info["bucket_count"] == 1
    listing = json.loads(await (await server.http.get(server.url + "/b/old/e/list", params={"start": "0", "stop": "3000"})).content())
    assert listing == {"records": [{"ts": "1000", "size": "9"}, {"ts": "2000", "size": "2"}]}
    resp = await server.http.get(server.url + "/b/old/e/list", params={"start": "5000", "stop": "6000"})
    assert resp.code == 404
    await resp.content()
    await assert_error(await server.http.get(server.url + "/b/old/e/list", params={"start": "x", "stop": "1"}), 422,
                       "'start' must be an unix timestamp in microseconds")
    resp = await server.http.head(server.url + "/alive")
    assert resp.code == 200


@pytest_twisted.ensureDeferred
async def test_malformed_content_length(server):
    """A non-numeric Content-Length on a write is upstream's 422; elsewhere a 400; the connection closes."""
    await create_bucket(server)
    raw = await raw_request(port_of(server), b"POST /api/v1/b/b/e?ts=1 HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: abc\r\n\r\nxyz", read_until_close=True)
    assert raw.startswith(b"HTTP/1.1 422"), raw[:80]
    assert b"x-reduct-error: content-length header must be a number" in raw
    assert raw.count(b"HTTP/1.1 ") == 1
    raw = await raw_request(port_of(server), b"POST /api/v1/b/c HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 1x\r\n\r\n{}", read_until_close=True)
    assert raw.startswith(b"HTTP/1.1 400")
    assert b"x-reduct-error: Invalid content-length header" in raw
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "1"})
    assert resp.code == 404
    await resp.content()


@pytest_twisted.ensureDeferred
async def test_odd_paths_are_404_not_500(server):
    """Trailing or doubled slashes match no route: 404 'Not found', never a redirect or a 500."""
    for path in ("/api/v1/info/", "/api/v1//info", "/api/v1/b/x/"):
        await assert_error(await server.http.get(server.url + path), 404, "Not found")
    resp = await server.http.post(server.url + "/api/v1//b/x/e", params={"ts": "1"}, data=b"abc")
    await assert_error(resp, 404, "Not found")


@pytest_twisted.ensureDeferred
async def test_chunked_json_body(server):
    """A chunked JSON body is accepted on a JSON endpoint; a chunked one over 1 MiB is a 413."""
    from io import BytesIO

    from twisted.web.client import FileBodyProducer
    from twisted.web.iweb import UNKNOWN_LENGTH

    def chunked(data):
        producer = FileBodyProducer(BytesIO(data))
        producer.length = UNKNOWN_LENGTH
        return producer

    resp = await server.http.post(server.api("/b/cj"), data=chunked(b'{"quota_type": "FIFO"}'))
    assert resp.code == 200, await resp.content()
    settings = json.loads(await (await server.http.get(server.api("/b/cj"))).content())["settings"]
    assert settings["quota_type"] == "FIFO"
    resp = await server.http.post(server.api("/b/big"), data=chunked(b" " * (2 << 20)))
    await assert_error(resp, 413, "Request body is too large")
