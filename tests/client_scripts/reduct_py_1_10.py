"""
reduct-py 1.10.x (the middle client generation) against a running daemon.

Usage: python reduct_py_1_10.py URL [--bucket NAME] [--timeout S] [--token INIT_TOKEN]

Runs inside a venv with ``reduct-py==1.10.0`` (see ``tests/clients.py``).
Signatures follow that release's ``reduct/client.py``, ``bucket.py``,
``record.py`` and ``http.py``:

- it keeps the first ``x-reduct-api`` it sees and parses it into
  ``(major, minor)`` with ``split(".")`` (exactly two parts, spec §5.1);
  with minor ≥ 5 its queries go ``GET …/q?…`` (with ``include-*``,
  ``exclude-*``, ``each_n``, ``each_s``, ``limit``, ``ttl``,
  ``continuous``) and then ``GET|HEAD …/batch?q=ID`` until
  ``x-reduct-last: true`` or 204, found with a case-sensitive
  ``startswith("x-reduct-time-")``;
- it has ``write_batch`` (``POST …/batch``, per-record errors from
  ``x-reduct-error-<ts>``) and ``remove_entry`` (``DELETE …/:entry``), but
  no label updates, record removal or rename (those came with 1.11/1.12);
- its ``QuotaType`` knows only ``NONE`` and ``FIFO``: it cannot create a
  ``HARD`` bucket, but it writes into one (made here through its own HTTP
  layer, as another client would) and sees the server's 400;
- there is no ``alive()``: ``HEAD``/``GET /alive`` go through its HTTP layer.

With ``--token`` every call carries the init token and the token section
manages real tokens; without it the section checks the token API of a
daemon without authentication (spec §2.4.6).
"""

import contextlib
import re

from _harness import check_subscribe, eq, expect_error, run, series_helpers
from pydantic import ValidationError
from reduct import Batch, BucketSettings, Client, Permissions, QuotaType, ReductError

T0 = 1_650_000_000_000_000
STEP = 1000  # µs between the records of the query entry


def ts(i: int) -> int:
    return T0 + i * STEP


async def read_record(bucket, entry, timestamp=None, head=False):
    async with bucket.read(entry, timestamp=timestamp, head=head) as rec:
        return rec, await rec.read_all()


collect, indices = series_helpers(T0, STEP)


class RequestLog:
    """Counts the requests the client's HTTP layer makes, by method and path."""

    def __init__(self, http):
        self.http = http
        self.calls = []
        self._orig = http.request

    def __enter__(self):
        orig, calls = self._orig, self.calls

        def request(method, path="", **kwargs):
            calls.append((method, path.split("?")[0]))
            return orig(method, path, **kwargs)

        self.http.request = request
        return self

    def __exit__(self, *exc):
        self.http.request = self._orig


async def main(checks, args):
    async with Client(args.url, api_token=args.token, timeout=30) as client:
        await exercise(checks, args, client)


async def exercise(checks, args, client):
    name = args.bucket
    http = client._http

    # -- server -------------------------------------------------------------
    info = await client.info()
    if not re.fullmatch(r"\d+\.\d+\.\d+", info.version):
        raise AssertionError(f"server version {info.version!r} is not x.y.z")
    eq(info.license, None, "license")
    eq(info.defaults.bucket.max_block_size, 64_000_000, "default max_block_size")
    eq(info.defaults.bucket.quota_type, QuotaType.NONE, "default quota_type")
    eq(info.defaults.bucket.quota_size, 0, "default quota_size")
    # kept as the string of the first response, parsed into two parts
    eq(http._api_version, "1.20", "x-reduct-api as stored by the client")
    eq(http.api_version, (1, 20), "x-reduct-api as parsed by the client")
    body, headers = await http.request_all("HEAD", "/alive")
    eq((body, headers["x-reduct-api"]), (b"", "1.20"), "HEAD /alive")
    body, _ = await http.request_all("GET", "/alive")
    eq(body, b"", "GET /alive")
    listed = await client.list()
    eq(name in {b.name for b in listed}, False, "bucket listed before it exists")
    buckets_before = info.bucket_count
    checks.fact("server_version", info.version)
    checks.ok("server-info-list-alive")

    # -- buckets ------------------------------------------------------------
    settings = BucketSettings(
        max_block_size=1_000_000,
        max_block_records=64,
        quota_type=QuotaType.FIFO,
        quota_size=500_000_000,
    )
    bucket = await client.create_bucket(name, settings)
    eq(await bucket.get_settings(), settings, "settings after create")
    await expect_error(
        client.create_bucket(name, settings), ReductError, 409,
        f"Bucket '{name}' already exists",
    )
    again = await client.create_bucket(name, exist_ok=True)
    eq(again.name, name, "exist_ok bucket")
    checks.ok("create-bucket-settings-exist-ok")

    bucket = await client.get_bucket(name)
    full = await bucket.get_full_info()
    eq((full.info.name, full.info.entry_count, full.info.size, full.info.is_provisioned),
       (name, 0, 0, False), "empty bucket info")
    eq((full.settings, full.entries), (settings, []), "settings and entries of a new bucket")
    # set_settings sends explicit nulls for the unset fields: only those set change
    await bucket.set_settings(BucketSettings(max_block_records=32, quota_type=QuotaType.NONE))
    eq(
        await bucket.get_settings(),
        BucketSettings(max_block_size=1_000_000, max_block_records=32,
                       quota_type=QuotaType.NONE, quota_size=500_000_000),
        "settings after a partial update",
    )
    await bucket.set_settings(BucketSettings(quota_type=QuotaType.FIFO))
    eq((await bucket.get_settings()).quota_type, QuotaType.FIFO, "quota type back to FIFO")
    checks.ok("get-bucket-update-settings")

    # -- single records ---------------------------------------------------------
    records = {}
    for i in range(5):
        stamp = T0 + 10_000_000 + i
        labels = {"camera": f"cam-{i % 2}", "n": str(i)}
        ctype = "image/png" if i % 2 else "text/plain; charset=utf-8"
        data = (b"%d" % i) * (50 + i)
        await bucket.write("single", data, timestamp=stamp, labels=labels, content_type=ctype)
        records[stamp] = (data, labels, ctype)
    for stamp, (data, labels, ctype) in records.items():
        rec, body = await read_record(bucket, "single", stamp)
        eq(body, data, f"content of {stamp}")
        eq((rec.timestamp, rec.size, rec.labels, rec.content_type),
           (stamp, len(data), labels, ctype), f"metadata of {stamp}")
        head, empty = await read_record(bucket, "single", stamp, head=True)
        eq((empty, head.size, head.labels, head.content_type),
           (b"", len(data), labels, ctype), f"HEAD of {stamp}")
    latest = max(records)
    rec, body = await read_record(bucket, "single")
    eq((rec.timestamp, body), (latest, records[latest][0]), "latest record")

    async def chunks():
        for part in (b"streamed ", b"in ", b"three parts"):
            yield part

    streamed_ts = T0 + 10_000_100
    await bucket.write("single", chunks(), timestamp=streamed_ts, content_length=23,
                       labels={"how": "iterator"})
    rec, body = await read_record(bucket, "single", streamed_ts)
    eq((body, rec.labels, rec.content_type),
       (b"streamed in three parts", {"how": "iterator"}, "application/octet-stream"),
       "record written from an async iterator")
    checks.ok("write-read-labels-content-type")

    # -- batched write -------------------------------------------------------------
    batch = Batch()
    expected = {}
    specs = [
        (3, b"third", "text/csv", {"kind": "csv"}),
        (0, b"", None, None),
        (2, bytes(range(256)) * 300, "application/x-bin", {"kind": "bin", "size": "big"}),
        (1, b"first", None, {"kind": "text"}),
    ]
    for i, data, ctype, labels in specs:  # added out of order on purpose
        stamp = T0 + 20_000_000 + i
        batch.add(stamp, data, content_type=ctype, labels=labels)
        expected[stamp] = (data, ctype or "application/octet-stream", labels or {})
    eq(await bucket.write_batch("batched", batch), {}, "errors of a clean batch")
    for stamp, (data, ctype, labels) in expected.items():
        rec, body = await read_record(bucket, "batched", stamp)
        eq((body, rec.size, rec.content_type, rec.labels),
           (data, len(data), ctype, labels), f"batched record {stamp}")
    dup = T0 + 20_000_001
    again = Batch()
    again.add(dup, b"must not replace")
    again.add(T0 + 20_000_009, b"nine")
    errors = await bucket.write_batch("batched", again)
    eq(errors, {dup: ReductError(409, f"A record with timestamp {dup} already exists")},
       "per-record errors of a batch")
    eq(str(errors[dup]), f"Status 409: A record with timestamp {dup} already exists",
       "per-record error text")
    _, body = await read_record(bucket, "batched", dup)
    eq(body, b"first", "the duplicate kept its content")
    _, body = await read_record(bucket, "batched", T0 + 20_000_009)
    eq(body, b"nine", "the rest of the batch is stored")
    checks.ok("write-batch-per-record-errors")

    # -- queries: GET …/q parameters, read in batches -----------------------------------
    seed = Batch()
    for i in range(40):
        labels = {"i": str(i), "kind": "odd" if i % 2 else "even"}
        if i % 5 == 0:
            labels["five"] = "yes"
        seed.add(ts(i), b"record-%d" % i, labels=labels)
    eq(await bucket.write_batch("q", seed), {}, "errors of the seed batch")

    found = await collect(bucket.query("q", start=ts(0), stop=ts(40)))
    eq(indices(found), list(range(40)), "a plain range")
    eq(found[7][1:], (b"record-7", {"i": "7", "kind": "odd"}), "content and labels")
    eq(indices(await collect(bucket.query("q", start=ts(10), stop=ts(13)))), [10, 11, 12],
       "[start, stop)")
    eq(indices(await collect(bucket.query("q"))), list(range(40)), "default start and stop")
    checks.ok("query-range")

    eq(indices(await collect(bucket.query("q", include={"kind": "even", "five": "yes"}))),
       [0, 10, 20, 30], "include: all pairs")
    eq(indices(await collect(bucket.query("q", stop=ts(12), exclude={"kind": "even"}))),
       [1, 3, 5, 7, 9, 11], "exclude one pair")
    # exclude drops a record only when it matches all the pairs
    eq(indices(await collect(bucket.query("q", stop=ts(12),
                                          exclude={"kind": "even", "five": "yes"}))),
       [1, 2, 3, 4, 5, 6, 7, 8, 9, 11], "exclude two pairs")
    eq(await collect(bucket.query("q", include={"kind": "none"})), [], "include nothing")
    checks.ok("query-include-exclude")

    eq(indices(await collect(bucket.query("q", each_n=7))), [0, 7, 14, 21, 28, 35],
       "each_n keeps the first")
    eq(indices(await collect(bucket.query("q", stop=ts(10), each_s=0.003))), [0, 3, 6, 9],
       "each_s keeps the first")
    eq(indices(await collect(bucket.query("q", limit=4))), [0, 1, 2, 3], "limit")
    eq(indices(await collect(bucket.query("q", include={"kind": "odd"}, each_n=2, limit=3))),
       [1, 5, 9], "include, then each_n, then limit")
    checks.ok("query-each-n-each-s-limit")

    many = Batch()
    for i in range(200):
        many.add(ts(1000 + i), bytes([i % 256]) * (i * 37 % 1500), labels={"i": str(i)})
    eq(await bucket.write_batch("many", many), {}, "errors of 200 records")
    with RequestLog(http) as log:
        found = await collect(bucket.query("many"))
    eq([(i, data, labels) for i, data, labels in found],
       [(1000 + i, bytes([i % 256]) * (i * 37 % 1500), {"i": str(i)}) for i in range(200)],
       "200 records read in batches")
    eq(log.calls, [("GET", f"/b/{name}/many/q")] + [("GET", f"/b/{name}/many/batch")] * 3,
       "one query, then 85 + 85 + 30 records")
    with RequestLog(http) as log:
        heads = []
        async with contextlib.aclosing(bucket.query("many", head=True)) as it:
            async for record in it:
                heads.append((record.timestamp, record.size, await record.read_all()))
    eq(heads, [(ts(1000 + i), i * 37 % 1500, b"") for i in range(200)], "HEAD batches")
    eq([m for m, _ in log.calls], ["GET", "HEAD", "HEAD", "HEAD"], "methods of a head query")
    checks.ok("batched-read-via-query")

    await check_subscribe(bucket, ts, STEP, "0", "1", 0.3, include={"keep": "1"})
    checks.ok("subscribe-continuous")

    # -- entries and statistics ------------------------------------------------------
    entries = {e.name: e for e in await bucket.get_entry_list()}
    eq(sorted(entries), ["batched", "live", "many", "q", "single"], "entry names")
    eq((entries["q"].record_count, entries["q"].oldest_record, entries["q"].latest_record),
       (40, ts(0), ts(39)), "q statistics")
    eq(entries["batched"].record_count, 5, "batched record_count")
    eq(entries["single"].record_count, 6, "single record_count")
    listed = {b.name: b for b in await client.list()}
    eq(listed[name].entry_count, 5, "entry_count in list")
    if not args.shared_server:
        eq((await client.info()).bucket_count, buckets_before + 1, "bucket_count")
    checks.ok("entry-list-and-stats")

    await bucket.remove_entry("live")
    eq(sorted(e.name for e in await bucket.get_entry_list()),
       ["batched", "many", "q", "single"], "entries after remove_entry")
    await expect_error(read_record(bucket, "live", ts(100)), ReductError, 404,
                       f"Entry 'live' not found in bucket '{name}'")
    await expect_error(bucket.remove_entry("live"), ReductError, 404,
                       f"Entry 'live' not found in bucket '{name}'")
    # the name can be used again
    await bucket.write("live", b"again", timestamp=ts(100))
    _, body = await read_record(bucket, "live", ts(100))
    eq(body, b"again", "an entry written again after its removal")
    checks.ok("remove-entry")

    # -- a HARD quota: made by someone else, met by this client ---------------------------
    hard = name + "-hard"
    await http.request_all(
        "POST", f"/b/{hard}", data='{"quota_type": "HARD", "quota_size": 5000}'
    )
    hard_bucket = await client.get_bucket(hard)
    for call in (hard_bucket.get_settings, hard_bucket.info):
        try:
            await call()
        except ValidationError as exc:  # this client's QuotaType has no HARD
            if "input_value='HARD'" not in str(exc):
                raise AssertionError(f"unexpected validation error {exc}") from None
        else:
            raise AssertionError(f"reduct-py 1.10 parsed a HARD quota type ({call.__name__})")
    eq([q.value for q in QuotaType], ["NONE", "FIFO"], "quota types of this client")
    stored = 0
    for i in range(10):
        try:
            await hard_bucket.write("e", b"h" * 1000, timestamp=T0 + i)
        except ReductError as err:
            eq((err.status_code, err.message), (400, f"Quota of '{hard}' exceeded"),
               "HARD quota error")
            break
        stored += 1
    else:
        raise AssertionError("10 000 bytes written into a HARD quota of 5000")
    if not 1 <= stored < 5:
        raise AssertionError(f"{stored} records of 1000 bytes fit into 5000 bytes")
    # info() parses the settings too; the list has only the statistics
    hard_info = {b.name: b for b in await client.list()}[hard]
    if not hard_info.size <= 5000 < hard_info.size + 1000:
        raise AssertionError(f"bucket size {hard_info.size} after the refused write")
    refused = Batch()
    refused.add(T0 + 100, b"h" * 1000)
    refused.add(T0 + 101, b"")
    eq(await hard_bucket.write_batch("e", refused),
       {T0 + 100: ReductError(400, f"Quota of '{hard}' exceeded")}, "HARD quota in a batch")
    for i in range(stored):  # nothing was deleted to make room
        _, body = await read_record(hard_bucket, "e", T0 + i)
        eq(body, b"h" * 1000, f"record {i} kept under the HARD quota")
    await hard_bucket.remove()
    checks.fact("hard_quota_records", stored)
    checks.ok("hard-quota-write-refused")

    # -- errors with the server's texts -----------------------------------------------------
    missing = name + "-missing"
    await expect_error(client.get_bucket(missing), ReductError, 404,
                       f"Bucket '{missing}' is not found")
    await expect_error(read_record(bucket, "single", T0 + 1), ReductError, 404,
                       f"Record {T0 + 1} not found in entry {name}/single")  # API 1.18
    await expect_error(read_record(bucket, "nope"), ReductError, 404,
                       f"Entry 'nope' not found in bucket '{name}'")
    await expect_error(collect(bucket.query("nope")), ReductError, 404,
                       f"Entry 'nope' not found in bucket '{name}'")
    await expect_error(bucket.write("single", b"x", timestamp=latest), ReductError, 409,
                       f"A record with timestamp {latest} already exists")
    await expect_error(client.create_bucket("bad name!"), ReductError, 422,
                       "Bucket or entry name can contain only letters, digests and [-,_] "
                       "symbols")
    await expect_error(collect(bucket.query("q", start=ts(20), stop=ts(10))), ReductError,
                       422, "Start time must be before stop time")
    await expect_error(collect(bucket.query("q", each_n=0)), ReductError, 422,
                       "'each_n' must be greater than 0")
    await expect_error(collect(bucket.query("q", each_s=0)), ReductError, 422,
                       "Time must be greater than 0 seconds")
    gone = await client.get_bucket(name)
    gone.name = missing
    # Since API 1.18 (spec 1.20 §5.8) a missing bucket fails each record of
    # a batch, not the request: the client hands back one error per record.
    eq(await gone.write_batch("e", batch),
       {stamp: ReductError(404, f"Bucket '{missing}' is not found") for stamp in expected},
       "per-record errors of a batch to a missing bucket")
    checks.ok("errors-with-server-text")

    # -- tokens ----------------------------------------------------------------------------
    if args.token:
        await exercise_tokens(args, client, name)
        checks.ok("tokens-create-get-list-remove")
    else:
        me = await client.me()
        eq((me.name, me.permissions.full_access), ("AUTHENTICATION-DISABLED", True),
           "me() without authentication")
        eq(await client.get_token_list(), [], "token list without authentication")
        await expect_error(
            client.create_token("t", Permissions(full_access=True, read=[], write=[])),
            ReductError, 400, "Authentication is disabled",
        )
        await expect_error(client.get_token("t"), ReductError, 400,
                           "Authentication is disabled")
        await client.remove_token("t")  # a no-op
        checks.ok("tokens-auth-disabled")

    await bucket.remove()
    await expect_error(client.get_bucket(name), ReductError, 404, f"Bucket '{name}' is not found")
    await expect_error(bucket.remove(), ReductError, 404, f"Bucket '{name}' is not found")
    eq(name in {b.name for b in await client.list()}, False, "removed bucket listed")
    checks.ok("remove-bucket")


async def exercise_tokens(args, client, name):
    me = await client.me()
    eq((me.name, me.is_provisioned, me.permissions.full_access), ("init-token", True, True),
       "me() with the init token")
    await expect_error(Client(args.url, timeout=30).info(), ReductError, 401,
                       "No bearer token in request header")
    await expect_error(Client(args.url, api_token="wrong", timeout=30).info(), ReductError,
                       401, "Invalid token")

    reader_name = f"{name}-reader"
    value = await client.create_token(
        reader_name, Permissions(full_access=False, read=[name], write=[])
    )
    if not re.fullmatch(re.escape(reader_name) + r"-[0-9a-f]{32}", value):
        raise AssertionError(f"token value {value!r} has the wrong shape")
    await expect_error(
        client.create_token(reader_name, Permissions(full_access=False, read=[], write=[])),
        ReductError, 409, f"Token '{reader_name}' already exists",
    )
    token = await client.get_token(reader_name)
    eq((token.name, token.is_provisioned, token.permissions.full_access,
        token.permissions.read, token.permissions.write),
       (reader_name, False, False, [name], []), "get_token")
    listed = {t.name: t for t in await client.get_token_list()}
    eq(sorted(listed), sorted(set(listed) | {"init-token", reader_name}), "tokens listed")
    eq(listed[reader_name].created_at, token.created_at, "created_at of list and get")
    eq(listed["init-token"].is_provisioned, True, "init-token provisioned in the list")

    async with Client(args.url, api_token=value, timeout=30) as reader:
        readable = await reader.get_bucket(name)
        _, body = await read_record(readable, "batched", T0 + 20_000_009)
        eq(body, b"nine", "the read-only token reads")
        found = await collect(readable.query("q", limit=2))
        eq(indices(found), [0, 1], "the read-only token queries")
        await expect_error(
            readable.write("x", b"no", timestamp=T0), ReductError, 403,
            f"Token '{reader_name}' doesn't have write access to bucket '{name}'",
        )
        await expect_error(
            readable.remove_entry("q"), ReductError, 403,
            f"Token '{reader_name}' doesn't have write access to bucket '{name}'",
        )
        await expect_error(reader.get_token_list(), ReductError, 403,
                           f"Token '{reader_name}' doesn't have full access")

    await client.remove_token(reader_name)
    await expect_error(client.get_token(reader_name), ReductError, 404,
                       f"Token '{reader_name}' doesn't exist")
    await expect_error(client.remove_token("init-token"), ReductError, 409,
                       "Can't remove provisioned token 'init-token'")


if __name__ == "__main__":
    run(main)
