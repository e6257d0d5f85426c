"""
Read-ahead of batched reads against the real daemon (``http/batch_ahead.py``,
``storage/readahead.py``): after each GET of ``/b/:b/:e/batch?q=`` the daemon
takes the next batch at once, and a change the client makes before asking
for it still shows in the answer.
"""

import pytest_twisted

from tests.integration.helpers import body_of
from tests.integration.test_batch import BUCKET, create_bucket, new_query, read_batch, write_batch


@pytest_twisted.ensureDeferred
async def test_changes_between_reads_show_in_the_next_batch(server):
    await create_bucket(server)
    records = [(ts, b"%d" % ts, "text/plain", {"n": "0"}) for ts in range(1, 201)]
    for start in (0, 100):
        resp = await write_batch(server, "e", records[start:start + 100])
        assert resp.code == 200
    qid = await new_query(server, "e", "start=1")
    _, got, last = await read_batch(server, "e", qid)
    assert [r[0] for r in got] == list(range(1, 86)) and not last
    patch = await server.http.request(
        "PATCH", server.api(f"/b/{BUCKET}/e?ts=86"), headers={"x-reduct-label-n": ["new"]})
    await body_of(patch)
    assert patch.code == 200
    _, got, last = await read_batch(server, "e", qid)  # read ahead before the PATCH came
    assert got[0] == (86, 2, "text/plain", {"n": "new"}, b"86")
    assert [r[0] for r in got] == list(range(86, 171)) and not last
    gone = await server.http.delete(server.api(f"/b/{BUCKET}/e?ts=171"))
    await body_of(gone)
    assert gone.code == 200
    _, got, last = await read_batch(server, "e", qid)
    assert [r[0] for r in got] == list(range(172, 201)) and last
    assert [r[4] for r in got] == [b"%d" % ts for ts in range(172, 201)]


@pytest_twisted.ensureDeferred
async def test_a_head_after_a_read_ahead_reads_the_same_batch(server):
    await create_bucket(server)
    records = [(ts, b"x" * (ts % 7), "t", {}) for ts in range(1, 201)]
    await write_batch(server, "e", records)
    qid = await new_query(server, "e", "start=1")
    await read_batch(server, "e", qid)
    _, head, _ = await read_batch(server, "e", qid, method="HEAD")
    assert [(r[0], r[1]) for r in head] == [(ts, ts % 7) for ts in range(86, 171)]
    _, got, last = await read_batch(server, "e", qid)
    assert [r[0] for r in got] == list(range(171, 201)) and last
