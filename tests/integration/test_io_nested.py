"""
The I/O API with hierarchical entry paths and ``$meta`` attachment entries
(spec 1.20 §1.4, §1.5, §2, §3.1): the upstream io tests parametrized over
``x``, ``x/y``, ``x/y/z``, percent-encoded names, and the ``$meta`` rules of
v2 queries, updates and removals.  Needs the nested entry paths of branch
``nested``.
"""

import json

import pytest
import pytest_twisted

from tests.integration.helpers import assert_error, body_of
from tests.integration.io_helpers import (
    BUCKET,
    create_bucket,
    errors_of,
    header,
    post_write,
    query,
    read,
    read_all,
)


async def qid_of(server, body):
    resp, content = await query(server, body)
    assert resp.code == 200, content
    return json.loads(content)["id"]


@pytest.mark.parametrize("prefix", ["x", "x/y", "x/y/z"])
@pytest_twisted.ensureDeferred
async def test_write_query_read_nested(server, prefix):
    """Upstream io/read_test and write_test over nested names."""
    await create_bucket(server)
    headers = {"x-reduct-entries": [f"{prefix}-0,{prefix}-1".replace("/", "%2F")],
               "x-reduct-start-ts": ["1000"], "x-reduct-0-10": ["2,text/plain"],
               "x-reduct-1-0": ["3,text/plain"]}
    resp = await server.http.post(server.api(f"/io/{BUCKET}/write"), data=b"AABBB",
                                  headers=headers)
    await body_of(resp)
    assert resp.code == 200 and errors_of(resp) == {}
    assert header(resp, "x-reduct-entries") == headers["x-reduct-entries"][0].encode()
    got = await server.http.get(server.api(f"/b/{BUCKET}/{prefix}-0?ts=1010"))
    assert await body_of(got) == b"AA"
    qid = await qid_of(server, {"query_type": "QUERY", "entries": [f"{prefix}-0", f"{prefix}-1"]})
    resp, body = await read(server, qid)
    encoded = prefix.replace("/", "%2F")
    assert header(resp, "x-reduct-entries") == f"{encoded}-1,{encoded}-0".encode()
    assert header(resp, "x-reduct-start-ts") == b"1000"
    assert header(resp, "x-reduct-0-0").startswith(b"3,text/plain")
    assert header(resp, "x-reduct-1-10").startswith(b"2,text/plain")
    assert (body, header(resp, "x-reduct-last")) == (b"BBBAA", b"true")


@pytest.mark.parametrize("prefix", ["x", "x/y", "x/y/z"])
@pytest_twisted.ensureDeferred
async def test_update_and_remove_nested(server, prefix):
    """Upstream io/update_test and io/remove_test over nested names."""
    await create_bucket(server)
    e0, e1 = f"{prefix}/entry_0", f"{prefix}/entry_1"
    await post_write(server, [(e0, 1000, b"a", "t", {"a": "x", "b": "y"}),
                              (e1, 1010, b"b", "t", {"a": "x"})])
    entries = f"{e0},{e1}".replace("/", "%2F")
    resp = await server.http.patch(server.api(f"/io/{BUCKET}/update"), headers={
        "x-reduct-entries": [entries], "x-reduct-start-ts": ["1000"],
        "x-reduct-labels": ["a,b"], "x-reduct-0-0": ["0,,0=one,1=,c=3"],
        "x-reduct-1-10": ["0,,a=two"]})
    await body_of(resp)
    assert resp.code == 200 and errors_of(resp) == {}
    got = await server.http.get(server.api(f"/b/{BUCKET}/{e0}?ts=1000"))
    await body_of(got)
    assert got.headers.getRawHeaders("x-reduct-label-a") == ["one"]
    assert got.headers.getRawHeaders("x-reduct-label-b") is None
    resp = await server.http.delete(server.api(f"/io/{BUCKET}/remove"), headers={
        "x-reduct-entries": [entries], "x-reduct-start-ts": ["1000"],
        "x-reduct-0-0": [""], "x-reduct-1-2": [""]})
    await body_of(resp)
    assert errors_of(resp) == {
        "x-reduct-error-1-2": f"404,Record 1002 not found in entry {BUCKET}/{e1}"}


@pytest_twisted.ensureDeferred
async def test_meta_entries_in_v2_queries(server):
    """§3.1: `*` and prefixes never select $meta; its exact name does, tombstones hidden."""
    await create_bucket(server)
    resp = await post_write(server, [("a/x/y", 1000, b"data", "t", {}),
                                     ("a/x/y/$meta", 1001, b'{"v":1}', "application/json",
                                      {"key": "schema"}),
                                     ("a/x/y/$meta", 1002, b'{"v":2}', "application/json",
                                      {"key": "other"})])
    assert errors_of(resp) == {}
    qid = await qid_of(server, {"query_type": "QUERY", "entries": ["a/x/y*"]})
    found, _ = await read_all(server, qid)
    assert [(e, ts) for e, ts, *_ in found] == [("a/x/y", 1000)]
    qid = await qid_of(server, {"query_type": "QUERY"})  # every entry but $meta
    found, _ = await read_all(server, qid)
    assert [(e, ts) for e, ts, *_ in found] == [("a/x/y", 1000)]
    qid = await qid_of(server, {"query_type": "QUERY", "entries": ["a/x/y/$meta"]})
    resp, body = await read(server, qid)
    assert header(resp, "x-reduct-entries") == b"a%2Fx%2Fy%2F$meta"
    assert body == b'{"v":1}{"v":2}'
    # a tombstone (v2 update remove=true) hides the attachment from queries
    resp = await server.http.patch(server.api(f"/io/{BUCKET}/update"), headers={
        "x-reduct-entries": ["a%2Fx%2Fy%2F$meta"], "x-reduct-start-ts": ["1001"],
        "x-reduct-0-0": ["0,,key=schema,remove=true"]})
    await body_of(resp)
    assert resp.code == 200 and errors_of(resp) == {}
    qid = await qid_of(server, {"query_type": "QUERY", "entries": ["a/x/y/$meta"]})
    found, _ = await read_all(server, qid)
    assert [ts for _, ts, *_ in found] == [1002]
    qid = await qid_of(server, {"query_type": "QUERY", "entries": ["a/x/y/$meta"],
                                "include": {"remove": "true"}})
    found, _ = await read_all(server, qid)
    assert [ts for _, ts, *_ in found] == [1001]
    # REMOVE never touches $meta, even named exactly; v2 remove refuses it
    resp, body = await query(server, {"query_type": "REMOVE", "entries": ["a/x/y/$meta"]})
    assert json.loads(body) == {"removed_records": 0}
    resp = await server.http.delete(server.api(f"/io/{BUCKET}/remove"), headers={
        "x-reduct-entries": ["a%2Fx%2Fy%2F$meta"], "x-reduct-start-ts": ["1001"],
        "x-reduct-0-0": [""]})
    await assert_error(resp, 422, "Can't delete records from system entry 'a/x/y/$meta'; "
                                  "use label update with remove=true")


@pytest_twisted.ensureDeferred
async def test_empty_parents_do_not_fail_a_query_with_start(server):
    """Parents written implicitly have no records: a start-only query skips them."""
    await create_bucket(server)
    await post_write(server, [("p/q/r", 5000, b"r", "t", {})])
    qid = await qid_of(server, {"query_type": "QUERY", "start": 4000})
    found, _ = await read_all(server, qid)
    assert [(e, ts) for e, ts, *_ in found] == [("p/q/r", 5000)]


@pytest_twisted.ensureDeferred
async def test_meta_write_rules_per_record(server):
    """§1.3/§3.1: a v2 write follows the $meta rules record by record (key, no remove=true, upsert)."""
    await create_bucket(server)
    resp = await post_write(server, [
        ("a/$meta", 1, b"{}", "application/json", {}),
        ("a/$meta", 2, b"{}", "application/json", {"key": "k", "remove": "true"}),
        ("a/$meta", 3, b'{"v":3}', "application/json", {"key": "k"}),
        ("a/$meta", 4, b'{"v":4}', "application/json", {"key": "k"})])
    assert errors_of(resp) == {
        "x-reduct-error-0-0": "422,System entry 'a/$meta' records must contain label 'key'",
        "x-reduct-error-0-1": "422,System entry 'a/$meta' does not support writing records "
                              "with label 'remove=true'; use record update",
    }
    old = await server.http.get(server.api(f"/b/{BUCKET}/a/$meta?ts=3"))
    await body_of(old)
    new = await server.http.get(server.api(f"/b/{BUCKET}/a/$meta?ts=4"))
    assert (old.code, await body_of(new)) == (404, b'{"v":4}')  # upsert by key
