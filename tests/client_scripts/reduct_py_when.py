"""
The newest reduct-py (1.21.x) using the ``when`` additions of API 1.19–1.20
(spec 1.20 §6.3): date parts with an IANA time zone, ``$gate``, strict
evaluation errors, 422 texts at query creation and extension specs.

Usage: python reduct_py_when.py URL [--bucket NAME] [--timeout S]

This client sends every query as ``POST /io/:bucket/q`` (one entry or
several) and reads it with ``GET /io/:bucket/read``, so these checks run
the conditions through the I/O API's multi-entry queries.
"""

from _harness import eq, expect_error, run_with_client, series_helpers
from reduct import ReductError

S = 1_000_000
H = 3600 * S
#: 2024-07-01T00:00:00Z: Berlin is at UTC+2 that day.
JULY_1 = 1_719_792_000 * S
#: Levels of the $gate sequence, one record a second from GATE_T0.
LEVELS = [1, 7, 8, 9, 9, 9, 9, 2, 8, 8]
GATE_T0 = JULY_1 + 100 * H


async def exercise(checks, args, client):
    bucket = await client.create_bucket(args.bucket, exist_ok=True)
    hours, hour_indices = series_helpers(JULY_1, H)
    for hour in range(24):
        await bucket.write("clock", b"h%02d" % hour, timestamp=JULY_1 + hour * H,
                           labels={"tz": "Europe/Berlin" if hour != 5 else "Mars/Olympus"})
        await bucket.write("clock-2", b"x%02d" % hour, timestamp=JULY_1 + hour * H + 1)

    noon = {"$eq": [{"$hour": ["$timestamp", "Europe/Berlin"]}, 12]}
    found = await hours(bucket.query("clock", when=noon))
    eq([(i, data) for i, data, _ in found], [(10, b"h10")], "noon in Berlin")
    utc = {"$eq": [{"$hour": ["$timestamp"]}, 12]}
    eq(hour_indices(await hours(bucket.query("clock", when=utc))), [12], "noon in UTC")
    found = await hours(bucket.query(["clock", "clock-2"], when=noon))
    eq([data for _, data, _ in found], [b"h10", b"x10"], "noon in Berlin, two entries")
    night = {"$and": [{"$gte": [{"$hour": ["$timestamp", "Europe/Berlin"]}, 0]},
                      {"$lt": [{"$hour": ["$timestamp", "Europe/Berlin"]}, 2]},
                      {"$eq": [{"$day": ["$timestamp", "Europe/Berlin"]}, 2]},
                      {"$eq": [{"$weekday": ["$timestamp", "Europe/Berlin"]}, 1]}]}
    eq(hour_indices(await hours(bucket.query("clock", when=night))), [22, 23],
       "after midnight in Berlin: Tuesday 2 July")
    checks.ok("when-date-parts-time-zone")

    found = await hours(bucket.query("clock", when={"$gte": [{"$hour": ["$timestamp", "&tz"]},
                                                             0]}))
    eq(len(found), 23, "not strict: the record with the bad zone does not match")
    await expect_error(
        hours(bucket.query("clock", when={"$gte": [{"$hour": ["$timestamp", "&tz"]}, 0]},
                           strict=True)),
        ReductError, 422, "Invalid timezone: 'Mars/Olympus'",
    )
    await expect_error(
        hours(bucket.query("clock", when={"$hour": []})),
        ReductError, 422, "$hour requires one or two operands",
    )
    checks.ok("when-date-part-errors")

    gates, gate_indices = series_helpers(GATE_T0, S)
    for i, level in enumerate(LEVELS):
        await bucket.write("sensor", b"l%d" % level, timestamp=GATE_T0 + i * S,
                           labels={"level": str(level)})
    gate = {"$gate": ["3s", {"&level": {"$gt": 5}}]}
    eq(gate_indices(await gates(bucket.query("sensor", when=gate))), [1, 2, 3, 8, 9],
       "$gate: 3 s after each rising edge")
    eq(gate_indices(await gates(bucket.query("sensor", when={"&level": {"$gt": 5}}))),
       [1, 2, 3, 4, 5, 6, 8, 9], "the same condition without $gate")
    await expect_error(
        gates(bucket.query("sensor", when={"$gate": ["3s"]})),
        ReductError, 422, "$gate requires exactly two operands",
    )
    checks.ok("when-gate")

    try:
        await gates(bucket.query("sensor", ext={"select": {}}))
    except ReductError as err:
        eq(err.status_code, 422, "status of an unknown extension")
        prefix = "Unknown extension 'select' in query id="
        if not err.message.startswith(prefix) or not err.message[len(prefix):].isdigit():
            raise AssertionError(f"unexpected text {err.message!r}") from None
    else:
        raise AssertionError("a query with an extension succeeded")
    await expect_error(
        gates(bucket.query("sensor", when={"#select_labels": [{"a": 1}]})),
        ReductError, 422, "Directive '#select_labels' does not support object items in arrays",
    )
    checks.ok("when-extensions-and-directives")

    await bucket.remove()
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run_with_client(exercise)
