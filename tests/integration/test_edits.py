"""
Label updates, removals and renames against the real daemon over real
sockets (spec §3.5–§3.8): ``PATCH`` of one record and of a batch,
``DELETE`` of a record, a batch, by query and of a whole entry, ``PUT …/rename``
of buckets and entries; error texts, statistics, the effect on reads and
queries, refusals while records are being written, and survival of a restart.
"""

import json
import socket

import pytest_twisted
from twisted.internet.threads import deferToThread

from reduct_twisted.storage.disk.blockfile import record_meta_size
from tests.integration.conftest import start_server
from tests.integration.helpers import assert_error, body_of, call, ok, port_of

B = "bkt"
E = "e"


async def write(server, ts, labels=None, entry=E, bucket=B, data=None, auth=None):
    headers = {f"x-reduct-label-{k}": v for k, v in (labels or {}).items()}
    headers.update(auth or {})
    await ok(await call(server, "POST", f"/b/{bucket}/{entry}?ts={ts}", headers=headers,
                        raw=data if data is not None else b"data-%d" % ts))


def label_pairs(resp) -> list:
    """The labels of a single-record read, in wire order."""
    return [
        (name.decode().lower()[len("x-reduct-label-"):], values[-1].decode())
        for name, values in resp.headers.getAllRawHeaders()
        if name.lower().startswith(b"x-reduct-label-")
    ]


async def read(server, ts, entry=E, bucket=B):
    resp = await call(server, "GET", f"/b/{bucket}/{entry}?ts={ts}")
    return resp, await body_of(resp)


async def entry_info(server, entry=E, bucket=B):
    info = json.loads(await ok(await call(server, "GET", f"/b/{bucket}")))
    return {e["name"]: e for e in info["entries"]}.get(entry)


def error_headers(resp) -> dict:
    return {
        int(name.decode().lower()[len("x-reduct-error-"):]): values[-1].decode()
        for name, values in resp.headers.getAllRawHeaders()
        if name.lower().startswith(b"x-reduct-error-")
    }


async def restarted(server, stop, **config):
    await stop()
    return await start_server(server.data_path, **config)


async def seeded(tmp_path, count=5, auth=None, **config):
    server, stop = await start_server(tmp_path / "data", **config)
    await ok(await call(server, "POST", f"/b/{B}", headers=auth))
    for i in range(count):
        await write(server, 1000 + i, {"a": str(i), "b": "x", "c": "keep"}, auth=auth)
    return server, stop


# -- label updates (§3.6) ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_patch_sets_removes_and_keeps_labels_in_order_and_survives_restart(tmp_path):
    server, stop = await seeded(tmp_path)
    try:
        before = (await entry_info(server))["size"]
        await ok(await call(server, "PATCH", f"/b/{B}/{E}?ts=1002", headers={
            "x-reduct-label-b": "", "x-reduct-label-a": "changed", "x-reduct-label-new": "n",
        }))
        resp, content = await read(server, 1002)
        assert content == b"data-1002"
        assert label_pairs(resp) == [("a", "changed"), ("c", "keep"), ("new", "n")]
        # Neighbours are untouched; the size statistics follow the metadata.
        resp, _ = await read(server, 1001)
        assert label_pairs(resp) == [("a", "1"), ("b", "x"), ("c", "keep")]
        after = (await entry_info(server))["size"]
        old = {"a": "2", "b": "x", "c": "keep"}
        new = {"a": "changed", "c": "keep", "new": "n"}
        ct = "application/octet-stream"
        # Record 1002 is the third 9-byte record of the shared segment.
        assert after - before == (record_meta_size(1002, 18, 27, ct, new)
                                  - record_meta_size(1002, 18, 27, ct, old)) != 0
        # A query sees the new labels.
        qid = json.loads(await ok(await call(server, "GET", f"/b/{B}/{E}/q?include-new=n")))["id"]
        resp = await call(server, "GET", f"/b/{B}/{E}?q={qid}")
        assert (await body_of(resp)) == b"data-1002"
        server, stop = await restarted(server, stop)
        resp, content = await read(server, 1002)
        assert content == b"data-1002"
        assert label_pairs(resp) == [("a", "changed"), ("c", "keep"), ("new", "n")]
        assert (await entry_info(server))["size"] == after
        await write(server, 1100, {"z": "1"})  # appends after a rewritten .meta still work
        resp, _ = await read(server, 1100)
        assert label_pairs(resp) == [("z", "1")]
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_patch_errors(tmp_path):
    server, stop = await seeded(tmp_path, count=1)
    try:
        await assert_error(await call(server, "PATCH", f"/b/{B}/{E}?ts=7"), 404,
                           f"Record 7 not found in entry {B}/{E}")
        await assert_error(await call(server, "PATCH", f"/b/{B}/nope?ts=1000"), 404,
                           f"Entry 'nope' not found in bucket '{B}'")
        await assert_error(await call(server, "PATCH", f"/b/nope/{E}?ts=1000"), 404,
                           "Bucket 'nope' is not found")
        resp = await call(server, "PATCH", f"/b/{B}/{E}?ts=abc")
        assert resp.code == 422 and b"'ts' must be an unix timestamp" in await body_of(resp)
        await assert_error(await call(server, "PATCH", f"/b/{B}/{E}"), 422,
                           "'ts' parameter is required")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_patch_batch_updates_each_record_and_reports_misses(tmp_path):
    server, stop = await seeded(tmp_path)
    try:
        resp = await call(server, "PATCH", f"/b/{B}/{E}/batch", headers={
            "x-reduct-time-1000": "0,,x=z,a=,1=2",
            "x-reduct-time-1003": '5,text/plain,c="with, comma"',
            "x-reduct-time-999": "0,",
        })
        await ok(resp)
        assert error_headers(resp) == {999: f"404,Record 999 not found in entry {B}/{E}"}
        resp, _ = await read(server, 1000)
        assert label_pairs(resp) == [("b", "x"), ("c", "keep"), ("x", "z"), ("1", "2")]
        resp, _ = await read(server, 1003)
        assert label_pairs(resp) == [("a", "3"), ("b", "x"), ("c", "with, comma")]
        assert resp.headers.getRawHeaders("content-type") == ["application/octet-stream"]
        resp = await call(server, "PATCH", f"/b/{B}/{E}/batch",
                          headers={"x-reduct-time-abc": "0,"})
        assert resp.code == 422, await body_of(resp)
    finally:
        await stop()


# -- removals (§3.5, §3.7) -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_delete_one_record_then_a_batch(tmp_path):
    server, stop = await seeded(tmp_path)
    try:
        await ok(await call(server, "DELETE", f"/b/{B}/{E}?ts=1001"))
        # (spec 1.20 §5.5: a read names the block, a removal the entry)
        await assert_error((await read(server, 1001))[0], 404,
                           f"Record 1001 not found in block {B}/{E}/1000")
        await assert_error(await call(server, "DELETE", f"/b/{B}/{E}?ts=1001"), 404,
                           f"Record 1001 not found in entry {B}/{E}")
        assert (await entry_info(server))["record_count"] == 4
        resp = await call(server, "DELETE", f"/b/{B}/{E}/batch", headers={
            "x-reduct-time-1000": "", "x-reduct-time-1004": "", "x-reduct-time-5": "",
        })
        await ok(resp)
        assert error_headers(resp) == {5: f"404,Record 5 not found in entry {B}/{E}"}
        info = await entry_info(server)
        assert info["record_count"] == 2
        assert info["oldest_record"] == 1000  # the block keeps its id (§4.7)
        assert info["latest_record"] == 1003
        server, stop = await restarted(server, stop)
        for ts, present in ((1000, False), (1001, False), (1002, True), (1003, True),
                            (1004, False)):
            resp, content = await read(server, ts)
            assert resp.code == (200 if present else 404), ts
            if present:
                assert content == b"data-%d" % ts
        await assert_error(await call(server, "DELETE", f"/b/{B}/{E}?ts=x"), 422,
                           "'ts' must be an unix timestamp in microseconds")
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_delete_by_query_string(tmp_path):
    server, stop = await seeded(tmp_path)
    try:
        resp = await call(server, "DELETE", f"/b/{B}/{E}/q?start=1001&stop=1003")
        assert json.loads(await ok(resp)) == {"removed_records": 2}
        resp = await call(server, "DELETE", f"/b/{B}/{E}/q?include-a=4")
        assert json.loads(await ok(resp)) == {"removed_records": 1}
        assert (await entry_info(server))["record_count"] == 2
        await assert_error(await call(server, "DELETE", f"/b/{B}/{E}/q"), 422,
                           "Define at least one query parameter to delete records")
        await assert_error(await call(server, "DELETE", f"/b/{B}/{E}/q?ttl=5"), 422,
                           "Define at least one query parameter to delete records")
        # A missing entry is created empty and nothing is removed (upstream).
        resp = await call(server, "DELETE", f"/b/{B}/fresh/q?start=0")
        assert json.loads(await ok(resp)) == {"removed_records": 0}
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_delete_entry_drops_records_and_queries(tmp_path):
    server, stop = await seeded(tmp_path)
    try:
        await write(server, 5, entry="other")
        qid = json.loads(await ok(await call(server, "GET", f"/b/{B}/{E}/q")))["id"]
        await ok(await call(server, "DELETE", f"/b/{B}/{E}"))
        await assert_error((await read(server, 1000))[0], 404,
                           f"Entry '{E}' not found in bucket '{B}'")
        await assert_error(await call(server, "GET", f"/b/{B}/{E}?q={qid}"), 404,
                           f"Entry '{E}' not found in bucket '{B}'")
        await assert_error(await call(server, "DELETE", f"/b/{B}/{E}"), 404,
                           f"Entry '{E}' not found in bucket '{B}'")
        assert await entry_info(server) is None
        assert (await read(server, 5, entry="other"))[1] == b"data-5"
        server, stop = await restarted(server, stop)
        assert await entry_info(server) is None
        await write(server, 1000)  # the name is free again
        assert (await read(server, 1000))[1] == b"data-1000"
    finally:
        await stop()


# -- renames (§3.8) --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_rename_bucket_moves_data_and_token_permissions(tmp_path):
    admin = {"Authorization": "Bearer init-rename"}
    server, stop = await seeded(tmp_path, auth=admin, api_token="init-rename")
    try:
        resp = await call(server, "POST", "/tokens/reader", {"read": [B]},
                          headers=admin)
        reader = {"Authorization": "Bearer " + json.loads(await ok(resp))["value"]}
        await ok(await call(server, "PUT", f"/b/{B}/rename", {"new_name": "moved"},
                            headers=admin))
        await assert_error(await call(server, "GET", f"/b/{B}", headers=admin), 404,
                           f"Bucket '{B}' is not found")
        resp = await call(server, "GET", f"/b/moved/{E}?ts=1003", headers=reader)
        assert await ok(resp) == b"data-1003"
        resp = await call(server, "GET", "/tokens/reader", headers=admin)
        assert json.loads(await ok(resp))["permissions"]["read"] == ["moved"]
        await write(server, 2000, bucket="moved", auth=admin)
        server, stop = await restarted(server, stop, api_token="init-rename")
        resp = await call(server, "GET", f"/b/moved/{E}?ts=2000", headers=reader)
        assert await ok(resp) == b"data-2000"
        info = json.loads(await ok(await call(server, "GET", "/b/moved", headers=admin)))
        assert info["entries"][0]["record_count"] == 6
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_rename_bucket_errors(tmp_path):
    server, stop = await start_server(tmp_path / "data", environ={"RS_BUCKET_P_NAME": "prov"})
    try:
        await ok(await call(server, "POST", f"/b/{B}"))
        await ok(await call(server, "POST", "/b/taken"))
        await assert_error(await call(server, "PUT", "/b/none/rename", {"new_name": "x"}), 404,
                           "Bucket 'none' is not found")
        await assert_error(await call(server, "PUT", f"/b/{B}/rename", {"new_name": "taken"}),
                           409, "Bucket 'taken' already exists")
        await assert_error(await call(server, "PUT", "/b/prov/rename", {"new_name": "x"}), 409,
                           "Can't rename provisioned bucket 'prov'")
        resp = await call(server, "PUT", f"/b/{B}/rename", {"new_name": "bad name"})
        assert resp.code == 422, await body_of(resp)
        resp = await call(server, "PUT", f"/b/{B}/rename", {"name": "x"})
        assert resp.code == 422, await body_of(resp)
        resp = await call(server, "PUT", f"/b/{B}/rename", raw=b"{nope",
                          headers={"Content-Type": "application/json"})
        assert resp.code == 400, await body_of(resp)
        resp = await call(server, "PUT", f"/b/{B}/rename", raw=b'{"new_name": "x"}',
                          headers={"Content-Type": "text/plain"})
        assert resp.code == 415, await body_of(resp)
        names = json.loads(await ok(await call(server, "GET", "/list")))["buckets"]
        assert sorted(b["name"] for b in names) == [B, "prov", "taken"]
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_rename_entry(tmp_path):
    server, stop = await seeded(tmp_path)
    try:
        await write(server, 1, entry="taken")
        qid = json.loads(await ok(await call(server, "GET", f"/b/{B}/{E}/q")))["id"]
        await assert_error(
            await call(server, "PUT", f"/b/{B}/{E}/rename", {"new_name": "taken"}), 409,
            f"Entry 'taken' already exists in bucket '{B}'")
        await assert_error(
            await call(server, "PUT", f"/b/{B}/none/rename", {"new_name": "x"}), 404,
            f"Entry 'none' not found in bucket '{B}'")
        await ok(await call(server, "PUT", f"/b/{B}/{E}/rename", {"new_name": "renamed"}))
        assert (await read(server, 1004, entry="renamed"))[1] == b"data-1004"
        await assert_error((await read(server, 1004))[0], 404,
                           f"Entry '{E}' not found in bucket '{B}'")
        await assert_error(await call(server, "GET", f"/b/{B}/{E}?q={qid}"), 404,
                           f"Entry '{E}' not found in bucket '{B}'")
        # Writes, label updates and removals work under the new name.
        await write(server, 2000, entry="renamed")
        await ok(await call(server, "PATCH", f"/b/{B}/renamed?ts=1000",
                            headers={"x-reduct-label-a": "after"}))
        await ok(await call(server, "DELETE", f"/b/{B}/renamed?ts=1001"))
        server, stop = await restarted(server, stop)
        info = await entry_info(server, "renamed")
        assert info["record_count"] == 5 and info["latest_record"] == 2000
        resp, content = await read(server, 1000, entry="renamed")
        assert content == b"data-1000" and ("a", "after") in label_pairs(resp)
    finally:
        await stop()


# -- records being written ------------------------------------------------------------


def _start_upload(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n".encode()
                 + b"a" * 1000)
    return sock


@pytest_twisted.ensureDeferred
async def test_records_being_written_block_renames_and_label_updates(tmp_path):
    server, stop = await seeded(tmp_path, count=1)
    port = port_of(server)
    try:
        sock = await deferToThread(_start_upload, port, f"/api/v1/b/{B}/{E}?ts=5000")
        try:
            for _ in range(100):
                found = server.engine.block_stats(B, E)
                if any(block["started"] for block in found):
                    break
                await deferToThread(lambda: None)
            resp = await call(server, "PUT", f"/b/{B}/rename", {"new_name": "busy"})
            await assert_error(resp, 409,
                               f"Bucket '{B}' has records being written; "
                               "try again when they are finished")
            resp = await call(server, "PUT", f"/b/{B}/{E}/rename", {"new_name": "busy"})
            assert resp.code == 409, await body_of(resp)
            await assert_error(
                await call(server, "PATCH", f"/b/{B}/{E}?ts=5000",
                           headers={"x-reduct-label-a": "b"}),
                425, f"Record with timestamp 5000 in {B}/{E} is still being written")
        finally:
            sock.close()
        assert (await read(server, 1000))[1] == b"data-1000"
    finally:
        await stop()
