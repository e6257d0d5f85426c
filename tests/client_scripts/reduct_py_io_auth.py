"""
The newest reduct-py (1.21.x) and the token rights on the I/O API of a
daemon at API 1.20 with ``RS_API_TOKEN`` set (spec 1.20 §1.1: Read(bucket)
for a ``QUERY`` and ``GET|HEAD /io/:bucket/read``, Write(bucket) for
``write``, ``update``, ``remove`` and a ``REMOVE`` query).

Usage: python reduct_py_io_auth.py URL --token INIT_TOKEN [--bucket NAME] [--timeout S]

The multi-entry calls check ``api_version`` before sending, so each
token's client makes one request first (``me``, or ``info`` answered 401).
"""

from _harness import eq, expect_error, run
from reduct import Bucket, Client, Permissions, RecordBatch, ReductError

T0 = 1_700_000_000_000_000


async def rows(bucket, entries):
    found = []
    async for rec in bucket.query(entries):
        found.append((rec.entry, rec.timestamp, await rec.read_all()))
    return found


def batch_of(*records):
    batch = RecordBatch()
    for entry, ts, data in records:
        batch.add(entry, ts, data, labels={"by": "test"})
    return batch


async def main(checks, args):
    url, name = args.url, args.bucket
    admin = Client(url, api_token=args.token, timeout=30)
    bucket = await admin.create_bucket(name, exist_ok=True)
    eq(await bucket.write_record_batch(batch_of(("a", T0, b"a0"), ("b/c", T0 + 1, b"bc1"))), {},
       "errors of the admin's batch")
    reader_name, writer_name = f"{name}-reader", f"{name}-writer"
    reader = Client(url, api_token=await admin.create_token(
        reader_name, Permissions(full_access=False, read=[name], write=[])), timeout=30)
    writer = Client(url, api_token=await admin.create_token(
        writer_name, Permissions(full_access=False, read=[], write=[name])), timeout=30)
    await reader.me()
    await writer.me()
    readable, writable = Bucket(name, reader._http), Bucket(name, writer._http)

    eq(await rows(readable, ["*"]), [("a", T0, b"a0"), ("b/c", T0 + 1, b"bc1")],
       "a read token queries several entries")
    no_write = f"Token '{reader_name}' doesn't have write access to bucket '{name}'"
    await expect_error(readable.write_record_batch(batch_of(("a", T0 + 5, b"x"))),
                       ReductError, 403, no_write)
    await expect_error(readable.update_record_batch(batch_of(("a", T0, b""))),
                       ReductError, 403, no_write)
    await expect_error(readable.remove_record_batch(batch_of(("a", T0, b""))),
                       ReductError, 403, no_write)
    await expect_error(readable.remove_query(["*"], start=T0), ReductError, 403, no_write)
    checks.ok("read-token")

    eq(await writable.write_record_batch(batch_of(("a", T0 + 2, b"a2"), ("d", T0 + 3, b"d3"))),
       {}, "a write token writes a multi-entry batch")
    batch = RecordBatch()
    batch.add("a", T0 + 2, labels={"by": "writer"})
    eq(await writable.update_record_batch(batch), {}, "a write token updates")
    eq(await writable.remove_record_batch(batch_of(("d", T0 + 3, b""))), {},
       "a write token removes")
    eq(await writable.remove_query(["b*"], start=T0, stop=T0 + 10), 1,
       "a write token runs a remove query")
    no_read = f"Token '{writer_name}' doesn't have read access to bucket '{name}'"
    await expect_error(rows(writable, ["*"]), ReductError, 403, no_read)
    await expect_error(writable.read_attachments("a"), ReductError, 403, no_read)
    checks.ok("write-token")

    eq(await rows(bucket, ["*"]), [("a", T0, b"a0"), ("a", T0 + 2, b"a2")],
       "what the admin sees")
    async with bucket.read("a", timestamp=T0 + 2) as rec:
        eq(rec.labels, {"by": "writer"}, "the writer's update")
    nobody = Client(url, timeout=30)
    # (the 401 carries x-reduct-api: the client learns the version from it)
    await expect_error(nobody.info(), ReductError, 401, "No bearer token in request header")
    anonymous = Bucket(name, nobody._http)
    await expect_error(rows(anonymous, ["*"]), ReductError, 401,
                       "No bearer token in request header")
    await expect_error(anonymous.write_record_batch(batch_of(("a", T0 + 9, b"x"))),
                       ReductError, 401, "No bearer token in request header")
    checks.ok("no-token")

    await admin.remove_token(reader_name)
    await admin.remove_token(writer_name)
    await bucket.remove()
    checks.ok("remove")


if __name__ == "__main__":
    run(main)
