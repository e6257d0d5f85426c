"""
The newest reduct-py (1.21.x) and label values / content types with commas,
quotes and ``=`` in the v1 batch headers (issue #12).

Usage: python reduct_py_labels.py URL [--bucket NAME] [--timeout S]

How this client speaks the protocol (reduct/batch/batch_v1.py):

* ``make_headers_v1`` writes ``<size>,<content type>`` and every label as
  ``name=value`` without quoting the value (it quotes only when the label
  *name* holds ``,`` or ``=``);
* ``_parse_header_as_csv_row`` splits the header value at every comma and
  joins back only fields that *start* with ``"``: a label field
  (``name=...``) never does, so no field it returns holds a comma.

So through write_batch and a batched read (``Bucket.query``) every value
without a comma comes back unchanged, quotes and ``=`` included; values and
content types with commas are stored intact (read singly: labels travel in
``x-reduct-label-*`` headers) but this client cannot read them from a batch.
The daemon quotes them as upstream does, so at least they never turn into
extra labels there.

At API ≥ 1.18 ``Bucket.query`` reads through the I/O API (batch protocol
v2, ``batch_v2.py``) instead; the v1 batched read above is exercised with
the client's own v1 loop (``POST …/q`` + ``GET …/batch?q=`` +
``parse_batched_records_v1``, what ``Bucket.query`` does against 1.17).
In v2 a label value is ``idx=value``, wrapped in ``"…"`` when it holds a
comma, with no escaping (spec 1.20 §1.2): values with commas, ``=`` and
inner quotes now come back intact, but a content type holding a comma
cannot be carried, a value starting with ``"`` loses its quotes (the
server reading the client's write, and the client reading a batch, take
``"quoted"`` for a quoted ``quoted``), and one that starts
with ``"`` without ending in one (``"open``) makes the client's parser
raise ``Invalid batched header`` — limits of the format, upstream's too.
"""

import json

from _harness import eq, run_with_client
from reduct import Batch, RecordBatch
from reduct.batch.batch_v1 import parse_batched_records_v1

T0 = 1_700_000_000_000_000

#: Values this client can write and read back through batches unchanged.
PLAIN = {
    "q": '"quoted"',
    "close": 'close"',
    "inner": 'say "hi"',
    "eq": "x=y",
    "space": "a b  c",
    "uni": "grüße €",
    # last: sent as open="open, it would join a later value ending with "
    "open": '"open',
}
#: Values with commas: intact when read singly.
COMMAS = {"list": "a,b", "json": "[1, 2, 3]", "mixed": 'a",b', "plain": "v"}
CT_COMMA = 'multipart/mixed; boundary="a,b"'
#: A content type with ``,<name>=`` stored by a single-record write.
CT_PARAMS = "application/x; a=1,b=2"


#: Values the v2 batch format carries unchanged (commas now included).
V2_SAFE = {"list": "a,b", "json": "[1, 2, 3]", "eq": "x=y", "inner": 'say "hi"',
           "close": 'close"', "space": "a b  c", "uni": "grüße €"}


async def query_v1(bucket, entry, start, stop):
    """
    What ``Bucket.query`` does against API 1.17: ``POST …/:entry/q``, then
    ``GET …/batch?q=`` parsed by ``parse_batched_records_v1`` until the last.
    """
    http = bucket._http
    body, _ = await http.request_all(
        "POST", f"/b/{bucket.name}/{entry}/q", content_type="application/json",
        data=json.dumps({"query_type": "QUERY", "start": start, "stop": stop}),
    )
    query_id = json.loads(body)["id"]
    found, last = {}, False
    while not last:
        async with http.request("GET", f"/b/{bucket.name}/{entry}/batch?q={query_id}") as resp:
            if resp.status == 204:
                break
            async for record in parse_batched_records_v1(resp, default_entry_name=entry):
                await record.read_all()
                found[record.timestamp] = (record.content_type, record.labels)
                last = record.last
    return found


async def read_one(bucket, entry, ts):
    async with bucket.read(entry, timestamp=ts) as record:
        await record.read_all()
        return record.content_type, record.labels


async def exercise(checks, args, client):
    bucket = await client.create_bucket(args.bucket, exist_ok=True)
    batch = Batch()
    batch.add(T0, b"plain", content_type='text/plain; charset="utf-8"', labels=PLAIN)
    batch.add(T0 + 1, b"commas", content_type=CT_COMMA, labels=COMMAS)
    eq(await bucket.write_batch("e", batch), {}, "errors of the batch")
    await bucket.write("e", b"params", timestamp=T0 + 2, content_type=CT_PARAMS,
                       labels={"k": "v"})

    eq(await read_one(bucket, "e", T0), ('text/plain; charset="utf-8"', PLAIN), "record 0")
    eq(await read_one(bucket, "e", T0 + 1), (CT_COMMA, COMMAS), "record 1")
    eq(await read_one(bucket, "e", T0 + 2), (CT_PARAMS, {"k": "v"}), "record 2")
    checks.ok("write-batch-read-singly")

    found = await query_v1(bucket, "e", T0, T0 + 3)
    eq(sorted(found), [T0, T0 + 1, T0 + 2], "records of the batched read")
    eq(found[T0], ('text/plain; charset="utf-8"', PLAIN), "record 0 from a batch")
    # Values with commas come back mangled by the client's own parser, but
    # no label appears that was not written and the others are intact.
    ctype, labels = found[T0 + 1]
    eq(sorted(labels), sorted(COMMAS), "label names of record 1 from a batch")
    eq(labels["plain"], "v", "plain label of record 1 from a batch")
    eq(found[T0 + 2][1], {"k": "v"}, "labels of record 2 from a batch")
    checks.fact("batched_commas", {"content_type": ctype, "labels": labels,
                                   "params_content_type": found[T0 + 2][0]})
    checks.ok("batched-read-no-extra-labels")

    # Batch protocol v2 (write_record_batch, Bucket.query at API 1.18).
    batch = RecordBatch()
    batch.add("v2", T0, b"safe", content_type='text/plain; charset="utf-8"', labels=V2_SAFE)
    batch.add("v2", T0 + 1, b"quoted", content_type="text/plain",
              labels={**V2_SAFE, "q": '"quoted"', "list": "c,d"})
    eq(await bucket.write_record_batch(batch), {}, "errors of the v2 batch")
    eq(await read_one(bucket, "v2", T0), ('text/plain; charset="utf-8"', V2_SAFE), "v2 record 0")
    # the value the format cannot carry: its quotes are taken as quoting
    # (already by the server reading the write batch, as upstream)
    eq(await read_one(bucket, "v2", T0 + 1),
       ("text/plain", {**V2_SAFE, "q": "quoted", "list": "c,d"}), "v2 record 1 read singly")
    found = {}
    async for record in bucket.query("v2"):
        await record.read_all()
        found[record.timestamp] = (record.content_type, record.labels)
    eq(found, {
        T0: ('text/plain; charset="utf-8"', V2_SAFE),
        T0 + 1: ("text/plain", {**V2_SAFE, "q": "quoted", "list": "c,d"}),
    }, "a v2 batched read")
    checks.ok("v2-batched-read")

    await client.get_bucket(args.bucket)
    await bucket.remove()
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run_with_client(exercise)
