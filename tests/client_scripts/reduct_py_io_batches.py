"""
The newest reduct-py (1.21.x) writing, updating and removing records of
several entries in one request through the I/O API of a daemon at API
1.18 (spec 1.20 §1.3, §1.6, §1.7, §10.1).

Usage: python reduct_py_io_batches.py URL [--bucket NAME] [--timeout S]

How this client speaks batch protocol v2 (``reduct/batch/batch_v2.py``,
``bucket.py``), which it uses only when ``x-reduct-api`` says ≥ 1.18:

* ``write_record_batch`` → ``POST /io/:bucket/write``; entries are indexed
  in name order, the body is written entry by entry, each entry's records in
  time order (the order the server consumes, §1.9 rule 1); ``Content-Length``
  is the sum of the record sizes;
* ``update_record_batch`` → ``PATCH /io/:bucket/update`` with
  ``<0>,<content type>,<label delta>`` values; per entry the delta is taken
  against the previous record *of the batch*, so a label set on record n
  and not mentioned on record n + 1 is sent as a removal there (with the
  server's cumulative rule of §1.6 that removes it from record n + 1).  The
  updates here therefore always mention the same labels on every record
  of an entry;
* ``remove_record_batch`` → ``DELETE /io/:bucket/remove``;
* all three read the per-record errors ``x-reduct-error-<I>-<D>`` with the
  response's ``x-reduct-entries`` / ``x-reduct-start-ts`` and return
  ``{entry: {timestamp: ReductError}}``; an empty batch is sent as
  ``x-reduct-entries:`` + ``x-reduct-start-ts: 0`` (§1.3: answered 200).
"""

import os

from _harness import eq, expect_error, expect_status, read_record, run_with_client
from reduct import Bucket, RecordBatch, ReductError

T0 = 1_700_000_000_000_000
BIG = 2_100_003  # one record above 2 MiB in the middle of a batch

ENTRY_NAME_ERROR = (
    "Entry name can contain only letters, digits and [-,_,/] symbols or end with '/$meta'"
)




async def check_stored(bucket, expected: dict, what: str):
    """``expected``: ``{(entry, ts): (data, content_type, labels)}``, read singly."""
    for (entry, ts), (data, ctype, labels) in sorted(expected.items()):
        rec, body = await read_record(bucket, entry, ts)
        if body != data:
            raise AssertionError(
                f"{what}: content of {entry}@{ts} differs ({len(body)} bytes back, "
                f"{len(data)} written; starts {body[:20]!r})"
            )
        eq((rec.timestamp, rec.size, rec.content_type, rec.labels),
           (ts, len(data), ctype, labels), f"{what}: metadata of {entry}@{ts}")


async def exercise(checks, args, client):
    name = args.bucket
    bucket = await client.create_bucket(name, exist_ok=True)
    eq(client._http.api_version, (1, 20), "x-reduct-api as seen by the client")

    # -- write: three entries, labels, content types, sizes up to 2 MiB ------
    batch = RecordBatch()
    expected = {}

    def add(entry, ts, data, ctype=None, labels=None):
        kwargs = {}
        if ctype is not None:
            kwargs["content_type"] = ctype
        if labels is not None:
            kwargs["labels"] = labels
        batch.add(entry, ts, data, **kwargs)
        expected[(entry, ts)] = (data, ctype or "application/octet-stream", labels or {})

    for i in range(6):
        add("cam-1", T0 + 10 * i, b"cam-1 frame %d " % i + bytes([i]) * (40 + i),
            "image/jpeg", {"camera": "front", "seq": str(i)})
    for i in range(4):
        # the content type changes half way, a label disappears on the last record
        labels = {"camera": "rear", "night": "yes"} if i < 3 else {"camera": "rear"}
        add("cam-2", T0 + 10 * i + 5, b"cam-2/%d" % i,
            "image/png" if i < 2 else "image/webp", labels)
    add("lidar", T0 + 1, os.urandom(BIG), "application/x-pcd", {"unit": "m"})
    add("lidar", T0 + 2, b"")  # an empty record without labels
    add("lidar", T0 + 3, b"after the big one", "text/plain",
        {"unit": "m", "note": "a,b"})  # a value with a comma goes quoted
    eq(await bucket.write_record_batch(batch), {}, "errors of a clean multi-entry batch")
    await check_stored(bucket, expected, "multi-entry batch")
    entries = {e.name: e for e in await bucket.get_entry_list()}
    eq(sorted(entries), ["cam-1", "cam-2", "lidar"], "entries created by the batch")
    eq([entries[e].record_count for e in ("cam-1", "cam-2", "lidar")], [6, 4, 3],
       "record counts")
    checks.ok("write-record-batch-multi-entry")

    # -- write: per-record errors, the other records stored intact -----------
    await bucket.write("cam-1", b"original", timestamp=T0 + 100, content_type="text/plain")
    batch = RecordBatch()
    # "bad name" sorts first: its bytes lead the body and must be skipped
    batch.add("bad name", T0 + 100, b"x" * 1000, content_type="text/plain")
    batch.add("cam-1", T0 + 100, b"duplicate!" * 30, content_type="text/plain")
    batch.add("cam-1", T0 + 101, b"next to the duplicate", content_type="text/plain",
              labels={"k": "v"})
    batch.add("cam-3", T0 + 99, b"new entry, earlier than the duplicate",
              labels={"k": "w"})
    errors = await bucket.write_record_batch(batch)
    eq(errors, {
        "bad name": {T0 + 100: ReductError(422, ENTRY_NAME_ERROR)},
        "cam-1": {T0 + 100: ReductError(409, f"A record with timestamp {T0 + 100} already exists")},
    }, "per-record errors of a multi-entry batch")
    await check_stored(bucket, {
        ("cam-1", T0 + 100): (b"original", "text/plain", {}),
        ("cam-1", T0 + 101): (b"next to the duplicate", "text/plain", {"k": "v"}),
        ("cam-3", T0 + 99): (b"new entry, earlier than the duplicate",
                             "application/octet-stream", {"k": "w"}),
    }, "batch with failed records")
    eq("bad name" in {e.name for e in await bucket.get_entry_list()}, False,
       "entry with a bad name created")
    checks.ok("write-record-batch-per-record-errors")

    missing = Bucket(name + "-missing", client._http)
    batch = RecordBatch()
    batch.add("a", T0, b"1")
    batch.add("b", T0 + 1, b"22")
    not_found = ReductError(404, f"Bucket '{name}-missing' is not found")
    eq(await missing.write_record_batch(batch),
       {"a": {T0: not_found}, "b": {T0 + 1: not_found}},
       "a batch into a missing bucket: one 404 per record")
    await expect_error(client.get_bucket(name + "-missing"), ReductError, 404,
                       f"Bucket '{name}-missing' is not found")
    checks.ok("write-record-batch-missing-bucket")

    # -- update: several entries, set / change / remove labels --------------
    batch = RecordBatch()
    for i in (0, 1, 2):
        batch.add("cam-1", T0 + 10 * i, labels={"camera": "left", "seq": "", "checked": "yes"})
    for i in (1, 3):
        batch.add("cam-2", T0 + 10 * i + 5, labels={"night": "", "checked": "no"})
    batch.add("cam-2", T0 + 7, labels={"checked": "x"})  # no such record
    batch.add("nope", T0, labels={"checked": "x"})  # no such entry
    errors = await bucket.update_record_batch(batch)
    eq(errors, {
        "cam-2": {T0 + 7: ReductError(404, f"Record {T0 + 7} not found in entry {name}/cam-2")},
        "nope": {T0: ReductError(404, f"Entry 'nope' not found in bucket '{name}'")},
    }, "per-record errors of an update batch")
    for i in range(6):
        rec, _ = await read_record(bucket, "cam-1", T0 + 10 * i)
        want = ({"camera": "left", "checked": "yes"} if i < 3
                else {"camera": "front", "seq": str(i)})
        eq(rec.labels, want, f"labels of cam-1@{i} after the update")
    for i in range(4):
        rec, body = await read_record(bucket, "cam-2", T0 + 10 * i + 5)
        if i in (1, 3):
            want = {"camera": "rear", "checked": "no"}
        else:
            want = expected[("cam-2", T0 + 10 * i + 5)][2]
        eq((rec.labels, body), (want, b"cam-2/%d" % i), f"cam-2@{i} after the update")
    checks.ok("update-record-batch")

    # -- remove: several entries --------------------------------------------
    batch = RecordBatch()
    batch.add("cam-1", T0 + 20)
    batch.add("cam-1", T0 + 30)
    batch.add("lidar", T0 + 2)
    batch.add("cam-3", T0 + 99)
    batch.add("lidar", T0 + 4)  # no such record
    errors = await bucket.remove_record_batch(batch)
    eq(errors, {"lidar": {T0 + 4: ReductError(404, f"Record {T0 + 4} not found in entry {name}/lidar")}},
       "per-record errors of a remove batch")
    for entry, ts in (("cam-1", T0 + 20), ("cam-1", T0 + 30), ("lidar", T0 + 2), ("cam-3", T0 + 99)):
        await expect_status(read_record(bucket, entry, ts), 404, f"reading removed {entry}@{ts}")
    _, body = await read_record(bucket, "lidar", T0 + 3)
    eq(body, b"after the big one", "a record kept beside removed ones")
    counts = {e.name: e.record_count for e in await bucket.get_entry_list()}
    eq((counts["cam-1"], counts["lidar"], counts.get("cam-3", 0)), (6, 2, 0),
       "record counts after the remove batch")
    checks.ok("remove-record-batch")

    # -- a full batch: 80 records over 4 entries, interleaved in time --------
    batch, many = RecordBatch(), {}
    for i in range(80):
        entry, ts = f"many-{i % 4}", T0 + 1000 + i
        data = b"%d:" % i + bytes([i]) * (i * 37 % 500)
        batch.add(entry, ts, data, content_type="text/plain", labels={"i": str(i)})
        many[(entry, ts)] = (data, "text/plain", {"i": str(i)})
    eq(await bucket.write_record_batch(batch), {}, "errors of an 80-record batch")
    found = {}
    async for rec in bucket.query(["many-*"]):
        found[(rec.entry, rec.timestamp)] = (await rec.read_all(), rec.content_type, rec.labels)
    eq(len(found), 80, "records of the 80-record batch")
    for key, value in many.items():
        eq(found.get(key), value, f"{key} written in a full batch, read with a query")
    checks.ok("write-record-batch-80-records")

    # -- empty batches (reduct-py sends them, e.g. remove_attachments) -------
    eq(await bucket.write_record_batch(RecordBatch()), {}, "empty write batch")
    eq(await bucket.update_record_batch(RecordBatch()), {}, "empty update batch")
    eq(await bucket.remove_record_batch(RecordBatch()), {}, "empty remove batch")
    checks.ok("empty-batches")

    # -- nested entry names (spec §2): percent-encoded in x-reduct-entries ---
    batch = RecordBatch()
    for i in range(3):
        batch.add("site/line-1/cell", T0 + i, b"cell %d" % i, content_type="text/plain",
                  labels={"i": str(i)})
        batch.add("site/line-1", T0 + 10 + i, b"line %d" % i)
    batch.add("site", T0 + 20, b"site")
    eq(await bucket.write_record_batch(batch), {}, "errors of a nested batch")
    for i in range(3):
        rec, body = await read_record(bucket, "site/line-1/cell", T0 + i)
        eq((body, rec.labels, rec.content_type), (b"cell %d" % i, {"i": str(i)}, "text/plain"),
           f"site/line-1/cell@{i}")
        _, body = await read_record(bucket, "site/line-1", T0 + 10 + i)
        eq(body, b"line %d" % i, f"site/line-1@{i}")
    batch = RecordBatch()
    batch.add("site/line-1/cell", T0 + 2, labels={"i": "two", "checked": "yes"})
    batch.add("site", T0 + 20, labels={"checked": "yes"})
    eq(await bucket.update_record_batch(batch), {}, "update of nested records")
    rec, _ = await read_record(bucket, "site/line-1/cell", T0 + 2)
    eq(rec.labels, {"i": "two", "checked": "yes"}, "labels of a nested record after update")
    batch = RecordBatch()
    batch.add("site/line-1/cell", T0 + 1)
    batch.add("site/line-1", T0 + 11)
    eq(await bucket.remove_record_batch(batch), {}, "remove of nested records")
    counts = {e.name: e.record_count for e in await bucket.get_entry_list()}
    eq({k: v for k, v in counts.items() if k.startswith("site")},
       {"site": 1, "site/line-1": 2, "site/line-1/cell": 2}, "nested record counts")
    checks.ok("nested-entry-names")

    await bucket.remove()
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run_with_client(exercise)
