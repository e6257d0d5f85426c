"""
``$meta`` attachment entries (spec 1.20 §3.1) over the v1 routes of the real
daemon: the ``key`` label, no ``remove=true`` writes, upsert by key,
tombstones by label update and their absence from queries, refused record
and entry removals, hidden from listings and statistics but counted in
``size``, never evicted by FIFO, 128 KiB blocks, removed and renamed with
the parent.  (The v2 client attachment API is another suite's.)
"""

import json

import pytest
import pytest_twisted

from tests.integration.helpers import assert_error, body_of, call, ok

B = "bkt"


def write_call(server, entry, ts, data, labels, bucket=B):
    headers = {f"x-reduct-label-{k}": v for k, v in labels.items()}
    return call(server, "POST", f"/b/{bucket}/{entry}?ts={ts}", headers=headers, raw=data)


async def write(server, entry, ts, data=b"{}", labels=None, bucket=B):
    await ok(await write_call(server, entry, ts, data, labels or {}, bucket))


async def bucket_json(server, bucket=B) -> dict:
    return json.loads(await ok(await call(server, "GET", f"/b/{bucket}")))


async def query_stamps(server, entry, body=None) -> list:
    """The timestamps a GET (``body`` None) or POST query returns, via batched reads."""
    if body is None:
        resp = await call(server, "GET", f"/b/{B}/{entry}/q")
    else:
        resp = await call(server, "POST", f"/b/{B}/{entry}/q", dict(body, query_type="QUERY"))
    qid = json.loads(await ok(resp))["id"]
    resp = await call(server, "GET", f"/b/{B}/{entry}/batch?q={qid}")
    await body_of(resp)
    if resp.code == 204:
        return []
    assert resp.code == 200
    return sorted(int(name.decode()[len("x-reduct-time-"):])
                  for name, _ in resp.headers.getAllRawHeaders()
                  if name.lower().startswith(b"x-reduct-time-"))


@pytest_twisted.async_yield_fixture()
async def srv(server):
    await ok(await call(server, "POST", f"/b/{B}"))
    yield server


@pytest.mark.parametrize("entry", ["a/$meta", "$meta", "a/b/$meta"])
@pytest_twisted.ensureDeferred
async def test_records_need_a_key_and_no_remove_label(srv, entry):
    await assert_error(await write_call(srv, entry, 1, b"{}", {}), 422,
                       f"System entry '{entry}' records must contain label 'key'")
    await assert_error(await write_call(srv, entry, 1, b"{}", {"key": "k", "remove": "true"}),
                       422, f"System entry '{entry}' does not support writing records with "
                       f"label 'remove=true'; use record update")
    resp = await call(srv, "POST", f"/b/{B}/{entry}/batch", raw=b"{}", headers={
        "x-reduct-time-5": "2,application/json,other=1"})
    await ok(resp)
    assert resp.headers.getRawHeaders("x-reduct-error-5") == [
        f"422,System entry '{entry}' records must contain label 'key'"]
    assert (await bucket_json(srv))["info"]["size"] == 0
    await write(srv, entry, 2, b"{}", {"key": "k", "remove": "false"})


@pytest_twisted.ensureDeferred
async def test_upsert_by_key(srv):
    """The upstream check: key=schema at 1000 then 1010 -> 1000 is 404."""
    await write(srv, "a/$meta", 1000, b'{"v": 1}', {"key": "schema"})
    await write(srv, "a/$meta", 1005, b'{"o": 1}', {"key": "other"})
    await write(srv, "a/$meta", 1010, b'{"v": 2}', {"key": "schema"})
    resp = await call(srv, "GET", f"/b/{B}/a/$meta?ts=1000")
    assert resp.code == 404
    await body_of(resp)
    assert await body_of(await call(srv, "GET", f"/b/{B}/a/$meta?ts=1010")) == b'{"v": 2}'
    assert await body_of(await call(srv, "GET", f"/b/{B}/a/$meta?ts=1005")) == b'{"o": 1}'
    assert await query_stamps(srv, "a/$meta") == [1005, 1010]
    # v1 batched writes upsert too
    resp = await call(srv, "POST", f"/b/{B}/a/$meta/batch", raw=b"{}", headers={
        "x-reduct-time-1020": "2,application/json,key=other"})
    await ok(resp)
    assert await query_stamps(srv, "a/$meta") == [1010, 1020]
    # a plain entry keeps every record with the same label
    await write(srv, "a", 1, b"x", {"key": "schema"})
    await write(srv, "a", 2, b"y", {"key": "schema"})
    assert await query_stamps(srv, "a") == [1, 2]


@pytest_twisted.ensureDeferred
async def test_tombstones_by_label_update_are_hidden_from_queries(srv):
    await write(srv, "a/$meta", 1000, b"{}", {"key": "$plugin"})
    await write(srv, "a/$meta", 2000, b"{}", {"key": "kept"})
    await ok(await call(srv, "PATCH", f"/b/{B}/a/$meta?ts=1000",
                        headers={"x-reduct-label-remove": "true"}))
    resp = await call(srv, "GET", f"/b/{B}/a/$meta?ts=1000")
    await body_of(resp)
    assert resp.code == 200
    assert resp.headers.getRawHeaders("x-reduct-label-key") == ["$plugin"]
    assert resp.headers.getRawHeaders("x-reduct-label-remove") == ["true"]
    assert await query_stamps(srv, "a/$meta") == [2000]
    assert await query_stamps(srv, "a/$meta", {}) == [2000]
    assert await query_stamps(srv, "a/$meta", {"include": {"remove": "true"}}) == [1000]
    # a v1 batched label update tombstones too
    await ok(await call(srv, "PATCH", f"/b/{B}/a/$meta/batch",
                        headers={"x-reduct-time-2000": "0,,remove=true"}))
    assert await query_stamps(srv, "a/$meta") == []
    # a tombstoned key is not replaced: a new write adds a live record
    await write(srv, "a/$meta", 3000, b"{}", {"key": "kept"})
    assert await query_stamps(srv, "a/$meta", {"include": {"remove": "true"}}) == [1000, 2000]
    assert await query_stamps(srv, "a/$meta") == [3000]
    # other entries are not filtered
    await write(srv, "a", 1, b"x", {"remove": "true"})
    assert await query_stamps(srv, "a") == [1]


@pytest_twisted.ensureDeferred
async def test_record_removal_is_refused(srv):
    await write(srv, "a/$meta", 1000, b"{}", {"key": "k"})
    text = "Can't delete records from system entry 'a/$meta'; use label update with remove=true"
    await assert_error(await call(srv, "DELETE", f"/b/{B}/a/$meta?ts=1000"), 422, text)
    await assert_error(await call(srv, "DELETE", f"/b/{B}/a/$meta/batch",
                                  headers={"x-reduct-time-1000": ""}), 422, text)
    await assert_error(await call(srv, "DELETE", f"/b/{B}/a/$meta/q?start=0"), 422, text)
    await assert_error(await call(srv, "POST", f"/b/{B}/a/$meta/q",
                                  {"query_type": "REMOVE", "start": 0}), 422, text)
    await assert_error(await call(srv, "POST", f"/b/{B}/$meta/q",
                                  {"query_type": "REMOVE", "start": 0}), 422,
                       text.replace("a/$meta", "$meta"))
    assert await body_of(await call(srv, "GET", f"/b/{B}/a/$meta?ts=1000")) == b"{}"


@pytest_twisted.ensureDeferred
async def test_entry_removal_is_refused_before_the_token(tmp_path):
    from tests.integration.conftest import start_server

    server, stop = await start_server(tmp_path / "data", api_token="init")
    try:
        auth = {"Authorization": "Bearer init"}
        await ok(await call(server, "POST", f"/b/{B}", headers=auth))
        await write_call_ok(server, auth)
        for headers in ({}, auth):
            await assert_error(await call(server, "DELETE", f"/b/{B}/a/$meta", headers=headers),
                               422, "Can't delete system entry 'a/$meta'; remove the parent "
                               "entry instead")
        await assert_error(await call(server, "DELETE", f"/b/{B}/a"), 401,
                           "No bearer token in request header")
        resp = await call(server, "GET", f"/b/{B}/a/$meta?ts=1", headers=auth)
        assert await body_of(resp) == b"{}"
    finally:
        await stop()


async def write_call_ok(server, auth):
    await ok(await call(server, "POST", f"/b/{B}/a/$meta?ts=1", raw=b"{}",
                        headers=dict(auth, **{"x-reduct-label-key": "k"})))


@pytest_twisted.ensureDeferred
async def test_hidden_from_listing_and_statistics_but_counted_in_size(srv):
    """The upstream check: a/x/y and a/x/y/$meta -> entry_count 3, size >= 4 + 7."""
    await write(srv, "a/x/y", 5000, b"data")
    await write(srv, "a/x/y/$meta", 100, b"{\"a\":1}", {"key": "k"})
    await write(srv, "$meta", 9000, b"{}", {"key": "top"})
    info = await bucket_json(srv)
    assert [e["name"] for e in info["entries"]] == ["a", "a/x", "a/x/y"]
    assert info["info"]["entry_count"] == 3
    assert info["info"]["size"] >= 4 + 7
    assert info["info"]["size"] > sum(e["size"] for e in info["entries"])
    assert (info["info"]["oldest_record"], info["info"]["latest_record"]) == (5000, 5000)
    server = json.loads(await ok(await call(srv, "GET", "/info")))
    assert (server["oldest_record"], server["latest_record"]) == (5000, 5000)
    assert server["usage"] == info["info"]["size"]
    listed = json.loads(await ok(await call(srv, "GET", "/list")))["buckets"][0]
    assert (listed["entry_count"], listed["size"]) == (3, info["info"]["size"])


@pytest_twisted.ensureDeferred
async def test_fifo_never_evicts_meta(srv):
    await ok(await call(srv, "PUT", f"/b/{B}", {"quota_type": "FIFO", "quota_size": 3000,
                                                "max_block_records": 1}))
    await write(srv, "a/$meta", 1, b"m" * 500, {"key": "k"})
    for ts in range(10, 20):
        await write(srv, "a", ts, b"x" * 500)
    assert await body_of(await call(srv, "GET", f"/b/{B}/a/$meta?ts=1")) == b"m" * 500
    entries = {e["name"]: e for e in (await bucket_json(srv))["entries"]}
    assert entries["a"]["oldest_record"] > 10
    # with only $meta left to evict, FIFO gives up rather than touch it
    await ok(await call(srv, "DELETE", f"/b/{B}/a"))
    await write(srv, "b/$meta", 1, b"m" * 2000, {"key": "k"})
    resp = await write_call(srv, "c", 5, b"z" * 1500, {})
    await body_of(resp)
    assert resp.code == 500
    assert await body_of(await call(srv, "GET", f"/b/{B}/b/$meta?ts=1")) == b"m" * 2000


@pytest_twisted.ensureDeferred
async def test_new_meta_entries_use_128_kib_blocks(srv):
    for ts in (1, 2, 3):
        await write(srv, "a/$meta", ts, b"m" * 60_000, {"key": f"k{ts}"})
        await write(srv, "a", ts, b"m" * 60_000)
    entries = {n: srv.engine.block_stats(B, n) for n in ("a", "a/$meta")}
    assert len(entries["a/$meta"]) == 2 and len(entries["a"]) == 1


@pytest_twisted.ensureDeferred
async def test_meta_renamed_and_removed_with_its_parent(srv):
    await write(srv, "a", 1, b"x")
    await write(srv, "a/$meta", 2, b"{}", {"key": "k"})
    await ok(await call(srv, "PUT", f"/b/{B}/a/rename", {"new_name": "b"}))
    assert await body_of(await call(srv, "GET", f"/b/{B}/b/$meta?ts=2")) == b"{}"
    await assert_error(await call(srv, "GET", f"/b/{B}/a/$meta?ts=2"), 404,
                       f"Entry 'a/$meta' not found in bucket '{B}'")
    await ok(await call(srv, "DELETE", f"/b/{B}/b"))
    await assert_error(await call(srv, "GET", f"/b/{B}/b/$meta?ts=2"), 404,
                       f"Entry 'b/$meta' not found in bucket '{B}'")
    assert (await bucket_json(srv))["info"]["size"] == 0
