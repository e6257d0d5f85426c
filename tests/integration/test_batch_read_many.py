"""
10,000 records read back in batches against the real daemon (issue #17:
batched reads work a batch at a time): every record header (size, content
type, labels) and every byte compared with what was written, over the v1
batched read and the v2 ``/io/`` read, with records removed in the middle
of blocks and batches that end mid-block.
"""

import json
import random

import pytest_twisted

from reduct_twisted.wire import parse_record_header
from tests.integration.helpers import body_of
from tests.integration.io_helpers import query, read_all
from tests.integration.test_batch import create_bucket, new_query, write_batch

BUCKET = "bkt"
COUNT = 10_000
TYPES = ("application/octet-stream", "text/plain", "text/csv; charset=utf-8")


def _records(entry_seed: int):
    """``(ts, data, content_type, labels)`` with mixed sizes, types and labels."""
    rng = random.Random(entry_seed)
    records = []
    for k in range(COUNT):
        ts = 1_000_000 + 3 * k
        data = rng.randbytes(rng.choice((0, 1, 17, 300, 1024)))
        labels = {"n": str(k % 7)}
        if k % 3 == 0:
            labels["csv"] = f"a,{k % 5}"
        if k % 11 == 0:
            labels["quote"] = 'say "hi"'
        if k % 13 == 0:
            labels = {}
        records.append((ts, data, TYPES[k % 4 % 3], labels))
    return records


def _read_values(resp, body):
    """``(ts, content_type, labels, data)`` of a v1 batched read, body sliced in header order."""
    found, pos = [], 0
    stamps = []
    for name, values in resp.headers.getAllRawHeaders():
        lname = name.decode().lower()
        if lname.startswith("x-reduct-time-"):
            stamps.append((int(lname[len("x-reduct-time-"):]), values[-1].decode()))
    for ts, value in sorted(stamps):
        size, ctype, labels = parse_record_header(value, at_labels=True)
        found.append((ts, ctype, labels, body[pos:pos + size]))
        pos += size
    assert pos == len(body)
    return found


@pytest_twisted.ensureDeferred
async def test_ten_thousand_records_read_back_in_batches(server):
    await create_bucket(server, settings={"max_block_records": 300})
    records = _records(17)
    for start in range(0, COUNT, 500):
        resp = await write_batch(server, "e", records[start:start + 500])
        assert resp.code == 200
        assert not [n for n, _ in resp.headers.getAllRawHeaders()
                    if n.lower().startswith(b"x-reduct-error")]
    # records removed in the middle of blocks
    removed = {records[k][0] for k in range(150, COUNT, 997)}
    resp = await server.http.delete(
        server.api(f"/b/{BUCKET}/e/batch"),
        headers={f"x-reduct-time-{ts}": [""] for ts in removed})
    assert resp.code == 200, await body_of(resp)
    await body_of(resp)
    expected = [(ts, ctype, labels, data) for ts, data, ctype, labels in records
                if ts not in removed]

    # v1: GET …/batch?q= until x-reduct-last
    qid = await new_query(server, "e")
    found, sizes = [], []
    while True:
        resp = await server.http.get(server.api(f"/b/{BUCKET}/e/batch?q={qid}"))
        body = await body_of(resp)
        assert resp.code == 200, body
        batch = _read_values(resp, body)
        found += batch
        sizes.append(len(batch))
        if resp.headers.getRawHeaders("x-reduct-last") == ["true"]:
            break
    assert len(found) == len(expected) == COUNT - len(removed)
    for got, want in zip(found, expected):
        assert got == want
    assert max(sizes) == 85 and len(sizes) == -(-len(expected) // 85)

    # v2: the same records through /io/…/read
    resp, content = await query(server, {"query_type": "QUERY", "entries": ["e"]})
    assert resp.code == 200, content
    qid = json.loads(content)["id"]
    found, batches = await read_all(server, qid)
    assert [(ts, ctype, labels, data) for _, ts, data, ctype, labels in found] == expected
    assert {entry for entry, *_ in found} == {"e"} and len(batches) > 1
