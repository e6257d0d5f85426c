"""
Hierarchical entry paths (spec 1.20 §2) against the real daemon over real
sockets: parents created on write, the v1 entry routes on deep paths,
routing of the ``/batch``, ``/q``, ``/rename`` suffixes and of encoded
names, removal and rename of a parent with its descendants (the upstream
``entry_api/entry_test.py`` checks), name validation, statistics (§5.9),
``status`` (§5.4), ``x-reduct-entry`` (§5.7) and a restart.
"""

import json
import os

import pytest
import pytest_twisted

from reduct_twisted.storage import U64_MAX
from tests.integration.conftest import start_server
from tests.integration.helpers import assert_error, body_of, call, ok, port_of, raw_request

B = "bkt"
DEEP = "factory-1/line-2/cell-3/sensor-4"
PATH_ERROR = "Entry name must be non-empty and must not contain empty path segments"
LENGTH_ERROR = "Entry name must not be longer than 1024 characters"
NAME_ERROR = "Entry name can contain only letters, digits and [-,_,/] symbols or end with '/$meta'"


async def write(server, entry, ts, data=None, labels=None, bucket=B):
    headers = {f"x-reduct-label-{k}": v for k, v in (labels or {}).items()}
    await ok(await call(server, "POST", f"/b/{bucket}/{entry}?ts={ts}", headers=headers,
                        raw=data if data is not None else b"data-%d" % ts))


async def bucket_json(server, bucket=B) -> dict:
    return json.loads(await ok(await call(server, "GET", f"/b/{bucket}")))


async def names(server, bucket=B) -> list:
    return [e["name"] for e in (await bucket_json(server, bucket))["entries"]]


async def raw(server, method: str, target: bytes, body: bytes = b"", headers=b"") -> tuple:
    """A request with a target treq would not send as is: (status, headers, body)."""
    payload = (method.encode() + b" " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    answer = await raw_request(port_of(server), payload, read_until_close=True)
    head, _, content = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), fields, content


@pytest_twisted.async_yield_fixture()
async def srv(server):
    await ok(await call(server, "POST", f"/b/{B}"))
    yield server


# -- parents, listing, statistics ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_writing_a_deep_entry_creates_its_parents(srv):
    """``a/b/c`` makes ``a`` and ``a/b`` real, empty entries, listed sorted
    by name (byte order) with ``status``; an empty entry reads 404."""
    await write(srv, "a/b/c", 1000)
    await write(srv, "a-1", 2000)
    info = await bucket_json(srv)
    assert [e["name"] for e in info["entries"]] == ["a", "a-1", "a/b", "a/b/c"]
    entries = {e["name"]: e for e in info["entries"]}
    assert entries["a"] == {"name": "a", "size": 0, "record_count": 0, "block_count": 0,
                            "oldest_record": 0, "latest_record": 0, "status": "READY"}
    assert entries["a/b/c"]["record_count"] == 1
    assert info["info"]["entry_count"] == 4 and info["info"]["status"] == "READY"
    # Empty entries do not drag the bucket's oldest record to 0 (§5.9).
    assert (info["info"]["oldest_record"], info["info"]["latest_record"]) == (1000, 2000)
    resp = await call(srv, "GET", f"/b/{B}/a")
    assert resp.code == 404
    await body_of(resp)
    assert os.path.isdir(srv.data_path / B / "a" / "b" / "c")
    listed = json.loads(await ok(await call(srv, "GET", "/list")))["buckets"]
    assert [b["status"] for b in listed] == ["READY"]


@pytest_twisted.ensureDeferred
async def test_an_entry_holds_records_and_children(srv):
    await write(srv, "a", 1)
    await write(srv, "a/b", 2)
    assert await body_of(await call(srv, "GET", f"/b/{B}/a?ts=1")) == b"data-1"
    assert await body_of(await call(srv, "GET", f"/b/{B}/a/b?ts=2")) == b"data-2"
    counts = {e["name"]: e["record_count"] for e in (await bucket_json(srv))["entries"]}
    assert counts == {"a": 1, "a/b": 1}


@pytest_twisted.ensureDeferred
async def test_empty_bucket_and_server_statistics(srv):
    """Only entries with records count for oldest/latest (u64::MAX/0 if none)."""
    await write(srv, "x/y", 5)
    await ok(await call(srv, "DELETE", f"/b/{B}/x/y?ts=5"))
    info = (await bucket_json(srv))["info"]
    assert (info["entry_count"], info["oldest_record"], info["latest_record"]) == (2, U64_MAX, 0)
    server_info = json.loads(await ok(await call(srv, "GET", "/info")))
    assert (server_info["oldest_record"], server_info["latest_record"]) == (U64_MAX, 0)


# -- the v1 entry API on deep paths ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_full_crud_on_a_deep_entry(srv):
    """Upstream runs full CRUD on factory-1/line-2/cell-3/sensor-4."""
    await write(srv, DEEP, 1000, b"first", {"kind": "a"})
    await write(srv, DEEP, 2000, b"second", {"kind": "b"})
    resp = await call(srv, "GET", f"/b/{B}/{DEEP}?ts=1000")
    assert await body_of(resp) == b"first"
    assert resp.headers.getRawHeaders("x-reduct-entry") == [DEEP]
    assert resp.headers.getRawHeaders("x-reduct-last") == ["1"]
    assert resp.headers.getRawHeaders("x-reduct-label-kind") == ["a"]
    head = await call(srv, "HEAD", f"/b/{B}/{DEEP}")
    await body_of(head)
    assert head.code == 200 and head.headers.getRawHeaders("x-reduct-time") == ["2000"]
    assert head.headers.getRawHeaders("x-reduct-entry") == [DEEP]
    # label update, single and batched
    await ok(await call(srv, "PATCH", f"/b/{B}/{DEEP}?ts=1000", headers={
        "x-reduct-label-kind": "c"}))
    await ok(await call(srv, "PATCH", f"/b/{B}/{DEEP}/batch", headers={
        "x-reduct-time-2000": "0,,new=1"}))
    resp = await call(srv, "GET", f"/b/{B}/{DEEP}?ts=2000")
    await body_of(resp)
    assert resp.headers.getRawHeaders("x-reduct-label-new") == ["1"]
    assert (await call(srv, "GET", f"/b/{B}/{DEEP}?ts=1000")).headers.getRawHeaders(
        "x-reduct-label-kind") == ["c"]
    # GET /q, then a query read and a batched read
    qid = json.loads(await ok(await call(srv, "GET", f"/b/{B}/{DEEP}/q?ttl=30")))["id"]
    resp = await call(srv, "GET", f"/b/{B}/{DEEP}/batch?q={qid}")
    assert await body_of(resp) == b"firstsecond"
    assert resp.headers.getRawHeaders("x-reduct-last") == ["true"]
    qid = json.loads(await ok(await call(srv, "POST", f"/b/{B}/{DEEP}/q",
                                         {"query_type": "QUERY"})))["id"]
    resp = await call(srv, "GET", f"/b/{B}/{DEEP}?q={qid}")
    assert await body_of(resp) == b"first"
    assert resp.headers.getRawHeaders("x-reduct-entry") == [DEEP]
    # removals: one record, a batch, GET-style DELETE /q, JSON REMOVE
    for ts in (3000, 4000, 5000, 6000):
        await write(srv, DEEP, ts)
    await ok(await call(srv, "DELETE", f"/b/{B}/{DEEP}?ts=1000"))
    resp = await call(srv, "DELETE", f"/b/{B}/{DEEP}/batch", headers={
        "x-reduct-time-2000": "", "x-reduct-time-9": ""})
    await ok(resp)
    assert resp.headers.getRawHeaders("x-reduct-error-9")[0].startswith("404,")
    removed = json.loads(await ok(await call(srv, "DELETE", f"/b/{B}/{DEEP}/q?start=3000"
                                                             "&stop=4000")))
    assert removed == {"removed_records": 1}
    removed = json.loads(await ok(await call(srv, "POST", f"/b/{B}/{DEEP}/q", {
        "query_type": "REMOVE", "start": 4000, "stop": 5000})))
    assert removed == {"removed_records": 1}
    entry = {e["name"]: e for e in (await bucket_json(srv))["entries"]}[DEEP]
    assert (entry["record_count"], entry["latest_record"]) == (2, 6000)
    # and the entry itself
    await ok(await call(srv, "DELETE", f"/b/{B}/{DEEP}"))
    assert DEEP not in await names(srv)
    assert "factory-1/line-2/cell-3" in await names(srv)


@pytest.mark.parametrize("entry", ["x", "x/y", "x/y/z"])
@pytest_twisted.ensureDeferred
async def test_v1_batch_write_on_nested_paths(srv, entry):
    """Upstream parametrizes the v1 batched write over x, x/y, x/y/z."""
    resp = await call(srv, "POST", f"/b/{B}/{entry}/batch", raw=b"abcde", headers={
        "x-reduct-time-1": "2,text/plain", "x-reduct-time-2": "3,text/plain,l=1"})
    await ok(resp)
    assert resp.headers.getRawHeaders("x-reduct-error-1") is None
    assert await body_of(await call(srv, "GET", f"/b/{B}/{entry}?ts=1")) == b"ab"
    assert await body_of(await call(srv, "GET", f"/b/{B}/{entry}?ts=2")) == b"cde"
    assert entry in await names(srv)


# -- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["batch", "q", "rename"])
@pytest_twisted.ensureDeferred
async def test_top_level_entries_named_like_a_suffix(srv, entry):
    """The suffix counts only after a "/": a top-level batch/q/rename is an entry."""
    await write(srv, entry, 7)
    resp = await call(srv, "GET", f"/b/{B}/{entry}?ts=7")
    assert await body_of(resp) == b"data-7"
    assert resp.headers.getRawHeaders("x-reduct-entry") == [entry]
    assert entry in await names(srv)


@pytest_twisted.ensureDeferred
async def test_suffixes_after_a_slash_name_the_routes(srv):
    """``a/q`` is the query route of ``a``; ``a/batch`` its batch route."""
    await write(srv, "a", 1)
    body = json.loads(await ok(await call(srv, "GET", f"/b/{B}/a/q")))
    assert set(body) == {"id"}
    resp = await call(srv, "POST", f"/b/{B}/a/batch", raw=b"x",
                      headers={"x-reduct-time-2": "1,text/plain"})
    await ok(resp)
    assert await names(srv) == ["a"]


@pytest_twisted.ensureDeferred
async def test_encoded_slash_and_dollar_name_the_same_entry(srv):
    """``a%2Fb`` is ``a/b``, ``a%2Fbatch`` the batch route of ``a``; ``$``
    raw or ``%24``.  In the bucket segment an encoded slash is refused."""
    status, headers, _ = await raw(srv, "POST", f"/api/v1/b/{B}/a%2Fb?ts=1".encode(), b"one")
    assert status == 200
    assert await body_of(await call(srv, "GET", f"/b/{B}/a/b?ts=1")) == b"one"
    status, headers, content = await raw(srv, "GET", f"/api/v1/b/{B}/a%2fb?ts=1".encode())
    assert (status, content, headers[b"x-reduct-entry"]) == (200, b"one", b"a/b")
    status, headers, _ = await raw(srv, "POST", f"/api/v1/b/{B}/a%2Fbatch".encode(), b"xy",
                                   b"x-reduct-time-5: 2,text/plain\r\n")
    assert status == 200
    assert await body_of(await call(srv, "GET", f"/b/{B}/a?ts=5")) == b"xy"
    status, _, _ = await raw(srv, "POST", f"/api/v1/b/{B}/a/%24meta?ts=9".encode(), b"{}",
                             b"x-reduct-label-key: k\r\n")
    assert status == 200
    status, headers, content = await raw(srv, "GET", f"/api/v1/b/{B}/a/$meta?ts=9".encode())
    assert (status, content, headers[b"x-reduct-entry"]) == (200, b"{}", b"a/$meta")
    status, headers, content = await raw(srv, "GET", f"/api/v1/b/x%2F{B}/a?ts=1".encode())
    assert status == 422 and headers[b"x-reduct-error"].startswith(b"Bucket or entry name")
    assert await names(srv) == ["a", "a/b"]


@pytest_twisted.ensureDeferred
async def test_any_other_put_is_404_and_bucket_rename_stays(srv):
    await write(srv, "a/b", 1)
    await assert_error(await call(srv, "PUT", f"/b/{B}/a/b", {"new_name": "x"}), 404,
                       "Not found")
    await ok(await call(srv, "PUT", f"/b/{B}/rename", {"new_name": "other"}))
    assert await names(srv, "other") == ["a", "a/b"]


@pytest_twisted.ensureDeferred
async def test_legacy_v0_routes_take_nested_names(srv):
    status, _, _ = await raw(srv, "POST", f"/b/{B}/v0/x?ts=3".encode(), b"old")
    assert status == 200
    status, _, content = await raw(srv, "GET", f"/b/{B}/v0/x?ts=3".encode())
    assert (status, content) == (200, b"old")
    status, _, content = await raw(srv, "GET", f"/b/{B}/v0/x/list?start=0&stop=9".encode())
    assert status == 200 and json.loads(content)["records"] == [{"ts": "3", "size": "3"}]


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("target, message", [
    (b"a//b", PATH_ERROR), (b"/a", PATH_ERROR), (b"a/", PATH_ERROR),
    (b"a/../b", NAME_ERROR), (b"a/b.c", NAME_ERROR), (b"a/" + b"x" * 256, NAME_ERROR),
    (b"a/$meta/b", NAME_ERROR), (b"a%20b/c", NAME_ERROR), (b"a/%24x", NAME_ERROR),
    # deeper or longer than a path can be on disk: a 422, not the file system's 500
    (b"/".join([b"a"] * 513), LENGTH_ERROR), (b"/".join([b"x" * 255] * 5), LENGTH_ERROR),
    (b"/".join([b"a"] * 3000), LENGTH_ERROR),
])
@pytest_twisted.ensureDeferred
async def test_bad_entry_names_are_422_and_create_nothing(srv, target, message):
    for method, path, body, extra in (
        ("POST", b"/api/v1/b/" + B.encode() + b"/" + target + b"?ts=1", b"x", b""),
        ("POST", b"/api/v1/b/" + B.encode() + b"/" + target + b"/batch", b"x",
         b"x-reduct-time-1: 1,text/plain\r\n"),
    ):
        status, headers, content = await raw(srv, method, path, body, extra)
        if status == 200:  # a batch: the error is per record
            assert headers[b"x-reduct-error-1"] == b"422," + message.encode()
        else:
            assert (status, headers[b"x-reduct-error"]) == (422, message.encode()), path
            assert json.loads(content) == {"detail": message}
    await ok(await call(srv, "POST", f"/b/{B}/ok/e?ts=1", raw=b"x"))
    rename = await call(srv, "PUT", f"/b/{B}/ok/rename", {"new_name": target.decode()})
    await assert_error(rename, 422, message)
    assert await names(srv) == ["ok", "ok/e"]
    assert sorted(os.listdir(srv.data_path / B)) == ["ok", "settings.json"]


@pytest_twisted.ensureDeferred
async def test_reads_of_missing_names_are_plain_404(srv):
    for target in ("a//b", "nope/x", "a/b.c"):
        await assert_error(await call(srv, "GET", f"/b/{B}/{target}?ts=1"), 404,
                           f"Entry '{target}' not found in bucket '{B}'")
    await assert_error(await call(srv, "GET", f"/b/{B}/x/y/q"), 404,
                       f"Entry 'x/y' not found in bucket '{B}'")


# -- remove and rename a parent (spec 1.20 §2.4) ----------------------------------------------


@pytest_twisted.ensureDeferred
async def test_rename_a_parent_carries_its_descendants(srv):
    """The upstream check: a/b/c and a/b/d renamed with a to renamed."""
    await write(srv, "a/b/c", 1, b"c")
    await write(srv, "a/b/d", 2, b"d")
    await write(srv, "a/b/$meta", 3, b"{}", {"key": "k"})
    await ok(await call(srv, "PUT", f"/b/{B}/a/rename", {"new_name": "renamed"}))
    for old in ("a/b/c", "a/b/d"):
        resp = await call(srv, "GET", f"/b/{B}/{old}")
        assert resp.code == 404
        await body_of(resp)
    assert await body_of(await call(srv, "GET", f"/b/{B}/renamed/b/c?ts=1")) == b"c"
    assert await body_of(await call(srv, "GET", f"/b/{B}/renamed/b/d?ts=2")) == b"d"
    assert await body_of(await call(srv, "GET", f"/b/{B}/renamed/b/$meta?ts=3")) == b"{}"
    assert await names(srv) == ["renamed", "renamed/b", "renamed/b/c", "renamed/b/d"]
    assert sorted(os.listdir(srv.data_path / B)) == ["renamed", "settings.json"]


@pytest_twisted.ensureDeferred
async def test_rename_creates_missing_parents_of_the_target(srv):
    """``a/b`` -> ``c/b`` creates ``c``; ``a`` stays."""
    await write(srv, "a/b/x", 1)
    await ok(await call(srv, "PUT", f"/b/{B}/a/b/rename", {"new_name": "c/b"}))
    assert await names(srv) == ["a", "c", "c/b", "c/b/x"]
    assert await body_of(await call(srv, "GET", f"/b/{B}/c/b/x?ts=1")) == b"data-1"
    # queries of renamed entries are dropped
    qid = json.loads(await ok(await call(srv, "GET", f"/b/{B}/c/b/x/q")))["id"]
    await ok(await call(srv, "PUT", f"/b/{B}/c/rename", {"new_name": "d"}))
    resp = await call(srv, "GET", f"/b/{B}/d/b/x/batch?q={qid}")
    assert resp.code == 404
    await body_of(resp)


@pytest_twisted.ensureDeferred
async def test_rename_checks_in_order(srv):
    await write(srv, "a/b", 1)
    await write(srv, "z/b", 2)
    await write(srv, "y", 3)
    put = lambda src, body: call(srv, "PUT", f"/b/{B}/{src}/rename", body)  # noqa: E731
    await assert_error(await put("nope", {"new_name": "a//x"}), 422, PATH_ERROR)
    await assert_error(await put("a", {"new_name": "a"}), 409,
                       f"Entry 'a' already exists in bucket '{B}'")
    await assert_error(await put("a", {"new_name": "a/x"}), 409,
                       f"Entry 'a/x' already exists in bucket '{B}'")
    await assert_error(await put("nope", {"new_name": "fresh"}), 404,
                       f"Entry 'nope' not found in bucket '{B}'")
    await assert_error(await put("a", {"new_name": "y"}), 409,
                       f"Entry 'y' already exists in bucket '{B}'")
    # an empty target (a parent made by a write, or emptied) exists too
    await write(srv, "q2/b", 5)
    await assert_error(await put("a", {"new_name": "q2"}), 409,
                       f"Entry 'q2' already exists in bucket '{B}'")
    assert await names(srv) == ["a", "a/b", "q2", "q2/b", "y", "z", "z/b"]


@pytest_twisted.ensureDeferred
async def test_rename_descendant_collision_is_409_and_changes_nothing(srv):
    await write(srv, "a/b", 1)
    await write(srv, "c", 2)
    await ok(await call(srv, "DELETE", f"/b/{B}/c?ts=2"))
    # c exists (empty) so the target itself collides first
    await assert_error(await call(srv, "PUT", f"/b/{B}/a/rename", {"new_name": "c"}), 409,
                       f"Entry 'c' already exists in bucket '{B}'")
    before = await names(srv)
    assert before == ["a", "a/b", "c"]


@pytest.mark.parametrize("body, ctype", [
    (b'{"new_name": "n"}', None), (b'{"new_name": "n"}', b"text/plain"),
])
@pytest_twisted.ensureDeferred
async def test_rename_body_is_read_whatever_its_content_type(srv, body, ctype):
    await write(srv, "a/b", 1)
    extra = b"" if ctype is None else b"Content-Type: " + ctype + b"\r\n"
    status, _, _ = await raw(srv, "PUT", f"/api/v1/b/{B}/a/rename".encode(), body, extra)
    assert status == 200
    assert await names(srv) == ["n", "n/b"]


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"name": "x"}', b'{"new_name": 1}'])
@pytest_twisted.ensureDeferred
async def test_rename_bad_body_is_422_invalid_json(srv, body):
    await write(srv, "a", 1)
    status, headers, content = await raw(srv, "PUT", f"/api/v1/b/{B}/a/rename".encode(), body,
                                         b"Content-Type: application/json\r\n")
    assert status == 422 and headers[b"x-reduct-error"].startswith(b"Invalid JSON: ")
    assert json.loads(content)["detail"] == headers[b"x-reduct-error"].decode()


@pytest_twisted.ensureDeferred
async def test_remove_a_parent_removes_every_descendant(srv):
    """The upstream check: after removing a, no a or a/… is listed."""
    await write(srv, "a/b/c", 1)
    await write(srv, "a/x", 2)
    await write(srv, "a/b/$meta", 3, b"{}", {"key": "k"})
    await write(srv, "ab", 4)
    qid = json.loads(await ok(await call(srv, "GET", f"/b/{B}/a/x/q")))["id"]
    await ok(await call(srv, "DELETE", f"/b/{B}/a"))
    assert await names(srv) == ["ab"]
    assert sorted(os.listdir(srv.data_path / B)) == ["ab", "settings.json"]
    for gone in ("a", "a/b/c", "a/b/$meta"):
        await assert_error(await call(srv, "GET", f"/b/{B}/{gone}?ts=1"), 404,
                           f"Entry '{gone}' not found in bucket '{B}'")
    resp = await call(srv, "GET", f"/b/{B}/a/x/batch?q={qid}")
    assert resp.code == 404
    await body_of(resp)
    await assert_error(await call(srv, "DELETE", f"/b/{B}/a"), 404,
                       f"Entry 'a' not found in bucket '{B}'")
    size = (await bucket_json(srv))["info"]["size"]
    assert size == {e["name"]: e for e in (await bucket_json(srv))["entries"]}["ab"]["size"]


@pytest_twisted.ensureDeferred
async def test_nested_entries_survive_a_restart(tmp_path):
    server, stop = await start_server(tmp_path / "data")
    try:
        await ok(await call(server, "POST", f"/b/{B}"))
        await write(server, "a/b/c", 1, b"abc")
        await write(server, "a/$meta", 2, b"{}", {"key": "k"})
        await write(server, "$meta", 3, b"[]", {"key": "top"})
        before = await bucket_json(server)
    finally:
        await stop()
    with open(tmp_path / "data" / ".reduct-twisted") as f:
        assert json.load(f)["version"] == 3
    server, stop = await start_server(tmp_path / "data")
    try:
        assert await bucket_json(server) == before
        assert [e["name"] for e in before["entries"]] == ["a", "a/b", "a/b/c"]
        assert await body_of(await call(server, "GET", f"/b/{B}/a/b/c?ts=1")) == b"abc"
        assert await body_of(await call(server, "GET", f"/b/{B}/a/$meta?ts=2")) == b"{}"
        assert await body_of(await call(server, "GET", f"/b/{B}/$meta?ts=3")) == b"[]"
        assert server.engine.recovery_report()["left_in_place"] == []
    finally:
        await stop()
