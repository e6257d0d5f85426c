"""
The newest reduct-py (1.21.x) querying a daemon at API 1.20 through its own
``Bucket.query``, ``Bucket.subscribe`` and ``Bucket.remove_query``.

Usage: python reduct_py_query.py URL [--bucket NAME] [--timeout S]

Against API 1.20 the client creates every query, also of a single entry,
with ``POST /api/v1/io/:bucket/q`` (a JSON ``QueryEntry`` with ``entries:
[entry]``, ``when``, ``strict``, ``only_metadata``, ``continuous``,
``ttl``; ``null`` for what is not set) and reads it with
``GET|HEAD /io/:bucket/read`` + ``x-reduct-query-id`` until
``x-reduct-last: true`` (or, continuous, polls through 204s or empty
batches); ``remove_query`` posts a ``REMOVE`` query there and reads
``removed_records``.  (Against 1.17 it used ``POST …/:entry/q`` and
``…/batch?q=``; the multi-entry cases are in reduct_py_io_query.py.)
"""


from _harness import check_subscribe, eq, expect_error, run_with_client, series_helpers
from reduct import Batch, ReductError

T0 = 1_700_000_000_000_000
STEP = 1000  # µs between records


def ts(i: int) -> int:
    return T0 + i * STEP


collect, indices = series_helpers(T0, STEP)


async def exercise(checks, args, client):
    name = args.bucket
    bucket = await client.create_bucket(name, exist_ok=True)
    eq(client._http.api_version, (1, 20), "x-reduct-api as seen by the client")

    batch = Batch()
    for i in range(20):
        labels = {"i": str(i), "kind": "odd" if i % 2 else "even"}
        if i % 2 == 0:
            labels["score"] = str(i / 20)
        batch.add(ts(i), b"record-%d" % i, labels=labels)
    eq(await bucket.write_batch("q", batch), {}, "errors of the seed batch")

    found = await collect(bucket.query("q", start=ts(0), stop=ts(20)))
    eq(indices(found), list(range(20)), "a plain range")
    eq(found[3][1:], (b"record-3", {"i": "3", "kind": "odd"}), "content and labels")
    found = await collect(bucket.query(
        "q", start=ts(2), stop=ts(15), when={"&kind": {"$eq": "odd"}, "&i": {"$lt": 9}}
    ))
    eq(indices(found), [3, 5, 7], "when with two conditions and a range")
    found = await collect(bucket.query(
        "q", when={"$or": [{"$in": ["&i", 1, 2]}, {"&score": {"$gte": 0.9}}]}
    ))
    eq(indices(found), [1, 2, 18], "$or, $in and a missing label (non-strict)")
    checks.ok("query-when")

    eq(indices(await collect(bucket.query("q", when={"$each_n": 5}))), [4, 9, 14, 19],
       "$each_n skips the first")
    eq(indices(await collect(bucket.query("q", when={"&kind": {"$eq": "even"},
                                                      "$limit": 3}))),
       [0, 2, 4], "$limit ends the query")
    eq(indices(await collect(bucket.query("q", when={"$each_t": "5ms", "$limit": 2}))),
       [5, 10], "$each_t with a duration literal")
    checks.ok("query-stateful-operators")

    when = {"&score": {"$lt": 0.5}}
    eq(indices(await collect(bucket.query("q", when=when))), [0, 2, 4, 6, 8],
       "non-strict: records without the label do not match")
    err = await expect_error(
        collect(bucket.query("q", when=when, strict=True)), ReductError, 404,
        "Reference 'score' not found",
    )
    checks.fact("strict_error", str(err))
    await expect_error(
        collect(bucket.query("q", when={"&i": {"$bogus": 1}})), ReductError, 422,
        "Operator '$bogus' not supported",
    )
    try:
        await collect(bucket.query("q", ext={"select": {"columns": []}}))
    except ReductError as exc:
        eq(exc.status_code, 422, "status of an unknown extension")
        if not exc.message.startswith("Unknown extension 'select' in query id="):
            raise AssertionError(f"unexpected message {exc.message!r}") from None
    else:
        raise AssertionError("a query with an extension was accepted")
    checks.ok("query-strict-and-errors")

    found = await collect(bucket.query(
        "q", start=ts(10), stop=ts(13), head=True,
        when={"#select_labels": ["kind"], "&i": {"$ne": 11}},
    ))
    eq(found, [(10, b"", {"kind": "even"}), (12, b"", {"kind": "even"})],
       "head (only_metadata) with #select_labels")
    checks.ok("query-head-select-labels")

    removed = await bucket.remove_query("q", start=ts(0), stop=ts(10),
                                        when={"&kind": {"$eq": "odd"}})
    eq(removed, 5, "removed_records")
    eq(await bucket.remove_query("q", when={"&i": {"$gte": 18}}), 2, "removed by when")
    eq(indices(await collect(bucket.query("q"))), [0, 2, 4, 6, 8] + list(range(10, 18)),
       "what is left")
    entry = [e for e in await bucket.get_entry_list() if e.name == "q"][0]
    eq(entry.record_count, 13, "record_count after removals")
    # The client always sends ``entries``, which counts as a parameter of a
    # REMOVE query on /io/ (spec 1.20 §1.4): the whole entry goes.  (Against
    # 1.17 the same call got 422 "Define at least one query parameter to
    # delete records".)
    eq(await bucket.remove_query("q"), 13, "remove_query with only the entry")
    eq(indices(await collect(bucket.query("q"))), [], "nothing left")
    checks.ok("remove-query")

    await check_subscribe(bucket, ts, STEP, "false", "true", 0.5, when={"&keep": {"$eq": True}})
    checks.ok("subscribe-continuous")

    await bucket.remove()
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run_with_client(exercise)
