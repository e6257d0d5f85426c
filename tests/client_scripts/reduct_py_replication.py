"""
The newest reduct-py (1.21.x) and the replication API of a daemon at API 1.17.

Usage: python reduct_py_replication.py URL [--bucket NAME] [--timeout S] [--token T]

``Client.create_replication``, ``get_replications``,
``get_replication_detail``, ``update_replication`` and
``delete_replication``, with the server's error texts (the client's own
tests match ``Status 404: Replication '<name>' does not exist``).  The
replication copies one bucket of the daemon into another bucket of the same
daemon (``dst_host`` is the daemon's own URL), so the records really flow.
"""

import asyncio

from _harness import eq, expect_error, run_with_client
from reduct import ReductError, ReplicationSettings

T0 = 1_700_000_000_000_000


async def wait_for(condition, what: str, seconds: float = 20.0):
    for _ in range(int(seconds / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def exercise(checks, args, client):
    src_name, dst_name, other = args.bucket + "-src", args.bucket + "-dst", args.bucket + "-o"
    src = await client.create_bucket(src_name, exist_ok=True)
    dst = await client.create_bucket(dst_name, exist_ok=True)
    await client.create_bucket(other, exist_ok=True)
    name = args.bucket + "-repl"

    if not args.shared_server:
        eq(await client.get_replications(), [], "replications of a fresh daemon")
    settings = ReplicationSettings(
        src_bucket=src_name, dst_bucket=dst_name, dst_host=args.url, dst_token=args.token,
        entries=["e"], when={"&number": {"$gt": 1}},
    )
    await client.create_replication(name, settings)
    checks.ok("create")

    mine = [r for r in await client.get_replications() if r.name == name]
    eq(len(mine), 1, "the replication in the list")
    eq((mine[0].is_provisioned, mine[0].pending_records), (False, 0), "its info")
    checks.ok("list")

    detail = await client.get_replication_detail(name)
    eq(detail.info.name, name, "info.name")
    eq((detail.settings.src_bucket, detail.settings.dst_bucket, detail.settings.dst_host),
       (src_name, dst_name, args.url), "settings")
    eq(detail.settings.when, {"&number": {"$gt": 1}}, "when echoed back")
    eq(detail.settings.entries, ["e"], "entries")
    eq(detail.settings.dst_token, None, "dst_token masked (1.17)")
    eq(detail.diagnostics.hourly.errors, {}, "no errors yet")
    checks.ok("get-detail")

    for i in range(4):
        await src.write("e", b"record-%d" % i, timestamp=T0 + i, labels={"number": str(i)})
    await src.write("skipped", b"other entry", timestamp=T0, labels={"number": "5"})

    async def drained():
        info = (await client.get_replication_detail(name)).info
        return info.pending_records == 0 and info.is_active

    await wait_for(drained, "the records to be replicated")
    got = []
    async for record in dst.query("e", start=T0, stop=T0 + 10):
        got.append((record.timestamp, await record.read_all(), record.labels["number"]))
    eq(got, [(T0 + 2, b"record-2", "2"), (T0 + 3, b"record-3", "3")], "replicated records")
    eq([e.name for e in await dst.get_entry_list()], ["e"], "entries of the destination")
    hourly = (await client.get_replication_detail(name)).diagnostics.hourly
    eq((hourly.ok > 0, hourly.errored, hourly.errors), (True, 0, {}), "diagnostics")
    checks.ok("records-replicated")

    await client.update_replication(
        name, ReplicationSettings(src_bucket=src_name, dst_bucket=other, dst_host=args.url)
    )
    detail = await client.get_replication_detail(name)
    eq((detail.settings.src_bucket, detail.settings.dst_bucket, detail.settings.when,
        detail.settings.entries), (src_name, other, None, []), "updated settings")
    checks.ok("update")

    await expect_error(client.create_replication(name, settings), ReductError, 409,
                       f"Replication '{name}' already exists")
    bad_host = settings.model_copy(update={"dst_host": "invalid_url"})
    await expect_error(client.create_replication(name + "-x", bad_host), ReductError, 422,
                       "Invalid destination host 'invalid_url'")
    no_source = settings.model_copy(update={"src_bucket": args.bucket + "-none"})
    await expect_error(client.create_replication(name + "-x", no_source), ReductError, 404,
                       f"Source bucket '{args.bucket}-none' for replication '{name}-x' "
                       "does not exist")
    bad_when = settings.model_copy(update={"when": {"$UNKNOWN_OP": ["&x", "y"]}})
    await expect_error(client.create_replication(name + "-x", bad_when), ReductError, 422,
                       "Invalid replication condition: Operator '$UNKNOWN_OP' not supported")
    itself = settings.model_copy(update={"dst_bucket": src_name})
    await expect_error(client.create_replication(name + "-x", itself), ReductError, 422,
                       "Source and destination buckets must be different")
    await expect_error(client.update_replication(name + "-x", settings), ReductError, 404,
                       f"Replication '{name}-x' does not exist")
    checks.ok("errors")

    await client.delete_replication(name)
    await expect_error(client.get_replication_detail(name), ReductError, 404,
                       f"Replication '{name}' does not exist")
    await expect_error(client.delete_replication(name), ReductError, 404,
                       f"Replication '{name}' does not exist")
    eq([r for r in await client.get_replications() if r.name == name], [], "list after delete")
    checks.ok("delete")

    for bucket in (src_name, dst_name, other):
        await (await client.get_bucket(bucket)).remove()
    checks.ok("remove-buckets")


if __name__ == "__main__":
    run_with_client(exercise)
