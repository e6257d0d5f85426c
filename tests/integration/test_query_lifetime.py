"""
How long a query lives after its end (spec 1.20 §5.6), over real sockets.

Upstream 1.18+ keeps a finished plain query until its TTL (the next read is
a 204, then a 404 once the TTL lapsed); 1.17 discarded it at once (204,
then 404 right away).  Discarding it at once satisfies both suites and
every client, so that is what we do, on the single ``?q=`` read and on the
batched read.  A continuous query keeps answering 204 while it is read
within its TTL, and is gone once it has not been read for that long.
"""

import json

import pytest_twisted
from twisted.internet import task

from tests.integration.helpers import assert_error

GONE = "Query {} not found and it might have expired. Check TTL in your query request."


async def _write(server, ts, data=b"x", entry="e"):
    resp = await server.http.post(server.api(f"/b/b/{entry}"), params={"ts": str(ts)}, data=data)
    assert resp.code == 200, await resp.content()
    await resp.content()


async def _query(server, params, entry="e"):
    resp = await server.http.get(server.api(f"/b/b/{entry}/q"), params=params)
    body = await resp.content()
    assert resp.code == 200, body
    return json.loads(body)["id"]


async def _single(server, qid, entry="e"):
    return await server.http.get(server.api(f"/b/b/{entry}"), params={"q": str(qid)})


async def _batch(server, qid, entry="e"):
    return await server.http.get(server.api(f"/b/b/{entry}/batch"), params={"q": str(qid)})


async def _sleep(seconds):
    from twisted.internet import reactor

    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_finished_query_is_discarded_at_once(server):
    """With a long TTL, the read after the end is 204 and the next one 404 at once (single read)."""
    server.engine.create_bucket("b", None)
    await _write(server, 1000, b"one")
    qid = await _query(server, {"ttl": "3600"})
    resp = await _single(server, qid)
    assert (resp.code, await resp.content()) == (200, b"one")
    await assert_error(await _single(server, qid), 204, "No content")
    await assert_error(await _single(server, qid), 404, GONE.format(qid))


@pytest_twisted.ensureDeferred
async def test_finished_query_is_discarded_at_once_batched(server):
    """
    The batched read: the batch holding the last record says so and the
    query is gone; a query that finds nothing answers 204 once, then 404.
    """
    server.engine.create_bucket("b", None)
    for ts in (1000, 2000):
        await _write(server, ts)
    qid = await _query(server, {"ttl": "3600"})
    resp = await _batch(server, qid)
    await resp.content()
    assert resp.code == 200
    assert resp.headers.getRawHeaders("x-reduct-last") == ["true"]
    await assert_error(await _batch(server, qid), 404, GONE.format(qid))
    qid = await _query(server, {"ttl": "3600", "start": "5000", "stop": "6000"})
    await assert_error(await _batch(server, qid), 204, "No content")
    await assert_error(await _batch(server, qid), 404, GONE.format(qid))


@pytest_twisted.ensureDeferred
async def test_continuous_query_answers_204_until_its_ttl_lapses(server):
    """A dry continuous query (ttl 1 s) answers 204 while read; unread for over 1 s it is gone."""
    server.engine.create_bucket("b", None)
    await _write(server, 1000)
    qid = await _query(server, {"ttl": "1", "start": "2000", "continuous": "true"})
    for _ in range(4):
        await assert_error(await _single(server, qid), 204, "No content")
        await _sleep(0.4)  # 1.6 s in all: longer than the TTL, but read within it
    await _sleep(1.3)
    await assert_error(await _single(server, qid), 404, GONE.format(qid))
