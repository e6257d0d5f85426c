"""
``POST /api/v1/io/:bucket/q`` and ``GET|HEAD /api/v1/io/:bucket/read``
(spec 1.20 §1.4, §1.5, §1.9) against the real daemon: the upstream
examples with their exact header values, the merge order, batches that
never interleave entries, the batch limits, query ids, HEAD, continuous
queries, REMOVE across entries, and the token policies.
"""

import json

import pytest
import pytest_twisted

from tests.integration.conftest import start_server
from tests.integration.helpers import assert_error, body_of, port_of, raw_request
from tests.integration.io_helpers import (
    BUCKET,
    create_bucket,
    errors_of,
    header,
    post_write,
    query,
    read,
    read_all,
    records_of,
)

INIT = "init-token-for-io-tests"


async def qid_of(server, body, bucket=BUCKET):
    resp, content = await query(server, body, bucket)
    assert resp.code == 200, content
    return json.loads(content)["id"]


@pytest.mark.parametrize("prefix", ["x", "x-y-z"])
@pytest_twisted.ensureDeferred
async def test_upstream_entry_ordering(server, prefix):
    """Upstream io/read_test: x-1 (BBB at 1000) comes before x-0 (AA at 1010)."""
    await create_bucket(server)
    resp = await post_write(server, [(f"{prefix}-0", 1010, b"AA", "text/plain", {}),
                                     (f"{prefix}-1", 1000, b"BBB", "text/plain", {})])
    assert errors_of(resp) == {}
    qid = await qid_of(server, {"query_type": "QUERY",
                                "entries": [f"{prefix}-0", f"{prefix}-1"]})
    resp, body = await read(server, qid)
    assert resp.code == 200
    assert header(resp, "x-reduct-entries") == f"{prefix}-1,{prefix}-0".encode()
    assert header(resp, "x-reduct-start-ts") == b"1000"
    assert header(resp, "x-reduct-0-0").startswith(b"3,text/plain")
    assert header(resp, "x-reduct-1-10").startswith(b"2,text/plain")
    assert resp.length == 5
    assert header(resp, "content-type") == b"application/octet-stream"
    assert header(resp, "x-reduct-last") == b"true"
    assert header(resp, "x-reduct-labels") is None
    assert body == b"BBBAA"
    resp, body = await read(server, qid)  # the end was delivered: the query is gone
    await assert_error(resp, 404, f"Query {qid} not found and it might have expired. "
                                  "Check TTL in your query request.")


@pytest_twisted.ensureDeferred
async def test_equal_timestamps_by_entry_name(server):
    await create_bucket(server)
    await post_write(server, [("z-entry", 1000, b"ZZ", "text/plain", {}),
                              ("a-entry", 1000, b"AA", "text/plain", {})])
    qid = await qid_of(server, {"query_type": "QUERY", "entries": ["z-entry", "a-entry"]})
    resp, body = await read(server, qid)
    assert header(resp, "x-reduct-entries") == b"a-entry,z-entry"
    assert body == b"AAZZ"


@pytest_twisted.ensureDeferred
async def test_labels_travel_with_a_label_table(server):
    await create_bucket(server)
    records = [("a", 1, b"1", "text/plain", {"k": "v", "q": "x,y"}),
               ("a", 2, b"22", "text/plain", {"k": "v", "q": "x,y"}),
               ("a", 3, b"333", "image/png", {"k": "w"}),
               ("b", 4, b"4444", "text/plain", {})]
    await post_write(server, records)
    qid = await qid_of(server, {"query_type": "QUERY"})
    resp, body = await read(server, qid)
    assert header(resp, "x-reduct-labels") is not None
    assert header(resp, "x-reduct-0-1") == b"2"  # nothing changed: the bare length
    assert records_of(resp, body) == [
        (e, ts, data, ctype, labels) for e, ts, data, ctype, labels in records]


@pytest_twisted.ensureDeferred
async def test_interleaved_entries_never_share_a_batch_interleaved(server):
    """§1.9 rule 2: every batch's body is in timestamp order and (entry, ts) order at once."""
    await create_bucket(server)
    records = [(f"e{ts % 3}", ts, b"%d" % ts, "text/plain", {"n": str(ts % 5)})
               for ts in range(1, 241)]
    for start in range(0, 240, 80):
        resp = await post_write(server, records[start:start + 80])
        assert errors_of(resp) == {}
    qid = await qid_of(server, {"query_type": "QUERY", "entries": ["e*"]})
    found, batches = await read_all(server, qid)
    assert [(e, ts, data) for e, ts, data, _, _ in found] == [
        (e, ts, data) for e, ts, data, _, _ in records]
    assert [labels for *_, labels in found] == [r[4] for r in records]
    for batch in batches:
        stamps = [ts for _, ts, *_ in batch]
        assert stamps == sorted(stamps)
        entries = [e for e, *_ in batch]
        assert entries == sorted(entries, key=entries.index)  # grouped
        # no entry comes back after another one
        seen = []
        for e in entries:
            if not seen or seen[-1] != e:
                assert e not in seen
                seen.append(e)


@pytest_twisted.ensureDeferred
async def test_changes_between_reads_show_in_the_next_batch(server):
    """
    After each GET the daemon reads the next batch ahead (``readahead.py``);
    a change the client makes before asking for it is still in the answer.
    """
    await create_bucket(server)
    records = [(f"e{(ts // 10) % 2}", ts, b"%d" % ts, "text/plain", {"n": "0"})
               for ts in range(1, 61)]  # runs of 10: batches 1-19, 20-39, 40-59, 60
    assert errors_of(await post_write(server, records)) == {}
    qid = await qid_of(server, {"query_type": "QUERY"})
    resp, body = await read(server, qid)
    assert [ts for _, ts, *_ in records_of(resp, body)] == list(range(1, 20))
    patch = await server.http.request(
        "PATCH", server.api(f"/b/{BUCKET}/e0?ts=20"), headers={"x-reduct-label-n": ["new"]})
    await body_of(patch)
    assert patch.code == 200
    resp, body = await read(server, qid)  # read ahead before the PATCH came
    batch = records_of(resp, body)
    assert batch[0] == ("e0", 20, b"20", "text/plain", {"n": "new"})
    assert [ts for _, ts, *_ in batch] == list(range(20, 40))
    gone = await server.http.delete(server.api(f"/b/{BUCKET}/e0?ts=40"))
    await body_of(gone)
    assert gone.code == 200
    resp, body = await read(server, qid)
    assert [ts for _, ts, *_ in records_of(resp, body)] == list(range(41, 60))
    resp, body = await read(server, qid, method="HEAD")  # a HEAD cannot use a read-ahead
    assert [n for n, _ in resp.headers.getAllRawHeaders()
            if n.lower().startswith(b"x-reduct-0-")] == [b"X-Reduct-0-0"]
    assert header(resp, "x-reduct-start-ts") == b"60" and header(resp, "x-reduct-last") == b"true"


@pytest_twisted.ensureDeferred
async def test_85_records_a_batch_and_head(server):
    await create_bucket(server)
    records = [("e", ts, b"", "text/plain", {}) for ts in range(100)]
    await post_write(server, records[:50])
    await post_write(server, records[50:])
    qid = await qid_of(server, {"query_type": "QUERY"})
    resp, body = await read(server, qid, method="HEAD")
    assert body == b""
    count = sum(1 for n, _ in resp.headers.getAllRawHeaders()
                if n.lower().startswith(b"x-reduct-0-"))
    assert (count, header(resp, "x-reduct-last")) == (85, b"false")
    resp, body = await read(server, qid, method="HEAD")
    count = sum(1 for n, _ in resp.headers.getAllRawHeaders()
                if n.lower().startswith(b"x-reduct-0-"))
    assert (count, header(resp, "x-reduct-last")) == (15, b"true")


@pytest_twisted.ensureDeferred
async def test_head_announces_the_size(server):
    await create_bucket(server)
    await post_write(server, [("a", 1, b"abc", "t", {}), ("b", 2, b"defg", "t", {})])
    for method, body in (("HEAD", b""), ("GET", b"abcdefg")):
        qid = await qid_of(server, {"query_type": "QUERY"})
        raw = await raw_request(
            port_of(server),
            f"{method} /api/v1/io/{BUCKET}/read HTTP/1.1\r\nHost: x\r\n"
            f"x-reduct-query-id: {qid}\r\nConnection: close\r\n\r\n".encode(),
            read_until_close=True)
        head, _, got = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK"
        assert "content-length: 7" in lines and got == body
        assert "x-reduct-entries: a,b" in lines and "x-reduct-start-ts: 1" in lines
        assert "x-reduct-0-0: 3,t" in lines and "x-reduct-1-1: 4,t" in lines
        assert all(line.split(":")[0] == line.split(":")[0].lower() for line in lines[1:])


@pytest_twisted.ensureDeferred
async def test_selection_and_per_entry_limit(server):
    await create_bucket(server)
    await post_write(server, [(name, ts, b"x", "t", {}) for name in ("cam-1", "cam-2", "log")
                              for ts in (1, 2, 3)])
    qid = await qid_of(server, {"query_type": "QUERY", "entries": ["cam*"], "limit": 2})
    found, _ = await read_all(server, qid)
    assert [(e, ts) for e, ts, *_ in found] == [
        ("cam-1", 1), ("cam-2", 1), ("cam-1", 2), ("cam-2", 2)]
    qid = await qid_of(server, {"query_type": "QUERY", "entries": ["log", "nope"],
                                "start": 1, "each_n": 2})
    found, _ = await read_all(server, qid)
    assert [(e, ts) for e, ts, *_ in found] == [("log", 1), ("log", 3)]


@pytest_twisted.ensureDeferred
async def test_nothing_selected_reads_204(server):
    await create_bucket(server)
    qid = await qid_of(server, {"query_type": "QUERY", "entries": ["unknown"]})
    resp, body = await read(server, qid)
    assert resp.code == 204 and body == b""


@pytest_twisted.ensureDeferred
async def test_query_errors(server):
    resp, body = await query(server, {"query_type": "QUERY"}, bucket="nope")
    assert resp.code == 404 and json.loads(body) == {"detail": "Bucket 'nope' is not found"}
    await create_bucket(server)
    resp, body = await query(server, {"query_type": "QUERY", "entries": "a"})
    assert resp.code == 422 and json.loads(body)["detail"].startswith("Invalid JSON")
    resp = await server.http.post(server.api(f"/io/{BUCKET}/q"), data=b"{")
    assert resp.code == 422
    assert json.loads(await body_of(resp))["detail"].startswith("Invalid JSON: ")
    await post_write(server, [("a", 1, b"x", "t", {})])
    resp, body = await query(server, {"query_type": "QUERY", "start": 5, "stop": 1})
    assert (resp.code, json.loads(body)) == (422, {"detail": "Start time must be before stop time"})


@pytest_twisted.ensureDeferred
async def test_query_id_checks(server):
    await create_bucket(server)
    await post_write(server, [("a", 1, b"x", "t", {})])
    resp = await server.http.get(server.api(f"/io/{BUCKET}/read"))
    await assert_error(resp, 422, "x-reduct-query-id header is required for batched reads")
    resp = await server.http.get(server.api(f"/io/{BUCKET}/read"),
                                 headers={"x-reduct-query-id": ["abc"]})
    await assert_error(resp, 422, "Invalid query id")
    answer = await raw_request(port_of(server), b"GET /api/v1/io/bkt/read HTTP/1.1\r\n"
                               b"Host: x\r\nx-reduct-query-id: \xff\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 422") and b"Query id header must be valid UTF-8" in answer
    resp, _ = await read(server, 12345)
    await assert_error(resp, 404, "Query 12345 not found and it might have expired. "
                                  "Check TTL in your query request.")
    # v1 and v2 ids live apart
    resp = await server.http.post(server.api(f"/b/{BUCKET}/a/q"),
                                  data=json.dumps({"query_type": "QUERY"}).encode())
    v1 = json.loads(await resp.content())["id"]
    resp, _ = await read(server, v1)
    assert resp.code == 404
    v2 = await qid_of(server, {"query_type": "QUERY"})
    resp = await server.http.get(server.api(f"/b/{BUCKET}/a/batch?q={v2}"))
    await body_of(resp)
    assert resp.code == 404
    resp, body = await read(server, v2, bucket="nope")
    assert resp.code == 404


@pytest_twisted.ensureDeferred
async def test_continuous_query(server):
    await create_bucket(server)
    await post_write(server, [("a", 1, b"x", "t", {})])
    qid = await qid_of(server, {"query_type": "QUERY", "continuous": True, "start": 1})
    resp, body = await read(server, qid)
    assert (resp.code, body, header(resp, "x-reduct-last")) == (200, b"x", b"false")
    resp, body = await read(server, qid)
    assert resp.code == 204  # nothing new (after the record wait)
    # entries are selected when the query is created: b is not among them
    await post_write(server, [("b", 2, b"zz", "t", {}), ("a", 3, b"yy", "t", {})])
    resp, body = await read(server, qid)
    assert (resp.code, body, header(resp, "x-reduct-entries")) == (200, b"yy", b"a")
    assert header(resp, "x-reduct-last") == b"false"


@pytest_twisted.ensureDeferred
async def test_remove_query_across_entries(server):
    """Upstream io/query_remove_test: two entries, one record each; empty REMOVE is a 422."""
    await create_bucket(server)
    await post_write(server, [("e1", 1000, b"a", "t", {}), ("e2", 1001, b"b", "t", {}),
                              ("e3", 3000, b"c", "t", {})])
    resp, body = await query(server, {"query_type": "REMOVE", "start": 0, "stop": 2000})
    assert (resp.code, json.loads(body)) == (200, {"removed_records": 2})
    resp, body = await query(server, {"query_type": "REMOVE"})
    assert (resp.code, json.loads(body)) == (
        422, {"detail": "Define at least one query parameter to delete records"})
    # entries alone is a parameter
    resp, body = await query(server, {"query_type": "REMOVE", "entries": ["e3"]})
    assert (resp.code, json.loads(body)) == (200, {"removed_records": 1})
    qid = await qid_of(server, {"query_type": "QUERY"})
    resp, _ = await read(server, qid)
    assert resp.code == 204


async def token_server(tmp_path):
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    auth = {"Authorization": [f"Bearer {INIT}"]}
    await create_bucket(server, headers=auth)
    tokens = {}
    for name, perms in (("reader", {"read": [BUCKET]}), ("writer", {"write": [BUCKET]})):
        resp = await server.http.post(server.api(f"/tokens/{name}"), headers=auth,
                                      data=json.dumps(perms).encode())
        tokens[name] = json.loads(await resp.content())["value"]
    return server, stop, tokens


@pytest_twisted.ensureDeferred
async def test_policies(tmp_path):
    """Read for read and QUERY, Write for REMOVE; the JSON body is checked before the token."""
    server, stop, tokens = await token_server(tmp_path)
    try:
        resp = await post_write(server, [("e", 1, b"x", "t", {})],
                                headers={"Authorization": [f"Bearer {tokens['writer']}"]})
        assert resp.code == 200 and errors_of(resp) == {}
        resp, body = await query(server, {"query_type": "QUERY"}, token=tokens["writer"])
        assert (resp.code, json.loads(body)) == (
            403, {"detail": f"Token 'writer' doesn't have read access to bucket '{BUCKET}'"})
        resp, body = await query(server, {"query_type": "QUERY"}, token=tokens["reader"])
        qid = json.loads(body)["id"]
        resp, body = await read(server, qid, token=tokens["writer"])
        assert resp.code == 403
        resp, body = await read(server, qid)
        assert (resp.code, json.loads(body)) == (401, {"detail": "No bearer token in request header"})
        resp, body = await read(server, qid, token=tokens["reader"])
        assert (resp.code, body) == (200, b"x")
        resp, body = await query(server, {"query_type": "REMOVE", "start": 0},
                                 token=tokens["reader"])
        assert (resp.code, json.loads(body)) == (
            403, {"detail": f"Token 'reader' doesn't have write access to bucket '{BUCKET}'"})
        resp, body = await query(server, {"query_type": "REMOVE", "start": 0},
                                 token=tokens["writer"])
        assert (resp.code, json.loads(body)) == (200, {"removed_records": 1})
        resp = await server.http.post(server.api(f"/io/{BUCKET}/q"), data=b"{oops")
        body = await body_of(resp)
        assert resp.code == 422 and json.loads(body)["detail"].startswith("Invalid JSON")
        resp = await post_write(server, [("e", 2, b"x", "t", {})],
                                headers={"Authorization": [f"Bearer {tokens['reader']}"]})
        assert resp.code == 403
    finally:
        await stop()
