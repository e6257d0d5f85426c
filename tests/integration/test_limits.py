"""
The limits of spec 1.20 §5.10 over real sockets: ``RS_RATE_LIMIT_API``,
``_INGRESS``, ``_EGRESS`` (429, exact text, ``x-reduct-api`` and
``server``, no ``Retry-After``), ``RS_ENGINE_MAX_STORAGE_SIZE`` (500 for
a single write, per record in v1 and v2 batches) and the free-space refusal
before writing (507 on a small tmpfs, stored data intact).
"""

import json
import os
import re

import pytest
import pytest_twisted

from reduct_twisted.config_limits import RateLimit
from tests.integration.conftest import start_server
from tests.integration.test_enospc import tmpfs  # noqa: F401 (a 4 MiB tmpfs, root only)
from tests.integration.helpers import assert_error, body_of, call, ok, read_single
from tests.integration.io_helpers import errors_of, post_write

KIB = 1 << 10


def _refusal(kind, scope, used, limit):
    return re.compile(
        re.escape(f"rate limit for {kind} ({scope}) exceeded: used={used} limit={limit} ")
        + r"retry_after=(\d+)s"
    )


async def _assert_429(resp, pattern):
    body = await body_of(resp)
    assert resp.code == 429, (resp.code, body)
    [text] = resp.headers.getRawHeaders("x-reduct-error")
    match = pattern.fullmatch(text)
    assert match, text
    assert 3590 <= int(match.group(1)) <= 3600
    assert json.loads(body) == {"detail": text}
    assert resp.headers.getRawHeaders("x-reduct-api") == ["1.20"]
    assert resp.headers.getRawHeaders("server")[0].startswith("ReductStore ")
    assert not resp.headers.hasHeader("retry-after")


@pytest_twisted.async_yield_fixture()
async def limited(tmp_path, request):
    srv, stop = await start_server(tmp_path / "data", **request.param)
    yield srv
    await stop()


def _with(**settings):
    return pytest.mark.parametrize("limited", [settings], indirect=True)


@_with(rate_limit_api=RateLimit(4, 3600))
@pytest_twisted.ensureDeferred
async def test_api_limit_counts_every_request(limited):
    """/alive and /ready count; the fifth request of a client is refused;
    a client behind the (trusted, loopback) proxy has its own window."""
    srv = limited
    for path in ("/alive", "/ready", "/info"):
        await ok(await call(srv, "GET", path))
    await ok(await call(srv, "POST", "/b/bkt"))
    pattern = _refusal("api requests", "client 127.0.0.1", 5, 4)
    await _assert_429(await call(srv, "GET", "/alive"), pattern)
    # A refused request with a body: drained, nothing stored, keep-alive works.
    await _assert_429(await call(srv, "POST", "/b/bkt/e?ts=1", raw=b"x" * 100), pattern)
    await _assert_429(await call(srv, "GET", "/b/bkt"), pattern)
    forwarded = {"X-Forwarded-For": "203.0.113.10"}
    resp = await call(srv, "GET", "/b/bkt/e", headers={**forwarded}, raw=None)
    # 404: the refused write stored nothing (and this client was counted once).
    await assert_error(resp, 404, "Entry 'e' not found in bucket 'bkt'")
    # A CORS preflight is not counted (and is answered as always).
    resp = await call(srv, "OPTIONS", "/b/bkt", headers=forwarded)
    await body_of(resp)
    assert resp.code == 200
    for _ in range(3):
        await ok(await call(srv, "GET", "/alive", headers=forwarded))
    await _assert_429(await call(srv, "GET", "/alive", headers=forwarded),
                      _refusal("api requests", "client 203.0.113.10", 5, 4))


@_with(rate_limit_ingress=RateLimit(1000, 3600))
@pytest_twisted.ensureDeferred
async def test_ingress_limit_counts_announced_lengths_of_every_write(limited):
    srv = limited
    await ok(await call(srv, "POST", "/b/bkt"))
    await ok(await call(srv, "POST", "/b/bkt/e?ts=1", raw=b"a" * 600))
    await _assert_429(await call(srv, "POST", "/b/bkt/e?ts=2", raw=b"b" * 600),
                      _refusal("ingress bytes", "client 127.0.0.1", "1.2 KB (1200)",
                               "1.0 KB (1000)"))
    resp, _ = await read_single(srv, "e", 2)
    assert resp.code == 404
    # A v1 batch of 300 + 200 bytes: the whole request is refused.
    batch = {"x-reduct-time-3": "300,text/plain", "x-reduct-time-4": "200,text/plain"}
    await _assert_429(await call(srv, "POST", "/b/bkt/e/batch", headers=batch,
                                 raw=b"c" * 500),
                      _refusal("ingress bytes", "client 127.0.0.1", "1.1 KB (1100)",
                               "1.0 KB (1000)"))
    # A v2 write of 401 bytes likewise; 400 still fit.
    resp = await post_write(srv, [("e", 5, b"d" * 401, "text/plain", {})])
    assert resp.code == 429
    resp = await post_write(srv, [("e", 5, b"d" * 400, "text/plain", {})])
    assert resp.code == 200 and errors_of(resp) == {}
    # Reads are not ingress.
    resp, body = await read_single(srv, "e", 1)
    assert (resp.code, body) == (200, b"a" * 600)


@_with(rate_limit_egress=RateLimit(1000, 3600))
@pytest_twisted.ensureDeferred
async def test_egress_limit_counts_single_reads_and_batch_bodies(limited):
    srv = limited
    await ok(await call(srv, "POST", "/b/bkt"))
    for ts in range(1, 5):
        await ok(await call(srv, "POST", f"/b/bkt/e?ts={ts}", raw=bytes([ts]) * 300))
    resp, body = await read_single(srv, "e", 1)
    assert (resp.code, body) == (200, b"\x01" * 300)
    # HEAD sends no content: not counted.
    resp = await call(srv, "HEAD", "/b/bkt/e?ts=2")
    await body_of(resp)
    assert resp.code == 200
    # A v1 batched read of 4 x 300 bytes would take it to 1500.
    qid = json.loads(await ok(await call(srv, "GET", "/b/bkt/e/q?start=0")))["id"]
    pattern = _refusal("egress bytes", "client 127.0.0.1", "1.5 KB (1500)", "1.0 KB (1000)")
    await _assert_429(await call(srv, "GET", f"/b/bkt/e/batch?q={qid}"), pattern)
    resp, body = await read_single(srv, "e", 2)
    assert (resp.code, body) == (200, b"\x02" * 300)
    resp, body = await read_single(srv, "e", 3)
    assert (resp.code, body) == (200, b"\x03" * 300)  # 900 bytes so far
    resp = await srv.http.get(srv.api("/b/bkt/e?ts=4"))
    await _assert_429(resp, _refusal("egress bytes", "client 127.0.0.1", "1.2 KB (1200)",
                                     "1.0 KB (1000)"))


@_with(rate_limit_egress=RateLimit(500, 3600))
@pytest_twisted.ensureDeferred
async def test_egress_limit_counts_v2_batch_bodies(limited):
    srv = limited
    await ok(await call(srv, "POST", "/b/bkt"))
    resp = await post_write(srv, [("a", 1, b"x" * 300, "text/plain", {}),
                                  ("b", 2, b"y" * 300, "text/plain", {})])
    assert resp.code == 200 and errors_of(resp) == {}
    resp = await call(srv, "POST", "/io/bkt/q", body={"query_type": "QUERY", "entries": ["*"]})
    qid = json.loads(await ok(resp))["id"]
    resp = await srv.http.get(srv.api("/io/bkt/read"), headers={"x-reduct-query-id": [str(qid)]})
    await _assert_429(resp, _refusal("egress bytes", "client 127.0.0.1", "600 B (600)",
                                     "500 B (500)"))
    # Only the metadata (HEAD) is never counted.
    resp = await call(srv, "POST", "/io/bkt/q", body={"query_type": "QUERY", "entries": ["*"]})
    qid = json.loads(await ok(resp))["id"]
    resp = await srv.http.head(srv.api("/io/bkt/read"), headers={"x-reduct-query-id": [str(qid)]})
    await body_of(resp)
    assert resp.code == 200


@_with(engine_max_storage_size=4 * KIB)
@pytest_twisted.ensureDeferred
async def test_storage_cap_single_and_batches(limited):
    """500 for a single write; per record in v1 and v2 batches; across buckets;
    nothing stored beyond the cap; room again after a removal."""
    srv = limited
    await ok(await call(srv, "POST", "/b/one"))
    await ok(await call(srv, "POST", "/b/two"))
    await ok(await call(srv, "POST", "/b/one/e?ts=1", raw=b"a" * 2000))
    await assert_error(await call(srv, "POST", "/b/two/e?ts=1", raw=b"b" * 2500), 500,
                       "storage limit exceeded")
    batch = {"x-reduct-time-10": "1000,text/plain", "x-reduct-time-11": "1500,text/plain",
             "x-reduct-time-12": "10,text/plain"}
    resp = await call(srv, "POST", "/b/two/e/batch", headers=batch,
                      raw=b"c" * 1000 + b"d" * 1500 + b"e" * 10)
    await ok(resp)
    assert resp.headers.getRawHeaders("x-reduct-error-11") == ["500,storage limit exceeded"]
    assert not resp.headers.hasHeader("x-reduct-error-10")
    assert not resp.headers.hasHeader("x-reduct-error-12")
    resp = await post_write(srv, [("v", 20, b"f" * 1200, "text/plain", {}),
                                  ("v", 21, b"g" * 5, "text/plain", {})], bucket="two")
    assert resp.code == 200
    assert errors_of(resp) == {"x-reduct-error-0-0": "500,storage limit exceeded"}
    info = json.loads(await ok(await call(srv, "GET", "/info")))
    assert info["usage"] <= 4 * KIB
    for entry, ts, code in (("e", 1, 404), ("e", 10, 200), ("e", 11, 404), ("e", 12, 200),
                            ("v", 20, 404), ("v", 21, 200)):
        resp, _ = await read_single(srv, entry, ts, bucket="two")
        assert resp.code == code, (entry, ts)
    await ok(await call(srv, "DELETE", "/b/one"))
    await ok(await call(srv, "POST", "/b/two/e?ts=1", raw=b"b" * 2500))




@pytest_twisted.ensureDeferred
async def test_free_space_refusal_before_writing(tmpfs):
    """On a 4 MiB file system a record larger than its free space is refused
    with 507 before any byte is written (one larger than the whole file
    system with 413): no file grows, the records stored before stay
    readable, and a record that fits is stored."""
    srv, stop = await start_server(tmpfs / "data")
    try:
        await ok(await call(srv, "POST", "/b/bkt"))
        await ok(await call(srv, "POST", "/b/bkt/e?ts=1", raw=b"k" * 1000))
        before = os.statvfs(tmpfs).f_bavail
        entry_dir = tmpfs / "data" / "bkt" / "e"
        files = {p.name: p.stat().st_size for p in entry_dir.iterdir()}
        capacity = os.statvfs(tmpfs).f_blocks * os.statvfs(tmpfs).f_frsize
        for ts, size in ((2, 5 << 20), (3, 4100 * KIB), (7, 4080 * KIB)):
            resp = await call(srv, "POST", f"/b/bkt/e?ts={ts}", raw=b"x" * size)
            if size > capacity:
                await assert_error(resp, 413, f"Record of {size} bytes is larger than the "
                                   f"storage ({capacity} bytes)")
            else:
                await assert_error(resp, 507, "Failed to write record: No space left on device")
        assert {p.name: p.stat().st_size for p in entry_dir.iterdir()} == files
        assert os.statvfs(tmpfs).f_bavail == before
        resp, body = await read_single(srv, "e", 1)
        assert (resp.code, body) == (200, b"k" * 1000)
        await ok(await call(srv, "POST", "/b/bkt/e?ts=4", raw=b"s" * 100 * KIB))
        # A v1 batch: the record that does not fit is refused on its own.
        batch = {"x-reduct-time-5": f"{4080 * KIB},text/plain",
                 "x-reduct-time-6": "10,text/plain"}
        resp = await call(srv, "POST", "/b/bkt/e/batch", headers=batch,
                          raw=b"b" * (4080 * KIB) + b"t" * 10)
        await ok(resp)
        assert resp.headers.getRawHeaders("x-reduct-error-5") == [
            "507,Failed to write record: No space left on device"]
        assert not resp.headers.hasHeader("x-reduct-error-6")
        resp, body = await read_single(srv, "e", 6)
        assert (resp.code, body) == (200, b"t" * 10)
        resp, body = await read_single(srv, "e", 1)
        assert (resp.code, body) == (200, b"k" * 1000)
    finally:
        await stop()


@_with(rate_limit_egress=RateLimit(500, 3600))
@pytest_twisted.ensureDeferred
async def test_egress_limit_counts_link_downloads(limited):
    """A query link's download counts its bytes, a range only the range's (spec 1.20 §5.10)."""
    import time

    srv = limited
    await ok(await call(srv, "POST", "/b/bkt"))
    await ok(await call(srv, "POST", "/b/bkt/e?ts=7", raw=b"z" * 300))
    body = {"bucket": "bkt", "entry": "e", "record_entry": "e", "record_timestamp": 7,
            "query": {"query_type": "QUERY"}, "expire_at": int(time.time()) + 600,
            "base_url": srv.url.rstrip("/") + "/"}
    resp = await srv.http.post(srv.api("/links/z.bin"), json.dumps(body).encode())
    link = json.loads(await ok(resp))["link"]
    resp = await srv.http.get(link, headers={"Range": "bytes=0-99"})
    assert (resp.code, await body_of(resp)) == (206, b"z" * 100)
    resp = await srv.http.get(link)
    assert (resp.code, await body_of(resp)) == (200, b"z" * 300)  # 400 so far
    resp = await srv.http.get(link)
    await _assert_429(resp, _refusal("egress bytes", "client 127.0.0.1", "700 B (700)",
                                     "500 B (500)"))
