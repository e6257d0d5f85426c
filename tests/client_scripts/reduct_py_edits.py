"""
The newest reduct-py (1.21.x) editing what is stored (issue #6): labels,
records, entries, names, and a HARD quota, against a daemon at API 1.17.

Usage: python reduct_py_edits.py URL [--bucket NAME] [--timeout S]

Calls and the requests they send (the installed ``reduct/bucket.py`` and
``reduct/batch/batch_v1.py``; spec §3.5–§3.9):

- ``update(e, ts, labels)``: ``PATCH /b/:b/:e?ts=`` with one
  ``x-reduct-label-<name>`` header per label (an empty value removes it);
- ``update_batch(e, Batch)``: ``PATCH /b/:b/:e/batch`` with
  ``x-reduct-time-<ts>: 0,application/octet-stream,<name>=<value>,…``,
  per-record errors from ``x-reduct-error-<ts>``;
- ``remove_record(e, ts)``: ``DELETE /b/:b/:e?ts=``;
- ``remove_batch(e, Batch)``: ``DELETE /b/:b/:e/batch`` with
  ``x-reduct-time-<ts>: 0,application/octet-stream``;
- ``rename_entry(a, b)`` / ``rename(new)``: ``PUT /b/:b/:a/rename`` /
  ``PUT /b/:b/rename`` with ``{"new_name": …}``;
- ``remove_entry(e)``: ``DELETE /b/:b/:e``;
- ``create_bucket(n, BucketSettings(quota_type=HARD, …))``: the daemon
  answers a write that would exceed the quota with
  ``400 Quota of '<bucket>' exceeded`` and deletes nothing.

(``remove_query``, also with ``when``, is exercised by reduct_py_query.py.)
Every change is checked by reading back through the client.
"""

import contextlib

from _harness import eq, expect_error, run_with_client
from reduct import Batch, BucketSettings, QuotaType, ReductError

T0 = 1_700_000_000_000_000
NAME_ERROR = "Bucket or entry name can contain only letters, digests and [-,_] symbols"
#: Entry names are paths since API 1.19 (spec 1.20 §2.1): their own text.
ENTRY_NAME_ERROR = ("Entry name can contain only letters, digits and [-,_,/] symbols or end "
                    "with '/$meta'")


async def read(bucket, entry, ts, head=False):
    """``(labels as a list of pairs, content type, content)`` of one record."""
    async with bucket.read(entry, timestamp=ts, head=head) as rec:
        eq(rec.timestamp, ts, "timestamp read back")
        return list(rec.labels.items()), rec.content_type, await rec.read_all()


async def timestamps(bucket, entry):
    found = []
    async with contextlib.aclosing(bucket.query(entry)) as it:
        async for record in it:
            found.append(record.timestamp)
    return found


async def record_count(bucket, entry):
    entries = {e.name: e for e in await bucket.get_entry_list()}
    return entries[entry].record_count


async def exercise(checks, args, client):
    name = args.bucket
    bucket = await client.create_bucket(name, exist_ok=True)
    eq(client._http.api_version, (1, 20), "x-reduct-api as seen by the client")

    # -- PATCH one record --------------------------------------------------------
    await bucket.write("labels", b"content-0", timestamp=T0, content_type="text/plain",
                       labels={"zeta": "1", "mid": "2", "beta": "3"})
    before = await read(bucket, "labels", T0)
    eq(dict(before[0]), {"zeta": "1", "mid": "2", "beta": "3"}, "labels as written")
    # mid removed (empty value), beta changed, zeta untouched, alpha appended
    await bucket.update("labels", T0, {"mid": "", "beta": "30", "alpha": "new"})
    labels, ctype, data = await read(bucket, "labels", T0)
    eq((dict(labels), ctype, data),
       ({"zeta": "1", "beta": "30", "alpha": "new"}, "text/plain", b"content-0"),
       "labels after update; content and type unchanged")
    # spec §3.6: existing labels keep their order, new ones are appended
    kept_order = [k for k, _ in before[0] if k != "mid"]
    eq([k for k, _ in labels], kept_order + ["alpha"], "label order after update")
    eq((await read(bucket, "labels", T0, head=True))[0], labels, "HEAD sees the update")
    await bucket.update("labels", T0, {"zeta": "", "beta": "", "alpha": ""})
    eq((await read(bucket, "labels", T0))[0], [], "every label removed")
    await bucket.update("labels", T0, {"only": "one"})
    eq((await read(bucket, "labels", T0))[0], [("only", "one")], "a label added to none")
    # API 1.18 texts (spec 1.20 §5.5): edits name the entry, reads the block
    await expect_error(bucket.update("labels", T0 + 1, {"a": "b"}), ReductError, 404,
                       f"Record {T0 + 1} not found in entry {name}/labels")
    await expect_error(bucket.update("nope", T0, {"a": "b"}), ReductError, 404,
                       f"Entry 'nope' not found in bucket '{name}'")
    checks.ok("update-labels")

    # -- PATCH a batch ----------------------------------------------------------------
    seed = Batch()
    for i in range(1, 6):
        seed.add(T0 + i, b"content-%d" % i, content_type="application/x-%d" % i,
                 labels={"i": str(i), "keep": "yes", "drop": "me"})
    eq(await bucket.write_batch("labels", seed), {}, "errors of the seed batch")
    update = Batch()
    update.add(T0 + 1, labels={"drop": "", "i": "one"})
    update.add(T0 + 3, labels={"drop": "", "new": "3"})
    update.add(T0 + 5, labels={"keep": "no"})
    update.add(T0 + 9, labels={"x": "y"})  # no such record
    errors = await bucket.update_batch("labels", update)
    eq(errors, {T0 + 9: ReductError(404, f"Record {T0 + 9} not found in entry {name}/labels")},
       "per-record errors of update_batch")
    expected = {
        1: {"i": "one", "keep": "yes"},
        2: {"i": "2", "keep": "yes", "drop": "me"},
        3: {"i": "3", "keep": "yes", "new": "3"},
        4: {"i": "4", "keep": "yes", "drop": "me"},
        5: {"i": "5", "keep": "no", "drop": "me"},
    }
    for i, want in expected.items():
        labels, ctype, data = await read(bucket, "labels", T0 + i)
        eq((dict(labels), ctype, data), (want, "application/x-%d" % i, b"content-%d" % i),
           f"record {i} after update_batch")
    # the query (batched read) sees the new labels too
    found = {}
    async with contextlib.aclosing(bucket.query("labels", start=T0 + 1)) as it:
        async for record in it:
            found[record.timestamp - T0] = record.labels
    eq(found, expected, "labels in a batched read after update_batch")
    checks.ok("update-labels-batch")

    # -- DELETE one record ----------------------------------------------------------------
    removable = Batch()
    for i in range(10):
        removable.add(T0 + 100 + i, b"r%d" % i, labels={"n": str(i)})
    eq(await bucket.write_batch("records", removable), {}, "errors of the records batch")
    await bucket.remove_record("records", T0 + 104)
    in_block = f"not found in block {name}/records/{T0 + 100}"
    await expect_error(read(bucket, "records", T0 + 104), ReductError, 404,
                       f"Record {T0 + 104} {in_block}")
    await expect_error(read(bucket, "records", T0 + 104, head=True), ReductError, 404,
                       f"Record {T0 + 104} {in_block}")
    await expect_error(bucket.remove_record("records", T0 + 104), ReductError, 404,
                       f"Record {T0 + 104} not found in entry {name}/records")
    await expect_error(bucket.remove_record("nope", T0), ReductError, 404,
                       f"Entry 'nope' not found in bucket '{name}'")
    eq(await read(bucket, "records", T0 + 105),
       ([("n", "5")], "application/octet-stream", b"r5"), "the next record")
    eq(await timestamps(bucket, "records"), [T0 + 100 + i for i in range(10) if i != 4],
       "query after remove_record")
    eq(await record_count(bucket, "records"), 9, "record_count after remove_record")
    # the first record: the entry keeps its other records
    await bucket.remove_record("records", T0 + 100)
    eq(await timestamps(bucket, "records"), [T0 + 100 + i for i in range(1, 10) if i != 4],
       "query after removing the first record")
    # the timestamp can be written again
    await bucket.write("records", b"again", timestamp=T0 + 104)
    eq((await read(bucket, "records", T0 + 104))[2], b"again", "a removed timestamp rewritten")
    checks.ok("remove-record")

    # -- DELETE a batch ---------------------------------------------------------------------
    gone = Batch()
    for i in (1, 2, 7, 42):  # 42 does not exist
        gone.add(T0 + 100 + i)
    errors = await bucket.remove_batch("records", gone)
    eq(errors, {T0 + 142: ReductError(404, f"Record {T0 + 142} not found in entry {name}/records")},
       "per-record errors of remove_batch")
    for i in (1, 2, 7):
        await expect_error(read(bucket, "records", T0 + 100 + i), ReductError, 404,
                           f"Record {T0 + 100 + i} {in_block}")
    left = [T0 + 100 + i for i in (3, 4, 5, 6, 8, 9)]
    eq(await timestamps(bucket, "records"), left, "query after remove_batch")
    eq(await record_count(bucket, "records"), 6, "record_count after remove_batch")
    for ts in left:
        if ts != T0 + 104:
            eq((await read(bucket, "records", ts))[2], b"r%d" % (ts - T0 - 100),
               f"record {ts} kept")
    everything = Batch()
    for ts in left:
        everything.add(ts)
    eq(await bucket.remove_batch("records", everything), {}, "remove the rest")
    eq(await timestamps(bucket, "records"), [], "no record left")
    checks.ok("remove-batch")

    # -- PUT …/:entry/rename -------------------------------------------------------------
    await bucket.write("old-entry", b"moved", timestamp=T0, labels={"where": "old"})
    await bucket.write("other-entry", b"stays", timestamp=T0)
    await bucket.rename_entry("old-entry", "new-entry")
    eq(await read(bucket, "new-entry", T0), ([("where", "old")], "application/octet-stream",
                                             b"moved"), "read under the new entry name")
    await expect_error(read(bucket, "old-entry", T0), ReductError, 404,
                       f"Entry 'old-entry' not found in bucket '{name}'")
    names = sorted(e.name for e in await bucket.get_entry_list())
    if "old-entry" in names or "new-entry" not in names:
        raise AssertionError(f"entries after rename: {names}")
    await expect_error(bucket.rename_entry("new-entry", "other-entry"), ReductError, 409,
                       f"Entry 'other-entry' already exists in bucket '{name}'")
    await expect_error(bucket.rename_entry("old-entry", "newer"), ReductError, 404,
                       f"Entry 'old-entry' not found in bucket '{name}'")
    await expect_error(bucket.rename_entry("new-entry", "bad name"), ReductError, 422,
                       ENTRY_NAME_ERROR)
    eq((await read(bucket, "other-entry", T0))[2], b"stays", "the conflicting entry is intact")
    eq((await read(bucket, "new-entry", T0))[2], b"moved", "the refused rename changed nothing")
    await bucket.write("new-entry", b"after", timestamp=T0 + 1)
    eq(await timestamps(bucket, "new-entry"), [T0, T0 + 1], "the renamed entry takes writes")
    await bucket.write("old-entry", b"fresh", timestamp=T0 + 5)
    eq(await timestamps(bucket, "old-entry"), [T0 + 5], "the old name is a new entry")
    checks.ok("rename-entry")

    # -- PUT …/rename (bucket) -------------------------------------------------------------
    renamed, other = f"{name}-renamed", f"{name}-other"
    await client.create_bucket(other)
    entries_before = sorted(e.name for e in await bucket.get_entry_list())
    await bucket.rename(renamed)
    eq(bucket.name, renamed, "the client's bucket object follows")
    await expect_error(client.get_bucket(name), ReductError, 404,
                       f"Bucket '{name}' is not found")
    moved = await client.get_bucket(renamed)
    eq(sorted(e.name for e in await moved.get_entry_list()), entries_before,
       "entries under the new bucket name")
    eq(await read(moved, "labels", T0), ([("only", "one")], "text/plain", b"content-0"),
       "a record under the new bucket name")
    listed = {b.name for b in await client.list()}
    if name in listed or renamed not in listed:
        raise AssertionError(f"bucket list after rename: {sorted(listed)}")
    await expect_error(moved.rename(other), ReductError, 409, f"Bucket '{other}' already exists")
    stale = await client.get_bucket(other)
    stale.name = name
    await expect_error(stale.rename("anything"), ReductError, 404,
                       f"Bucket '{name}' is not found")
    await expect_error(moved.rename("bad name!"), ReductError, 422, NAME_ERROR)
    eq(moved.name, renamed, "a refused rename keeps the name")
    await moved.write("labels", b"after-rename", timestamp=T0 + 1000)
    eq((await read(moved, "labels", T0 + 1000))[2], b"after-rename", "writes after rename")
    await (await client.get_bucket(other)).remove()
    checks.ok("rename-bucket")

    # -- HARD quota ----------------------------------------------------------------------
    hard_name = f"{name}-hard"
    settings = BucketSettings(quota_type=QuotaType.HARD, quota_size=10_000)
    hard = await client.create_bucket(hard_name, settings)
    got = await hard.get_settings()
    eq((got.quota_type, got.quota_size), (QuotaType.HARD, 10_000), "HARD quota settings")
    stored, error = 0, None
    while error is None:
        try:
            await hard.write("e", b"q" * 1000, timestamp=T0 + stored)
        except ReductError as err:
            error = err
        else:
            stored += 1
            if stored > 10:
                raise AssertionError("11 000 bytes written into a HARD quota of 10 000")
    eq((error.status_code, error.message), (400, f"Quota of '{hard_name}' exceeded"),
       "HARD quota error")
    checks.fact("hard_quota_error", str(error))
    checks.fact("hard_quota_records", stored)
    if not 5 <= stored <= 9:
        raise AssertionError(f"{stored} records of 1000 bytes stored under a quota of 10 000")
    size = (await hard.info()).size
    if not size <= 10_000 < size + 1000:
        raise AssertionError(f"bucket size {size} after the refused write")
    refused = Batch()
    refused.add(T0 + 100, b"q" * 1000)
    eq(await hard.write_batch("e", refused),
       {T0 + 100: ReductError(400, f"Quota of '{hard_name}' exceeded")},
       "HARD quota in a batch")
    eq(await timestamps(hard, "e"), [T0 + i for i in range(stored)],
       "nothing deleted to make room")
    # removing records makes room again (spec §4.7: size shrinks)
    await hard.remove_record("e", T0)
    await hard.remove_record("e", T0 + 1)
    shrunk = (await hard.info()).size
    if not shrunk <= size - 2000:
        raise AssertionError(f"bucket size {size} -> {shrunk} after removing 2000 bytes")
    await hard.write("e", b"q" * 1000, timestamp=T0 + 50)
    eq(await timestamps(hard, "e"), [T0 + i for i in range(2, stored)] + [T0 + 50],
       "a write fits after removals")
    await hard.remove()
    checks.ok("hard-quota")

    # -- DELETE …/:entry -------------------------------------------------------------------
    await moved.remove_entry("new-entry")
    names = sorted(e.name for e in await moved.get_entry_list())
    eq("new-entry" in names, False, "entry listed after remove_entry")
    await expect_error(read(moved, "new-entry", T0), ReductError, 404,
                       f"Entry 'new-entry' not found in bucket '{renamed}'")
    await expect_error(moved.remove_entry("new-entry"), ReductError, 404,
                       f"Entry 'new-entry' not found in bucket '{renamed}'")
    eq((await read(moved, "other-entry", T0))[2], b"stays", "other entries are kept")
    checks.ok("remove-entry")

    await moved.remove()
    await expect_error(client.get_bucket(renamed), ReductError, 404,
                       f"Bucket '{renamed}' is not found")
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run_with_client(exercise)
