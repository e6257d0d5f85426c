"""
The ``RS_IO_*`` settings (spec §3.16) against the real daemon: the batch
limits of batched reads, a query's ``#batch_*`` directives over them, the
request header limits they raise, the wait of a continuous batched read and
the I/O timeout of a stalled body.
"""

import json
import time

import pytest_twisted
from twisted.internet import defer, task

from reduct_twisted.config import load_config
from tests.integration.conftest import running_server
from tests.integration.helpers import body_of, port_of, raw_request
from tests.integration.test_batch import (
    BUCKET,
    create_bucket,
    error_headers,
    new_query,
    read_batch,
    write_batch,
)


def configured_server(tmp_path, **environ):
    """A daemon started with these ``RS_*`` variables (``async with``)."""
    config = load_config({}, environ, None)
    settings = {name: getattr(config, name) for name in (
        "io_batch_max_size", "io_batch_max_records", "io_batch_max_metadata_size",
        "io_batch_timeout", "io_batch_records_timeout", "io_operation_timeout",
    )}
    return running_server(tmp_path / "data", **settings)


async def batch_sizes(server, entry, qid, method="GET"):
    """How many records each batched read of query ``qid`` carried, to the last."""
    sizes = []
    while True:
        resp, got, last = await read_batch(server, entry, qid, method=method)
        assert resp.code == 200, resp.code
        sizes.append(len(got))
        if last:
            return sizes


async def post_query(server, entry, body):
    resp = await server.http.post(server.api(f"/b/{BUCKET}/{entry}/q"),
                                  data=json.dumps(body).encode())
    text = await body_of(resp)
    assert resp.code == 200, text
    return json.loads(text)["id"]


@pytest_twisted.ensureDeferred
async def test_max_records(tmp_path):
    """RS_IO_BATCH_MAX_RECORDS=3: batches of 3 (GET and HEAD); #batch_records overrides it."""
    async with configured_server(tmp_path, RS_IO_BATCH_MAX_RECORDS="3") as server:
        await create_bucket(server)
        resp = await write_batch(server, "e", [(ts, b"%d" % ts, None, {}) for ts in range(1, 11)])
        assert resp.code == 200 and error_headers(resp) == {}
        for method in ("GET", "HEAD"):
            qid = await new_query(server, "e")
            assert await batch_sizes(server, "e", qid, method) == [3, 3, 3, 1]
        qid = await post_query(server, "e", {"query_type": "QUERY",
                                             "when": {"#batch_records": 4}})
        assert await batch_sizes(server, "e", qid) == [4, 4, 2]


@pytest_twisted.ensureDeferred
async def test_max_size(tmp_path):
    """
    RS_IO_BATCH_MAX_SIZE=250B: a GET batch closes after the record that
    crosses it; HEAD ignores it; #batch_size overrides it.
    """
    async with configured_server(tmp_path, RS_IO_BATCH_MAX_SIZE="250B") as server:
        await create_bucket(server)
        records = [(ts, bytes([ts]) * 100, None, {}) for ts in range(1, 11)]
        resp = await write_batch(server, "e", records)
        assert resp.code == 200
        qid = await new_query(server, "e")
        assert await batch_sizes(server, "e", qid) == [3, 3, 3, 1]
        qid = await new_query(server, "e")
        assert await batch_sizes(server, "e", qid, "HEAD") == [10]
        qid = await post_query(server, "e", {"query_type": "QUERY",
                                             "when": {"#batch_size": "0.5KB"}})
        assert await batch_sizes(server, "e", qid) == [6, 4]


@pytest_twisted.ensureDeferred
async def test_max_metadata_size(tmp_path):
    """RS_IO_BATCH_MAX_METADATA_SIZE caps the record headers of a batch (HEAD too)."""
    async with configured_server(tmp_path, RS_IO_BATCH_MAX_METADATA_SIZE="100") as server:
        await create_bucket(server)
        # x-reduct-time-1N: 1,application/octet-stream -> 17 + 26 + 2 = 45 bytes each
        records = [(ts, b"x", None, {}) for ts in range(10, 20)]
        resp = await write_batch(server, "e", records)
        assert resp.code == 200
        qid = await new_query(server, "e")
        assert await batch_sizes(server, "e", qid, "HEAD") == [3, 3, 3, 1]


async def post_batch_headers(server, count, label_size=0):
    """A batched write of ``count`` empty records, the first with a ``label_size`` label."""
    headers = {f"x-reduct-time-{ts}": ["0,"] for ts in range(1, count + 1)}
    if label_size:
        headers["x-reduct-time-1"] = ["0,text/plain,big=" + "v" * label_size]
    resp = await server.http.post(server.api(f"/b/{BUCKET}/many/batch"), data=b"",
                                  headers=headers)
    return resp, await body_of(resp)


@pytest_twisted.ensureDeferred
async def test_request_header_limits_follow_the_settings(server, tmp_path):
    """
    By default a request takes at most 2000 headers and 1 MiB of them;
    larger RS_IO_BATCH_MAX_RECORDS / _METADATA_SIZE let larger batches in.
    """
    await create_bucket(server)
    resp, _ = await post_batch_headers(server, 2100)
    assert resp.code == 400
    resp, _ = await post_batch_headers(server, 1, label_size=1_200_000)
    assert resp.code == 400

    bigger = {"RS_IO_BATCH_MAX_RECORDS": "2500", "RS_IO_BATCH_MAX_METADATA_SIZE": "1.5MB"}
    async with configured_server(tmp_path / "big", **bigger) as big:
        await create_bucket(big)
        resp, body = await post_batch_headers(big, 2100, label_size=1_200_000)
        assert resp.code == 200, body
        assert error_headers(resp) == {}
        assert len(big.engine.list_records(BUCKET, "many", 0, 10_000)) == 2100
        view = big.engine.read(BUCKET, "many", 1)
        assert view.record.labels == {"big": "v" * 1_200_000}


@pytest_twisted.ensureDeferred
async def test_continuous_batched_read_waits_for_a_record(tmp_path):
    """
    An empty batched read of a continuous query waits up to
    RS_IO_BATCH_RECORDS_TIMEOUT for a record written meanwhile.
    """
    from twisted.internet import reactor

    async with configured_server(tmp_path, RS_IO_BATCH_RECORDS_TIMEOUT_S="10") as server:
        await create_bucket(server)
        resp = await write_batch(server, "e", [(1, b"a", None, {})])
        qid = await new_query(server, "e", "start=2&continuous=true")
        late = task.deferLater(reactor, 0.3, lambda: defer.ensureDeferred(
            write_batch(server, "e", [(5, b"late", None, {})])))
        started = time.monotonic()
        resp, got, _ = await read_batch(server, "e", qid)
        waited = time.monotonic() - started
        assert resp.code == 200 and [(r[0], r[4]) for r in got] == [(5, b"late")]
        assert 0.2 < waited < 5, waited
        assert (await late).code == 200


@pytest_twisted.ensureDeferred
async def test_stalled_body_is_cut_after_the_io_timeout(tmp_path):
    """RS_IO_OPERATION_TIMEOUT: a body that stops arriving is cut; no record is left."""
    async with configured_server(tmp_path, RS_IO_OPERATION_TIMEOUT="0.5") as server:
        await create_bucket(server)
        started = time.monotonic()
        raw = await raw_request(
            port_of(server),
            f"POST /api/v1/b/{BUCKET}/e?ts=1 HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 10\r\n\r\nabc".encode(),
            read_until_close=True, timeout=10,
        )
        assert raw == b"" and time.monotonic() - started < 5
        resp = await server.http.get(server.api(f"/b/{BUCKET}/e?ts=1"))
        await body_of(resp)
        assert resp.code == 404
