"""
The newest reduct-py (1.21.x) and the batch protocol (v1) of a daemon at API 1.17.

Usage: python reduct_py_batch.py URL [--bucket NAME] [--timeout S]

``Bucket.write_batch`` sends ``POST …/batch`` with ``x-reduct-time-*``
headers and the contents in timestamp order, and returns the per-record
errors from ``x-reduct-error-*``.  ``Bucket.query`` (and ``subscribe``) of
this client create their query with ``POST …/q`` (see reduct_py_query.py);
the batched reads here create the query with ``GET …/q`` and then do
exactly what the client's query loop does after its POST: fetch
``GET|HEAD …/batch?q=ID`` until ``x-reduct-last: true`` or 204, parsing
every response with the client's own ``parse_batched_records_v1``.
"""

import json
import os

from _harness import eq, expect_error, run_with_client
from reduct import Batch, ReductError
from reduct.batch.batch_v1 import parse_batched_records_v1

T0 = 1_700_000_000_000_000
LARGE = 2_500_003  # above the daemon's 1 MiB small-record limit: a private segment


async def query_batches(bucket, entry, head=False, **params):
    """The client's v1 query loop (bucket._query_post) after a GET /q."""
    http = bucket._http
    params = {"start": 0, **params}
    body, _ = await http.request_all("GET", f"/b/{bucket.name}/{entry}/q", params=params)
    query_id = json.loads(body)["id"]
    records, batches, last = [], 0, False
    while not last:
        async with http.request(
            "HEAD" if head else "GET", f"/b/{bucket.name}/{entry}/batch?q={query_id}"
        ) as resp:
            if resp.status == 204:
                break
            batches += 1
            async for record in parse_batched_records_v1(resp, default_entry_name=entry):
                data = await record.read_all()
                records.append((record.timestamp, record.size, record.content_type,
                                record.labels, data))
                last = record.last
    return records, batches


async def exercise(checks, args, client):
    name = args.bucket
    bucket = await client.create_bucket(name, exist_ok=True)
    eq(client._http.api_version, (1, 20), "x-reduct-api as seen by the client")

    expected = {}
    batch = Batch()
    specs = [
        (5, b"", "text/plain", {"kind": "empty"}),
        (0, b"first", None, {}),
        (2, os.urandom(LARGE), "video/mp4", {"kind": "large", "camera": "front"}),
        (1, os.urandom(70_000), "image/jpeg", {"kind": "small", "score": "0.5"}),
        (4, b"", None, None),
        (3, b"x" * 10, "application/json", {"kind": "tiny"}),
    ]
    for i, data, ctype, labels in specs:  # added out of order on purpose
        ts = T0 + i * 1000
        batch.add(ts, data, content_type=ctype, labels=labels)
        expected[ts] = (data, ctype or "application/octet-stream", labels or {})
    errors = await bucket.write_batch("batched", batch)
    eq(errors, {}, "errors of a clean batch")
    for ts, (data, ctype, labels) in expected.items():
        async with bucket.read("batched", timestamp=ts) as record:
            got = await record.read_all()
        if got != data:
            raise AssertionError(f"record {ts}: {len(got)} bytes back instead of {len(data)}")
        eq((record.size, record.content_type, record.labels), (len(data), ctype, labels),
           f"metadata of {ts}")
    checks.fact("batch_bytes", sum(len(d) for d, _, _ in expected.values()))
    checks.ok("write-batch-read-singly")

    dup = T0 + 1000
    again = Batch()
    again.add(dup, b"must not replace")
    again.add(T0 + 9000, b"nine")
    again.add(T0 + 8000, os.urandom(LARGE))
    errors = await bucket.write_batch("batched", again)
    eq(errors, {dup: ReductError(409, f"A record with timestamp {dup} already exists")},
       "per-record errors")
    eq(str(errors[dup]), f"Status 409: A record with timestamp {dup} already exists",
       "error text")
    async with bucket.read("batched", timestamp=dup) as record:
        eq(await record.read_all(), expected[dup][0], "the duplicate kept its content")
    async with bucket.read("batched", timestamp=T0 + 9000) as record:
        eq(await record.read_all(), b"nine", "record after the duplicate")
    expected[T0 + 9000] = (b"nine", "application/octet-stream", {})
    async with bucket.read("batched", timestamp=T0 + 8000, head=True) as record:
        eq(record.size, LARGE, "large record after the duplicate")
    checks.ok("write-batch-per-record-errors")

    records, batches = await query_batches(bucket, "batched")
    eq([r[0] for r in records], sorted(list(expected) + [T0 + 8000]), "batched read order")
    for ts, size, ctype, labels, data in records:
        if ts in expected:
            want, want_type, want_labels = expected[ts]
            if data != want:
                raise AssertionError(f"batched read of {ts}: content differs")
            eq((size, ctype, labels), (len(want), want_type, want_labels), f"batched {ts}")
    eq(batches, 1, "batches for 9 records")
    heads, _ = await query_batches(bucket, "batched", head=True)
    eq([(r[0], r[1], r[4]) for r in heads], [(r[0], r[1], b"") for r in records], "HEAD batch")
    checks.ok("batched-read-parsed-by-client")

    many = Batch()
    for i in range(100):
        many.add(T0 + i, b"%d" % i, labels={"i": str(i)})
    eq(await bucket.write_batch("many", many), {}, "errors of 100 records")
    records, batches = await query_batches(bucket, "many")
    eq(batches, 2, "85 records per batch")
    eq([(r[0], r[4], r[3]) for r in records],
       [(T0 + i, b"%d" % i, {"i": str(i)}) for i in range(100)], "100 records")
    checks.ok("batched-read-85-per-batch")

    await expect_error(
        client.get_bucket(name + "-missing"), ReductError, 404,
        f"Bucket '{name}-missing' is not found",
    )
    missing = await client.get_bucket(name)
    missing.name = name + "-missing"
    # Since API 1.18 (spec 1.20 §5.8) a missing bucket fails each record of
    # a batch, not the request: the client hands back one error per record.
    gone = ReductError(404, f"Bucket '{name}-missing' is not found")
    eq(await missing.write_batch("e", batch), {T0 + i * 1000: gone for i, *_ in specs},
       "per-record errors of a batch to a missing bucket")
    checks.ok("write-batch-missing-bucket")

    await bucket.remove()
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run_with_client(exercise)
