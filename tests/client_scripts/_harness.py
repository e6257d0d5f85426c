"""
Shared harness of the client scripts (runs inside a reduct-py venv, so it
must only use the standard library and the installed ``reduct`` package).

A script calls :func:`run` with its ``main(checks, args)`` coroutine.  The
harness parses ``URL [--bucket NAME] [--timeout S]``, runs ``main`` under
an asyncio timeout (and a hard ``faulthandler`` deadline in case the event
loop itself hangs), then prints one JSON line to stdout::

    {"ok": true, "client": "reduct-py", "version": "1.4.1",
     "checks": ["server-info", ...], "facts": {...}}

and exits 0; on any failure it prints the traceback to stderr, the same
JSON with ``"ok": false`` and ``"error"``, and exits 1.
"""

import argparse
import asyncio
import contextlib
import faulthandler
import importlib.metadata
import json
import sys
import traceback
import uuid


class Checks:
    """Collects the names of the checks that passed, in order."""

    def __init__(self):
        self.passed = []
        self.facts = {}

    def ok(self, name: str) -> None:
        if name in self.passed:
            raise AssertionError(f"check {name!r} recorded twice")
        self.passed.append(name)

    def fact(self, name: str, value) -> None:
        self.facts[name] = value


def eq(actual, expected, what: str) -> None:
    """Assert ``actual == expected`` with both values in the message."""
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


async def expect_error(awaitable, error_type, status: int, message: str):
    """
    Await ``awaitable`` and assert it raises ``error_type`` (reduct's
    ``ReductError``) with ``status`` and exactly ``message``.

    :return: the error.
    """
    try:
        await awaitable
    except error_type as err:
        eq(err.status_code, status, f"status of error {err}")
        eq(err.message, message, "error message")
        eq(str(err), f"Status {status}: {message}", "str(error)")
        return err
    raise AssertionError(f"expected ReductError {status} {message!r}, nothing raised")


async def expect_status(awaitable, status: int, what: str):
    """Await ``awaitable``; assert it raises reduct's ``ReductError`` with ``status``."""
    from reduct import ReductError

    try:
        await awaitable
    except ReductError as err:
        eq(err.status_code, status, f"status of {what} ({err})")
        return err
    raise AssertionError(f"{what}: expected ReductError {status}, nothing raised")


async def read_record(bucket, entry, ts=None):
    """:return: ``(record, content)`` of ``entry`` at ``ts`` (the latest if None)."""
    async with bucket.read(entry, timestamp=ts) as rec:
        return rec, await rec.read_all()


def parse_args(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("url", help="server URL, e.g. http://127.0.0.1:8383")
    parser.add_argument("--bucket", default=None, help="bucket name (random by default)")
    parser.add_argument("--timeout", type=float, default=45.0)
    parser.add_argument("--token", default=None, help="API token of the daemon (RS_API_TOKEN)")
    parser.add_argument(
        "--shared-server",
        action="store_true",
        help="other clients use the server at the same time: skip server-wide counts",
    )
    args = parser.parse_args(argv)
    if args.bucket is None:
        args.bucket = "client-" + uuid.uuid4().hex[:12]
    return args


def run(main, argv=None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # If the event loop hangs so badly that wait_for cannot fire, still exit.
    faulthandler.dump_traceback_later(args.timeout + 15, exit=True)
    checks = Checks()
    summary = {
        "client": "reduct-py",
        "version": importlib.metadata.version("reduct-py"),
        "python": sys.version.split()[0],
        "bucket": args.bucket,
    }
    try:
        asyncio.run(asyncio.wait_for(main(checks, args), args.timeout))
    except BaseException as exc:  # noqa: B902 - report everything, then fail
        traceback.print_exc()
        summary.update(ok=False, error=repr(exc), checks=checks.passed, facts=checks.facts)
        print(json.dumps(summary), flush=True)
        sys.exit(1)
    summary.update(ok=True, checks=checks.passed, facts=checks.facts)
    print(json.dumps(summary), flush=True)


def run_with_client(exercise, argv=None) -> None:
    """
    :func:`run` for a script whose checks need one session-bound client:
    ``exercise(checks, args, client)``.
    """
    from reduct import Client

    async def main(checks, args):
        async with Client(args.url, timeout=30) as client:
            await exercise(checks, args, client)

    run(main, argv)


async def check_subscribe(bucket, ts, step: int, no: str, yes: str, poll_interval: float,
                          **selection) -> None:
    """
    Subscribe to entry ``live`` from ``ts(100)`` with ``selection`` (the
    client's filter arguments), write 101..104 labelled ``keep`` = ``no``,
    ``yes``, ``no``, ``yes`` while subscribed, and check the subscriber
    gets the record written before (labelled ``yes``) and the two matching.
    """
    await bucket.write("live", b"before", timestamp=ts(100), labels={"keep": yes})
    received = []
    t0 = ts(0)

    async def subscriber():
        records = bucket.subscribe("live", start=ts(100), poll_interval=poll_interval,
                                   **selection)
        async with contextlib.aclosing(records) as it:
            async for record in it:
                received.append(((record.timestamp - t0) // step, await record.read_all()))
                if len(received) == 3:
                    return

    task = asyncio.create_task(subscriber())
    await asyncio.sleep(0.3)
    for i, keep in ((101, no), (102, yes), (103, no), (104, yes)):
        await bucket.write("live", b"live-%d" % i, timestamp=ts(i), labels={"keep": keep})
        await asyncio.sleep(0.1)
    await asyncio.wait_for(task, 15)
    eq(received, [(100, b"before"), (102, b"live-102"), (104, b"live-104")],
       "records written while subscribed")


def series_helpers(t0: int, step: int):
    """
    ``(collect, indices)`` for a script whose record ``i`` has timestamp
    ``t0 + i * step``: ``await collect(records)`` gives ``(i, data, labels)``
    of every record a query iterator yields, ``indices(found)`` the ``i``s.
    """

    async def collect(records):
        found = []
        async with contextlib.aclosing(records) as it:
            async for record in it:
                data = await record.read_all()
                found.append(((record.timestamp - t0) // step, data, record.labels))
        return found

    def indices(found):
        return [i for i, _, _ in found]

    return collect, indices
