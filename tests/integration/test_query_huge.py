"""
A label of 5,000 digits against the real daemon over real sockets (issue
#12): ``when`` queries and REMOVEs that read it, and ``GET /q`` with the
plain parameters, answer 2xx or 4xx, never 500, and the records are intact
afterwards.
"""

import pytest_twisted

from tests.integration.helpers import assert_error, body_of
from tests.integration.test_query_post import (
    BUCKET,
    T0,
    call,
    create_bucket,
    drain_batches,
    drain_single,
    entry_info,
    labels_of,
    offsets,
    ok_json,
    post_query,
    write,
)

BIG = "1" * 5000
I64_MAX = 2**63 - 1


async def _seed(server):
    await create_bucket(server)
    await write(server, "e", T0, labels={"n": BIG})
    await write(server, "e", T0 + 1, labels={"n": "5"})
    await write(server, "e", T0 + 2, labels={"n": "-" + BIG})
    await write(server, "e", T0 + 3, labels={"other": "x"})


async def _query(server, when, strict=False, single=False, **fields):
    body = {"query_type": "QUERY", "when": when, "strict": strict, **fields}
    qid = await post_query(server, body)
    if single:
        return offsets([ts for ts, _, _ in await drain_single(server, qid)])
    return offsets(await drain_batches(server, qid))


async def _get_q(server, params):
    """``GET /q`` with ``params``, read through single reads: offsets, or the error answer."""
    resp = await server.http.get(server.api(f"/b/{BUCKET}/e/q"), params=params)
    if resp.code != 200:
        return resp
    qid = (await ok_json(resp))["id"]
    return offsets([ts for ts, _, _ in await drain_single(server, qid)])


@pytest_twisted.ensureDeferred
async def test_when_on_a_huge_label(server):
    """The label is a float (+inf, as upstream types it): every operator gives a result."""
    await _seed(server)
    assert await _query(server, {"&n": {"$gt": 10}}) == [0]
    assert await _query(server, {"&n": {"$gt": 10}}, single=True) == [0]
    assert await _query(server, {"&n": {"$lt": 10}}) == [1, 2]
    assert await _query(server, {"&n": {"$eq": BIG}}) == []  # a string never equals a number
    assert await _query(server, {"$in": ["&n", 5, 6]}) == [1]
    assert await _query(server, {"$gt": [{"$add": ["&n", 1]}, 0]}) == [0, 1]
    assert await _query(server, {"$eq": [{"$cast": ["&n", "int"]}, I64_MAX]}) == [0]
    assert await _query(server, {"&n": {"$gt": BIG + "s"}}) == []  # a string constant
    assert await _query(server, {"$gt": [{"$div_num": ["&n", 2]}, 0]}) == [0, 1]
    # strict: the records with the label evaluate without error
    assert await _query(server, {"&n": {"$gt": 10}}, strict=True, stop=T0 + 3) == [0]
    qid = await post_query(server, {"query_type": "QUERY", "when": {"&n": {"$gt": 10}},
                                    "strict": True, "start": T0 + 1})
    resp = await server.http.get(server.api(f"/b/{BUCKET}/e/batch?q={qid}"))
    await body_of(resp)
    assert resp.code == 404  # the record without the label ends it, as strict does


@pytest_twisted.ensureDeferred
async def test_huge_durations_and_directives_are_422(server):
    """QUERY and REMOVE alike refuse them at once, with a readable text."""
    await _seed(server)
    cases = [
        ({"$each_t": BIG + "s"}, "Value '1111111111111111111111111111111111111111… "
                                 "(5001 characters)' could not be parsed as float"),
        ({"$limit": BIG}, "Value '1111111111111111111111111111111111111111… "
                          "(5000 characters)' could not be parsed as integer"),
        ({"#batch_size": BIG + "KB", "&n": {"$gt": 1}},
         "#batch_size must be a positive integer or string: "
         "'1111111111111111111111111111111111111111… (5002 characters)' "
         "is out of the 64-bit integer range"),
        ({"#ctx_after": BIG + "ms", "&n": {"$gt": 1}},
         "#ctx_after must be an integer or duration: Value "
         "'1111111111111111111111111111111111111111… (5002 characters)' "
         "could not be parsed as integer"),
    ]
    for when, text in cases:
        for query_type in ("QUERY", "REMOVE"):
            resp = await call(server, "POST", f"/b/{BUCKET}/e/q",
                              {"query_type": query_type, "when": when})
            await assert_error(resp, 422, text)
    assert (await entry_info(server))["record_count"] == 4


@pytest_twisted.ensureDeferred
async def test_remove_and_get_q_with_a_huge_label(server):
    """REMOVE by ``when`` on the label; GET /q with include/exclude and huge
    numeric parameters; the records are intact afterwards."""
    await _seed(server)
    resp = await call(server, "POST", f"/b/{BUCKET}/e/q",
                      {"query_type": "REMOVE", "when": {"&n": {"$eq": 10}}})
    assert await ok_json(resp) == {"removed_records": 0}
    resp = await call(server, "POST", f"/b/{BUCKET}/e/q",
                      {"query_type": "REMOVE", "when": {"&n": {"$lt": 0}}, "strict": True,
                       "stop": T0 + 3})
    assert await ok_json(resp) == {"removed_records": 1}  # the -inf one
    resp = await call(server, "POST", f"/b/{BUCKET}/e/q",
                      {"query_type": "REMOVE", "when": {"&n": {"$lt": 0}}, "strict": True})
    await assert_error(resp, 404, "Reference 'n' not found")

    assert await _get_q(server, {"include-n": BIG}) == [0]
    assert await _get_q(server, {"exclude-n": BIG}) == [1, 3]
    assert await _get_q(server, {"limit": "1"}) == [0]
    refused = [
        ({"limit": BIG}, "'limit' must unsigned integer"),
        ({"each_n": BIG}, "'each_n' must unsigned integer"),
        ({"ttl": BIG}, "'ttl' must be in seconds as an unsigned integer"),
        ({"start": BIG}, "'start' must be an unix timestamp in microseconds"),
    ]
    for params, text in refused:
        await assert_error(await _get_q(server, params), 422, text)
    resp = await _get_q(server, {"each_s": BIG})
    await body_of(resp)
    assert resp.code == 422

    info = await entry_info(server)
    assert info["record_count"] == 3
    for offset, labels in ((0, {"n": BIG}), (1, {"n": "5"}), (3, {"other": "x"})):
        resp = await server.http.get(server.api(f"/b/{BUCKET}/e?ts={T0 + offset}"))
        assert (resp.code, await body_of(resp)) == (200, b"r%d" % (T0 + offset))
        assert labels_of(resp) == labels
