"""
reduct-py 1.4.x against a running daemon.

Usage: python reduct_py_1_4.py URL [--bucket NAME] [--timeout S]

Runs inside a venv with ``reduct-py==1.4.1`` (see ``tests/clients.py``).
This client generation never reads ``x-reduct-api``; it queries with
``GET …/q`` and reads results one record at a time (``GET …?q=ID``, needing
``x-reduct-last``), and sends ``Expect: 100-continue`` for bodies over
256 000 bytes.  Signatures follow the installed ``reduct/bucket.py`` and
``reduct/client.py`` of 1.4.1.
"""

import asyncio
import hashlib
import os
import re

from _harness import eq, expect_error, run
from reduct import BucketSettings, Client, QuotaType, ReductError
from reduct.http import HttpClient

T0 = 1_600_000_000_000_000
#: Body size of the large record: above 1.4.x's 100-continue threshold.
LARGE_SIZE = 1_000_003


async def read_record(bucket, entry, ts=None):
    async with bucket.read(entry, timestamp=ts) as rec:
        return rec, await rec.read_all()


async def collect_query(bucket, entry, **kwargs):
    """Run a query and return ``[(ts, data, labels, content_type), ...]``."""
    out = []
    async for rec in bucket.query(entry, **kwargs):
        out.append((rec.timestamp, await rec.read_all(), rec.labels, rec.content_type))
    return out


async def main(checks, args):
    url, name = args.url, args.bucket
    client = Client(url, timeout=30)

    # -- server -----------------------------------------------------------
    info = await client.info()
    if not re.fullmatch(r"\d+\.\d+\.\d+", info.version):
        raise AssertionError(f"server version {info.version!r} is not x.y.z")
    eq(info.defaults.bucket.max_block_size, 64_000_000, "default max_block_size")
    eq(info.defaults.bucket.quota_type, QuotaType.NONE, "default quota_type")
    buckets_before = info.bucket_count
    checks.fact("server_version", info.version)
    checks.ok("server-info")

    # -- buckets ----------------------------------------------------------
    settings = BucketSettings(
        max_block_size=2_000_000,
        max_block_records=100,
        quota_type=QuotaType.FIFO,
        quota_size=1_000_000_000,
    )
    bucket = await client.create_bucket(name, settings)
    eq(bucket.name, name, "bucket name")
    eq(await bucket.get_settings(), settings, "settings after create")
    checks.ok("create-bucket-with-settings")

    await expect_error(
        client.create_bucket(name), ReductError, 409, f"Bucket '{name}' already exists"
    )
    same = await client.create_bucket(name, settings, exist_ok=True)
    eq(same.name, name, "exist_ok bucket name")
    checks.ok("create-bucket-conflict-and-exist-ok")

    got = await client.get_bucket(name)
    binfo = await got.info()
    eq((binfo.name, binfo.entry_count, binfo.size), (name, 0, 0), "empty bucket info")
    eq(await got.get_entry_list(), [], "entries of an empty bucket")
    checks.ok("get-bucket-info")

    # reduct-py sends explicit nulls for unset fields: only max_block_records changes.
    await bucket.set_settings(BucketSettings(max_block_records=50))
    eq(
        await bucket.get_settings(),
        BucketSettings(
            max_block_size=2_000_000,
            max_block_records=50,
            quota_type=QuotaType.FIFO,
            quota_size=1_000_000_000,
        ),
        "settings after partial update",
    )
    checks.ok("update-settings")

    # -- write / read with labels and content type --------------------------
    records = {}
    for i in range(6):
        ts = T0 + i * 1000
        labels = {"kind": "even" if i % 2 == 0 else "odd", "i": str(i)}
        ctype = "text/plain" if i % 3 else "application/json; charset=utf-8"
        data = f"record {i} ".encode() * (i + 1)
        await bucket.write("sensor", data, timestamp=ts, labels=labels, content_type=ctype)
        records[ts] = (data, labels, ctype)
    for ts, (data, labels, ctype) in records.items():
        rec, body = await read_record(bucket, "sensor", ts)
        eq(body, data, f"content of {ts}")
        eq(
            (rec.timestamp, rec.size, rec.labels, rec.content_type, rec.last),
            (ts, len(data), labels, ctype, True),
            f"metadata of {ts}",
        )
    last_ts = max(records)
    rec, body = await read_record(bucket, "sensor")
    eq((rec.timestamp, body), (last_ts, records[last_ts][0]), "latest record")
    checks.ok("write-read-labels-content-type")

    # -- queries --------------------------------------------------------------
    stamps = sorted(records)
    everything = await collect_query(bucket, "sensor", start=stamps[0], stop=last_ts + 1)
    eq(
        everything,
        [(ts, d, lab, ct) for ts, (d, lab, ct) in sorted(records.items())],
        "query of all records",
    )
    window = await collect_query(bucket, "sensor", start=stamps[1], stop=stamps[4])
    eq([r[0] for r in window], stamps[1:4], "query [start, stop)")
    checks.ok("query-range")

    even = await collect_query(
        bucket, "sensor", start=stamps[0], stop=last_ts + 1, include={"kind": "even"}
    )
    eq([r[0] for r in even], stamps[0::2], "include kind=even")
    odd = await collect_query(
        bucket, "sensor", start=stamps[0], stop=last_ts + 1, exclude={"kind": "even"}
    )
    eq([r[0] for r in odd], stamps[1::2], "exclude kind=even")
    both = await collect_query(
        bucket, "sensor", start=stamps[0], stop=last_ts + 1, include={"kind": "even", "i": "2"}
    )
    eq([r[0] for r in both], [stamps[2]], "include kind=even AND i=2")
    # exclude drops a record only when it matches *all* exclude pairs
    not_both = await collect_query(
        bucket, "sensor", start=stamps[0], stop=last_ts + 1, exclude={"kind": "even", "i": "2"}
    )
    eq([r[0] for r in not_both], [s for s in stamps if s != stamps[2]], "exclude even AND i=2")
    none = await collect_query(bucket, "sensor", start=stamps[0], stop=last_ts + 1,
                               include={"kind": "nope"})
    eq(none, [], "include matching nothing")
    checks.ok("query-include-exclude")

    # -- subscribe: records written while subscribed arrive ---------------------
    live0 = T0 + 10_000_000
    await bucket.write("live", b"first", timestamp=live0, labels={"seq": "0"})
    received = []
    expected = [(live0, b"first", {"seq": "0"})] + [
        (live0 + k * 10, f"later {k}".encode(), {"seq": str(k)}) for k in range(1, 4)
    ]

    async def consume():
        agen = bucket.subscribe("live", start=live0, poll_interval=0.2)
        try:
            async for rec in agen:
                received.append((rec.timestamp, await rec.read_all(), rec.labels))
                if len(received) >= len(expected):
                    return
        finally:
            await agen.aclose()

    async def produce():
        # A second client and bucket object, as another process would have.
        writer = await Client(url, timeout=30).get_bucket(name)
        for ts, data, labels in expected[1:]:
            await asyncio.sleep(0.3)
            await writer.write("live", data, timestamp=ts, labels=labels)

    await asyncio.wait_for(asyncio.gather(consume(), produce()), 15)
    eq(received, expected, "records delivered by subscribe")
    checks.ok("subscribe-continuous")

    # -- large record: Expect: 100-continue ---------------------------------------
    big = os.urandom(LARGE_SIZE)
    if LARGE_SIZE <= HttpClient.FILE_SIZE_FOR_100_CONTINUE:
        raise AssertionError("large record would not use Expect: 100-continue")
    big_ts = T0 + 20_000_000
    await bucket.write("big", big, timestamp=big_ts, content_type="application/x-big")
    rec, body = await read_record(bucket, "big", big_ts)
    eq((rec.size, rec.content_type), (LARGE_SIZE, "application/x-big"), "large metadata")
    if body != big:
        raise AssertionError(f"large record differs ({len(body)} bytes back)")
    digest = hashlib.sha256()
    async with bucket.read("big", timestamp=big_ts) as rec:
        async for chunk in rec.read(65_536):
            digest.update(chunk)
    eq(digest.hexdigest(), hashlib.sha256(big).hexdigest(), "chunked read of large record")
    checks.fact("large_sha256", digest.hexdigest())
    checks.ok("large-write-100-continue")

    # refused before the body is sent (the server answers the 100-continue with 409)
    await expect_error(
        bucket.write("big", big, timestamp=big_ts),
        ReductError, 409, f"A record with timestamp {big_ts} already exists",
    )
    await expect_error(
        bucket.write("sensor", b"dup", timestamp=stamps[0]),
        ReductError, 409, f"A record with timestamp {stamps[0]} already exists",
    )
    # the server still works after the refused large upload
    rec, body = await read_record(bucket, "big", big_ts)
    eq(len(body), LARGE_SIZE, "large record after refused duplicate")
    checks.ok("duplicate-writes-refused")

    # -- server info and list with data -------------------------------------------
    listed = {b.name: b for b in await client.list()}
    mine = listed.get(name)
    if mine is None:
        raise AssertionError(f"{name} missing from list: {sorted(listed)}")
    eq(mine.entry_count, 3, "entry_count in list")
    eq((mine.oldest_record, mine.latest_record), (T0, big_ts), "oldest/latest in list")
    content = sum(len(d) for d, _, _ in records.values()) + LARGE_SIZE
    content += sum(len(d) for _, d, _ in expected)
    if mine.size < content:
        raise AssertionError(f"bucket size {mine.size} < content {content}")
    entries = {e.name: e for e in await bucket.get_entry_list()}
    eq(sorted(entries), ["big", "live", "sensor"], "entry names")
    eq(entries["sensor"].record_count, 6, "sensor record_count")
    eq(entries["live"].record_count, 4, "live record_count")
    info = await client.info()
    if not args.shared_server:
        eq(info.bucket_count, buckets_before + 1, "bucket_count")
    if info.usage < content:
        raise AssertionError(f"usage {info.usage} < content {content}")
    checks.fact("bucket_size", mine.size)
    checks.ok("server-info-and-list")

    # -- errors carry the server's text -------------------------------------------------
    missing = name + "-missing"
    await expect_error(
        client.get_bucket(missing), ReductError, 404, f"Bucket '{missing}' is not found"
    )
    await expect_error(
        read_record(bucket, "sensor", T0 + 1), ReductError, 404,
        f"Record {T0 + 1} not found in block {name}/sensor/{T0}",  # API 1.18 text
    )
    await expect_error(
        read_record(bucket, "nope", T0), ReductError, 404,
        f"Entry 'nope' not found in bucket '{name}'",
    )
    await expect_error(
        collect_query(bucket, "nope", start=T0, stop=T0 + 10), ReductError, 404,
        f"Entry 'nope' not found in bucket '{name}'",
    )
    await expect_error(
        Client(url.rstrip("/") + "/bad-path").info(), ReductError, 404, "Not found"
    )
    checks.ok("errors-with-server-text")

    # -- remove ---------------------------------------------------------------------------
    await bucket.remove()
    await expect_error(client.get_bucket(name), ReductError, 404, f"Bucket '{name}' is not found")
    await expect_error(bucket.remove(), ReductError, 404, f"Bucket '{name}' is not found")
    eq(name in {b.name for b in await client.list()}, False, "removed bucket listed")
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run(main)
