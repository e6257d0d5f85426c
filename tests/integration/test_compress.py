"""
Compressed blocks (spec 1.20 §7.4 ``compress``) behind the real HTTP API
over real sockets: compression is driven through ``engine.compress_blocks``
(in the thread pool, as the lifecycle service calls it), then every read
path must answer byte-exact: single GET/HEAD (inline and streamed), the v1
batch read of a query, the I/O API's multi-entry read, replication, and a
restart; sizes shrink; FIFO eviction removes compressed blocks.
"""

import json
import os
import random

import pytest_twisted
from twisted.internet import task
from twisted.internet.threads import deferToThread

from tests.integration.conftest import running_server, start_server
from tests.integration.helpers import body_of, ok
from tests.integration.io_helpers import query, read_all

MIB = 1 << 20


def _data(entry: str, ts: int) -> bytes:
    """Compressible content: tiny, inline-sized, streamed and private-segment-sized."""
    rng = random.Random(f"{entry}/{ts}")
    size = [10, 3000, 200_000, MIB + 5000][ts % 4]
    return (rng.randbytes(61) * (size // 61 + 1))[:size]


async def _setup(server, entries=("e", "f"), count=12, settings=None):
    server.engine.run_in_thread = deferToThread
    body = json.dumps(settings or {"max_block_records": 4}).encode()
    await ok(await server.http.post(server.api("/b/bkt"), data=body))
    for entry in entries:
        for ts in range(1, count + 1):
            await ok(await server.http.post(server.api(f"/b/bkt/{entry}?ts={ts}"),
                                            data=_data(entry, ts),
                                            headers={"x-reduct-label-n": str(ts)}))


async def _compress(server, entry, stop=2**63):
    return await server.engine.compress_blocks("bkt", entry, stop)


async def _bucket(server):
    resp = await server.http.get(server.api("/b/bkt"))
    return json.loads(await ok(resp))


def _packed(server, entry):
    return sorted(n for n in os.listdir(os.path.join(server.data_path, "bkt", entry))
                  if n.endswith(".zst"))


async def _check_single_reads(server, entry, count=12):
    for ts in range(1, count + 1):
        resp = await server.http.get(server.api(f"/b/bkt/{entry}?ts={ts}"))
        assert (resp.code, await body_of(resp) == _data(entry, ts)) == (200, True), ts
        assert resp.length == len(_data(entry, ts))  # content-length, kept for framing
        assert resp.headers.getRawHeaders("x-reduct-label-n") == [str(ts)]
        resp = await server.http.head(server.api(f"/b/bkt/{entry}?ts={ts}"))
        await body_of(resp)
        assert resp.headers.getRawHeaders("content-length") == [str(len(_data(entry, ts)))]


async def _check_batch_read(server, entry, count=12):
    resp = await server.http.post(server.api(f"/b/bkt/{entry}/q"),
                                  data=b'{"query_type": "QUERY"}')
    qid = json.loads(await ok(resp))["id"]
    seen = []
    while True:
        resp = await server.http.get(server.api(f"/b/bkt/{entry}/batch?q={qid}"))
        body = await body_of(resp)
        if resp.code == 204:
            break
        assert resp.code == 200, body
        times = sorted(
            (int(name.decode()[len("x-reduct-time-"):]), int(values[0].split(b",")[0]))
            for name, values in resp.headers.getAllRawHeaders()
            if name.lower().startswith(b"x-reduct-time-"))
        assert body == b"".join(_data(entry, ts) for ts, _ in times)
        assert [size for _, size in times] == [len(_data(entry, ts)) for ts, _ in times]
        seen += [ts for ts, _ in times]
        if resp.headers.getRawHeaders("x-reduct-last") == ["true"]:
            break
    assert seen == list(range(1, count + 1))


@pytest_twisted.ensureDeferred
async def test_every_read_path_over_compressed_and_plain_blocks(server):
    await _setup(server)
    size = (await _bucket(server))["info"]["size"]
    assert await _compress(server, "e", stop=9) == (8, 2)  # two of three blocks
    assert await _compress(server, "f") == (12, 3)
    assert _packed(server, "e") == ["1-1.zst", "5-1.zst"]
    info = await _bucket(server)
    assert info["info"]["size"] < size / 3  # sizes are the compressed sizes on disk
    assert {e["name"]: e["record_count"] for e in info["entries"]} == {"e": 12, "f": 12}
    for entry in ("e", "f"):
        await _check_single_reads(server, entry)
        await _check_batch_read(server, entry)
    resp, body = await query(server, {"query_type": "QUERY", "entries": ["e", "f"]})
    found, _ = await read_all(server, json.loads(body)["id"])
    assert sorted((r[0], r[1]) for r in found) == sorted(
        (entry, ts) for entry in ("e", "f") for ts in range(1, 13))
    assert all(data == _data(entry, ts) for entry, ts, data, _, _ in found)


@pytest_twisted.ensureDeferred
async def test_compressed_blocks_after_a_restart(tmp_path):
    async with running_server(tmp_path / "data") as server:
        await _setup(server, entries=("e",))
        assert await _compress(server, "e") == (12, 3)
        size = (await _bucket(server))["info"]["size"]
    async with running_server(tmp_path / "data") as server:
        assert server.engine.recovery_report()["problems"] == []
        assert (await _bucket(server))["info"]["size"] == size
        await _check_single_reads(server, "e")
        await _check_batch_read(server, "e")
        # written into and next to compressed blocks after the restart
        for ts in (13, 14):
            await ok(await server.http.post(server.api(f"/b/bkt/e?ts={ts}"),
                                            data=_data("e", ts),
                                            headers={"x-reduct-label-n": str(ts)}))
        await ok(await server.http.patch(server.api("/b/bkt/e?ts=3"),
                                         headers={"x-reduct-label-n": "3"}))
        await _check_single_reads(server, "e", 14)


@pytest_twisted.ensureDeferred
async def test_fifo_quota_evicts_compressed_blocks(server):
    await _setup(server, entries=("e",), settings={
        "max_block_records": 4, "quota_type": "FIFO", "quota_size": 8 * MIB})
    assert await _compress(server, "e", stop=9) == (8, 2)
    for ts in range(13, 40):  # about 10 MiB more: the oldest blocks must go
        await ok(await server.http.post(server.api(f"/b/bkt/e?ts={ts}"), data=_data("e", ts)))
    info = await _bucket(server)
    assert info["info"]["size"] <= 8 * MIB
    assert info["entries"][0]["oldest_record"] > 8
    assert _packed(server, "e") == []
    resp = await server.http.get(server.api("/b/bkt/e?ts=39"))
    assert await body_of(resp) == _data("e", 39)


@pytest_twisted.ensureDeferred
async def test_replication_sends_compressed_records(tmp_path):
    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst")
    try:
        await ok(await dst.http.post(dst.api("/b/dst")))
        await _setup(src, entries=("e",), count=8)
        body = json.dumps({"src_bucket": "bkt", "dst_bucket": "dst", "dst_host": dst.url,
                           "dst_token": "", "mode": "paused"}).encode()
        await ok(await src.http.post(src.api("/replications/r"), data=body))
        for ts in range(9, 13):  # logged while paused, sent after the compression
            await ok(await src.http.post(src.api(f"/b/bkt/e?ts={ts}"), data=_data("e", ts)))
        assert await _compress(src, "e") == (12, 3)
        await ok(await src.http.patch(src.api("/replications/r/mode"),
                                      data=b'{"mode": "enabled"}'))
        from twisted.internet import reactor

        for _ in range(200):
            resp = await src.http.get(src.api("/replications/r"))
            if json.loads(await ok(resp))["info"]["pending_records"] == 0:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        for ts in range(9, 13):
            resp = await dst.http.get(dst.api(f"/b/dst/e?ts={ts}"))
            assert (resp.code, await body_of(resp) == _data("e", ts)) == (200, True), ts
    finally:
        await stop_src()
        await stop_dst()
