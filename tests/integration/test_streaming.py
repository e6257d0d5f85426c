"""
Bodies stream into block files as they arrive: Expect: 100-continue,
chunked uploads, truncated bodies, vanishing clients, large round trips.
These also pin the twisted.web internals the streaming request relies on.
"""

import hashlib
import json
import os
import socket
from io import BytesIO

import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.threads import deferToThread
from twisted.web.client import FileBodyProducer
from twisted.web.iweb import UNKNOWN_LENGTH

from tests.integration.conftest import start_server
from tests.integration.helpers import port_of, raw_request


async def make_bucket(server, name="b"):
    resp = await server.http.post(server.api(f"/b/{name}"))
    assert resp.code == 200
    await resp.content()


def data_files(root):
    """Every file under the data directory with its size."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = os.path.getsize(path)
    return found


async def settle(reactor_passes=20):
    """Let the reactor and the thread pool finish pending work."""
    from twisted.internet import reactor

    for _ in range(reactor_passes):
        await task.deferLater(reactor, 0.01, lambda: None)


@pytest_twisted.ensureDeferred
async def test_expect_continue_refused_before_body(server):
    """A write that will fail gets its 4xx instead of '100 Continue', and the connection closes."""
    raw = await raw_request(port_of(server), b"POST /api/v1/b/missing/e?ts=1 HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n", read_until_close=True)
    assert raw.startswith(b"HTTP/1.1 404"), raw[:100]
    assert b"100 Continue" not in raw
    assert b"x-reduct-error: Bucket 'missing' is not found" in raw
    assert b"\r\ndate: " in raw and b"\r\nx-reduct-api: 1.20" in raw


@pytest_twisted.ensureDeferred
async def test_expect_continue_accepted(server):
    """A valid write gets '100 Continue', then the body is stored."""
    await make_bucket(server)

    def exchange():
        sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
        sock.sendall(b"POST /api/v1/b/b/e?ts=5 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        first = sock.recv(1000)
        sock.sendall(b"hello")
        rest = b""
        while b"\r\n\r\n" not in rest:
            rest += sock.recv(1000)
        sock.close()
        return first, rest

    first, rest = await deferToThread(exchange)
    assert first.startswith(b"HTTP/1.1 100 Continue")
    assert rest.startswith(b"HTTP/1.1 200")
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "5"})
    assert await resp.content() == b"hello"


@pytest_twisted.ensureDeferred
async def test_refused_small_body_keeps_connection(server):
    """Without Expect a small refused body is drained and the connection reused."""
    payload = (b"POST /api/v1/b/missing/e?ts=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
               b"GET /api/v1/alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await raw_request(port_of(server), payload, read_until_close=True)
    assert raw.startswith(b"HTTP/1.1 404")
    assert raw.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 200" in raw


@pytest_twisted.ensureDeferred
async def test_chunked_upload_is_stored_exactly(server):
    """A chunked upload of unknown length is streamed and stored byte-exact."""
    await make_bucket(server)
    payload = os.urandom(3 << 20) + b"tail"
    producer = FileBodyProducer(BytesIO(payload))
    producer.length = UNKNOWN_LENGTH
    resp = await server.http.post(server.api("/b/b/e"), params={"ts": "42"}, data=producer)
    assert resp.code == 200, await resp.content()
    await resp.content()
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "42"})
    assert hashlib.sha256(await resp.content()).digest() == hashlib.sha256(payload).digest()
    info = json.loads(await (await server.http.get(server.api("/b/b"))).content())
    assert info["entries"][0]["record_count"] == 1
    assert info["entries"][0]["size"] >= len(payload)


@pytest_twisted.ensureDeferred
async def test_large_record_round_trip(server):
    """A 20 MiB record streams in and out byte-exact (private segment, push producer)."""
    await make_bucket(server)
    payload = os.urandom(20 << 20)
    resp = await server.http.post(server.api("/b/b/e"), params={"ts": "7"}, data=BytesIO(payload))
    assert resp.code == 200, await resp.content()
    await resp.content()
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "7"})
    assert resp.length == len(payload)
    got = await resp.content()
    assert len(got) == len(payload) and got == payload


async def _truncated_upload(server, ts, declared, sent):
    def run():
        sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
        sock.sendall(b"POST /api/v1/b/b/e?ts=%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % (ts, declared))
        sock.sendall(b"z" * sent)
        sock.close()

    await deferToThread(run)
    await settle()


@pytest_twisted.ensureDeferred
async def test_client_vanishing_mid_upload_leaves_nothing(server):
    """Small or large, a body cut short leaves no record, no stats and no extra bytes on disk."""
    await make_bucket(server)
    resp = await server.http.post(server.api("/b/b/e"), params={"ts": "1"}, data=b"keep")
    assert resp.code == 200
    await resp.content()
    before = data_files(server.data_path)
    stats_before = json.loads(await (await server.http.get(server.api("/b/b"))).content())
    await _truncated_upload(server, 2, 1000, 10)            # small record, shared segment
    await _truncated_upload(server, 3, 5 << 20, 2 << 20)    # large record, private segment
    for ts in (2, 3):
        resp = await server.http.get(server.api("/b/b/e"), params={"ts": str(ts)})
        assert resp.code == 404
        await resp.content()
    assert data_files(server.data_path) == before
    stats_after = json.loads(await (await server.http.get(server.api("/b/b"))).content())
    assert stats_after == stats_before
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "1"})
    assert await resp.content() == b"keep"
    # the timestamps are free again
    resp = await server.http.post(server.api("/b/b/e"), params={"ts": "3"}, data=b"again")
    assert resp.code == 200
    await resp.content()


@pytest_twisted.ensureDeferred
async def test_record_being_written_is_425(server):
    """While a body is still arriving, reading that timestamp answers 425."""
    await make_bucket(server)
    sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
    try:
        await deferToThread(sock.sendall, b"POST /api/v1/b/b/e?ts=9 HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 100\r\n\r\n" + b"a" * 50)
        await settle(5)
        resp = await server.http.get(server.api("/b/b/e"), params={"ts": "9"})
        assert resp.code == 425
        assert resp.headers.getRawHeaders("x-reduct-error") == ["Record with timestamp 9 in b/e is still being written"]
        await resp.content()
        resp = await server.http.post(server.api("/b/b/e"), params={"ts": "9"}, data=b"dup")
        assert resp.code == 409
        await resp.content()
        await deferToThread(sock.sendall, b"b" * 50)
        reply = await deferToThread(sock.recv, 1000)
        assert reply.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "9"})
    assert await resp.content() == b"a" * 50 + b"b" * 50


@pytest_twisted.ensureDeferred
async def test_concurrent_small_writes_to_one_entry(server):
    """Interleaved small uploads to one entry each land at their own offset."""
    await make_bucket(server)
    bodies = {ts: os.urandom(1000 + ts) for ts in range(1, 41)}
    results = await defer.gatherResults([
        defer.ensureDeferred(server.http.post(server.api("/b/b/e"), params={"ts": str(ts)}, data=body))
        for ts, body in bodies.items()])
    for resp in results:
        assert resp.code == 200
        await resp.content()
    for ts, body in bodies.items():
        resp = await server.http.get(server.api("/b/b/e"), params={"ts": str(ts)})
        assert await resp.content() == body


@pytest_twisted.ensureDeferred
async def test_state_survives_restart(tmp_path):
    """Stop the daemon, start it on the same data directory: records and settings are there."""
    srv, stop = await start_server(tmp_path / "data")
    resp = await srv.http.post(srv.api("/b/keep"), data=b'{"max_block_records": 3}')
    await resp.content()
    payload = {ts: os.urandom(ts * 100) for ts in range(1, 8)}
    payload[100] = os.urandom(2 << 20)
    for ts, body in payload.items():
        resp = await srv.http.post(srv.api("/b/keep/e"), params={"ts": str(ts)}, data=body,
                                   headers={"x-reduct-label-n": str(ts)})
        assert resp.code == 200
        await resp.content()
    before = json.loads(await (await srv.http.get(srv.api("/b/keep"))).content())
    await stop()
    srv, stop = await start_server(tmp_path / "data")
    try:
        after = json.loads(await (await srv.http.get(srv.api("/b/keep"))).content())
        assert after == before
        for ts, body in payload.items():
            resp = await srv.http.get(srv.api("/b/keep/e"), params={"ts": str(ts)})
            assert await resp.content() == body
            assert resp.headers.getRawHeaders("x-reduct-label-n") == [str(ts)]
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_api_base_path(tmp_path):
    """With a base path the API lives under it and nothing answers outside it."""
    srv, stop = await start_server(tmp_path / "data", api_base_path="/reduct/")
    try:
        resp = await srv.http.get(srv.url + "/reduct/api/v1/info")
        assert resp.code == 200
        await resp.content()
        resp = await srv.http.post(srv.url + "/reduct/api/v1/b/x")
        assert resp.code == 200
        await resp.content()
        resp = await srv.http.post(srv.url + "/reduct/api/v1/b/x/e", params={"ts": "1"}, data=b"v")
        assert resp.code == 200
        await resp.content()
        for url in (srv.url + "/api/v1/info", srv.url + "/other/api/v1/info"):
            resp = await srv.http.get(url)
            assert resp.code == 404
            assert resp.headers.getRawHeaders("x-reduct-error") == ["Not found"]
            await resp.content()
        resp = await srv.http.post(srv.url + "/api/v1/b/x/e", params={"ts": "2"}, data=b"v")
        assert resp.code == 404
        await resp.content()
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_expect_continue_refusals_before_body(server):
    """Bad ts, duplicate ts, HARD quota and a record larger than a FIFO quota are all
    answered instead of '100 Continue', so the client never sends the body."""
    for name, settings in (("hard", b'{"quota_type": "HARD", "quota_size": 1000}'),
                           ("fifo", b'{"quota_type": "FIFO", "quota_size": 1000}')):
        resp = await server.http.post(server.api(f"/b/{name}"), data=settings)
        assert resp.code == 200
        await resp.content()
    resp = await server.http.post(server.api("/b/hard/e"), params={"ts": "5"}, data=b"x")
    assert resp.code == 200
    await resp.content()
    cases = [
        (b"/api/v1/b/hard/e?ts=abc", 10, b"422", b"'ts' must be an unix timestamp in microseconds"),
        (b"/api/v1/b/hard/e?ts=5", 10, b"409", b"A record with timestamp 5 already exists"),
        (b"/api/v1/b/hard/e?ts=6", 5000, b"400", b"Quota of 'hard' exceeded"),
        (b"/api/v1/b/fifo/e?ts=6", 5000, b"500", b"Failed to keep quota of 'fifo'"),
    ]
    for target, length, status, message in cases:
        raw = await raw_request(port_of(server), b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                                b"Expect: 100-continue\r\n\r\n" % (target, length), read_until_close=True)
        assert raw.startswith(b"HTTP/1.1 " + status), (target, raw[:120])
        assert b"100 Continue" not in raw
        assert b"x-reduct-error: " + message in raw


@pytest_twisted.ensureDeferred
async def test_body_longer_than_content_length(server):
    """Bytes beyond Content-Length are not part of the record: it holds exactly the
    declared bytes, and the excess (parsed as a next request) is refused."""
    await make_bucket(server)
    raw = await raw_request(port_of(server), b"POST /api/v1/b/b/e?ts=1 HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 3\r\n\r\nabcEXCESS BYTES\r\n\r\n", read_until_close=True)
    assert raw.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 400" in raw
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "1"})
    assert await resp.content() == b"abc"


@pytest_twisted.ensureDeferred
async def test_round_trip_across_read_path_boundaries(server):
    """Sizes around the inline-read limit, the socket buffer and the small-record limit
    all come back byte-exact (a body the socket takes in one go once reset the connection)."""
    from reduct_twisted.http.producers import INLINE_MAX
    from reduct_twisted.storage import SMALL_RECORD_MAX

    await make_bucket(server)
    sizes = [INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1, 100_000, 102_400, 200_000,
             SMALL_RECORD_MAX, SMALL_RECORD_MAX + 1, 3 << 20]
    for ts, size in enumerate(sizes, start=1):
        payload = os.urandom(size)
        resp = await server.http.post(server.api("/b/b/e"), params={"ts": str(ts)}, data=payload)
        assert resp.code == 200, (size, await resp.content())
        await resp.content()
        resp = await server.http.get(server.api("/b/b/e"), params={"ts": str(ts)})
        assert resp.code == 200
        assert await resp.content() == payload, size


@pytest_twisted.ensureDeferred
async def test_refusals_without_a_body_are_answered(server):
    """A refused request that announces no body (Content-Length: 0, or a malformed
    length) is answered even with Expect: 100-continue, never dropped."""
    cases = [
        (b"Content-Length: 0\r\nExpect: 100-continue\r\n", b"404 Not Found", b"Bucket 'missing' is not found"),
        (b"Content-Length: abc\r\nExpect: 100-continue\r\n", b"422 Unprocessable Entity",
         b"content-length header must be a number"),
        (b"Content-Length: 0\r\n", b"404 Not Found", b"Bucket 'missing' is not found"),
    ]
    for extra, status, message in cases:
        raw = await raw_request(port_of(server), b"POST /api/v1/b/missing/e?ts=1 HTTP/1.1\r\nHost: x\r\n"
                                + extra + b"Connection: close\r\n\r\n", read_until_close=True)
        assert raw.startswith(b"HTTP/1.1 " + status), (extra, raw[:100])
        assert b"100 Continue" not in raw
        assert b"x-reduct-error: " + message in raw
    raw = await raw_request(port_of(server), b"POST /api/v1/b/zero HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 0\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
                            read_until_close=True)
    assert b"HTTP/1.1 200 OK" in raw, raw[:100]


@pytest_twisted.ensureDeferred
async def test_chunked_upload_of_more_chunks_than_iov_max(server):
    """
    Thousands of tiny chunks arriving together queue up behind the write in
    flight and go to the disk as one batch of more buffers than one
    ``writev`` takes (IOV_MAX, 1024 on Linux): stored byte-exact.
    """
    await make_bucket(server)
    pieces = [os.urandom(1 + i % 7) for i in range(20_000)]
    body = b"".join(b"%x\r\n" % len(piece) + piece + b"\r\n" for piece in pieces) + b"0\r\n\r\n"
    raw = await raw_request(
        port_of(server),
        b"POST /api/v1/b/b/e?ts=9 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
        timeout=10,
    )
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "9"})
    assert resp.code == 200
    assert await resp.content() == b"".join(pieces)
