"""
A HARD quota holds for every kind of write (spec §3.9, issue #12): chunked
uploads are stopped as their bytes cross it, batched records beyond it fail
one by one, and writes in flight count against it.  FIFO is unaffected.
"""

import json
import os
import socket

import pytest_twisted
from twisted.internet import task
from twisted.internet.threads import deferToThread

from tests.integration.helpers import assert_error, body_of, port_of, raw_request

QUOTA = 1_000_000
KIB = 1024


async def make_bucket(server, name="b", quota_type="HARD", **settings):
    body = json.dumps({"quota_type": quota_type, "quota_size": QUOTA, **settings}).encode()
    resp = await server.http.post(server.api(f"/b/{name}"), data=body)
    assert resp.code == 200, await resp.content()
    await resp.content()


def chunked_head(ts, bucket="b", entry="e") -> bytes:
    return (f"POST /api/v1/b/{bucket}/{entry}?ts={ts} HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()


def chunked_body(data: bytes, size: int = 64 * KIB, end: bool = True) -> bytes:
    """``data`` in chunked framing, ``size`` bytes a chunk."""
    parts = []
    for pos in range(0, len(data), size):
        piece = data[pos:pos + size]
        parts.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
    if end:
        parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def read_response(sock) -> bytes:
    """One response: headers, then the body its content-length announces."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        data = sock.recv(65536)
        if not data:
            return raw
        raw += data
    head, _, body = raw.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            break
        body += data
    return head + b"\r\n\r\n" + body


def parse(raw: bytes):
    """``(status, headers (lowercase name -> value), body)``."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def assert_quota_error(raw: bytes, bucket="b") -> dict:
    status, headers, body = parse(raw)
    message = f"Quota of '{bucket}' exceeded"
    assert status == 400, raw[:300]
    assert headers["x-reduct-error"] == message
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"detail": message}
    return headers


def bucket_state(server, name="b"):
    info = server.engine.bucket_info(name)
    return info["info"]["size"], [(e["name"], e["record_count"]) for e in info["entries"]]


def no_started_records(server, name="b"):
    info = server.engine.bucket_info(name)
    return all(not block["started"] for entry in info["entries"]
               for block in server.engine.block_stats(name, entry["name"]))


async def settle(passes=20):
    from twisted.internet import reactor

    for _ in range(passes):
        await task.deferLater(reactor, 0.01, lambda: None)


async def wait_for(predicate, timeout=5.0):
    from twisted.internet import reactor

    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not reached")


def in_flight(server, name="b"):
    # The bytes of chunked uploads counted against the quota while they run.
    return getattr(server.engine._bucket(name), "in_flight", 0)


def segment_size(server, ts, bucket="b", entry="e"):
    """Bytes on disk of the private segment of record ``ts`` (first of its block)."""
    try:
        return os.path.getsize(server.data_path / bucket / entry / f"{ts}-{ts}.blk")
    except OSError:
        return -1


async def read_status(server, ts, entry="e", bucket="b"):
    resp = await server.http.get(server.api(f"/b/{bucket}/{entry}"), params={"ts": str(ts)})
    return resp.code, await body_of(resp)


@pytest_twisted.ensureDeferred
async def test_chunked_upload_over_hard_quota_is_refused_and_kept_nowhere(server):
    """
    2 MB chunked into a 1 MB HARD bucket: answered 400 with the quota error
    as soon as it crosses the quota (the rest of the body is read and
    dropped, the connection closed after it), nothing of it stays, the
    statistics are as before, and the daemon goes on serving.
    """
    await make_bucket(server)
    resp = await server.http.post(server.api("/b/b/e"), params={"ts": "1"}, data=b"x" * 1000)
    assert resp.code == 200, await resp.content()
    await resp.content()
    before = bucket_state(server)
    payload = os.urandom(2 * QUOTA)

    def exchange():
        sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=10)
        try:
            sock.sendall(chunked_head(2) + chunked_body(payload))
            answer = read_response(sock)
            sock.settimeout(5)
            try:
                rest = sock.recv(65536)  # the server closes once the body is in
            except socket.timeout:
                rest = None
            return answer, rest
        finally:
            sock.close()

    raw, rest = await deferToThread(exchange)
    headers = assert_quota_error(raw)
    assert headers["connection"] == "close" and rest == b""
    await wait_for(lambda: no_started_records(server))
    assert (await read_status(server, 2))[0] == 404
    assert bucket_state(server) == before
    assert in_flight(server) == 0
    await settle()
    entry_dir = server.data_path / "b" / "e"
    assert not [name for name in os.listdir(entry_dir) if name.endswith("-2.blk")]
    # still serving: a write that fits
    resp = await server.http.post(server.api("/b/b/e"), params={"ts": "3"}, data=b"fits")
    assert resp.code == 200, await resp.content()
    await resp.content()
    assert await read_status(server, 3) == (200, b"fits")


@pytest_twisted.ensureDeferred
async def test_chunked_upload_within_hard_quota_is_stored(server):
    """A chunked upload that fits is stored whole and its bytes counted once."""
    await make_bucket(server)
    payload = os.urandom(QUOTA // 2)
    raw = await raw_request(port_of(server), chunked_head(5) + chunked_body(payload, 10_000))
    assert parse(raw)[0] == 200, raw[:300]
    await wait_for(lambda: in_flight(server) == 0)
    assert await read_status(server, 5) == (200, payload)
    size, _ = bucket_state(server)
    assert len(payload) < size < len(payload) + 1000


@pytest_twisted.ensureDeferred
async def test_writes_in_flight_count_against_hard_quota(server):
    """
    A chunked upload in flight holds its bytes: a second chunked upload and
    a declared-length write that each fit alone but not together with it
    are refused; once it is stored, a write that fits the rest succeeds.
    """
    await make_bucket(server)
    first = os.urandom(600 * KIB)
    sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=10)
    try:
        await deferToThread(sock.sendall, chunked_head(1) + chunked_body(first, end=False))
        await wait_for(lambda: segment_size(server, 1) == len(first))

        # a second chunked upload crossing the quota together with the first
        raw = await raw_request(port_of(server), chunked_head(2) + chunked_body(first),
                                read_until_close=True, timeout=10)
        assert_quota_error(raw)
        # a declared-length write, refused before its body
        resp = await server.http.post(server.api("/b/b/e"), params={"ts": "3"},
                                      data=b"d" * (500 * KIB))
        await assert_error(resp, 400, "Quota of 'b' exceeded")
        assert in_flight(server) == len(first)

        await deferToThread(sock.sendall, b"0\r\n\r\n")
        raw = await deferToThread(read_response, sock)
    finally:
        sock.close()
    assert parse(raw)[0] == 200, raw[:300]
    assert in_flight(server) == 0
    assert await read_status(server, 1) == (200, first)
    for ts in (2, 3):
        assert (await read_status(server, ts))[0] == 404
    size, entries = bucket_state(server)
    assert size <= QUOTA and entries == [("e", 1)]
    resp = await server.http.post(server.api("/b/b/e"), params={"ts": "4"},
                                  data=b"r" * (300 * KIB))
    assert resp.code == 200, await resp.content()
    await resp.content()


def batch_head(records, bucket="b", entry="e", chunked=False) -> bytes:
    lines = [f"POST /api/v1/b/{bucket}/{entry}/batch HTTP/1.1", "Host: x"]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {sum(len(data) for _, data in records)}")
    lines += [f"x-reduct-time-{ts}: {len(data)},application/octet-stream"
              for ts, data in records]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest_twisted.ensureDeferred
async def test_batch_records_beyond_hard_quota_fail_one_by_one(server):
    """
    A batch with declared lengths whose total crosses the quota mid-batch:
    the records beyond it fail with the quota error in their
    x-reduct-error-<ts>, the ones that fit are stored, and a chunked upload
    in flight counts.  A chunked batch is refused whole (its lengths cannot
    be checked against a content-length) and stores nothing.
    """
    await make_bucket(server)
    first = os.urandom(600 * KIB)
    records = [(10, os.urandom(300 * KIB)), (11, os.urandom(300 * KIB)), (12, b"small")]
    sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=10)
    try:
        await deferToThread(sock.sendall, chunked_head(1) + chunked_body(first, end=False))
        await wait_for(lambda: segment_size(server, 1) == len(first))
        body = b"".join(data for _, data in records)
        raw = await raw_request(port_of(server), batch_head(records) + body, timeout=10)
        status, headers, _ = parse(raw)
        assert status == 200, raw[:300]
        errors = {k: v for k, v in headers.items() if k.startswith("x-reduct-error-")}
        assert errors == {"x-reduct-error-11": "400,Quota of 'b' exceeded"}
        await deferToThread(sock.sendall, b"0\r\n\r\n")
        raw = await deferToThread(read_response, sock)
    finally:
        sock.close()
    assert parse(raw)[0] == 200, raw[:300]
    assert await read_status(server, 10) == (200, records[0][1])
    assert (await read_status(server, 11))[0] == 404
    assert await read_status(server, 12) == (200, b"small")
    assert await read_status(server, 1) == (200, first)
    size, _ = bucket_state(server)
    assert size <= QUOTA

    # declared lengths, no upload in flight: the middle one crosses
    more = [(20, b"a" * 40_000), (21, b"b" * 60_000), (22, b"c" * 2)]
    raw = await raw_request(port_of(server), batch_head(more, entry="g") +
                            b"".join(d for _, d in more), timeout=10)
    status, headers, _ = parse(raw)
    assert status == 200
    errors = {k: v for k, v in headers.items() if k.startswith("x-reduct-error-")}
    assert errors == {"x-reduct-error-21": "400,Quota of 'b' exceeded"}
    assert await read_status(server, 20, entry="g") == (200, b"a" * 40_000)
    assert await read_status(server, 22, entry="g") == (200, b"cc")
    assert bucket_state(server)[0] <= QUOTA

    # a chunked batch
    before = bucket_state(server)
    chunked = [(30, b"x" * 100)]
    raw = await raw_request(port_of(server), batch_head(chunked, entry="h", chunked=True)
                            + chunked_body(chunked[0][1]), read_until_close=True)
    status, headers, _ = parse(raw)
    assert status == 422 and headers["x-reduct-error"] == "content-length header is required"
    assert bucket_state(server) == before


@pytest_twisted.ensureDeferred
async def test_fifo_quota_still_evicts_for_chunked_uploads(server):
    """FIFO is unaffected: a chunked upload past the quota is stored and
    the oldest blocks make room for it."""
    await make_bucket(server, quota_type="FIFO", max_block_records=1)
    for ts in (1, 2, 3):
        resp = await server.http.post(server.api("/b/b/e"), params={"ts": str(ts)},
                                      data=b"o" * (300 * KIB))
        assert resp.code == 200, await resp.content()
        await resp.content()
    payload = os.urandom(600 * KIB)
    raw = await raw_request(port_of(server), chunked_head(4) + chunked_body(payload), timeout=10)
    assert parse(raw)[0] == 200, raw[:300]
    assert await read_status(server, 4) == (200, payload)
    server.engine.enforce_quotas()
    assert bucket_state(server)[0] <= QUOTA
    assert (await read_status(server, 1))[0] == 404
    assert await read_status(server, 4) == (200, payload)
