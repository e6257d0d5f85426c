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
"""

from _harness import eq, run_with_client
from reduct import Batch

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

    found = {}
    async for record in bucket.query("e", start=T0, stop=T0 + 3):
        await record.read_all()
        found[record.timestamp] = (record.content_type, record.labels)
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

    await client.get_bucket(args.bucket)
    await bucket.remove()
    checks.ok("remove-bucket")


if __name__ == "__main__":
    run_with_client(exercise)
