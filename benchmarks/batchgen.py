"""
The daemon's batch API driven over one keep-alive connection (aiohttp), the
counterpart of ``pgblob.copy`` and ``pgblob.read_range``.

- ``write``: ``POST /api/v1/b/<bucket>/<entry>/batch`` with ``batch``
  records per request (spec §3.4): one ``x-reduct-time-<ts>:
  <size>,<content type>,<labels>`` header per record (the same content type
  and labels as the single-record cells) and the contents back to back in
  ascending timestamp order.  A request counts as failed when it is not
  answered 200 or carries an ``x-reduct-error-<ts>`` header.
- ``read``: one query over the written time range
  (``GET …/q?start=&stop=`` → ``{"id": N}``), then ``GET …/batch?q=N``
  until a batch says ``x-reduct-last: true`` (or 204), repeated until
  ``min_s`` (spec §3.3).  Every record is checked: its header (timestamp in
  sequence, size, content type, labels) and its bytes; a pass must return
  every record written.

Like the other cells, records/s counts records, a batch is one request, and
the CPU split comes from ``measure.Window``.
"""

import asyncio
import json
import time

import aiohttp

from loadgen import LOOP, uvloop
from measure import Tally, Window

TIME_PREFIX = "x-reduct-time-"
ERROR_PREFIX = "x-reduct-error-"
#: The labels of ``loadgen.HEADERS``, in the order the daemon sorts them (§3.3).
LABELS = "bench=1,sensor=s1"
CONTENT_TYPE = "application/octet-stream"


def _run(coro):
    return uvloop.run(coro) if uvloop else asyncio.run(coro)


async def _session(base: str, job):
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        async with session.get(base + "/") as resp:  # connect outside the window
            await resp.read()
        return await job(session)


def write(base: str, bucket: str, entry: str, *, payload: bytes, count: int, batch: int,
          base_ts: int, max_s: float, server_pids=()) -> dict:
    """``count`` records from ``base_ts`` on, ``batch`` records a POST."""
    url = f"{base}/api/v1/b/{bucket}/{entry}/batch"
    value = f"{len(payload)},{CONTENT_TYPE},{LABELS}"
    tally = Tally(-(-count // batch), max_s)

    async def job(session):
        with Window(server_pids) as window:
            tally.start()
            while (b := tally.next_index()) is not None:
                first = base_ts + b * batch
                n = min(batch, count - b * batch)
                headers = {f"{TIME_PREFIX}{first + k}": value for k in range(n)}
                headers["Content-Type"] = CONTENT_TYPE
                started = time.perf_counter()
                try:
                    async with session.post(url, data=payload * n, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                        errors = [f"{k}: {v}" for k, v in resp.headers.items()
                                  if k.lower().startswith(ERROR_PREFIX)]
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
                    tally.fail(f"{type(err).__name__}: {err}", started)
                    continue
                if status != 200 or errors:
                    tally.fail(f"batch {b} -> HTTP {status}; {len(errors)} record errors, "
                               f"first: {errors[:1]}", started)
                else:
                    tally.ok(n * len(payload), started, records=n)
            tally.stop()
        return tally.result(window, batch=batch, loop=LOOP)

    return _run(_session(base, job))


def check_batch(headers, body: bytes, payload: bytes, next_ts: int):
    """
    The records of one batched read, checked against what was written.

    :return: ``(records, None)`` or ``(records so far, problem)``.
    """
    size, offset, n = len(payload), 0, 0
    expected_value = f"{size},{CONTENT_TYPE},{LABELS}"
    for name, value in headers.items():
        if not name.lower().startswith(TIME_PREFIX):
            continue
        ts = int(name[len(TIME_PREFIX):])
        if ts != next_ts + n:
            return n, f"record {ts}: expected ts {next_ts + n}"
        if value != expected_value:
            return n, f"record {ts}: header {value!r}, expected {expected_value!r}"
        if body[offset:offset + size] != payload:
            return n, f"record {ts}: content differs"
        offset += size
        n += 1
    if offset != len(body):
        return n, f"{len(body) - offset} body bytes beyond the announced records"
    return n, None


def read(base: str, bucket: str, entry: str, *, payload: bytes, count: int, base_ts: int,
         max_s: float, min_s: float = 0.0, server_pids=()) -> dict:
    """
    Queries of the ``count`` records from ``base_ts`` on, read in batches,
    repeated until ``min_s``.
    """
    q_url = f"{base}/api/v1/b/{bucket}/{entry}/q?start={base_ts}&stop={base_ts + count}"
    batch_url = f"{base}/api/v1/b/{bucket}/{entry}/batch?q="
    tally = Tally(1, max_s, min_s, cycle=True)

    async def one_pass(session):
        started = time.perf_counter()  # the first batch's latency includes the query
        async with session.get(q_url) as resp:
            body = await resp.read()
            if resp.status != 200:
                tally.fail(f"query -> HTTP {resp.status} {body[:200]!r}", started)
                return
        qid = json.loads(body)["id"]
        next_ts = base_ts
        while True:
            async with session.get(f"{batch_url}{qid}") as resp:
                body = await resp.read()
                status, headers = resp.status, resp.headers
            if status == 204:
                break
            if status != 200:
                tally.fail(f"batch of query {qid} -> HTTP {status} {body[:200]!r}", started)
                return
            n, problem = check_batch(headers, body, payload, next_ts)
            if problem:
                tally.fail(problem, started)
                return
            tally.ok(len(body), started, records=n)
            next_ts += n
            if headers.get("x-reduct-last") == "true":
                break
            started = time.perf_counter()
        if next_ts != base_ts + count:
            tally.fail(f"query {qid} returned {next_ts - base_ts} of {count} records",
                       started)

    async def job(session):
        with Window(server_pids) as window:
            tally.start()
            while tally.next_index() is not None:
                try:
                    await one_pass(session)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError,
                        KeyError) as err:
                    tally.fail(f"{type(err).__name__}: {err}", time.perf_counter())
            tally.stop()
        return tally.result(window, loop=LOOP)

    return _run(_session(base, job))
