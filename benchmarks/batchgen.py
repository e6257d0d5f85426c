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

The I/O API (batch protocol v2, spec 1.20 §1) has its own two cells:

- ``write_v2``: ``POST /api/v1/io/<bucket>/write`` with ``batch`` records
  per request spread over ``entries`` entries (record ``k`` of the run goes
  to entry ``(k // run) % entries``, ``run`` = ``batch // entries``: the
  entries take turns in runs of 20 consecutive timestamps), headers ``x-reduct-<I>-<D>`` in the form
  reduct-py sends (full content type and labels on an entry's first record
  of the request, the bare length after), the body in (entry, ts) order;
  failed when not 200 or an ``x-reduct-error-<I>-<D>`` header comes back.
- ``read_v2``: one multi-entry query over those entries (``POST …/io/<bucket>/q``
  with ``entries`` and the time range), then ``GET …/io/<bucket>/read`` until
  ``x-reduct-last: true`` or 204, repeated until ``min_s``.  The daemon
  closes a batch before an entry comes back (§1.9 rule 2), so runs of 20
  give batches of about 80 records; records interleaved one by one would
  give batches of 4 (more requests per record, by design).  Every record's
  entry, timestamp, size and bytes are checked.

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


async def _post_batch(session, url: str, headers: dict, payload: bytes, n: int, b: int,
                      tally) -> None:
    """POST batch ``b`` of ``n`` records; a failure or any record error fails it."""
    started = time.perf_counter()
    try:
        async with session.post(url, data=payload * n, headers=headers) as resp:
            await resp.read()
            status = resp.status
            errors = [f"{k}: {v}" for k, v in resp.headers.items()
                      if k.lower().startswith(ERROR_PREFIX)]
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
        tally.fail(f"{type(err).__name__}: {err}", started)
        return
    if status != 200 or errors:
        tally.fail(f"batch {b} -> HTTP {status}; {len(errors)} record errors, "
                   f"first: {errors[:1]}", started)
    else:
        tally.ok(n * len(payload), started, records=n)


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
                await _post_batch(session, url, headers, payload, n, b, tally)
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


# -- the I/O API (batch protocol v2) ---------------------------------------------------


def write_v2(base: str, bucket: str, entry: str, *, payload: bytes, count: int, batch: int,
             base_ts: int, max_s: float, entries: int = 4, server_pids=()) -> dict:
    """``count`` records over ``entries`` entries ``<entry>-<i>``, ``batch`` a POST."""
    url = f"{base}/api/v1/io/{bucket}/write"
    names = [f"{entry}-{i}" for i in range(entries)]
    first_value = f"{len(payload)},{CONTENT_TYPE},{LABELS}"
    run = max(1, batch // entries)
    tally = Tally(-(-count // batch), max_s)

    async def job(session):
        with Window(server_pids) as window:
            tally.start()
            while (b := tally.next_index()) is not None:
                first = b * batch
                n = min(batch, count - first)
                # (entry index, ts) order: the body order of §1.3
                order = sorted(range(first, first + n), key=lambda k: ((k // run) % entries, k))
                headers = {"x-reduct-entries": ",".join(names),
                           "x-reduct-start-ts": str(base_ts + first),
                           "Content-Type": CONTENT_TYPE}
                seen = set()
                for k in order:
                    index = (k // run) % entries
                    headers[f"x-reduct-{index}-{k - first}"] = (
                        str(len(payload)) if index in seen else first_value)
                    seen.add(index)
                await _post_batch(session, url, headers, payload, n, b, tally)
            tally.stop()
        return tally.result(window, batch=batch, loop=LOOP, entries=entries, run=run)

    return _run(_session(base, job))


def check_batch_v2(headers, body: bytes, payload: bytes, names: list, next_k: int, run: int):
    """
    The records of one v2 read (§1.5), checked: the k-th record written is
    ``base + k`` in entry ``(k // run) % len(names)``; a batch is never
    interleaved, so its body in (entry index, ts) order is in ts order.

    :return: ``(records, None)`` or ``(records so far, problem)``.
    """
    entries = headers.get("x-reduct-entries", "").split(",")
    start = int(headers.get("x-reduct-start-ts", "0"))
    found = []
    for name, value in headers.items():
        suffix = name.lower()[len("x-reduct-"):]
        index, _, delta = suffix.rpartition("-")
        if not name.lower().startswith("x-reduct-") or not index.isdigit() \
                or not delta.isdigit():
            continue
        found.append((start + int(delta), entries[int(index)], int(value.split(",")[0])))
    found.sort()
    size, offset = len(payload), 0
    for n, (ts, entry, length) in enumerate(found):
        k = next_k + n
        expected = names[(k // run) % len(names)]
        if (entry, length) != (expected, size):
            return n, f"record {ts}: {entry} {length} B, expected {expected}"
        if body[offset:offset + size] != payload:
            return n, f"record {ts}: content differs"
        offset += size
    if offset != len(body):
        return len(found), f"{len(body) - offset} body bytes beyond the announced records"
    return len(found), None


def read_v2(base: str, bucket: str, entry: str, *, payload: bytes, count: int, base_ts: int,
            max_s: float, min_s: float = 0.0, entries: int = 4, run: int = 20,
            server_pids=()) -> dict:
    """Multi-entry queries of what ``write_v2`` wrote, read in v2 batches until ``min_s``."""
    names = [f"{entry}-{i}" for i in range(entries)]
    q_url = f"{base}/api/v1/io/{bucket}/q"
    read_url = f"{base}/api/v1/io/{bucket}/read"
    query = json.dumps({"query_type": "QUERY", "entries": names, "start": base_ts,
                        "stop": base_ts + count})
    tally = Tally(1, max_s, min_s, cycle=True)

    async def one_pass(session):
        started = time.perf_counter()
        async with session.post(q_url, data=query) as resp:
            body = await resp.read()
            if resp.status != 200:
                tally.fail(f"query -> HTTP {resp.status} {body[:200]!r}", started)
                return
        qid = str(json.loads(body)["id"])
        k = 0
        while True:
            async with session.get(read_url, headers={"x-reduct-query-id": qid}) as resp:
                body = await resp.read()
                status, headers = resp.status, resp.headers
            if status == 204:
                break
            if status != 200:
                tally.fail(f"read of query {qid} -> HTTP {status} {body[:200]!r}", started)
                return
            n, problem = check_batch_v2(headers, body, payload, names, k, run)
            if problem:
                tally.fail(problem, started)
                return
            tally.ok(len(body), started, records=n)
            k += n
            if headers.get("x-reduct-last") == "true":
                break
            started = time.perf_counter()
        if k != count:
            tally.fail(f"query {qid} returned {k} of {count} records", started)

    async def job(session):
        with Window(server_pids) as window:
            tally.start()
            while tally.next_index() is not None:
                try:
                    await one_pass(session)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError,
                        KeyError, IndexError) as err:
                    tally.fail(f"{type(err).__name__}: {err}", time.perf_counter())
            tally.stop()
        return tally.result(window, loop=LOOP, entries=entries, run=run)

    return _run(_session(base, job))


def write_spread(base: str, bucket: str, prefix: str, *, payload: bytes, count: int,
                 batch: int, base_ts: int, max_s: float, entries: int, first_entry: int = 0,
                 server_pids=()) -> dict:
    """
    ``count`` records through the I/O API spread over ``entries`` entries
    ``<prefix>-<i:05d>`` (issue #17's scale cell): record ``k`` goes to entry
    ``(first_entry + k) % entries``, so a request of ``batch`` records names
    ``batch`` entries, each once (every record header in full), and the
    entries take turns over the requests.
    """
    url = f"{base}/api/v1/io/{bucket}/write"
    value = f"{len(payload)},{CONTENT_TYPE},{LABELS}"
    tally = Tally(-(-count // batch), max_s)

    async def job(session):
        with Window(server_pids) as window:
            tally.start()
            while (b := tally.next_index()) is not None:
                first = b * batch
                n = min(batch, count - first)
                names = [f"{prefix}-{(first_entry + k) % entries:05d}"
                         for k in range(first, first + n)]
                # names are distinct within a request (n <= entries): entry i holds record i
                headers = {"x-reduct-entries": ",".join(names),
                           "x-reduct-start-ts": str(base_ts + first),
                           "Content-Type": CONTENT_TYPE}
                for i in range(n):
                    headers[f"x-reduct-{i}-{i}"] = value
                await _post_batch(session, url, headers, payload, n, b, tally)
            tally.stop()
        return tally.result(window, batch=batch, loop=LOOP, entries=entries)

    return _run(_session(base, job))
