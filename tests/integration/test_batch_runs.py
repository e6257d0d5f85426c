"""
Batch-granular writes (storage/runs.py) over real sockets: a batched write
(v1 and v2) of small and large records mixed, with duplicates, a digest
mismatch and FIFO evictions in the middle of the batch, gives exactly what
the same records written one request each give: the same per-record errors,
the same stored records (read back, SHA-256 checked), the same statistics;
and it survives a reopen of the data directory.
"""

import base64
import hashlib
import json

import pytest_twisted

from reduct_twisted.storage import SMALL_RECORD_MAX
from reduct_twisted.storage.engine import StorageEngine
from tests.integration.helpers import body_of, read_single
from tests.integration.io_helpers import errors_of, v2_write
from tests.integration.test_batch import batch_request, error_headers

SETTINGS = {"quota_type": "FIFO", "quota_size": 2 * SMALL_RECORD_MAX, "max_block_records": 5,
            "max_block_size": SMALL_RECORD_MAX}
LARGE = SMALL_RECORD_MAX + 4096


def field(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def contents():
    """ts -> data: small records of 1..40 KiB, two large ones in the middle."""
    records = {}
    for i in range(1, 61):
        ts = 1000 + i
        if i in (25, 41):
            records[ts] = bytes([i]) * LARGE
        else:
            records[ts] = hashlib.sha256(b"%d" % i).digest() * (32 * (1 + i % 20))
    return records


async def make(server, name):
    resp = await server.http.post(server.api(f"/b/{name}"), data=json.dumps(SETTINGS).encode())
    assert resp.code == 200, await body_of(resp)


async def single_writes(server, bucket, records, digests):
    errors = {}
    for ts, data in sorted(records.items()):
        headers = {"Content-Type": ["text/plain"], "x-reduct-label-n": [str(ts)]}
        if ts in digests:
            headers["repr-digest"] = [digests[ts]]
        resp = await server.http.post(server.api(f"/b/{bucket}/e?ts={ts}"), data=data,
                                      headers=headers)
        body = await body_of(resp)
        if resp.code != 200:
            errors[ts] = f"{resp.code},{resp.headers.getRawHeaders('x-reduct-error')[0]}"
            assert json.loads(body)["detail"]
    return errors


def state(engine, bucket, entry="e"):
    listed = engine.list_records(bucket, entry, 0, 1 << 62)
    info = engine.bucket_info(bucket)
    return listed, info["info"]["size"], [e["record_count"] for e in info["entries"]]


async def check_read_back(server, bucket, records, listed, entry="e"):
    for ts, size in listed:
        resp, data = await read_single(server, entry, ts, bucket=bucket)
        assert resp.code == 200 and data == records[ts] and size == len(data)
        assert resp.headers.getRawHeaders("repr-digest") == [field(data)]


@pytest_twisted.ensureDeferred
async def test_v1_batch_with_evictions_duplicates_and_large_records(server):
    records = contents()
    first = {ts: records[ts] for ts in (1003, 1010, 1030)}  # stored before: duplicates
    bad = {1007: field(b"other"), 1050: field(b"nope")}
    for bucket in ("batch", "single"):
        await make(server, bucket)
    # Reference: one request a record.
    await single_writes(server, "single", first, {})
    expected_errors = await single_writes(server, "single", records, bad)
    # The same through batched writes (in two batches, mixed sizes).
    headers, body = batch_request([(ts, d, "text/plain", {"n": str(ts)})
                                   for ts, d in first.items()])
    resp = await server.http.post(server.api("/b/batch/e/batch"), data=body, headers=headers)
    await body_of(resp)
    assert resp.code == 200 and error_headers(resp) == {}
    errors = {}
    for part in ([ts for ts in records if ts < 1030], [ts for ts in records if ts >= 1030]):
        headers, body = batch_request([(ts, records[ts], "text/plain", {"n": str(ts)})
                                       for ts in part])
        for ts in part:
            if ts in bad:
                headers[f"x-reduct-digest-{ts}"] = [bad[ts]]
        resp = await server.http.post(server.api("/b/batch/e/batch"), data=body,
                                      headers=headers)
        await body_of(resp)
        assert resp.code == 200
        errors.update({int(k.rsplit("-", 1)[1]): v for k, v in error_headers(resp).items()})
    assert sorted(errors) == sorted(expected_errors) == [1003, 1007, 1010, 1030, 1050]
    for ts, value in errors.items():
        code, message = value.split(",", 1)
        assert expected_errors[ts] == f"{code},{message}"
    batch_state, single_state = state(server.engine, "batch"), state(server.engine, "single")
    assert batch_state == single_state
    listed = batch_state[0]
    assert 1001 not in [ts for ts, _ in listed]  # the FIFO quota evicted the first blocks
    assert 1060 in [ts for ts, _ in listed]
    await check_read_back(server, "batch", records, listed)
    # Reopened (as after a kill -9: no clean close of the copy): the same records.
    copy = StorageEngine(str(server.data_path), server.engine.clock)
    copy.open()
    try:
        assert copy.list_records("batch", "e", 0, 1 << 62) == listed
        assert copy.recovery_report()["dropped_records"] == 0
    finally:
        copy._running = False  # leave the live engine's run marker alone
        copy._context.fds.close()


@pytest_twisted.ensureDeferred
async def test_v2_batch_over_entries_with_evictions(server):
    records = contents()
    await make(server, "bkt")
    rows = []
    for ts, data in records.items():
        entry = "a" if ts % 3 else "b"
        rows.append((entry, ts, data, "text/plain", {"n": str(ts)}))
    stored_first = [("b", 1002, b"before", "text/plain", {})]  # a duplicate of the batch's
    headers, body = v2_write(stored_first)
    resp = await server.http.post(server.api("/io/bkt/write"), data=body, headers=headers)
    await body_of(resp)
    assert resp.code == 200 and errors_of(resp) == {}
    errors = []
    for part in (rows[:30], rows[30:]):
        headers, body = v2_write(part)
        resp = await server.http.post(server.api("/io/bkt/write"), data=body, headers=headers)
        await body_of(resp)
        assert resp.code == 200
        errors.append(list(errors_of(resp).values()))
    assert errors == [["409,A record with timestamp 1002 already exists"], []]
    engine = server.engine
    listed = {entry: engine.list_records("bkt", entry, 0, 1 << 62) for entry in ("a", "b")}
    assert listed["a"] and listed["b"]
    size = engine.bucket_info("bkt")["info"]["size"]
    assert size <= SETTINGS["quota_size"]
    for entry, items in listed.items():
        for ts, length in items:
            resp, data = await read_single(server, entry, ts, bucket="bkt")
            want = b"before" if (entry, ts) == ("b", 1002) else records[ts]
            assert resp.code == 200 and data == want
            assert resp.headers.getRawHeaders("repr-digest") == [field(data)]
    # The newest records of both entries were kept, the oldest evicted.
    assert listed["a"][-1][0] == 1060 and listed["b"][-1][0] == 1059
    assert listed["a"][0][0] > 1001


@pytest_twisted.ensureDeferred
async def test_eviction_of_the_block_being_written_by_the_batch(server):
    """The batch's own block is the oldest: a large record needing room evicts it,
    small records of the same received chunk included, as one request each would."""
    settings = {"quota_type": "FIFO", "quota_size": SMALL_RECORD_MAX + (256 << 10)}
    records = {1000 + i: bytes([i]) * (20 << 10) for i in range(1, 21)}  # 400 KiB
    records[2000] = b"L" * (SMALL_RECORD_MAX + 1)
    records[2001] = b"after"
    for bucket in ("batch", "single"):
        resp = await server.http.post(server.api(f"/b/{bucket}"),
                                      data=json.dumps(settings).encode())
        assert resp.code == 200, await body_of(resp)
    expected_errors = await single_writes(server, "single", records, {})
    headers, body = batch_request([(ts, d, "text/plain", {"n": str(ts)})
                                   for ts, d in records.items()])
    resp = await server.http.post(server.api("/b/batch/e/batch"), data=body, headers=headers)
    await body_of(resp)
    assert resp.code == 200
    assert error_headers(resp) == {} == expected_errors
    batch_state = state(server.engine, "batch")
    assert batch_state == state(server.engine, "single")
    assert [ts for ts, _ in batch_state[0]] == [2000, 2001]
    await check_read_back(server, "batch", records, batch_state[0])
