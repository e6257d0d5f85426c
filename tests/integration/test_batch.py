"""
The batch protocol against the real daemon over real sockets (spec §3.3,
§3.4): batched writes streamed into block files with per-record errors,
batched reads streamed back in header order within the batch limits.
"""

import json
import os
import socket

import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.threads import deferToThread

from reduct_twisted.http import batch as batch_module
from reduct_twisted.storage import SMALL_RECORD_MAX
from tests.integration.conftest import start_server
from tests.integration.helpers import (
    assert_error,
    body_of,
    labels_of,
    port_of,
    raw_request,
    read_single,
    until,
)

BUCKET = "bkt"
MIB = 1 << 20


def record_header(size, content_type=None, labels=None) -> str:
    """An ``x-reduct-time-*`` value as a client writes it."""
    value = f"{size},{content_type or ''}"
    for name, label in (labels or {}).items():
        value += f',{name}="{label}"' if "," in label else f",{name}={label}"
    return value


def batch_request(records, order=None):
    """
    Headers and body of a batched write.

    :param records: ``(ts, data, content_type, labels)``; the body is in
        ascending ts order, the headers in ``order`` (default: descending,
        to show the server sorts them).
    """
    records = sorted(records, key=lambda r: r[0])
    headers = {}
    for ts, data, ctype, labels in (order or list(reversed(records))):
        headers[f"x-reduct-time-{ts}"] = [record_header(len(data), ctype, labels)]
    headers["Content-Type"] = ["application/octet-stream"]
    return headers, b"".join(r[1] for r in records)


async def create_bucket(server, name=BUCKET, settings=None, headers=None):
    body = json.dumps(settings).encode() if settings else b""
    resp = await server.http.post(server.api(f"/b/{name}"), data=body, headers=headers)
    assert resp.code == 200, await resp.content()
    await resp.content()


async def write_batch(server, entry, records, bucket=BUCKET, headers=None):
    hdrs, body = batch_request(records)
    hdrs.update(headers or {})
    resp = await server.http.post(
        server.api(f"/b/{bucket}/{entry}/batch"), data=body, headers=hdrs
    )
    await body_of(resp)
    return resp


def error_headers(resp) -> dict:
    return {
        name.decode().lower(): values[-1].decode()
        for name, values in resp.headers.getAllRawHeaders()
        if name.lower().startswith(b"x-reduct-error-")
    }


async def new_query(server, entry, params="start=0", bucket=BUCKET):
    resp = await server.http.get(server.api(f"/b/{bucket}/{entry}/q?{params}"))
    body = await body_of(resp)
    assert resp.code == 200, body
    return json.loads(body)["id"]


def parse_record_value(value: str):
    """Split a batched-read header value like reduct-py does, quotes honoured."""
    size, ctype, rest = value.split(",", 2) if value.count(",") >= 2 else (*value.split(","), "")
    labels = {}
    while rest:
        name, _, rest = rest.partition("=")
        if rest.startswith('"'):
            label, _, rest = rest[1:].partition('"')
            rest = rest[1:]
        else:
            label, _, rest = rest.partition(",")
        labels[name] = label
    return int(size), ctype, labels


async def read_batch(server, entry, qid, method="GET", bucket=BUCKET):
    """
    One batched read: ``(resp, records, last)`` with records as
    ``(ts, size, content_type, labels, data)`` in header order, the body
    sliced by the announced sizes.
    """
    resp = await server.http.request(method, server.api(f"/b/{bucket}/{entry}/batch?q={qid}"))
    body = await body_of(resp)
    if resp.code != 200:
        return resp, body, None
    records, pos = [], 0
    for name, values in resp.headers.getAllRawHeaders():
        lname = name.decode().lower()
        if lname.startswith("x-reduct-time-"):
            size, ctype, labels = parse_record_value(values[-1].decode())
            data = body[pos:pos + size] if method == "GET" else None
            pos += size
            records.append((int(lname[len("x-reduct-time-"):]), size, ctype, labels, data))
    if method == "GET":
        assert pos == len(body), (pos, len(body))
    else:
        assert body == b""
    if method == "GET":
        assert resp.length == pos  # twisted.web.client keeps content-length for framing
    else:
        assert resp.headers.getRawHeaders("content-length") == [str(pos)]
    last = resp.headers.getRawHeaders("x-reduct-last")
    assert last in (["true"], ["false"]), last
    return resp, records, last == ["true"]


def split_raw_response(raw: bytes):
    """Status line, header lines in wire order, body of a raw HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    return lines[0], lines[1:], body


# -- batched write ------------------------------------------------------------------


MIXED = [
    (1_000, b"", "text/plain", {"kind": "empty"}),
    (1_001, b"0123456789", None, {}),
    (1_002, os.urandom(100_000), "image/jpeg", {"camera": "front", "roi": "[1,2]"}),
    (1_003, b"", None, {"only": "labels"}),
    (1_004, os.urandom(SMALL_RECORD_MAX + 123_457), "video/mp4", {"big": "yes"}),
    (1_005, b"x", "text/csv; header=present", {"a": "1", "b": "2"}),
    (1_006, os.urandom(3 * MIB + 5), None, {"big": "also"}),
    (1_007, b"tail", None, {}),
]


@pytest_twisted.ensureDeferred
async def test_write_mixed_batch_and_read_it_back(server):
    """
    A batch of empty, small and > 1 MiB records (labels, content types,
    headers in any order) is stored byte-exact: each record reads back singly
    and in a batched read, in ascending order with its metadata.
    """
    await create_bucket(server, settings={"max_block_size": 2 * MIB})
    resp = await write_batch(server, "mixed", MIXED)
    assert resp.code == 200
    assert error_headers(resp) == {}

    for ts, data, ctype, labels in MIXED:
        single, body = await read_single(server, "mixed", ts)
        assert single.code == 200, (ts, body)
        assert body == data, ts
        assert single.headers.getRawHeaders("content-type") == [
            ctype or "application/octet-stream"
        ]
        assert labels_of(single) == labels
        # the checksums the sinks kept are what recovery will check
        view = server.engine.read(BUCKET, "mixed", ts)
        import hashlib

        assert view.record.digest == hashlib.sha256(data).digest(), ts
        assert view.record.crc is None, ts  # its SHA-256 is its only checksum

    qid = await new_query(server, "mixed")
    resp, records, last = await read_batch(server, "mixed", qid)
    assert resp.code == 200 and last is True
    assert resp.headers.getRawHeaders("content-type") == ["application/octet-stream"]
    assert [r[0] for r in records] == [r[0] for r in MIXED]
    for (ts, size, ctype, labels, data), (_, sent, sent_type, sent_labels) in zip(records, MIXED):
        assert (size, data) == (len(sent), sent), ts
        assert ctype == (sent_type or "application/octet-stream")
        assert labels == sent_labels
    # the query ended with the batch that said so
    resp, body, _ = await read_batch(server, "mixed", qid)
    assert resp.code == 404, body

    info = json.loads(await body_of(await server.http.get(server.api(f"/b/{BUCKET}"))))
    assert info["entries"][0]["record_count"] == len(MIXED)


@pytest_twisted.ensureDeferred
async def test_write_batch_per_record_errors(server):
    """
    A duplicate timestamp fails only its record: ``x-reduct-error-<ts>:
    409,<text>``; its content (small or large) is skipped in the stream and
    the other records are stored with the right bytes.
    """
    await create_bucket(server)
    for ts, data in [(2, b"old small"), (4, b"old large" * 10)]:
        resp = await server.http.post(server.api(f"/b/{BUCKET}/e?ts={ts}"), data=data)
        assert resp.code == 200
        await body_of(resp)
    records = [
        (1, b"one", None, {}),
        (2, b"new small", None, {}),
        (3, os.urandom(SMALL_RECORD_MAX + 10), None, {}),
        (4, os.urandom(2 * MIB), None, {"x": "y"}),
        (5, b"five", "text/plain", {}),
    ]
    resp = await write_batch(server, "e", records)
    assert resp.code == 200
    assert error_headers(resp) == {
        "x-reduct-error-2": "409,A record with timestamp 2 already exists",
        "x-reduct-error-4": "409,A record with timestamp 4 already exists",
    }
    expected = {1: b"one", 2: b"old small", 3: records[2][1], 4: b"old large" * 10, 5: b"five"}
    for ts, data in expected.items():
        single, body = await read_single(server, "e", ts)
        assert (single.code, body) == (200, data), ts


@pytest_twisted.ensureDeferred
async def test_write_batch_entry_errors_and_quota(server):
    """
    A bad entry name and a HARD quota are per-record errors of a 200; the
    records that fit the quota are stored.
    """
    await create_bucket(server, settings={"quota_type": "HARD", "quota_size": 1000})
    resp = await write_batch(server, "bad.name", [(1, b"a", None, {}), (2, b"b", None, {})])
    assert resp.code == 200
    # The entry text of API 1.19 (spec 1.20 §2.1, §12).
    name_error = "422,Entry name can contain only letters, digits and [-,_,/] symbols or end with \'/$meta\'"
    assert error_headers(resp) == {"x-reduct-error-1": name_error, "x-reduct-error-2": name_error}

    records = [(10, b"a" * 400, None, {}), (11, b"b" * 400, None, {}), (12, b"c" * 400, None, {})]
    resp = await write_batch(server, "q", records)
    assert resp.code == 200
    assert error_headers(resp) == {"x-reduct-error-12": f"400,Quota of '{BUCKET}' exceeded"}
    assert (await read_single(server, "q", 11))[1] == b"b" * 400
    assert (await read_single(server, "q", 12))[0].code == 404


async def _send_cut_batch(server, entry, records, send_bytes):
    """Announce ``records``, send only ``send_bytes`` of the body, close."""
    headers, body = batch_request(records)
    lines = [f"POST /api/v1/b/{BUCKET}/{entry}/batch HTTP/1.1", "Host: x",
             f"Content-Length: {len(body)}"]
    for name, values in headers.items():
        lines.append(f"{name}: {values[0]}")
    payload = ("\r\n".join(lines) + "\r\n\r\n").encode() + body[:send_bytes]

    def exchange():
        sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
        try:
            sock.sendall(payload)
        finally:
            sock.close()

    await deferToThread(exchange)


async def _wait_for(predicate):
    await until(predicate, timeout=5.0, every=0.02)


@pytest_twisted.ensureDeferred
async def test_body_cut_short_keeps_complete_records(server):
    """
    A client that closes in the middle of a batch: the records received in
    full stay stored, the cut one (small or large) and the rest are absent,
    and their timestamps are free again.
    """
    await create_bucket(server)
    big = os.urandom(2 * MIB)
    records = [
        (1, b"a" * 100, None, {}),
        (2, b"", None, {}),
        (3, big, None, {}),
        (4, b"d" * 10, None, {}),
    ]
    await _send_cut_batch(server, "cut", records, 100 + MIB)

    async def first_stored():
        return (await read_single(server, "cut", 1))[0].code == 200

    async def no_started_records():
        stats = server.engine.block_stats(BUCKET, "cut")
        return all(not block["started"] for block in stats)

    await _wait_for(first_stored)
    await _wait_for(no_started_records)
    assert (await read_single(server, "cut", 2))[0].code == 200
    for ts in (3, 4):
        resp, body = await read_single(server, "cut", ts)
        assert resp.code == 404, (ts, body)
    info = json.loads(await body_of(await server.http.get(server.api(f"/b/{BUCKET}"))))
    assert info["entries"][0]["record_count"] == 2

    # cut inside a small record
    await _send_cut_batch(server, "cut2", [(1, b"x" * 10, None, {}), (2, b"y" * 10, None, {})], 15)

    async def small_first_stored():
        return (await read_single(server, "cut2", 1))[0].code == 200

    await _wait_for(small_first_stored)
    await _wait_for(lambda: defer.succeed(
        all(not b["started"] for b in server.engine.block_stats(BUCKET, "cut2"))))
    assert (await read_single(server, "cut2", 2))[0].code == 404

    # the cut timestamps can be written again
    resp = await write_batch(server, "cut", [(3, b"again", None, {}), (4, b"d", None, {})])
    assert resp.code == 200 and error_headers(resp) == {}
    assert (await read_single(server, "cut", 3))[1] == b"again"


@pytest_twisted.ensureDeferred
async def test_write_batch_to_a_missing_bucket(server):
    """
    Since 1.18 a missing bucket fails each record, not the request (spec
    1.20 §5.8): 200 with ``x-reduct-error-<ts>: 404,Bucket '<b>' is not
    found`` for every record, empty and large ones too; the body is read
    (the next request on the connection is answered); nothing is created.
    """
    records = [(1, b"abc", None, {}), (2, b"", None, {"k": "v"}),
               (3, os.urandom(SMALL_RECORD_MAX + 5), "video/mp4", {})]
    headers, body = batch_request(records)
    head = ["POST /api/v1/b/nope/e/batch HTTP/1.1", "Host: x", f"Content-Length: {len(body)}"]
    head += [f"{name}: {values[0]}" for name, values in headers.items()]
    payload = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    payload += b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = await raw_request(port_of(server), payload, read_until_close=True, timeout=5)
    first, _, rest = raw.partition(b"\r\n\r\n")
    status, lines, _ = split_raw_response(first + b"\r\n\r\n")
    assert status.startswith("HTTP/1.1 200"), raw[:500]
    errors = sorted(line for line in lines if line.startswith("x-reduct-error"))
    assert errors == [f"x-reduct-error-{ts}: 404,Bucket 'nope' is not found" for ts in (1, 2, 3)]
    assert rest.startswith(b"HTTP/1.1 200"), rest[:200]
    assert b'"bucket_count":0' in rest
    assert not server.engine.has_bucket("nope")


@pytest_twisted.ensureDeferred
async def test_write_batch_at_labels(server):
    """
    Since 1.19 a label name starting with ``@`` in a v1 batch header is an
    ordinary label (spec 1.20 §5.8), written and read back; a v1 batch
    label update sets one too.
    """
    await create_bucket(server)
    resp = await write_batch(server, "at", [(1, b"abc", "text/plain", {"@a": "1", "b": "2"})])
    assert resp.code == 200 and error_headers(resp) == {}
    assert server.engine.read(BUCKET, "at", 1).record.labels == {"@a": "1", "b": "2"}
    # A single read cannot name it in a header (``@`` is no token
    # character): the label is left out there, and the read answers.
    resp, data = await read_single(server, "at", 1)
    assert resp.code == 200 and data == b"abc"
    assert resp.headers.getRawHeaders("x-reduct-label-b") == ["2"]
    # A batched read carries it in its header value.
    resp = await server.http.get(server.api(f"/b/{BUCKET}/at/q"))
    qid = json.loads(await body_of(resp))["id"]
    resp = await server.http.get(server.api(f"/b/{BUCKET}/at/batch"), params={"q": str(qid)})
    assert await body_of(resp) == b"abc"
    assert resp.headers.getRawHeaders("x-reduct-time-1") == ["3,text/plain,@a=1,b=2"]
    resp = await server.http.patch(server.api(f"/b/{BUCKET}/at/batch"),
                                   headers={"x-reduct-time-1": "0,,@c=3,@a="})
    await body_of(resp)
    assert resp.code == 200 and error_headers(resp) == {}
    assert server.engine.read(BUCKET, "at", 1).record.labels == {"b": "2", "@c": "3"}


@pytest_twisted.ensureDeferred
async def test_write_batch_request_errors(server):
    """
    Whole-request refusals of spec §3.4, before any record is stored (a
    missing bucket is none since 1.18, nor an ``@`` label since 1.19:
    ``test_write_batch_to_a_missing_bucket``, ``test_write_batch_at_labels``).
    """
    await create_bucket(server)
    url = server.api(f"/b/{BUCKET}/e/batch")
    cases = [
        ({"x-reduct-time-abc": "3,"}, b"abc",
         "Invalid header 'x-reduct-time-abc': must be an unix timestamp in microseconds"),
        ({"x-reduct-time-1": "3"}, b"abc", "Invalid batched header"),
        ({"x-reduct-time-1": "x,text/plain"}, b"abc", "Invalid content length"),
        ({"x-reduct-time-1": "3,", "x-reduct-time-2": "2,"}, b"abc",
         "content-length header does not match the sum of the content-lengths in the headers"),
    ]
    for headers, body, message in cases:
        resp = await server.http.post(url, data=body, headers=headers)
        await assert_error(resp, 422, message)
    # no Content-Length at all (chunked)
    port = port_of(server)
    raw = await raw_request(
        port,
        f"POST /api/v1/b/{BUCKET}/e/batch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Transfer-Encoding: chunked\r\nx-reduct-time-1: 3,\r\n\r\n3\r\nabc\r\n0\r\n\r\n".encode(),
        read_until_close=True,
    )
    status, lines, _ = split_raw_response(raw)
    assert " 422 " in status and "x-reduct-error: content-length header is required" in lines
    assert server.engine.has_bucket(BUCKET)
    resp = await server.http.get(server.api(f"/b/{BUCKET}/e?ts=1"))
    await body_of(resp)
    assert resp.code == 404
    # an empty batch is fine
    resp = await server.http.post(url, data=b"")
    assert resp.code == 200 and await body_of(resp) == b""


class HeldSync:
    """A syncer whose rounds end when the test says so."""

    def __init__(self):
        self.waiting = []

    def wait(self):
        d = defer.Deferred()
        self.waiting.append(d)
        return d


@pytest_twisted.ensureDeferred
async def test_write_batch_waits_for_sync_round(server):
    """With sync ``always`` the 200 comes after a sync round that began after the last commit."""
    from twisted.internet import reactor

    await create_bucket(server)
    api = server.site.router
    assert api.syncer is not None  # the default policy
    held = api.syncer = HeldSync()
    records = [(1, b"a", None, {}), (2, os.urandom(SMALL_RECORD_MAX + 1), None, {})]
    pending = defer.ensureDeferred(write_batch(server, "e", records))
    await _wait_for(lambda: defer.succeed(bool(held.waiting)))
    # every record is committed before the round is asked for ...
    assert server.engine.read(BUCKET, "e", 2).record.size == SMALL_RECORD_MAX + 1
    await task.deferLater(reactor, 0.1, lambda: None)
    assert not pending.called  # ... and the answer waits for it
    held.waiting.pop().callback(None)
    resp = await pending
    assert resp.code == 200


# -- batched read ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_batched_read_wire_format(server):
    """
    The header lines of spec §3.3 on the wire: lowercase, one per record in
    ascending order (the body order), labels sorted, a value with a comma
    quoted; ``content-length`` is the sum, also on HEAD (without a body).
    """
    await create_bucket(server)
    records = [
        (1100, b"b" * 10, "text/plain", {"x": "[a,b]", "a": "1"}),
        (1000, b"a" * 10, None, {}),
        (1200, b"", "", {"z": "last"}),
    ]
    resp = await write_batch(server, "w", records)
    assert resp.code == 200 and error_headers(resp) == {}
    for method in ("GET", "HEAD"):
        qid = await new_query(server, "w")
        raw = await raw_request(
            port_of(server),
            f"{method} /api/v1/b/{BUCKET}/w/batch?q={qid} HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n\r\n".encode(),
            read_until_close=True,
        )
        status, lines, body = split_raw_response(raw)
        assert status == "HTTP/1.1 200 OK"
        times = [line for line in lines if line.lower().startswith("x-reduct-time-")]
        assert times == [
            "x-reduct-time-1000: 10,application/octet-stream",
            'x-reduct-time-1100: 10,text/plain,a=1,x="[a,b]"',
            "x-reduct-time-1200: 0,application/octet-stream,z=last",
        ]
        assert "content-length: 20" in lines
        assert "x-reduct-last: true" in lines
        assert "content-type: application/octet-stream" in lines
        assert "x-reduct-api: 1.20" in lines
        assert all(line.split(":")[0] == line.split(":")[0].lower() for line in lines)
        assert body == (b"a" * 10 + b"b" * 10 if method == "GET" else b"")


@pytest_twisted.ensureDeferred
async def test_batched_read_stops_at_85_records(server):
    """
    100 empty records: 85 then 15, ``x-reduct-last`` false then true, then
    404; a response keeps fewer than 100 header lines.
    """
    await create_bucket(server)
    records = [(ts, b"", None, {}) for ts in range(1, 101)]
    resp = await write_batch(server, "many", records)
    assert resp.code == 200 and error_headers(resp) == {}
    qid = await new_query(server, "many")
    raw = await raw_request(
        port_of(server),
        f"GET /api/v1/b/{BUCKET}/many/batch?q={qid} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    )
    _, lines, _ = split_raw_response(raw)
    assert sum(line.startswith("x-reduct-time-") for line in lines) == 85
    assert len(lines) < 100
    assert "x-reduct-last: false" in lines
    resp, got, last = await read_batch(server, "many", qid)
    assert [r[0] for r in got] == list(range(86, 101)) and last is True
    resp, body, _ = await read_batch(server, "many", qid)
    assert resp.code == 404
    assert resp.headers.getRawHeaders("x-reduct-error") == [
        f"Query {qid} not found and it might have expired. Check TTL in your query request."
    ]


@pytest_twisted.ensureDeferred
async def test_batched_read_size_cap_and_head(server):
    """
    A GET batch closes after the record that takes its body past 8 MB
    (the cap of a single larger record included); HEAD has no size cap.
    """
    await create_bucket(server)
    sizes = [3_000_000, 3_000_000, 3_000_000, 100, 9_000_000, 5]
    records = [(i + 1, os.urandom(size), None, {}) for i, size in enumerate(sizes)]
    resp = await write_batch(server, "big", records)
    assert resp.code == 200 and error_headers(resp) == {}
    qid = await new_query(server, "big")
    batches = []
    while True:
        resp, got, last = await read_batch(server, "big", qid)
        assert resp.code == 200
        batches.append([r[0] for r in got])
        for ts, size, _, _, data in got:
            assert data == records[ts - 1][1]
        if last:
            break
    assert batches == [[1, 2, 3], [4, 5], [6]]
    assert batch_module.BATCH_MAX_SIZE == 8_000_000

    qid = await new_query(server, "big")
    resp, got, last = await read_batch(server, "big", qid, method="HEAD")
    assert [r[0] for r in got] == [1, 2, 3, 4, 5, 6] and last is True
    assert resp.headers.getRawHeaders("content-length") == [str(sum(sizes))]


@pytest_twisted.ensureDeferred
async def test_batched_read_errors_and_empty_query(server):
    """422 without or with a bad ``q``; 404s; an empty query answers 204, then 404."""
    await create_bucket(server)
    resp = await write_batch(server, "e", [(5, b"x", None, {})])
    assert resp.code == 200
    url = server.api(f"/b/{BUCKET}/e/batch")
    await assert_error(await server.http.get(url), 422,
                       "'q' parameter is required for batched reads")
    await assert_error(await server.http.get(url + "?q=abc"), 422, "'query' must be a number")
    await assert_error(
        await server.http.get(url + "?q=999"), 404,
        "Query 999 not found and it might have expired. Check TTL in your query request.",
    )
    await assert_error(await server.http.get(server.api("/b/nope/e/batch?q=1")), 404,
                       "Bucket 'nope' is not found")
    await assert_error(await server.http.get(server.api(f"/b/{BUCKET}/nope/batch?q=1")), 404,
                       f"Entry 'nope' not found in bucket '{BUCKET}'")
    qid = await new_query(server, "e", "start=6&stop=10")
    resp = await server.http.get(url + f"?q={qid}")
    assert resp.code == 204 and await body_of(resp) == b""
    resp = await server.http.get(url + f"?q={qid}")
    await body_of(resp)
    assert resp.code == 404


@pytest_twisted.ensureDeferred
async def test_batched_read_of_limited_and_continuous_queries(server):
    """``limit`` ends the batch with ``x-reduct-last: true``; a continuous query picks up new records."""
    await create_bucket(server)
    resp = await write_batch(server, "e", [(ts, b"%d" % ts, None, {}) for ts in range(1, 11)])
    assert resp.code == 200
    qid = await new_query(server, "e", "start=0&limit=4")
    resp, got, last = await read_batch(server, "e", qid)
    assert [r[0] for r in got] == [1, 2, 3, 4] and last is True
    assert (await read_batch(server, "e", qid))[0].code == 404

    qid = await new_query(server, "e", "start=5&continuous=true")
    resp, got, _ = await read_batch(server, "e", qid)
    assert [r[4] for r in got] == [b"%d" % ts for ts in range(5, 11)]
    resp = await server.http.get(server.api(f"/b/{BUCKET}/e/batch?q={qid}"))
    assert resp.code == 204
    await body_of(resp)
    resp = await write_batch(server, "e", [(20, b"new", None, {})])
    assert resp.code == 200
    resp, got, _ = await read_batch(server, "e", qid)
    assert [(r[0], r[4]) for r in got] == [(20, b"new")]


@pytest_twisted.ensureDeferred
async def test_batch_permissions(tmp_path):
    """Batched writes need Write(bucket), batched reads Read(bucket)."""
    server, stop = await start_server(tmp_path / "data", api_token="x")
    admin = {"Authorization": ["Bearer x"]}
    try:
        await create_bucket(server, headers=admin)
        tokens = {}
        for name, perms in [("ro", {"read": [BUCKET]}), ("wo", {"write": [BUCKET]})]:
            resp = await server.http.post(server.api(f"/tokens/{name}"),
                                          data=json.dumps(perms).encode(), headers=admin)
            tokens[name] = {"Authorization": ["Bearer " + json.loads(await resp.content())["value"]]}
        records = [(1, b"abc", None, {})]
        resp = await write_batch(server, "e", records, headers=tokens["ro"])
        assert resp.code == 403
        assert resp.headers.getRawHeaders("x-reduct-error") == [
            f"Token 'ro' doesn't have write access to bucket '{BUCKET}'"
        ]
        resp = await write_batch(server, "e", records)
        assert resp.code == 401
        assert (await read_single(server, "e", 1))[0].code == 401
        resp = await write_batch(server, "e", records, headers=tokens["wo"])
        assert resp.code == 200 and error_headers(resp) == {}

        resp = await server.http.get(server.api(f"/b/{BUCKET}/e/q?start=0"), headers=admin)
        qid = json.loads(await resp.content())["id"]
        url = server.api(f"/b/{BUCKET}/e/batch?q={qid}")
        await assert_error(await server.http.get(url, headers=tokens["wo"]), 403,
                           f"Token 'wo' doesn't have read access to bucket '{BUCKET}'")
        resp = await server.http.get(url, headers=tokens["ro"])
        assert resp.code == 200 and await resp.content() == b"abc"
    finally:
        await stop()
