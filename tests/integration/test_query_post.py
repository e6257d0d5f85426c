"""
``POST /api/v1/b/:bucket/:entry/q`` against the real daemon over real
sockets (spec §3.10, §3.11, §3.7): JSON queries filtered by ``when`` and
read through ``GET …?q=`` and ``GET|HEAD …/batch?q=``, strict and
non-strict evaluation, directives, 422s before and after authentication,
and REMOVE queries whose removals survive a restart.
"""

import json

import pytest_twisted

from tests.integration.conftest import start_server
from tests.integration.helpers import assert_error, body_of

BUCKET = "bkt"
T0 = 1000
INIT = "init-secret-query-post"


async def call(server, method, path, body=None, token=None, raw=None):
    headers = {"Authorization": [f"Bearer {token}"]} if token else {}
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    if data:
        headers["Content-Type"] = ["application/json"]
    return await server.http.request(method, server.api(path), data=data, headers=headers)


async def ok_json(resp):
    content = await body_of(resp)
    assert resp.code == 200, (resp.code, content, resp.headers)
    return json.loads(content)


async def create_bucket(server, name=BUCKET, token=None):
    resp = await call(server, "POST", f"/b/{name}", token=token)
    assert resp.code == 200, await body_of(resp)
    await body_of(resp)


async def write(server, entry, ts, data=None, labels=None, token=None):
    headers = {f"x-reduct-label-{k}": [v] for k, v in (labels or {}).items()}
    if token:
        headers["Authorization"] = [f"Bearer {token}"]
    resp = await server.http.post(
        server.api(f"/b/{BUCKET}/{entry}?ts={ts}"), data=data or b"r%d" % ts, headers=headers
    )
    content = await body_of(resp)
    assert resp.code == 200, content


async def seed(server, entry="e", count=10, token=None):
    """Records T0..T0+count-1; label i, odd, and ``score`` on even ones only."""
    for i in range(count):
        labels = {"i": str(i), "odd": "true" if i % 2 else "false"}
        if i % 2 == 0:
            labels["score"] = f"0.{i}"
        await write(server, entry, T0 + i, labels=labels, token=token)


async def post_query(server, body, entry="e", token=None):
    resp = await call(server, "POST", f"/b/{BUCKET}/{entry}/q", body, token)
    return (await ok_json(resp))["id"]


def labels_of(resp) -> dict:
    return {
        name.decode().lower()[len("x-reduct-label-"):]: values[-1].decode()
        for name, values in resp.headers.getAllRawHeaders()
        if name.lower().startswith(b"x-reduct-label-")
    }


def batch_records(resp) -> list:
    """``(ts, header value)`` of a batch, in wire order."""
    found = []
    for name, values in resp.headers.getAllRawHeaders():
        lower = name.decode().lower()
        if lower.startswith("x-reduct-time-"):
            found.append((int(lower[len("x-reduct-time-"):]), values[-1].decode()))
    return found


async def read_batch(server, qid, entry="e", method="GET", token=None):
    headers = {"Authorization": [f"Bearer {token}"]} if token else {}
    resp = await server.http.request(
        method, server.api(f"/b/{BUCKET}/{entry}/batch?q={qid}"), headers=headers
    )
    return resp, await body_of(resp)


async def drain_batches(server, qid, entry="e"):
    """Every timestamp a query returns through batched reads."""
    stamps = []
    while True:
        resp, body = await read_batch(server, qid, entry)
        if resp.code == 204:
            return stamps
        assert resp.code == 200, (resp.code, body)
        stamps += [ts for ts, _ in batch_records(resp)]
        if resp.headers.getRawHeaders("x-reduct-last") == ["true"]:
            return stamps


async def drain_single(server, qid, entry="e"):
    """Every ``(ts, labels, body)`` a query returns through single reads."""
    found = []
    while True:
        resp = await server.http.get(server.api(f"/b/{BUCKET}/{entry}?q={qid}"))
        body = await body_of(resp)
        if resp.code == 204:
            return found
        assert resp.code == 200, (resp.code, body)
        ts = int(resp.headers.getRawHeaders("x-reduct-time")[0])
        found.append((ts, labels_of(resp), body))


async def query_stamps(server, body, entry="e"):
    return await drain_batches(server, await post_query(server, body, entry), entry)


def offsets(stamps):
    return [ts - T0 for ts in stamps]


# -- QUERY ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_query_plain_fields_like_get_q(server):
    """start/stop/limit/each_n/each_s/include/exclude behave as the GET /q
    parameters; the id comes from the same counter; single reads work too."""
    await create_bucket(server)
    await seed(server)
    resp = await server.http.get(server.api(f"/b/{BUCKET}/e/q?start={T0}"))
    first = (await ok_json(resp))["id"]
    qid = await post_query(server, {"query_type": "QUERY", "start": T0 + 2, "stop": T0 + 5})
    assert qid == first + 1
    found = await drain_single(server, qid)
    assert [(ts - T0, body) for ts, _, body in found] == [
        (2, b"r1002"), (3, b"r1003"), (4, b"r1004"),
    ]
    assert found[0][1] == {"i": "2", "odd": "false", "score": "0.2"}
    # the query is gone after its 204
    resp = await server.http.get(server.api(f"/b/{BUCKET}/e?q={qid}"))
    await assert_error(
        resp, 404,
        f"Query {qid} not found and it might have expired. Check TTL in your query request.",
    )
    cases = [
        ({"limit": 3}, [0, 1, 2]),
        ({"each_n": 4}, [0, 4, 8]),
        ({"each_s": 0.0000025}, [0, 3, 6, 9]),
        ({"include": {"odd": "true"}}, [1, 3, 5, 7, 9]),
        ({"exclude": {"odd": "true", "i": "3"}}, [0, 1, 2, 4, 5, 6, 7, 8, 9]),
        ({"start": None, "stop": None, "entries": ["ignored"], "future": 1}, list(range(10))),
    ]
    for fields, expected in cases:
        got = await query_stamps(server, {"query_type": "QUERY", **fields})
        assert offsets(got) == expected, fields


@pytest_twisted.ensureDeferred
async def test_when_operators(server):
    """Comparison, logical, $in, $exists, arithmetic, $timestamp, string
    operators and the stateful $each_n (not the first record), $each_t and
    $limit (end of data, no error), all read through batches."""
    await create_bucket(server)
    await seed(server)
    cases = [
        ({"&odd": {"$eq": True}}, [1, 3, 5, 7, 9]),
        ({"&i": {"$gte": 7}}, [7, 8, 9]),
        ({"$or": [{"&i": {"$lt": 2}}, {"&i": {"$gt": 8}}]}, [0, 1, 9]),
        ({"$in": ["&i", 2, 4, 6]}, [2, 4, 6]),
        ({"$not": [{"$exists": ["score"]}]}, [1, 3, 5, 7, 9]),
        ({"$gt": [{"$mult": ["&i", 10]}, 75]}, [8, 9]),
        ({"$gte": ["$timestamp", T0 + 8]}, [8, 9]),
        ({"&score": {"$starts_with": "0.4"}}, [4]),
        ({"$each_n": 3}, [2, 5, 8]),
        ({"&odd": {"$eq": False}, "$each_n": 2}, [2, 6]),
        ({"$each_t": "2us"}, [2, 4, 6, 8]),
        ({"$limit": 4}, [0, 1, 2, 3]),
        ({"&odd": {"$eq": True}, "$limit": 2}, [1, 3]),
        ({"&i": {"$gt": 100}}, []),
        ({}, list(range(10))),
    ]
    for when, expected in cases:
        got = await query_stamps(server, {"query_type": "QUERY", "when": when})
        assert offsets(got) == expected, when
    # when comes after the each_n parameter and before limit (spec §3.5)
    got = await query_stamps(
        server, {"query_type": "QUERY", "each_n": 2, "when": {"&i": {"$gt": 2}}, "limit": 2}
    )
    assert offsets(got) == [4, 6]
    # $limit ends a single-read query as plain end of data: 204, then 404
    qid = await post_query(server, {"query_type": "QUERY", "when": {"$limit": 1}})
    assert [ts - T0 for ts, _, _ in await drain_single(server, qid)] == [0]
    resp = await server.http.get(server.api(f"/b/{BUCKET}/e?q={qid}"))
    await body_of(resp)
    assert resp.code == 404


@pytest_twisted.ensureDeferred
async def test_strict_and_non_strict_errors(server):
    """Non-strict, a record whose evaluation fails does not match; strict, the
    read that meets it answers the error (404 for a missing label, 422 for a
    type error); records taken before it in a batch are delivered first."""
    await create_bucket(server)
    await seed(server)
    missing = {"&score": {"$lt": 0.5}}  # odd records have no score
    got = await query_stamps(server, {"query_type": "QUERY", "when": missing})
    assert offsets(got) == [0, 2, 4]
    got = await query_stamps(server, {"query_type": "QUERY", "when": missing, "strict": False})
    assert offsets(got) == [0, 2, 4]

    # strict, batched: record 0 comes, the error of record 1 follows (sticky)
    qid = await post_query(server, {"query_type": "QUERY", "when": missing, "strict": True})
    resp, _ = await read_batch(server, qid)
    assert resp.code == 200
    assert [ts - T0 for ts, _ in batch_records(resp)] == [0]
    for _ in range(2):
        resp, _ = await read_batch(server, qid)
        await assert_error(resp, 404, "Reference 'score' not found")

    # strict, single reads: the same error on the read that meets it
    qid = await post_query(server, {"query_type": "QUERY", "when": missing, "strict": True,
                                    "start": T0 + 1})
    resp = await server.http.get(server.api(f"/b/{BUCKET}/e?q={qid}"))
    await assert_error(resp, 404, "Reference 'score' not found")

    # a type error is a 422
    bad_div = {"$gt": [{"$div": [10, {"$sub": ["&i", 3]}]}, 0]}
    got = await query_stamps(server, {"query_type": "QUERY", "when": bad_div})
    assert offsets(got) == [4, 5, 6, 7, 8, 9]
    qid = await post_query(server, {"query_type": "QUERY", "when": bad_div, "strict": True})
    resp, _ = await read_batch(server, qid)
    assert [ts - T0 for ts, _ in batch_records(resp)] == []
    assert resp.code == 422
    assert resp.headers.getRawHeaders("x-reduct-error") == ["Cannot divide by zero"]


@pytest_twisted.ensureDeferred
async def test_directives(server):
    """#select_labels keeps only the named labels (batch and single reads);
    #ctx_before/#ctx_after add records around each match; #batch_records
    caps a batch."""
    await create_bucket(server)
    await seed(server)
    body = {"query_type": "QUERY",
            "when": {"#select_labels": ["i", "score"], "$in": ["&i", 4, 5]}}
    qid = await post_query(server, body)
    resp, _ = await read_batch(server, qid)
    assert batch_records(resp) == [
        (T0 + 4, "5,application/octet-stream,i=4,score=0.4"),
        (T0 + 5, "5,application/octet-stream,i=5"),
    ]
    found = await drain_single(server, await post_query(server, body))
    assert [labels for _, labels, _ in found] == [{"i": "4", "score": "0.4"}, {"i": "5"}]

    cases = [
        ({"#ctx_before": 2, "&i": {"$eq": 5}}, [3, 4, 5]),
        ({"#ctx_after": 2, "&i": {"$eq": 5}}, [5, 6, 7]),
        ({"#ctx_before": 1, "#ctx_after": 1, "$in": ["&i", 2, 7]}, [1, 2, 3, 6, 7, 8]),
        ({"#ctx_before": "2us", "&i": {"$eq": 5}}, [3, 4, 5]),
        ({"#ctx_after": "1us", "&i": {"$eq": 8}}, [8, 9]),
    ]
    for when, expected in cases:
        got = await query_stamps(server, {"query_type": "QUERY", "when": when})
        assert offsets(got) == expected, when

    qid = await post_query(server, {"query_type": "QUERY", "when": {"#batch_records": 3}})
    sizes = []
    while True:
        resp, _ = await read_batch(server, qid)
        if resp.code == 204:
            break
        sizes.append(len(batch_records(resp)))
        if resp.headers.getRawHeaders("x-reduct-last") == ["true"]:
            break
    assert sizes == [3, 3, 3, 1]


@pytest_twisted.ensureDeferred
async def test_only_metadata_continuous_and_ttl(server):
    """only_metadata: a GET batch carries the record headers and no body;
    continuous: records written later arrive; ttl 0: the first read is 404."""
    await create_bucket(server)
    await seed(server, count=3)
    qid = await post_query(server, {"query_type": "QUERY", "only_metadata": True})
    resp, body = await read_batch(server, qid)
    assert resp.code == 200 and body == b""
    assert resp.length == 0  # twisted.web.client keeps content-length for framing
    assert [ts for ts, _ in batch_records(resp)] == [T0, T0 + 1, T0 + 2]
    assert batch_records(resp)[0][1].startswith("5,application/octet-stream,")

    qid = await post_query(server, {"query_type": "QUERY", "start": T0 + 1, "continuous": True,
                                    "when": {"&odd": {"$eq": True}}})
    resp, _ = await read_batch(server, qid)
    assert [ts for ts, _ in batch_records(resp)] == [T0 + 1]
    resp, _ = await read_batch(server, qid)
    assert resp.code == 204
    await write(server, "e", T0 + 3, labels={"odd": "true"})
    await write(server, "e", T0 + 4, labels={"odd": "false"})
    resp, _ = await read_batch(server, qid)
    assert [ts for ts, _ in batch_records(resp)] == [T0 + 3]

    qid = await post_query(server, {"query_type": "QUERY", "start": T0, "stop": T0 + 2,
                                    "ttl": 0})
    resp, _ = await read_batch(server, qid)
    assert resp.code == 404


@pytest_twisted.ensureDeferred
async def test_query_422s_and_404s(server):
    """Malformed bodies, bad fields, bad conditions and extensions are 422
    with upstream texts; a missing entry or bucket is 404."""
    await create_bucket(server)
    await seed(server, count=2)
    path = f"/b/{BUCKET}/e/q"
    for raw in (b"", b"{", b"[]", b"{}", b'{"query_type": "SELECT"}', b'{"query_type": null}',
                b'{"query_type": "QUERY", "start": "1"}',
                b'{"query_type": "QUERY", "start": -1}',
                b'{"query_type": "QUERY", "limit": 1.5}',
                b'{"query_type": "QUERY", "continuous": "true"}',
                b'{"query_type": "QUERY", "include": {"a": 1}}',
                b'{"query_type": "QUERY", "each_s": "1"}'):
        resp = await call(server, "POST", path, raw=raw)
        content = await body_of(resp)
        assert resp.code == 422, (raw, content)
        assert resp.headers.getRawHeaders("x-reduct-error")[0].startswith("Invalid JSON"), raw

    async def error(body, status, text, where=path):
        resp = await call(server, "POST", where, body)
        await assert_error(resp, status, text)

    await error({"query_type": "QUERY", "each_n": 0}, 422, "'each_n' must be greater than 0")
    await error({"query_type": "QUERY", "each_s": 0}, 422, "Time must be greater than 0 seconds")
    await error({"query_type": "QUERY", "start": T0 + 5, "stop": T0}, 422,
                "Start time must be before stop time")
    await error({"query_type": "QUERY", "when": {"&x": {"$foo": 1}}}, 422,
                "Operator '$foo' not supported")
    await error({"query_type": "QUERY", "when": {"#nope": 1}}, 422,
                "Directive '#nope' is not supported")
    resp = await call(server, "POST", path, {"query_type": "QUERY", "ext": {"select": {}}})
    content = await body_of(resp)
    assert resp.code == 422
    message = resp.headers.getRawHeaders("x-reduct-error")[0]
    assert message.startswith("Unknown extension 'select' in query id="), message
    qid = int(message.rsplit("=", 1)[1])
    assert await post_query(server, {"query_type": "QUERY"}) == qid + 1  # the id was used
    await error({"query_type": "QUERY", "when": {"#ext": {"ros": {}}}}, 422,
                f"Unknown extension 'ros' in query id={qid + 2}")
    await error({"query_type": "QUERY"}, 404, f"Entry 'nope' not found in bucket '{BUCKET}'",
                f"/b/{BUCKET}/nope/q")
    await error({"query_type": "QUERY"}, 404, "Bucket 'nope' is not found", "/b/nope/e/q")
    assert json.loads(content)["detail"] == message


@pytest_twisted.ensureDeferred
async def test_auth_query_and_remove(tmp_path):
    """Body errors come before authentication; QUERY needs read and REMOVE
    write access to the bucket, with the upstream 401/403 texts."""
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        await create_bucket(server, token=INIT)
        await seed(server, count=4, token=INIT)
        tokens = {}
        for name, perms in (("reader", {"read": [BUCKET]}), ("writer", {"write": [BUCKET]})):
            resp = await call(server, "POST", f"/tokens/{name}", perms, token=INIT)
            tokens[name] = (await ok_json(resp))["value"]
        path = f"/b/{BUCKET}/e/q"
        resp = await call(server, "POST", path, raw=b"{nope")
        await body_of(resp)
        assert resp.code == 422
        resp = await call(server, "POST", path, {"start": 1}, token="wrong")
        await body_of(resp)
        assert resp.code == 422  # no query_type: before the (invalid) token
        resp = await call(server, "POST", path, {"query_type": "QUERY"})
        await assert_error(resp, 401, "No bearer token in request header")
        resp = await call(server, "POST", path, {"query_type": "QUERY"}, token="wrong")
        await assert_error(resp, 401, "Invalid token")

        qid = await post_query(server, {"query_type": "QUERY", "when": {"&odd": {"$eq": True}}},
                               token=tokens["reader"])
        resp, _ = await read_batch(server, qid, token=tokens["reader"])
        assert [ts - T0 for ts, _ in batch_records(resp)] == [1, 3]
        resp = await call(server, "POST", path, {"query_type": "QUERY"}, token=tokens["writer"])
        await assert_error(
            resp, 403, f"Token 'writer' doesn't have read access to bucket '{BUCKET}'"
        )

        remove = {"query_type": "REMOVE", "when": {"&odd": {"$eq": True}}}
        resp = await call(server, "POST", path, remove, token=tokens["reader"])
        await assert_error(
            resp, 403, f"Token 'reader' doesn't have write access to bucket '{BUCKET}'"
        )
        resp = await call(server, "POST", path, {"query_type": "REMOVE"}, token=tokens["writer"])
        await assert_error(resp, 422, "Define at least one query parameter to delete records")
        resp = await call(server, "POST", path, remove, token=tokens["writer"])
        assert await ok_json(resp) == {"removed_records": 2}
    finally:
        await stop()


# -- REMOVE --------------------------------------------------------------------------


async def entry_info(server, entry="e"):
    resp = await call(server, "GET", f"/b/{BUCKET}")
    info = await ok_json(resp)
    found = [e for e in info["entries"] if e["name"] == entry]
    return found[0] if found else None


@pytest_twisted.ensureDeferred
async def test_remove_queries_survive_a_restart(tmp_path):
    """REMOVE by range (the upstream test), by when, with limit and
    each_n; statistics shrink; removed records read as 404 and stay removed
    after a restart; a remove on a missing entry creates it and removes 0."""
    data = tmp_path / "data"
    server, stop = await start_server(data)
    try:
        await create_bucket(server)
        resp = await call(server, "PUT", f"/b/{BUCKET}", {"max_block_records": 4})
        await body_of(resp)
        await seed(server, count=12)
        await write(server, "e", T0 + 100, data=b"L" * (2 << 20), labels={"big": "1"})
        before = await entry_info(server)
        assert before["record_count"] == 13 and before["block_count"] == 4

        async def remove(body, expected):
            resp = await call(server, "POST", f"/b/{BUCKET}/e/q", {"query_type": "REMOVE", **body})
            assert await ok_json(resp) == {"removed_records": expected}, body

        await remove({"start": T0, "stop": T0 + 2}, 2)
        await remove({"start": T0, "stop": T0 + 2}, 0)
        await remove({"when": {"&big": {"$eq": 1}}}, 1)
        await remove({"when": {"&odd": {"$eq": True}}, "limit": 2}, 2)  # 3 and 5
        await remove({"start": T0 + 8, "each_n": 2, "continuous": True}, 2)  # 8 and 10
        await remove({"when": {"&score": {"$gt": 0.5}}}, 1)  # 6 (odd ones lack it)
        resp = await call(server, "POST", f"/b/{BUCKET}/e/q",
                          {"query_type": "REMOVE", "when": {"&score": {"$gt": 0.5}},
                           "strict": True})
        await assert_error(resp, 404, "Reference 'score' not found")
        left = [2, 4, 7, 9, 11]
        assert offsets(await query_stamps(server, {"query_type": "QUERY"})) == left
        after = await entry_info(server)
        assert after["record_count"] == 5
        assert after["block_count"] == 3  # the big record's block went with it
        assert after["oldest_record"] == before["oldest_record"] == T0
        assert after["latest_record"] == T0 + 11
        assert after["size"] < before["size"] - (2 << 20)
        resp = await server.http.get(server.api(f"/b/{BUCKET}/e?ts={T0 + 3}"))
        block = max(b["id"] for b in server.engine.block_stats(BUCKET, "e") if b["id"] <= T0 + 3)
        await assert_error(resp, 404, f"Record {T0 + 3} not found in block {BUCKET}/e/{block}")

        # on a missing entry: created, empty
        resp = await call(server, "POST", f"/b/{BUCKET}/ghost/q", {"query_type": "REMOVE",
                                                                  "start": 0})
        assert await ok_json(resp) == {"removed_records": 0}
        assert (await entry_info(server, "ghost"))["record_count"] == 0
        resp = await call(server, "POST", f"/b/{BUCKET}/bad.name/q",
                          {"query_type": "REMOVE", "start": 0})
        await body_of(resp)
        assert resp.code == 422
        # a removed timestamp can be written again
        await write(server, "e", T0 + 3, data=b"again")
        stats = await entry_info(server)
    finally:
        await stop()

    server, stop = await start_server(data)
    try:
        assert await entry_info(server) == stats
        assert offsets(await query_stamps(server, {"query_type": "QUERY"})) == [2, 3, 4, 7, 9, 11]
        resp = await server.http.get(server.api(f"/b/{BUCKET}/e?ts={T0 + 3}"))
        assert await body_of(resp) == b"again"
        # Empty entries are kept (spec 1.20 §5.9; they used not to be).
        assert (await entry_info(server, "ghost"))["record_count"] == 0
    finally:
        await stop()
