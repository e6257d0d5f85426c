"""
The newest reduct-py (1.21.x) with hierarchical entry paths and attachments
against a daemon at API 1.20 (spec 1.20 §2, §3, §5.4).

Usage: python reduct_py_nested.py URL [--bucket NAME] [--timeout S]

* Nested names go raw into the v1 paths (``/b/:bucket/a/b/c?ts=``,
  ``…/a/b/c/batch``, ``PUT …/a/rename``, ``DELETE …/a``) and
  percent-encoded into the I/O API's ``x-reduct-entries``.
* Attachments (``reduct/bucket.py``): ``write_attachments(entry, {key: obj})``
  is one ``POST /io/:bucket/write`` into ``<entry>/$meta`` (label ``key``,
  ``application/json``, timestamp = now per key); ``read_attachments``
  queries ``["<entry>/$meta"]`` through ``/io/``; ``remove_attachments``
  queries with ``when: {"$in": [{"&key": {"$cast": "string"}}, …keys]}``
  (keys starting with ``$`` sent as ``$$…``, spec §6.3; no keys →
  ``when: {}``) and sends one ``PATCH /io/:bucket/update`` adding
  ``remove=true`` to each record found; when nothing matched that batch is
  empty (§1.3, §10.4 e: answered 200).
* ``EntryInfo.status`` / ``BucketInfo.status`` default to ``READY`` in the
  client's model, so the ``status`` fields are checked in the raw JSON.
"""

import contextlib
import json

from _harness import eq, expect_error, expect_status, read_record, run_with_client
from reduct import Batch, ReductError, Status

T0 = 1_700_000_000_000_000
CELL3 = "factory-1/line-2/cell-3"
CELL4 = "factory-1/line-2/cell-4"




async def entries_of(bucket) -> dict:
    return {e.name: e for e in await bucket.get_entry_list()}


async def query_rows(bucket, entries, **kwargs):
    rows = []
    async with contextlib.aclosing(bucket.query(entries, **kwargs)) as it:
        async for rec in it:
            rows.append((rec.entry, rec.timestamp, await rec.read_all(), rec.labels))
    return rows


async def exercise(checks, args, client):
    name = args.bucket
    bucket = await client.create_bucket(name, exist_ok=True)
    eq(client._http.api_version, (1, 20), "x-reduct-api as seen by the client")

    # -- write and read nested entries over the v1 routes --------------------
    for i in range(3):
        await bucket.write(CELL3, b"cell-3 #%d" % i, timestamp=T0 + i,
                           labels={"i": str(i)}, content_type="text/plain")
    await bucket.write(CELL4, b"cell-4", timestamp=T0 + 10)
    await bucket.write("factory-1", b"the parent's own record", timestamp=T0 + 20)
    batch = Batch()
    for i in range(3, 6):
        batch.add(T0 + i, b"cell-3 #%d" % i, content_type="text/plain", labels={"i": str(i)})
    eq(await bucket.write_batch(CELL3, batch), {}, "v1 batch into a nested entry")
    for i in range(6):
        rec, body = await read_record(bucket, CELL3, T0 + i)
        eq((body, rec.labels, rec.content_type), (b"cell-3 #%d" % i, {"i": str(i)}, "text/plain"),
           f"{CELL3}@{i}")
    rec, body = await read_record(bucket, "factory-1")
    eq((rec.timestamp, body), (T0 + 20, b"the parent's own record"), "latest of the parent")
    await expect_status(read_record(bucket, "factory-1/line-2"), 404,
                        "the latest record of an empty parent")
    checks.ok("write-read-nested")

    want = ["factory-1", "factory-1/line-2", CELL3, CELL4]
    entries = await entries_of(bucket)
    eq(sorted(entries), want, "entries (parents created)")
    eq([entries[e].record_count for e in want], [1, 0, 6, 1], "record counts")
    eq({entries[e].status for e in want}, {Status.READY}, "entry status (client model)")
    body, _ = await client._http.request_all("GET", f"/b/{name}")
    raw = json.loads(body)
    eq([e["name"] for e in raw["entries"]], want, "entries in the server's order")
    eq([e.get("status") for e in raw["entries"]], ["READY"] * 4, "raw entry status")
    eq((raw["info"].get("status"), raw["info"]["entry_count"]), ("READY", 4), "raw bucket info")
    listed = {b.name: b for b in await client.list()}
    eq((listed[name].entry_count, listed[name].status), (4, Status.READY), "bucket in /list")
    checks.ok("bucket-info-nested-status")

    cell3 = [(CELL3, T0 + i, b"cell-3 #%d" % i, {"i": str(i)}) for i in range(6)]
    cell4 = [(CELL4, T0 + 10, b"cell-4", {})]
    parent = [("factory-1", T0 + 20, b"the parent's own record", {})]
    eq(await query_rows(bucket, ["factory-1/line-2/*"]), cell3 + cell4, "factory-1/line-2/*")
    eq(await query_rows(bucket, ["factory-1*"]), cell3 + cell4 + parent, "factory-1*")
    eq(await query_rows(bucket, [CELL4, "factory-1"]), cell4 + parent, "two nested by name")
    eq(await query_rows(bucket, ["factory-1/line-2"]), [], "an empty parent")
    checks.ok("query-nested")

    # -- attachments ----------------------------------------------------------
    size_before = (await bucket.info()).size
    attachments = {
        "schema": {"type": "object", "fields": ["x", "y"]},
        "$plugin": {"name": "ros", "version": 2},
        "units": {"x": "mm"},
    }
    await bucket.write_attachments(CELL3, attachments)
    eq(await bucket.read_attachments(CELL3), attachments, "attachments read back")
    eq(await bucket.read_attachments(CELL4), {}, "attachments of an entry without any")
    entries = await entries_of(bucket)
    eq(sorted(entries), want, "$meta entries are not listed")
    info = await bucket.info()
    eq(info.entry_count, 4, "$meta entries are not counted")
    if info.size < size_before + sum(len(json.dumps(v)) for v in attachments.values()):
        raise AssertionError(f"bucket size {info.size} does not count the attachments")
    eq(await query_rows(bucket, ["factory-1*"]), cell3 + cell4 + parent,
       "a pattern does not select $meta")
    meta = await query_rows(bucket, [CELL3 + "/$meta"])
    eq(sorted(r[3]["key"] for r in meta), sorted(attachments), "the $meta entry by name")
    checks.ok("attachments-write-read")

    await bucket.write_attachments(CELL3, {"schema": {"type": "object", "v": 2}})
    attachments["schema"] = {"type": "object", "v": 2}
    eq(await bucket.read_attachments(CELL3), attachments, "attachments after an upsert")
    meta = await query_rows(bucket, [CELL3 + "/$meta"])
    eq(sorted(r[3]["key"] for r in meta), sorted(attachments), "one record per key")
    checks.ok("attachments-upsert")

    await bucket.remove_attachments(CELL3, ["absent", "also-absent"])
    await bucket.remove_attachments(CELL4)
    eq(await bucket.read_attachments(CELL3), attachments, "nothing removed")
    checks.ok("attachments-remove-nothing-matches")

    await bucket.remove_attachments(CELL3, ["units"])
    del attachments["units"]
    eq(await bucket.read_attachments(CELL3), attachments, "a plain key removed")
    await bucket.remove_attachments(CELL3)
    eq(await bucket.read_attachments(CELL3), {}, "all removed")
    checks.ok("attachments-remove")

    await expect_error(
        bucket.remove_entry(CELL3 + "/$meta"), ReductError, 422,
        f"Can't delete system entry '{CELL3}/$meta'; remove the parent entry instead",
    )
    checks.ok("meta-entry-not-removable")

    # -- rename and remove a parent with its children -------------------------
    await bucket.write_attachments(CELL4, {"calib": {"k": 1.5}})
    await bucket.rename_entry("factory-1", "plant-7")
    for old in ("factory-1", CELL3, CELL4):
        await expect_status(read_record(bucket, old), 404, f"reading {old} after the rename")
    new3, new4 = CELL3.replace("factory-1", "plant-7"), CELL4.replace("factory-1", "plant-7")
    _, body = await read_record(bucket, new3, T0 + 5)
    eq(body, b"cell-3 #5", "a child after the rename")
    _, body = await read_record(bucket, "plant-7")
    eq(body, b"the parent's own record", "the parent after the rename")
    eq(sorted(await entries_of(bucket)), ["plant-7", "plant-7/line-2", new3, new4],
       "entries after renaming the parent")
    eq(await bucket.read_attachments(new4), {"calib": {"k": 1.5}}, "attachments moved along")
    eq(await bucket.read_attachments(CELL4), {}, "no attachments left at the old name")
    await expect_error(
        bucket.rename_entry("plant-7", "plant-7/inside"), ReductError, 409,
        f"Entry 'plant-7/inside' already exists in bucket '{name}'",
    )
    await bucket.rename_entry(new4, "moved/cell-4")
    _, body = await read_record(bucket, "moved/cell-4", T0 + 10)
    eq(body, b"cell-4", "an entry moved under a new parent")
    eq(sorted(await entries_of(bucket)),
       ["moved", "moved/cell-4", "plant-7", "plant-7/line-2", new3],
       "entries after moving a child to a new parent")
    checks.ok("rename-parent-with-children")

    await bucket.remove_entry("plant-7")
    eq(sorted(await entries_of(bucket)), ["moved", "moved/cell-4"],
       "entries after removing the parent")
    for gone in ("plant-7", new3):
        await expect_status(read_record(bucket, gone), 404, f"reading {gone} after the removal")
    eq(await query_rows(bucket, ["*"]), [("moved/cell-4", T0 + 10, b"cell-4", {})],
       "what is left")
    eq(await bucket.read_attachments("moved/cell-4"), {"calib": {"k": 1.5}},
       "attachments of the entry left")
    checks.ok("remove-parent-with-children")

    # last, so that a server without "$$" literals (spec §6.3) fails here only
    dollar = {"$plugin": {"name": "ros"}, "$$two": [1, 2], "plain": {"x": 1}}
    await bucket.write_attachments("moved", dollar)
    eq(await bucket.read_attachments("moved"), dollar, "keys starting with $ read back")
    await bucket.remove_attachments("moved", ["$plugin"])
    del dollar["$plugin"]
    eq(await bucket.read_attachments("moved"), dollar, "a $-key removed")
    await bucket.remove_attachments("moved", ["$$two", "plain"])
    eq(await bucket.read_attachments("moved"), {}, "a $$-key and a plain key removed")
    checks.ok("attachments-remove-dollar-keys")

    await bucket.remove()
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run_with_client(exercise)
