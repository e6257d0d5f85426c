"""
The newest reduct-py (1.21.x) querying several entries at once through the
I/O API of a daemon at API 1.20 (spec 1.20 §1.4, §1.5, §1.9, §10.1).

Usage: python reduct_py_io_query.py URL [--bucket NAME] [--timeout S]

With ``x-reduct-api`` ≥ 1.18 this client sends *every* query, subscription
and remove query as ``POST /io/:bucket/q`` (a ``QueryEntry`` with an
``entries`` list, ``null`` for what is not set) and reads it with
``GET|HEAD /io/:bucket/read`` + ``x-reduct-query-id`` until
``x-reduct-last: true`` (continuous: polling through 204s / empty batches).

Its v2 reader (``parse_batched_records_v2``) sorts the record headers by
(timestamp, entry index) and slices the body in that order, while the
server writes the body by (entry index, timestamp).  The two agree only if
no entry's records interleave in time with another entry's within one
batch, which is why the server must close a batch before such a record
(§1.9 rule 2).  ``query-interleaved`` checks every record's content over
four entries whose records interleave (runs of 1–9, strict round-robin
stretches and shared timestamps), 320+ records in many batches.

``limit=`` is no longer a field of this client's ``QueryEntry`` (pydantic
drops it silently), so limits are ``$limit`` in ``when``, counted per entry
(§1.4).

The records are written with the v1 batch endpoint (``write_batch``), so
these checks depend only on the query side of the I/O API.
"""

import asyncio
import contextlib
import random

from _harness import eq, expect_error, run_with_client
from reduct import Batch, ReductError

T0 = 1_700_000_000_000_000
CAMS = ("cam-1", "cam-2", "cam-10")


async def collect(records):
    """``[(entry, timestamp, data, labels, content_type)]`` of a query iterator."""
    found = []
    async with contextlib.aclosing(records) as it:
        async for rec in it:
            found.append((rec.entry, rec.timestamp, await rec.read_all(), rec.labels,
                          rec.content_type))
    return found


def expect(model, entries=None, pred=lambda key, value: True):
    """The records of ``model`` (``{(entry, ts): (data, labels, ct)}``) a query returns."""
    rows = [
        (entry, ts, data, labels, ctype)
        for (entry, ts), (data, labels, ctype) in model.items()
        if (entries is None or entry in entries) and pred((entry, ts), (data, labels, ctype))
    ]
    return sorted(rows, key=lambda r: (r[1], r[0]))


def describe(found, wanted) -> str:
    """Where two record lists first differ (a readable assertion message)."""
    if len(found) != len(wanted):
        return f"{len(found)} records, {len(wanted)} expected"
    for i, (a, b) in enumerate(zip(found, wanted)):
        if a != b:
            return f"record {i} is {a[:2]}+{a[2][:24]!r}, expected {b[:2]}+{b[2][:24]!r}"
    return "equal"


def same(found, wanted, what: str) -> None:
    if found != wanted:
        raise AssertionError(f"{what}: {describe(found, wanted)}")


async def write_v1(bucket, entry, rows):
    """Write ``rows`` (``[(ts, data, labels, ct)]``) with v1 batches of at most 80."""
    for start in range(0, len(rows), 80):
        batch = Batch()
        for ts, data, labels, ctype in rows[start:start + 80]:
            batch.add(ts, data, content_type=ctype, labels=labels)
        eq(await bucket.write_batch(entry, batch), {}, f"errors writing {entry}")


async def seed(bucket):
    """cam-1, cam-2, cam-10 (10 records each, round robin in time) and lidar (5)."""
    model = {}
    for n, entry in enumerate(CAMS):
        rows = []
        for i in range(10):
            ts = T0 + 3 * i + n
            labels = {"kind": "odd" if i % 2 else "even", "i": str(i)}
            rows.append((ts, b"%s#%d " % (entry.encode(), i) + b"." * (i * 7), labels,
                         "image/jpeg"))
        await write_v1(bucket, entry, rows)
        model.update({(entry, ts): (d, lb, ct) for ts, d, lb, ct in rows})
    rows = [(T0 + 100 + i, b"scan %d" % i, {"i": str(i)}, "application/x-pcd")
            for i in range(5)]
    await write_v1(bucket, "lidar", rows)
    model.update({("lidar", ts): (d, lb, ct) for ts, d, lb, ct in rows})
    return model


def interleaved_rows(rng):
    """
    At least 320 records over il-a … il-d: runs of 1–9 records of one entry, two
    strict round-robin stretches, and every 29th instant shared by two
    entries.  Sizes 0–3000 bytes, so a mis-sliced body shows.
    """
    names = ["il-a", "il-b", "il-c", "il-d"]
    rows = {name: [] for name in names}
    ts, total, k = T0 + 10_000, 0, 0
    while total < 320:
        if 100 <= total < 140 or 250 <= total < 270:
            run = [names[(total + j) % 4] for j in range(4)]  # round robin
        else:
            run = [rng.choice(names)] * rng.randint(1, 9)
        for name in run:
            also = [name]
            if k % 29 == 0:
                also.append(names[(names.index(name) + 1) % 4])
            for entry in also:
                size = rng.choice([0, 1, 17, rng.randint(2, 3000)])
                data = (b"%s@%d:" % (entry.encode(), ts) + rng.randbytes(size))
                labels = {"k": str(k), "entry": entry}
                ctype = "text/plain" if entry in ("il-a", "il-c") else "image/png"
                rows[entry].append((ts, data, labels, ctype))
                total += 1
            ts += rng.randint(1, 3)
            k += 1
    return rows


async def exercise(checks, args, client):
    name = args.bucket
    bucket = await client.create_bucket(name, exist_ok=True)
    eq(client._http.api_version, (1, 20), "x-reduct-api as seen by the client")
    model = await seed(bucket)

    same(await collect(bucket.query(["cam-1", "lidar"])),
         expect(model, {"cam-1", "lidar"}), "two entries by name")
    same(await collect(bucket.query("cam-2", start=T0 + 4, stop=T0 + 20)),
         expect(model, {"cam-2"}, lambda k, v: T0 + 4 <= k[1] < T0 + 20),
         "one entry with a range (through /io/ too)")
    same(await collect(bucket.query(["cam-10", "no-such-entry"])),
         expect(model, {"cam-10"}), "an unknown name is ignored")
    same(await collect(bucket.query(["no-such-entry"])), [], "only unknown names")
    checks.ok("query-multi-entry")

    same(await collect(bucket.query(["cam*"])), expect(model, set(CAMS)), "cam*")
    same(await collect(bucket.query(["cam-1*"])), expect(model, {"cam-1", "cam-10"}),
         "cam-1* (a prefix, not a word)")
    same(await collect(bucket.query(["*"])), expect(model), "*")
    same(await collect(bucket.query(["lidar", "cam-2*"], start=T0 + 10, stop=T0 + 102)),
         expect(model, {"lidar", "cam-2"}, lambda k, v: T0 + 10 <= k[1] < T0 + 102),
         "a name, a pattern and a range")
    checks.ok("query-wildcards")

    found = await collect(bucket.query(["cam*"], start=T0 + 6, stop=T0 + 25,
                                       when={"&kind": {"$eq": "odd"}}))
    same(found, expect(model, set(CAMS), lambda k, v: T0 + 6 <= k[1] < T0 + 25
                       and v[1]["kind"] == "odd"), "when over three entries")
    # $limit (and the other stateful operators) count per entry (§1.4)
    found = await collect(bucket.query(["cam*", "lidar"], when={"$limit": 2}))
    same(found, expect(model, None, lambda k, v: int(v[1]["i"]) < 2), "$limit 2 per entry")
    found = await collect(bucket.query(["*"], when={"&i": {"$gte": 8}, "$limit": 1}))
    same(found, expect(model, set(CAMS), lambda k, v: v[1]["i"] == "8"),
         "when and $limit: the first match of each entry")
    await expect_error(
        collect(bucket.query(["cam*"], when={"&missing": {"$eq": 1}}, strict=True)),
        ReductError, 404, "Reference 'missing' not found",
    )
    checks.ok("query-when-limit")

    found = await collect(bucket.query(["cam-2", "cam-10"], head=True))
    wanted = expect(model, {"cam-2", "cam-10"})
    eq([(e, t, d, lb, ct) for e, t, d, lb, ct in found],
       [(e, t, b"", lb, ct) for e, t, _, lb, ct in wanted], "HEAD: metadata, no content")
    sizes = []
    async with contextlib.aclosing(bucket.query(["cam*"], head=True)) as it:
        async for rec in it:
            sizes.append((rec.entry, rec.timestamp, rec.size))
    eq(sizes, [(e, t, len(d)) for e, t, d, _, _ in expect(model, set(CAMS))], "HEAD sizes")
    checks.ok("query-head")

    rows = interleaved_rows(random.Random(1418))
    for entry, entry_rows in rows.items():
        await write_v1(bucket, entry, entry_rows)
    il_model = {(e, ts): (d, lb, ct) for e, rs in rows.items() for ts, d, lb, ct in rs}
    wanted = expect(il_model)
    if len(wanted) < 320:
        raise AssertionError(f"only {len(wanted)} interleaved records")
    same(await collect(bucket.query(["il-*"])), wanted, "interleaved entries, GET")
    found = await collect(bucket.query(["il-*"], head=True))
    same(found, [(e, t, b"", lb, ct) for e, t, _, lb, ct in wanted], "interleaved, HEAD")
    same(await collect(bucket.query(["il-b", "il-d"], when={"&entry": {"$ne": "il-b"}})),
         expect(il_model, {"il-d"}), "interleaved, filtered to one entry")
    checks.fact("interleaved_records", len(wanted))
    checks.ok("query-interleaved")

    seq = {}
    for n, entry in enumerate(("seq-a", "seq-b", "seq-c")):
        seq_rows = [(T0 + 50_000 + 200 * n + i, b"%s %d " % (entry.encode(), i) * (i % 5 + 1),
                     {"i": str(i)}, "text/plain") for i in range(120)]
        await write_v1(bucket, entry, seq_rows)
        seq.update({(entry, ts): (d, lb, ct) for ts, d, lb, ct in seq_rows})
    same(await collect(bucket.query(["seq-*"])), expect(seq), "360 records, entry after entry")
    checks.ok("query-many-batches")

    await check_subscribe(bucket)
    checks.ok("subscribe-multi-entry")

    removed = await bucket.remove_query(["cam-1", "cam-2"], start=T0, stop=T0 + 15)
    eq(removed, 10, "removed_records over two entries")
    removed = await bucket.remove_query(["cam*"], when={"&kind": {"$eq": "odd"}})
    eq(removed, 3 + 3 + 5, "removed_records over a pattern with when")
    # entries alone are a query parameter (§1.4): the whole entry goes
    eq(await bucket.remove_query("lidar"), 5, "remove_query of a whole entry")
    left = {k: v for k, v in model.items()
            if k[0] != "lidar" and v[1]["kind"] == "even"
            and not (k[0] in ("cam-1", "cam-2") and k[1] < T0 + 15)}
    same(await collect(bucket.query(["cam*", "lidar"])), expect(left), "what is left")
    counts = {e.name: e.record_count for e in await bucket.get_entry_list()}
    eq((counts["cam-1"], counts["cam-2"], counts["cam-10"], counts.get("lidar", 0)),
       (2, 2, 5, 0), "record counts after the remove queries")
    checks.ok("remove-query-multi-entry")

    await bucket.remove()
    checks.ok("remove-bucket")


async def check_subscribe(bucket):
    """
    Subscribe to ``live-*`` (both entries exist when the query is created,
    §1.4) with ``when``; records of both entries written while subscribed
    arrive in time order, the non-matching ones do not.
    """
    t1 = T0 + 1_000_000
    await bucket.write("live-a", b"a-before", timestamp=t1, labels={"keep": "yes"})
    await bucket.write("live-b", b"b-before", timestamp=t1 + 1, labels={"keep": "no"})
    received = []

    async def subscriber():
        records = bucket.subscribe(["live-*"], start=t1, poll_interval=0.5,
                                   when={"&keep": {"$eq": "yes"}})
        async with contextlib.aclosing(records) as it:
            async for rec in it:
                received.append((rec.entry, rec.timestamp - t1, await rec.read_all()))
                if len(received) == 4:
                    return

    task = asyncio.create_task(subscriber())
    await asyncio.sleep(0.3)
    for i, (entry, keep) in enumerate((("live-b", "yes"), ("live-a", "no"),
                                       ("live-a", "yes"), ("live-b", "yes")), start=2):
        await bucket.write(entry, b"%s-%d" % (entry.encode(), i), timestamp=t1 + i,
                           labels={"keep": keep})
        await asyncio.sleep(0.1)
    await asyncio.wait_for(task, 15)
    eq(received, [("live-a", 0, b"a-before"), ("live-b", 2, b"live-b-2"),
                  ("live-a", 4, b"live-a-4"), ("live-b", 5, b"live-b-5")],
       "records of two entries written while subscribed")


if __name__ == "__main__":
    run_with_client(exercise)
