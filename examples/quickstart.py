"""
Write a record with reduct-py, read it back, query a time range.

    pip install reduct-py
    python examples/quickstart.py          # REDUCT_URL, RS_API_TOKEN to change the defaults
"""

import asyncio
import os
import time

from reduct import Client

URL = os.environ.get("REDUCT_URL", "http://127.0.0.1:8383")
TOKEN = os.environ.get("RS_API_TOKEN")  # only needed when authentication is on


async def main():
    t0 = time.time_ns() // 1000  # timestamps are microseconds since the epoch
    async with Client(URL, api_token=TOKEN) as client:
        bucket = await client.create_bucket("cams", exist_ok=True)

        # three frames one second apart, labelled
        for i in range(3):
            frame = os.urandom(1000)
            await bucket.write("front", frame, timestamp=t0 + i * 1_000_000,
                               content_type="image/jpeg", labels={"camera": "front", "n": str(i)})

        # one record by its timestamp
        async with bucket.read("front", timestamp=t0) as record:
            data = await record.read_all()
            print(f"read {len(data)} bytes at {record.timestamp}, labels {record.labels}")

        # every record of the first two seconds
        async for record in bucket.query("front", start=t0, stop=t0 + 2_000_000):
            print(f"{record.timestamp}: {record.size} bytes, {record.content_type}, n={record.labels['n']}")


if __name__ == "__main__":
    asyncio.run(main())
