"""Helpers of the I/O API tests (spec 1.20 §1): v2 requests as the clients send them."""

import json

from reduct_twisted.wire.v2 import parse_request
from tests.integration.helpers import body_of

BUCKET = "bkt"


async def create_bucket(server, name=BUCKET, headers=None):
    resp = await server.http.post(server.api(f"/b/{name}"), headers=headers)
    assert resp.code == 200, await resp.content()
    await resp.content()


def v2_write(records, labels=None):
    """
    Headers and body of a v2 write of ``(entry, ts, data, content_type,
    labels)`` records, as reduct-py writes them: entries in order of first
    appearance, body in (entry index, ts) order, every record in full form.
    """
    entries = []
    for entry, *_ in records:
        if entry not in entries:
            entries.append(entry)
    start = min(r[1] for r in records) if records else 0
    ordered = sorted(records, key=lambda r: (entries.index(r[0]), r[1]))
    headers = {"x-reduct-entries": [",".join(encode(e) for e in entries)],
               "x-reduct-start-ts": [str(start)]}
    if labels is not None:
        headers["x-reduct-labels"] = [",".join(labels)]
    previous = {}
    for entry, ts, data, ctype, lbls in ordered:
        # a delta applies to the entry's previous labels: say what went away
        gone = [k for k in previous.get(entry, {}) if k not in lbls]
        previous[entry] = lbls
        items = ",".join([f'{k}="{v}"' if "," in v else f"{k}={v}" for k, v in lbls.items()]
                         + [f"{k}=" for k in gone])
        value = f"{len(data)},{ctype}" + (f",{items}" if items else "")
        headers[f"x-reduct-{entries.index(entry)}-{ts - start}"] = [value]
    return headers, b"".join(r[2] for r in ordered)


def encode(name: str) -> str:
    from reduct_twisted.wire.v2 import encode_name

    return encode_name(name)


async def post_write(server, records, bucket=BUCKET, headers=None, labels=None):
    hdrs, body = v2_write(records, labels)
    hdrs.update(headers or {})
    resp = await server.http.post(server.api(f"/io/{bucket}/write"), data=body, headers=hdrs)
    await body_of(resp)
    return resp


def errors_of(resp) -> dict:
    return {
        name.decode().lower(): values[-1].decode()
        for name, values in resp.headers.getAllRawHeaders()
        if name.lower().startswith(b"x-reduct-error-")
    }


def header(resp, name: str):
    values = resp.headers.getRawHeaders(name.encode())
    return values[-1] if values else None


async def query(server, body: dict, bucket=BUCKET, token=None):
    headers = {"Authorization": [f"Bearer {token}"]} if token else {}
    resp = await server.http.post(server.api(f"/io/{bucket}/q"),
                                  data=json.dumps(body).encode(), headers=headers)
    return resp, await body_of(resp)


async def read(server, qid, bucket=BUCKET, method="GET", token=None):
    headers = {"x-reduct-query-id": [str(qid)]}
    if token:
        headers["Authorization"] = [f"Bearer {token}"]
    resp = await server.http.request(method, server.api(f"/io/{bucket}/read"), headers=headers)
    return resp, await body_of(resp)


def records_of(resp, body: bytes) -> list:
    """
    The records of a v2 read answer, sliced in (entry index, ts) order (the
    server's body order): ``(entry, ts, data, content_type, labels)``.
    """
    raw = [(n, v) for n, v in resp.headers.getAllRawHeaders()]
    plan = parse_request(raw)
    out, pos = [], 0
    for r in plan.records:
        out.append((r.entry, r.ts, body[pos:pos + r.length], r.content_type, r.labels))
        pos += r.length
    assert pos == len(body)
    return out


async def read_all(server, qid, bucket=BUCKET):
    """Every record of query ``qid``, reading batches until 204 or ``x-reduct-last: true``."""
    found, batches = [], []
    while True:
        resp, body = await read(server, qid, bucket)
        if resp.code == 204:
            return found, batches
        assert resp.code == 200, body
        batch = records_of(resp, body)
        batches.append(batch)
        found += batch
        if header(resp, "x-reduct-last") == b"true":
            return found, batches
