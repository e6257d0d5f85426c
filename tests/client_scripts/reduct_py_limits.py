"""
reduct-py 1.21's ``create_replication`` with the ``[1.21-dev]`` settings
``dst_prefix`` and ``compression`` (spec 1.20 §5.3: accepted, ignored,
not echoed) towards an ``https`` destination (spec 1.20 §9,
``RS_REPLICATION_VERIFY_SSL`` / ``RS_REPLICATION_CA_PATH``).

Usage: python reduct_py_limits.py URL --dst HTTPS_URL [--bucket NAME] [--timeout S]

The script runs against the source daemon: it creates the source bucket,
a replication into bucket ``<bucket>-dst`` of the destination with
``dst_prefix="ignored/"`` and ``compression=zstd``, reads the settings back
and writes three records; the test checks they arrive at the destination.
"""

import sys

from _harness import eq, run_with_client
from reduct import ReplicationSettings
from reduct.msg.replication import ReplicationCompression

T0 = 1_700_000_000_000_000


def split_argv(argv):
    rest, dst = [], None
    items = iter(argv)
    for item in items:
        if item == "--dst":
            dst = next(items)
        else:
            rest.append(item)
    if dst is None:
        raise SystemExit("--dst is required")
    return dst, rest


DST, ARGV = split_argv(sys.argv[1:])


async def exercise(checks, args, client):
    src = await client.create_bucket(args.bucket, exist_ok=True)
    name = args.bucket + "-repl"
    await client.create_replication(name, ReplicationSettings(
        src_bucket=args.bucket, dst_bucket=args.bucket + "-dst", dst_host=DST,
        entries=["sensor"], dst_prefix="ignored/", compression=ReplicationCompression.ZSTD,
    ))
    body, _ = await client._http.request_all("GET", f"/replications/{name}")
    if b"dst_prefix" in body or b"compression" in body:
        raise AssertionError(f"1.21-dev settings echoed: {body!r}")
    detail = await client.get_replication_detail(name)
    eq(detail.settings.dst_host, DST, "destination host")
    eq((detail.settings.dst_prefix, detail.settings.compression),
       ("", ReplicationCompression.NONE), "1.21-dev settings read back as their defaults")
    checks.ok("create-with-1.21-settings")
    for i in range(3):
        await src.write("sensor", b"tls-%d" % i, timestamp=T0 + i)
    checks.ok("write-source")


run_with_client(exercise, ARGV)
