"""
Issue #16 items 1–2 against the real daemon over real sockets: the SHA-256
of every record (``repr-digest`` on reads, ``content-digest``/``repr-digest``
and ``x-reduct-digest-*`` checked on writes, nothing stored on a mismatch)
and entry numbers (commit order, kept across restarts, never reused after
removals, FIFO eviction or renames).
"""

import base64
import hashlib

import pytest_twisted

from reduct_twisted.storage import SMALL_RECORD_MAX
from tests.integration.conftest import running_server, start_server
from tests.integration.helpers import assert_error, body_of, call, ok, read_single
from tests.integration.io_helpers import create_bucket, errors_of, v2_write

B = "bkt"


def b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def field(data: bytes) -> str:
    """``sha-256=:<base64>:`` of ``data`` (RFC 9530)."""
    return f"sha-256=:{b64(data)}:"


async def write(server, entry, ts, data, headers=None, bucket=B):
    sent = {k: [v] for k, v in (headers or {}).items()}
    return await server.http.post(server.api(f"/b/{bucket}/{entry}?ts={ts}"), data=data,
                                  headers=sent)


async def stored(server, entry, ts, bucket=B):
    """:return: ``(number, digest)`` of the stored record ``ts``."""
    record = server.engine.read(bucket, entry, ts).record
    return record.number, record.digest


# -- reads ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_get_and_head_carry_repr_digest(server):
    await create_bucket(server)
    big = bytes(range(256)) * (SMALL_RECORD_MAX // 256 + 7)
    for ts, data in ((1, b"small"), (2, big), (3, b"")):
        await ok(await write(server, "e", ts, data))
    for ts, data in ((1, b"small"), (2, big), (3, b"")):
        resp, body = await read_single(server, "e", ts)
        assert body == data
        assert resp.headers.getRawHeaders("repr-digest") == [field(data)]
        head = await server.http.head(server.api(f"/b/{B}/e?ts={ts}"))
        await body_of(head)
        assert head.headers.getRawHeaders("repr-digest") == [field(data)]
        assert (await stored(server, "e", ts)) == (ts, hashlib.sha256(data).digest())


@pytest_twisted.ensureDeferred
async def test_chunked_upload_gets_its_digest(server):
    await create_bucket(server)

    def body():
        for _ in range(5):
            yield b"x" * 70000

    from twisted.web.client import FileBodyProducer
    import io
    data = b"x" * 350000
    resp = await server.http.post(server.api(f"/b/{B}/e?ts=5"),
                                  data=FileBodyProducer(io.BytesIO(data)),
                                  headers={"content-digest": [field(data)]})
    await ok(resp)
    resp, got = await read_single(server, "e", 5)
    assert got == data and resp.headers.getRawHeaders("repr-digest") == [field(data)]


@pytest_twisted.ensureDeferred
async def test_integrity_off_computes_no_digest(tmp_path):
    async with running_server(tmp_path / "data", integrity="off") as server:
        await create_bucket(server)
        await ok(await write(server, "e", 1, b"abc"))
        resp, _ = await read_single(server, "e", 1)
        assert resp.headers.getRawHeaders("repr-digest") is None
        assert await stored(server, "e", 1) == (1, None)
        # A digest the client sends is still checked.
        resp = await write(server, "e", 2, b"abc", {"repr-digest": field(b"abd")})
        await assert_error(resp, 400, f"Content digest mismatch: expected {b64(b'abd')}, "
                                      f"got {b64(b'abc')}")


# -- single writes ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_single_write_digest_checked(server):
    await create_bucket(server)
    big = b"y" * (SMALL_RECORD_MAX + 10)
    for ts, data, name in ((1, b"hello", "content-digest"), (2, big, "repr-digest")):
        # Several algorithms: sha-256 is checked, the unknown one ignored.
        value = f"unknown=:AAAA:, {field(data)}"
        await ok(await write(server, "e", ts, data, {name: value}))
        bad = data[:-1] + b"!"
        resp = await write(server, "e", ts + 10, bad, {name: field(data)})
        await assert_error(resp, 400, f"Content digest mismatch: expected {b64(data)}, "
                                      f"got {b64(bad)}")
        resp, _ = await read_single(server, "e", ts + 10)
        assert resp.code == 404
    info = await ok(await call(server, "GET", f"/b/{B}"))
    assert b'"record_count":2' in info.replace(b" ", b"")
    # The numbers of refused records were not used up.
    await ok(await write(server, "e", 30, b"next"))
    assert (await stored(server, "e", 30))[0] == 3


@pytest_twisted.ensureDeferred
async def test_malformed_digest_is_400_before_the_body(server):
    await create_bucket(server)
    for value in ("sha-256=:not base64!:", "sha-256=:AAAA:", "sha-256=abc", "=", "sha-256=:"):
        resp = await write(server, "e", 1, b"abc", {"content-digest": value})
        body = await body_of(resp)
        assert resp.code == 400, (value, body)
        assert resp.headers.getRawHeaders("x-reduct-error")[0].startswith(
            "Invalid content digest")
    # Only other algorithms: nothing to check.
    await ok(await write(server, "e", 1, b"abc", {"repr-digest": "sha-512=:AAAA:"}))
    resp, _ = await read_single(server, "e", 1)
    assert resp.code == 200


# -- batches ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_v1_batch_mismatch_fails_that_record_only(server):
    await create_bucket(server)
    records = {10: b"first", 20: b"second", 30: b"x" * (SMALL_RECORD_MAX + 3)}
    headers = {f"x-reduct-time-{ts}": [f"{len(d)},text/plain"] for ts, d in records.items()}
    headers["x-reduct-digest-10"] = [field(b"first")]
    headers["x-reduct-digest-20"] = [field(b"other")]
    headers["x-reduct-digest-30"] = [field(records[30][:-1] + b"z")]
    body = b"".join(records[ts] for ts in sorted(records))
    resp = await server.http.post(server.api(f"/b/{B}/e/batch"), data=body, headers=headers)
    await ok(resp)
    assert resp.headers.getRawHeaders("x-reduct-error-20") == [
        f"400,Content digest mismatch: expected {b64(b'other')}, got {b64(b'second')}"]
    assert resp.headers.getRawHeaders("x-reduct-error-30")[0].startswith(
        "400,Content digest mismatch")
    assert resp.headers.getRawHeaders("x-reduct-error-10") is None
    for ts, code in ((10, 200), (20, 404), (30, 404)):
        resp, data = await read_single(server, "e", ts)
        assert resp.code == code
    assert (await stored(server, "e", 10)) == (1, hashlib.sha256(b"first").digest())
    # A malformed per-record digest refuses the request before its body.
    headers = {"x-reduct-time-40": ["1,text/plain"], "x-reduct-digest-40": ["sha-256=1"]}
    resp = await server.http.post(server.api(f"/b/{B}/e/batch"), data=b"a", headers=headers)
    await body_of(resp)
    assert resp.code == 400


@pytest_twisted.ensureDeferred
async def test_v2_batch_mismatch_fails_that_record_only(server):
    await create_bucket(server)
    records = [("a", 100, b"one", "text/plain", {}), ("a", 105, b"two", "text/plain", {}),
               ("b", 101, b"three", "text/plain", {})]
    headers, body = v2_write(records)
    headers["x-reduct-digest-0-0"] = [field(b"one")]
    headers["x-reduct-digest-0-5"] = [field(b"TWO")]
    headers["x-reduct-digest-1-1"] = [field(b"three")]
    resp = await server.http.post(server.api(f"/io/{B}/write"), data=body, headers=headers)
    await ok(resp)
    assert errors_of(resp) == {
        "x-reduct-error-0-5": f"400,Content digest mismatch: expected {b64(b'TWO')}, got {b64(b'two')}"}
    for entry, ts, code in (("a", 100, 200), ("a", 105, 404), ("b", 101, 200)):
        resp, _ = await read_single(server, entry, ts)
        assert resp.code == code
    resp, _ = await read_single(server, "b", 101)
    assert resp.headers.getRawHeaders("repr-digest") == [field(b"three")]


# -- entry numbers ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_numbers_commit_order_restart_removal_eviction_rename(tmp_path):
    data = tmp_path / "data"
    server, stop = await start_server(data)
    try:
        await ok(await call(server, "POST", f"/b/{B}", {"max_block_records": 2}))
        for ts in (1000, 2000, 3000):
            await ok(await write(server, "e", ts, b"v%d" % ts))
        await ok(await write(server, "e", 500, b"belated"))  # belated: the next number
        numbers = {ts: (await stored(server, "e", ts))[0] for ts in (500, 1000, 2000, 3000)}
        assert numbers == {1000: 1, 2000: 2, 3000: 3, 500: 4}
        # Removing the records with the greatest numbers does not bring them back.
        await ok(await call(server, "DELETE", f"/b/{B}/e?ts=500"))
        await ok(await call(server, "DELETE", f"/b/{B}/e?ts=3000"))
    finally:
        await stop()
    server, stop = await start_server(data)
    try:
        await ok(await write(server, "e", 4000, b"after restart"))
        assert (await stored(server, "e", 4000))[0] == 5
        assert (await stored(server, "e", 1000))[0] == 1
        await ok(await call(server, "PUT", f"/b/{B}/e/rename", {"new_name": "f"}))
        await ok(await write(server, "f", 5000, b"renamed"))
        assert (await stored(server, "f", 5000))[0] == 6
        await ok(await call(server, "PUT", f"/b/{B}/rename", {"new_name": "c"}))
        await ok(await write(server, "f", 6000, b"bucket renamed", bucket="c"))
        assert (await stored(server, "f", 6000, bucket="c"))[0] == 7
        # FIFO eviction of every block: numbers go on.
        await ok(await call(server, "PUT", "/b/c", {"quota_type": "FIFO", "quota_size": 40}))
        for ts in range(7000, 7005):
            await ok(await write(server, "f", ts, b"z" * 30, bucket="c"))
        assert (await stored(server, "f", 7004, bucket="c"))[0] == 12
        assert server.engine.bucket_info("c")["entries"][0]["oldest_record"] > 6000
    finally:
        await stop()
    server, stop = await start_server(data)
    try:
        await ok(await write(server, "f", 8000, b"z", bucket="c"))
        assert (await stored(server, "f", 8000, bucket="c"))[0] == 13
    finally:
        await stop()


# -- replication ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_replicated_digest_equals_the_source(tmp_path):
    """The sender puts each record's digest in x-reduct-digest-<ts>; the
    destination checks it, computes its own, and they agree."""
    import json

    from twisted.internet import reactor, task

    src, stop_src = await start_server(tmp_path / "src")
    dst, stop_dst = await start_server(tmp_path / "dst", integrity="digest")
    try:
        await create_bucket(src, "src")
        await create_bucket(dst, "dst")
        settings = {"src_bucket": "src", "dst_bucket": "dst", "dst_host": dst.url}
        await ok(await call(src, "POST", "/replications/r", settings))
        contents = {1: b"one", 2: b"w" * (SMALL_RECORD_MAX + 5), 3: b""}
        for ts, data in contents.items():
            await ok(await write(src, "e", ts, data, bucket="src"))
        for _ in range(400):
            detail = json.loads(await ok(await call(src, "GET", "/replications/r")))
            if detail["info"]["pending_records"] == 0:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        for ts, data in contents.items():
            number, digest = await stored(dst, "e", ts, bucket="dst")
            assert digest == (await stored(src, "e", ts, bucket="src"))[1]
            assert digest == hashlib.sha256(data).digest() and number == ts
            resp, body = await read_single(dst, "e", ts, bucket="dst")
            assert body == data and resp.headers.getRawHeaders("repr-digest") == [field(data)]
    finally:
        await stop_src()
        await stop_dst()


# -- backfill ---------------------------------------------------------------------------------


def test_old_directory_is_backfilled_by_the_daemon(tmp_path):
    """A directory in the previous format (marker 2, .meta lines without "n"
    and "sha256", made here from one the daemon wrote) is upgraded at start;
    its records are readable at once and get their digests (and numbers, in
    timestamp order, below the new records') from the background pass."""
    import json
    import os
    import time

    from tests.integration.daemon import Connection, Twistd

    data_path = tmp_path / "data"
    contents = {ts: (b"old-%d" % ts) * (1 + ts % 3) for ts in (30, 10, 20, 40)}
    contents[50] = b"L" * (SMALL_RECORD_MAX + 1)
    daemon = Twistd(data_path)
    port = daemon.start()
    with Connection(port) as conn:
        assert conn.request("POST", f"/api/v1/b/{B}",
                            json.dumps({"max_block_records": 2}).encode()).status == 200
        for ts, data in contents.items():
            assert conn.request("POST", f"/api/v1/b/{B}/e?ts={ts}", data).status == 200
    daemon.stop()
    entry_dir = data_path / B / "e"
    if (entry_dir / ".numbers").exists():
        os.unlink(entry_dir / ".numbers")
    for meta in entry_dir.glob("*.meta"):
        lines = [json.loads(line) for line in meta.read_bytes().splitlines()]
        for line in lines:
            assert line.pop("n", 0) is not None and line.pop("sha256", "") is not None
        meta.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (data_path / ".reduct-twisted").write_text('{"format": "reduct-twisted", "version": 2}\n')
    daemon = Twistd(data_path)
    port = daemon.start()
    try:
        with Connection(port) as conn:
            assert conn.request("POST", f"/api/v1/b/{B}/e?ts=60", b"new").status == 200
            deadline = time.monotonic() + 30
            while True:
                resp = conn.request("GET", f"/api/v1/b/{B}/e?ts=50")
                assert resp.status == 200 and resp.body == contents[50]
                if resp.header("repr-digest") is not None:
                    break
                assert time.monotonic() < deadline, "no backfill"
                time.sleep(0.05)
            for ts, data in contents.items():
                resp = conn.request("GET", f"/api/v1/b/{B}/e?ts={ts}")
                assert resp.header("repr-digest") == field(data)
        assert daemon.alarms() == []
    finally:
        daemon.stop()
    assert json.loads((data_path / ".reduct-twisted").read_text())["version"] == 3
    numbers = {}
    for meta in entry_dir.glob("*.meta"):
        for raw in meta.read_bytes().splitlines()[1:]:
            line = json.loads(raw)
            numbers[line["ts"]] = line["n"]
    assert numbers == {10: 1, 20: 2, 30: 3, 40: 4, 50: 5, 60: 6}
