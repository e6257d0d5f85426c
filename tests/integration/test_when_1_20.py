"""
The ``when`` additions of spec 1.20 §6.3 against the real daemon over real
sockets: date parts with an IANA zone over records at known times, ``$gate``
over a sequence (per entry in a multi-entry query), strict evaluation
errors delivered on read, and the 422 texts of arity, directive values and
extension specs through ``POST /api/v1/b/:b/:e/q`` and ``POST /io/:b/q``
(with the query id used up).
"""

import json

import pytest_twisted

from tests.integration import io_helpers
from tests.integration.helpers import assert_error, body_of
from tests.integration.test_query_post import (
    BUCKET,
    batch_records,
    call,
    create_bucket,
    drain_batches,
    ok_json,
    post_query,
    read_batch,
    write,
)

S = 1_000_000
H = 3600 * S
#: 2024-07-01T00:00:00Z (Berlin: UTC+2) and 2024-01-15T00:00:00Z (Berlin: UTC+1).
JULY_1 = 1_719_792_000 * S
JAN_15 = 1_705_276_800 * S
#: Levels of the ``$gate`` sequence, one a second from GATE_T0.
LEVELS = [1, 7, 8, 9, 9, 9, 9, 2, 8, 8]
GATE_T0 = 10 * S


async def _day(server, entry, day):
    for hour in range(24):
        await write(server, entry, day + hour * H, labels={"h": str(hour)})


async def _v2_query_stamps(server, body):
    resp, content = await io_helpers.query(server, body)
    assert resp.code == 200, content
    found, _ = await io_helpers.read_all(server, json.loads(content)["id"])
    return [(entry, ts) for entry, ts, *_ in found]


def _berlin_hour(hour):
    return {"$eq": [{"$hour": ["$timestamp", "Europe/Berlin"]}, hour]}


@pytest_twisted.ensureDeferred
async def test_hour_in_europe_berlin_over_records_at_known_times(server):
    await create_bucket(server)
    await _day(server, "e", JULY_1)
    await _day(server, "e", JAN_15)
    # Noon in Berlin is 10:00 UTC in summer and 11:00 UTC in winter.
    stamps = await drain_batches(server, await post_query(
        server, {"query_type": "QUERY", "when": _berlin_hour(12)}))
    assert stamps == [JAN_15 + 11 * H, JULY_1 + 10 * H]
    # Without a zone: UTC.
    when = {"$eq": [{"$hour": ["$timestamp"]}, 12]}
    stamps = await drain_batches(server, await post_query(
        server, {"query_type": "QUERY", "when": when}))
    assert stamps == [JAN_15 + 12 * H, JULY_1 + 12 * H]
    # Several parts at once: Monday 15 January in Berlin, before 03:00 local.
    when = {
        "$and": [{"$eq": [{"$weekday": ["$timestamp", "Europe/Berlin"]}, 0]},
                 {"$eq": [{"$day": ["$timestamp", "Europe/Berlin"]}, 15]},
                 {"$eq": [{"$month": ["$timestamp", "Europe/Berlin"]}, 1]},
                 {"$eq": [{"$year": ["$timestamp", "Europe/Berlin"]}, 2024]},
                 {"$lt": [{"$hour": ["$timestamp", "Europe/Berlin"]}, 3]},
                 {"$eq": [{"$minute": ["$timestamp"]}, 0]},
                 {"$eq": [{"$second": ["$timestamp"]}, 0]}]}
    stamps = await drain_batches(server, await post_query(
        server, {"query_type": "QUERY", "when": when}))
    assert stamps == [JAN_15, JAN_15 + H]
    # The same through the I/O API over two entries.
    await _day(server, "f", JULY_1)
    found = await _v2_query_stamps(server, {"query_type": "QUERY", "entries": ["e", "f"],
                                            "when": _berlin_hour(12)})
    assert found == [("e", JAN_15 + 11 * H), ("e", JULY_1 + 10 * H), ("f", JULY_1 + 10 * H)]
    # REMOVE by date part: the Berlin night (00:00–05:59 local) of entry f.
    when = {"$lt": [{"$hour": ["$timestamp", "Europe/Berlin"]}, 6]}
    resp = await call(server, "POST", f"/b/{BUCKET}/f/q", {"query_type": "REMOVE", "when": when})
    assert (await ok_json(resp)) == {"removed_records": 6}  # 00–03 and 22–23 UTC
    left = await drain_batches(server, await post_query(server, {"query_type": "QUERY"}, "f"), "f")
    assert left == [JULY_1 + h * H for h in range(4, 22)]


@pytest_twisted.ensureDeferred
async def test_gate_over_a_sequence_v1_and_per_entry_v2(server):
    await create_bucket(server)
    for i, level in enumerate(LEVELS):
        await write(server, "g1", GATE_T0 + i * S, labels={"level": str(level)})
        await write(server, "g2", GATE_T0 + i * S + 1, labels={"level": "9"})
    when = {"$gate": ["3s", {"&level": {"$gt": 5}}]}
    stamps = await drain_batches(server, await post_query(
        server, {"query_type": "QUERY", "when": when}, "g1"), "g1")
    # Open at 1 s for 3 s; closed at 4 s while still high; re-armed by the 2 at 7 s.
    assert [(ts - GATE_T0) // S for ts in stamps] == [1, 2, 3, 8, 9]
    # The window as seconds, the same result; the plain condition differs.
    stamps = await drain_batches(server, await post_query(
        server, {"query_type": "QUERY", "when": {"$gate": [3, {"&level": {"$gt": 5}}]}}, "g1"),
        "g1")
    assert [(ts - GATE_T0) // S for ts in stamps] == [1, 2, 3, 8, 9]
    stamps = await drain_batches(server, await post_query(
        server, {"query_type": "QUERY", "when": {"&level": {"$gt": 5}}}, "g1"), "g1")
    assert [(ts - GATE_T0) // S for ts in stamps] == [1, 2, 3, 4, 5, 6, 8, 9]
    # Interleaved entries keep their own gate (as $each_t does).
    found = await _v2_query_stamps(server, {"query_type": "QUERY", "entries": ["g1", "g2"],
                                            "when": when})
    assert [(e, (ts - GATE_T0) // S) for e, ts in found] == [
        ("g2", 0), ("g1", 1), ("g2", 1), ("g1", 2), ("g2", 2), ("g1", 3), ("g1", 8), ("g1", 9)]


@pytest_twisted.ensureDeferred
async def test_strict_and_lenient_evaluation_errors_of_date_parts(server):
    await create_bucket(server)
    await write(server, "e", JULY_1, labels={"tz": "Europe/Berlin"})
    await write(server, "e", JULY_1 + 1, labels={"tz": "Mars/Olympus"})
    await write(server, "e", JULY_1 + 2, labels={"tz": "Europe/Berlin"})
    when = {"$eq": [{"$hour": ["$timestamp", "&tz"]}, 2]}
    # Lenient: the record with the bad zone simply does not match.
    stamps = await drain_batches(server, await post_query(
        server, {"query_type": "QUERY", "when": when}))
    assert stamps == [JULY_1, JULY_1 + 2]
    # Strict: the query ends with the error, delivered to the reader.
    qid = await post_query(server, {"query_type": "QUERY", "when": when, "strict": True})
    resp, _ = await read_batch(server, qid)
    assert resp.code == 200  # the record before the error comes first
    assert [ts for ts, _ in batch_records(resp)] == [JULY_1]
    resp, _ = await read_batch(server, qid)
    await assert_error(resp, 422, "Invalid timezone: 'Mars/Olympus'")


#: (when, text): refused when the query is created.
WHEN_422 = [
    ({"$hour": []}, "$hour requires one or two operands"),
    ({"$weekday": ["$timestamp", "UTC", 1]}, "$weekday requires one or two operands"),
    ({"$gate": ["1s"]}, "$gate requires exactly two operands"),
    ({"$gate": ["soon", True]}, "Value 'soon' could not be parsed as float"),
    ({"$eq": [{"$hour": [0, "Mars/Olympus"]}, 1]}, "Invalid timezone: 'Mars/Olympus'"),
    ({"$eq": ["$plugin", 1]}, "Unknown '$' literal '$plugin'; use '$$' to escape a string value"),
    ({"#ctx_before": [[1]], "&a": {"$eq": 1}},
     "Directive '#ctx_before' contains unsupported value type: [1]"),
    ({"#select_labels": [{"a": 1}], "&a": {"$eq": 1}},
     "Directive '#select_labels' does not support object items in arrays"),
    ({"#batch_records": 2**63, "&a": {"$eq": 1}},
     "Directive '#batch_records' contains integer value out of range: 9223372036854775808"),
]


@pytest_twisted.ensureDeferred
async def test_when_422_texts_v1_and_v2(server):
    await create_bucket(server)
    await write(server, "e", JULY_1, labels={"a": "1"})
    for when, text in WHEN_422:
        for query_type in ("QUERY", "REMOVE"):
            body = {"query_type": query_type, "when": when}
            await assert_error(await call(server, "POST", f"/b/{BUCKET}/e/q", body), 422, text)
            resp = await call(server, "POST", f"/io/{BUCKET}/q", body)
            await assert_error(resp, 422, text)
    assert await drain_batches(server, await post_query(server, {"query_type": "QUERY"})) == [
        JULY_1]


#: (body fields, text with {id}).
EXT_422 = [
    ({"ext": {"select": {}}}, "Unknown extension 'select' in query id={id}"),
    ({"ext": [{"select": {}}, {"ros": {}}]},
     "Unknown extension 'select' in query id={id} at step 0"),
    ({"ext": {"ros": {}, "select": {}}}, "Unknown extension 'ros' in query id={id} at step 0"),
    ({"ext": {}}, "Extension name is not found in query id={id}"),
    ({"ext": []}, "Extension name is not found in query id={id}"),
    ({"ext": [{"a": {}}, 5]}, "Each '#ext' pipeline step must be a JSON object in query id={id}"),
    ({"ext": [{"a": {}, "b": {}}, {"c": {}}]},
     "Each '#ext' pipeline step must contain exactly one extension in query id={id}"),
    ({"ext": 5},
     "Extension parameters must be a JSON object or an array of JSON objects in query id={id}"),
    ({"when": {"#ext": [{"ros": {}}, {"select": {}}]}},
     "Unknown extension 'ros' in query id={id} at step 0"),
    ({"when": {"#ext": {"ros": {}}}, "ext": {"select": {}}},
     "Unknown extension 'ros' in query id={id}"),
    ({"when": {"#ext": "select"}},
     "Extension parameters must be a JSON object or an array of JSON objects in query id={id}"),
]


@pytest_twisted.ensureDeferred
async def test_extension_specs_are_422_with_the_query_id_used_up(server):
    await create_bucket(server)
    await write(server, "e", JULY_1)
    targets = [f"/b/{BUCKET}/e/q", f"/io/{BUCKET}/q",
               None]  # None: an I/O query whose entries select nothing
    for fields, text in EXT_422:
        for path in targets:
            body = dict({"query_type": "QUERY"}, **fields)
            if path is None:
                path, body = f"/io/{BUCKET}/q", dict(body, entries=["nothing*"])
            before = await post_query(server, {"query_type": "QUERY"})
            resp = await call(server, "POST", path, body)
            await assert_error(resp, 422, text.format(id=before + 1))
            assert await post_query(server, {"query_type": "QUERY"}) == before + 2
    # ext null, as absent: no extension.
    qid = await post_query(server, {"query_type": "QUERY", "ext": None})
    assert await drain_batches(server, qid) == [JULY_1]
    resp, content = await io_helpers.query(server, {"query_type": "QUERY", "ext": None})
    assert resp.code == 200, content
    await body_of(resp)


#: (GET /q parameters, JSON fields, indices of the records they select).
DEPRECATED = [
    ("include-kind=keep", {"include": {"kind": "keep"}}, [1, 3, 5, 7]),
    ("exclude-kind=keep", {"exclude": {"kind": "keep"}}, [0, 2, 4, 6]),
    ("each_n=3", {"each_n": 3}, [0, 3, 6]),
    ("each_s=2", {"each_s": 2}, [0, 2, 4, 6]),
    ("each_s=1.5", {"each_s": 1.5}, [0, 2, 4, 6]),
    ("limit=2", {"limit": 2}, [0, 1]),
    ("include-kind=keep&each_n=2&limit=1", {"include": {"kind": "keep"}, "each_n": 2,
                                            "limit": 1}, [1]),
]


async def _seed_deprecated(server, entry):
    for i in range(8):
        await write(server, entry, JULY_1 + i * S, labels={"kind": "keep" if i % 2 else "drop"})


@pytest_twisted.ensureDeferred
async def test_deprecated_query_fields_on_every_path(server):
    """
    Spec 1.20 §6.4: a server advertising 1.20 still takes the ``GET``/
    ``DELETE …/q`` parameters and the ``QueryEntry`` fields ``include``,
    ``exclude``, ``each_n``, ``each_s``, ``limit`` — v1 and I/O API, QUERY and
    REMOVE alike.
    """
    await create_bucket(server)
    await _seed_deprecated(server, "e")

    def indices(stamps):
        return [(ts - JULY_1) // S for ts in stamps]

    for params, fields, expected in DEPRECATED:
        resp = await server.http.get(server.api(f"/b/{BUCKET}/e/q?{params}"))
        qid = (await ok_json(resp))["id"]
        assert indices(await drain_batches(server, qid)) == expected, ("GET /q", params)
        qid = await post_query(server, dict({"query_type": "QUERY"}, **fields))
        assert indices(await drain_batches(server, qid)) == expected, ("POST /q", fields)
        found = await _v2_query_stamps(server, dict({"query_type": "QUERY", "entries": ["e"]},
                                                    **fields))
        assert indices(ts for _, ts in found) == expected, ("POST /io/q", fields)

    for n, (params, fields, expected) in enumerate(DEPRECATED):
        for how in ("DELETE", "REMOVE", "IO"):
            entry = f"r{n}-{how.lower()}"
            await _seed_deprecated(server, entry)
            if how == "DELETE":
                resp = await server.http.delete(server.api(f"/b/{BUCKET}/{entry}/q?{params}"))
            elif how == "REMOVE":
                resp = await call(server, "POST", f"/b/{BUCKET}/{entry}/q",
                                  dict({"query_type": "REMOVE"}, **fields))
            else:
                resp = await call(server, "POST", f"/io/{BUCKET}/q",
                                  dict({"query_type": "REMOVE", "entries": [entry]}, **fields))
            assert (await ok_json(resp)) == {"removed_records": len(expected)}, (how, params)
            left = indices(await drain_batches(
                server, await post_query(server, {"query_type": "QUERY"}, entry), entry))
            assert left == [i for i in range(8) if i not in expected], (how, params)
