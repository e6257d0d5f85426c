"""
The newest reduct-py (1.21.x) reading the ``$system`` bucket of a daemon at
API 1.20 (spec 1.20 §8): listed, its info, its entries, audit and usage
records as JSON with the ``status`` label, a ``when`` on that label, and a
multi-entry query with a pattern.

Usage: python reduct_py_system.py URL --bucket INSTANCE --token T [--timeout S]

The caller has made the daemon write its events first: audited calls of
the init token (at least one ``GET /info``), one 401, and a usage event.
``--bucket`` carries the daemon's instance name (``RS_INSTANCE_NAME``).
"""

import json

from _harness import eq, run
from reduct import Client


async def main(checks, args):
    instance = args.bucket
    async with Client(args.url, api_token=args.token, timeout=30) as client:
        names = [b.name for b in await client.list()]
        if "$system" not in names:
            raise AssertionError(f"$system not listed: {names}")
        bucket = await client.get_bucket("$system")
        info = await bucket.info()
        eq(info.name, "$system", "bucket name")
        if info.entry_count < 3:
            raise AssertionError(f"entry_count {info.entry_count}")
        checks.ok("listed-and-info")

        entries = {e.name for e in await bucket.get_entry_list()}
        for wanted in (f"audit/{instance}/init-token", f"audit/{instance}/unauthorized",
                       f"usage/{instance}/total"):
            if wanted not in entries:
                raise AssertionError(f"{wanted} not in {sorted(entries)}")
        checks.ok("entries")

        audit = []
        async for record in bucket.query(f"audit/{instance}/init-token"):
            eq(record.content_type, "application/json", "content type")
            body = json.loads(await record.read_all())
            eq(record.labels, {"status": str(body["status"])}, "labels")
            eq(body["timestamp"], record.timestamp, "timestamp in the body")
            audit.append(body)
        info_calls = [b for b in audit if b["path"] == "/api/v1/info" and b["method"] == "GET"]
        if not info_calls:
            raise AssertionError(f"no GET /api/v1/info in {audit}")
        call = info_calls[0]
        eq(sorted(call), sorted(["timestamp", "instance", "status", "message", "token_name",
                                 "method", "path", "client_ip", "call_count", "duration"]),
           "audit fields")
        eq((call["instance"], call["token_name"], call["status"], call["message"]),
           (instance, "init-token", 200, ""), "audit values")
        if call["call_count"] < 1 or call["duration"] < 0:
            raise AssertionError(f"counts {call}")
        checks.ok("audit-records")

        refused = []
        async for record in bucket.query(f"audit/{instance}/unauthorized",
                                         when={"&status": {"$eq": 401}}):
            refused.append(json.loads(await record.read_all()))
        if not refused or any(b["token_name"] != "unauthorized" for b in refused):
            raise AssertionError(f"unauthorized records {refused}")
        checks.ok("when-on-status-label")

        usage = []
        async for record in bucket.query([f"usage/{instance}/*"]):
            usage.append((record.entry, json.loads(await record.read_all())))
        totals = [b for entry, b in usage if entry == f"usage/{instance}/total"]
        if not totals:
            raise AssertionError(f"no total usage in {usage}")
        for field in ("duration", "write_bytes", "read_bytes", "records_written",
                      "records_read", "storage_bytes", "bucket_count", "entry_count",
                      "block_count"):
            if field not in totals[0]:
                raise AssertionError(f"{field} missing from {totals[0]}")
        checks.ok("usage-multi-entry-query")


if __name__ == "__main__":
    run(main)
