"""
The newest reduct-py (1.21.x) against a running daemon.

Usage: python reduct_py_newest.py URL [--bucket NAME] [--timeout S]

Runs inside a venv with the newest ``reduct-py`` (see ``tests/clients.py``).
This client reads ``x-reduct-api`` on every response (at API 1.18 its
queries and multi-entry batches go through ``/io/``).  Only the per-record
and bucket calls are exercised here; queries, batches, edits, replications,
nested entries and attachments have their own scripts (reduct_py_query.py,
reduct_py_batch.py, reduct_py_edits.py, reduct_py_replication*.py,
reduct_py_io_*.py, reduct_py_nested.py).  Signatures follow the installed
``reduct/client.py``, ``bucket.py`` and ``record.py``.
"""

import hashlib
import os
import re
import warnings

from _harness import eq, expect_error, run
from reduct import BucketSettings, Client, QuotaType, ReductError

T0 = 1_700_000_000_000_000
LARGE_SIZE = 3_000_017


async def read_record(bucket, entry, ts=None, head=False):
    async with bucket.read(entry, timestamp=ts, head=head) as rec:
        return rec, await rec.read_all()


async def main(checks, args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with Client(args.url, timeout=30) as client:
            await exercise(checks, args, client)
        # a second, session-less client (one connection per request)
        await exercise_errors(checks, args, Client(args.url, timeout=30))
    too_old = [w for w in caught if "Server API version is too old" in str(w.message)]
    checks.fact("api_too_old_warnings", len(too_old))
    # e.g. aiohttp's hint that a multi-megabyte bytes body should be a BytesIO
    checks.fact("other_warnings", sorted({str(w.message) for w in caught if w not in too_old}))


async def exercise(checks, args, client):
    name = args.bucket

    info = await client.info()
    if not re.fullmatch(r"\d+\.\d+\.\d+", info.version):
        raise AssertionError(f"server version {info.version!r} is not x.y.z")
    eq(info.license, None, "license")
    eq(info.defaults.bucket.max_block_size, 64_000_000, "default max_block_size")
    # the client parsed x-reduct-api into (major, minor)
    eq(client._http.api_version, (1, 20), "x-reduct-api as seen by the client")
    buckets_before = info.bucket_count
    checks.fact("server_version", info.version)
    checks.ok("server-info")

    settings = BucketSettings(
        max_block_size=3_000_000,
        max_block_records=200,
        quota_type=QuotaType.FIFO,
        quota_size=2_000_000_000,
    )
    bucket = await client.create_bucket(name, settings)
    eq(await bucket.get_settings(), settings, "settings after create")
    await expect_error(
        client.create_bucket(name, settings), ReductError, 409,
        f"Bucket '{name}' already exists",
    )
    again = await client.create_bucket(name, settings, exist_ok=True)
    eq(again.name, name, "exist_ok bucket")
    checks.ok("create-bucket-settings-exist-ok")

    bucket = await client.get_bucket(name)
    binfo = await bucket.info()
    eq((binfo.name, binfo.entry_count, binfo.size, binfo.is_provisioned),
       (name, 0, 0, False), "empty bucket info")
    eq(await bucket.get_entry_list(), [], "entries of an empty bucket")
    await bucket.set_settings(BucketSettings(quota_size=3_000_000_000))
    eq(
        await bucket.get_settings(),
        BucketSettings(
            max_block_size=3_000_000,
            max_block_records=200,
            quota_type=QuotaType.FIFO,
            quota_size=3_000_000_000,
        ),
        "settings after partial update",
    )
    checks.ok("get-bucket-settings-info")

    records = {}
    for i in range(4):
        ts = T0 + i * 1_000_000
        labels = {"camera": f"cam-{i % 2}", "score": f"0.{i}"}
        ctype = "image/jpeg" if i % 2 else "text/csv"
        data = bytes([i]) * (100 + i)
        await bucket.write("frames", data, timestamp=ts, labels=labels, content_type=ctype)
        records[ts] = (data, labels, ctype)
    for ts, (data, labels, ctype) in records.items():
        rec, body = await read_record(bucket, "frames", ts)
        eq(body, data, f"content of {ts}")
        eq((rec.timestamp, rec.entry, rec.size, rec.labels, rec.content_type),
           (ts, "frames", len(data), labels, ctype), f"metadata of {ts}")
        head, empty = await read_record(bucket, "frames", ts, head=True)
        eq(empty, b"", f"HEAD body of {ts}")
        eq((head.timestamp, head.size, head.labels, head.content_type),
           (ts, len(data), labels, ctype), f"HEAD metadata of {ts}")
    last = max(records)
    rec, body = await read_record(bucket, "frames")
    eq((rec.timestamp, body), (last, records[last][0]), "latest record")
    checks.ok("write-read-head-labels-content-type")

    big = os.urandom(LARGE_SIZE)
    big_ts = T0 + 60_000_000
    await bucket.write("blobs", big, timestamp=big_ts, labels={"kind": "big"})
    rec, body = await read_record(bucket, "blobs", big_ts)
    eq((rec.size, rec.content_type, rec.labels),
       (LARGE_SIZE, "application/octet-stream", {"kind": "big"}), "large metadata")
    if body != big:
        raise AssertionError(f"large record differs ({len(body)} bytes back)")
    checks.fact("large_sha256", hashlib.sha256(body).hexdigest())
    checks.ok("large-write-read")

    entries = {e.name: e for e in await bucket.get_entry_list()}
    eq(sorted(entries), ["blobs", "frames"], "entries")
    eq((entries["frames"].record_count, entries["frames"].oldest_record,
        entries["frames"].latest_record), (4, T0, last), "frames stats")
    eq(entries["blobs"].record_count, 1, "blobs record_count")
    listed = {b.name: b for b in await client.list()}
    eq(listed[name].entry_count, 2, "entry_count in list")
    content = sum(len(d) for d, _, _ in records.values()) + LARGE_SIZE
    if listed[name].size < content:
        raise AssertionError(f"bucket size {listed[name].size} < content {content}")
    if not args.shared_server:
        eq((await client.info()).bucket_count, buckets_before + 1, "bucket_count")
    checks.ok("list-and-entry-stats")

    await expect_error(
        bucket.write("frames", b"x", timestamp=T0), ReductError, 409,
        f"A record with timestamp {T0} already exists",
    )
    await expect_error(
        read_record(bucket, "frames", T0 + 1), ReductError, 404,
        f"Record {T0 + 1} not found in block {name}/frames/{T0}",  # API 1.18 text
    )
    checks.ok("record-errors")

    await bucket.remove()
    await expect_error(client.get_bucket(name), ReductError, 404, f"Bucket '{name}' is not found")
    eq(name in {b.name for b in await client.list()}, False, "removed bucket listed")
    checks.ok("remove-bucket")


async def exercise_errors(checks, args, client):
    missing = args.bucket + "-missing"
    await expect_error(
        client.get_bucket(missing), ReductError, 404, f"Bucket '{missing}' is not found"
    )
    await expect_error(
        client.create_bucket("bad name!"), ReductError, 422,
        "Bucket or entry name can contain only letters, digests and [-,_] symbols",
    )
    checks.ok("missing-bucket-error")


if __name__ == "__main__":
    run(main)
