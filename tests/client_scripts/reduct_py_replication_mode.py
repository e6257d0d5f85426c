"""
The newest reduct-py (1.21.x) switching a replication between ``enabled``,
``paused`` and ``disabled`` on a daemon at API 1.20 (spec 1.20 §5.3).

Usage: python reduct_py_replication_mode.py URL [--bucket NAME] [--timeout S] [--token T]

``Client.set_replication_mode(name, ReplicationMode.X)`` sends
``PATCH /api/v1/replications/:name/mode`` with ``{"mode": "x"}``;
``get_replications`` / ``get_replication_detail`` read ``mode`` from the
info and the settings.  ``create_replication`` of 1.21 also sends
``dst_prefix`` and ``compression`` (``[1.21-dev]``, to be accepted and
ignored).  The replication copies one bucket of the daemon into another
bucket of the same daemon, so the effect of each mode is observable:
``paused`` logs new records (``pending_records`` grows) and sends none,
``enabled`` sends what was logged, ``disabled`` logs nothing.
"""

import asyncio

from _harness import eq, expect_error, run_with_client
from reduct import ReductError, ReplicationMode, ReplicationSettings

T0 = 1_700_000_000_000_000


async def wait_for(condition, what: str, seconds: float = 20.0):
    for _ in range(int(seconds / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def timestamps(bucket, entry):
    found = []
    try:
        async for record in bucket.query(entry):
            found.append(record.timestamp)
    except ReductError as err:  # the entry does not exist (yet)
        if err.status_code != 404:
            raise
    return found


async def exercise(checks, args, client):
    src_name, dst_name = args.bucket + "-src", args.bucket + "-dst"
    src = await client.create_bucket(src_name, exist_ok=True)
    dst = await client.create_bucket(dst_name, exist_ok=True)
    name = args.bucket + "-repl"

    await client.create_replication(name, ReplicationSettings(
        src_bucket=src_name, dst_bucket=dst_name, dst_host=args.url, dst_token=args.token,
        entries=["sensor"],
    ))
    detail = await client.get_replication_detail(name)
    eq((detail.info.mode, detail.settings.mode), (ReplicationMode.ENABLED,) * 2,
       "mode of a new replication")
    body, _ = await client._http.request_all("GET", f"/replications/{name}")
    if b"dst_prefix" in body or b"compression" in body:
        raise AssertionError(f"1.21-dev settings echoed: {body!r}")
    checks.ok("create-enabled")

    async def info():
        return (await client.get_replication_detail(name)).info

    await client.set_replication_mode(name, ReplicationMode.PAUSED)
    detail = await client.get_replication_detail(name)
    eq((detail.info.mode, detail.settings.mode), (ReplicationMode.PAUSED,) * 2,
       "mode after PATCH paused")
    listed = {r.name: r for r in await client.get_replications()}
    eq(listed[name].mode, ReplicationMode.PAUSED, "mode in the list")
    for i in range(3):
        await src.write("sensor", b"paused-%d" % i, timestamp=T0 + i)

    async def logged():
        return (await info()).pending_records == 3

    await wait_for(logged, "3 pending records while paused")
    await asyncio.sleep(1.0)  # time enough to send, were it not paused
    eq((await info()).pending_records, 3, "pending records stay while paused")
    eq(await timestamps(dst, "sensor"), [], "nothing sent while paused")
    checks.ok("paused-logs-and-holds")

    await client.set_replication_mode(name, ReplicationMode.ENABLED)

    async def drained():
        current = await info()
        return current.pending_records == 0 and current.mode == ReplicationMode.ENABLED

    await wait_for(drained, "the paused records to be sent")
    await wait_for(lambda: _has(dst, [T0, T0 + 1, T0 + 2]), "the records in the destination")
    async with dst.read("sensor", timestamp=T0 + 1) as rec:
        eq(await rec.read_all(), b"paused-1", "a record sent after resuming")
    checks.ok("enabled-sends-the-log")

    await client.set_replication_mode(name, "disabled")
    current = await info()
    eq((current.mode, current.is_active), (ReplicationMode.DISABLED, False),
       "mode and is_active when disabled")
    await src.write("sensor", b"while disabled", timestamp=T0 + 10)
    await asyncio.sleep(1.0)
    eq((await info()).pending_records, 0, "nothing logged while disabled")
    eq(await timestamps(dst, "sensor"), [T0, T0 + 1, T0 + 2], "nothing sent while disabled")
    checks.ok("disabled-drops")

    # an update without mode enables it again (serde default, §5.3)
    await client.update_replication(name, ReplicationSettings(
        src_bucket=src_name, dst_bucket=dst_name, dst_host=args.url, dst_token=args.token,
        entries=["sensor"], mode=ReplicationMode.PAUSED,
    ))
    eq((await info()).mode, ReplicationMode.PAUSED, "mode set by an update")
    await client._http.request_all("PUT", f"/replications/{name}", json={
        "src_bucket": src_name, "dst_bucket": dst_name, "dst_host": args.url,
        "dst_token": args.token, "entries": ["sensor"],
    })
    eq((await info()).mode, ReplicationMode.ENABLED, "an update without mode")
    await expect_error(
        client.set_replication_mode(args.bucket + "-none", ReplicationMode.PAUSED),
        ReductError, 404, f"Replication '{args.bucket}-none' does not exist",
    )
    checks.ok("update-and-errors")

    await client.delete_replication(name)
    await src.remove()
    await dst.remove()
    checks.ok("remove")


async def _has(bucket, wanted):
    return await timestamps(bucket, "sensor") == wanted


if __name__ == "__main__":
    run_with_client(exercise)
