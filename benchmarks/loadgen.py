"""
The HTTP load generator every HTTP target is measured with (aiohttp).

One record per request: ``concurrency`` keep-alive connections, each driven
by a coroutine that sends requests back to back.  Writes send ``payload``
with ``method`` (POST for the ReductStore API, PUT for WebDAV) and the same
headers to every target (content type and two ``x-reduct-label-*`` labels,
which a plain file server ignores); reads GET the same URLs and check every
body byte for byte.  ``url`` is a ``str.format`` template with one field,
``{ts}``: the record's timestamp, ``base_ts + index``.

Uses uvloop when it is installed (a faster client leaves more of the box to
the server), plain asyncio otherwise.
"""

import asyncio
import time

import aiohttp

from measure import Tally, Window

HEADERS = {
    "Content-Type": "application/octet-stream",
    "x-reduct-label-sensor": "s1",
    "x-reduct-label-bench": "1",
}

try:
    import uvloop
    LOOP = "uvloop"
except ImportError:  # pragma: no cover - optional
    uvloop = None
    LOOP = "asyncio"


async def _cell(op, url, method, payload, tally, concurrency, base_ts, server_pids):
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
    root = url.split("/", 3)
    root = "/".join(root[:3]) + "/"

    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:

        async def warm():  # open the connections outside the measured window
            async with session.get(root) as resp:
                await resp.read()

        await asyncio.gather(*(warm() for _ in range(concurrency)))

        async def worker():
            while (i := tally.next_index()) is not None:
                target = url.format(ts=base_ts + i)
                started = time.perf_counter()
                try:
                    if op == "write":
                        async with session.request(method, target, data=payload,
                                                   headers=HEADERS) as resp:
                            await resp.read()
                            good = 200 <= resp.status < 300
                    else:
                        async with session.get(target) as resp:
                            body = await resp.read()
                            good = resp.status == 200 and body == payload
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
                    tally.fail(f"{type(err).__name__}: {err}", started)
                    continue
                if good:
                    tally.ok(len(payload), started)
                else:
                    tally.fail(f"{op} {target} -> HTTP {resp.status}", started)

        with Window(server_pids) as window:
            tally.start()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            tally.stop()
    return tally.result(window, loop=LOOP)


def run_cell(op: str, url: str, *, method: str, payload: bytes, count: int,
             concurrency: int, base_ts: int, max_s: float, min_s: float = 0.0,
             server_pids=()) -> dict:
    """
    One bounded measurement; ``op`` is "write" or "read".  A read cycles
    over the ``count`` records written from ``base_ts`` on for at least
    ``min_s`` seconds.
    """
    tally = Tally(count, max_s, min_s, cycle=op == "read")
    coro = _cell(op, url, method, payload, tally, concurrency, base_ts, server_pids)
    return uvloop.run(coro) if uvloop else asyncio.run(coro)
