"""
``PATCH /api/v1/io/:bucket/update`` and ``DELETE /api/v1/io/:bucket/remove``
(spec 1.20 §1.6, §1.7) against the real daemon: the upstream examples,
cumulative label changes, the per-record 404 texts, the check order, the
``$meta`` refusal, empty batches and the Write policy.
"""

import json

import pytest_twisted

from tests.integration.conftest import start_server
from tests.integration.helpers import assert_error, body_of
from tests.integration.io_helpers import BUCKET, create_bucket, errors_of, header, post_write

INIT = "init-token-for-io-edits"


async def send(server, method, path, headers, token=None):
    if token:
        headers = dict(headers, Authorization=[f"Bearer {token}"])
    resp = await server.http.request(method, server.api(f"/io/{BUCKET}/{path}"), headers=headers)
    await body_of(resp)
    return resp


async def labels(server, entry, ts):
    resp = await server.http.get(server.api(f"/b/{BUCKET}/{entry}?ts={ts}"))
    await body_of(resp)
    if resp.code != 200:
        return resp.code
    return {
        name.decode().lower()[len("x-reduct-label-"):]: values[-1].decode()
        for name, values in resp.headers.getAllRawHeaders()
        if name.lower().startswith(b"x-reduct-label-")
    }


def h(**values):
    return {k.replace("_", "-"): [v] for k, v in values.items()}


@pytest_twisted.ensureDeferred
async def test_update_with_label_indexes_and_removal(server):
    """Upstream io/update_test."""
    await create_bucket(server)
    await post_write(server, [("e0", 1000, b"a", "t", {"a": "x", "b": "y"}),
                              ("e1", 1010, b"b", "t", {"a": "x", "b": "y"})])
    headers = {"x-reduct-entries": ["e0,e1"], "x-reduct-start-ts": ["1000"],
               "x-reduct-labels": ["a,b"], "x-reduct-0-0": ["0,,0=one,1=,c=3"],
               "x-reduct-1-10": ["0,,a=two"]}
    resp = await send(server, "PATCH", "update", headers)
    assert resp.code == 200 and errors_of(resp) == {}
    assert (header(resp, "x-reduct-entries"), header(resp, "x-reduct-start-ts")) == (
        b"e0,e1", b"1000")
    assert await labels(server, "e0", 1000) == {"a": "one", "c": "3"}
    assert await labels(server, "e1", 1010) == {"a": "two", "b": "y"}


@pytest_twisted.ensureDeferred
async def test_update_accumulates_per_entry(server):
    """[1.18.5]: the n-th record of an entry gets every change stated for records 1..n."""
    await create_bucket(server)
    await post_write(server, [("e", ts, b"x", "t", {"k": "0", "keep": "1"}) for ts in (1, 2, 3)])
    headers = {"x-reduct-entries": ["e"], "x-reduct-start-ts": ["1"],
               "x-reduct-0-0": ["0,,a=1"], "x-reduct-0-1": ["0,,k="], "x-reduct-0-2": ["0"]}
    resp = await send(server, "PATCH", "update", headers)
    assert resp.code == 200 and errors_of(resp) == {}
    assert await labels(server, "e", 1) == {"k": "0", "keep": "1", "a": "1"}
    assert await labels(server, "e", 2) == {"keep": "1", "a": "1"}
    assert await labels(server, "e", 3) == {"keep": "1", "a": "1"}


@pytest_twisted.ensureDeferred
async def test_update_404s_per_record(server):
    await create_bucket(server)
    await post_write(server, [("e", 1, b"x", "t", {})])
    headers = {"x-reduct-entries": ["e,missing"], "x-reduct-start-ts": ["1"],
               "x-reduct-0-0": ["0,,a=1"], "x-reduct-0-1": ["0,,a=1"],
               "x-reduct-1-0": ["0,,a=1"]}
    resp = await send(server, "PATCH", "update", headers)
    assert resp.code == 200
    assert errors_of(resp) == {
        "x-reduct-error-0-1": f"404,Record 2 not found in entry {BUCKET}/e",
        "x-reduct-error-1-0": f"404,Entry 'missing' not found in bucket '{BUCKET}'",
    }
    assert await labels(server, "e", 1) == {"a": "1"}
    resp = await server.http.patch(server.api("/io/nope/update"), headers=headers)
    await assert_error(resp, 404, "Bucket 'nope' is not found")
    # a first record without the comma form
    resp = await send(server, "PATCH", "update",
                      {"x-reduct-entries": ["e"], "x-reduct-start-ts": ["1"],
                       "x-reduct-0-0": ["0"]})
    await assert_error(resp, 422, "Content-type and labels must be provided for the first "
                                  "record of an entry")
    # empty batch (what remove_attachments sends when nothing matched)
    resp = await send(server, "PATCH", "update",
                      {"x-reduct-entries": [""], "x-reduct-start-ts": ["0"]})
    assert resp.code == 200


@pytest_twisted.ensureDeferred
async def test_remove_across_entries_with_per_record_errors(server):
    """Upstream io/remove_test: x-reduct-error-1-2: 404,Record 1002 not found in entry …"""
    await create_bucket(server)
    await post_write(server, [("entry_0", 1000, b"a", "t", {}), ("entry_0", 1001, b"b", "t", {}),
                              ("entry_1", 1000, b"c", "t", {})])
    headers = {"x-reduct-entries": ["entry_0,entry_1,gone"], "x-reduct-start-ts": ["1000"],
               "x-reduct-0-0": [""], "x-reduct-0-1": ["0,"], "x-reduct-1-0": [""],
               "x-reduct-1-2": [""], "x-reduct-2-0": [""]}
    resp = await send(server, "DELETE", "remove", headers)
    assert resp.code == 200
    assert errors_of(resp) == {
        "x-reduct-error-1-2": f"404,Record 1002 not found in entry {BUCKET}/entry_1",
        "x-reduct-error-2-0": f"404,Entry 'gone' not found in bucket '{BUCKET}'",
    }
    for entry, ts in (("entry_0", 1000), ("entry_0", 1001), ("entry_1", 1000)):
        assert await labels(server, entry, ts) == 404


@pytest_twisted.ensureDeferred
async def test_remove_check_order(server):
    """§1.7: start-ts, entries, $meta, record headers, bucket."""
    await create_bucket(server)
    await post_write(server, [("e", 1, b"x", "t", {})])
    cases = [
        ({"x-reduct-entries": ["a,,b"], "x-reduct-1-x": [""]}, "x-reduct-start-ts header is required"),
        ({"x-reduct-entries": ["a,,b"], "x-reduct-start-ts": ["0"]},
         "x-reduct-entries header must not contain empty entry names"),
        ({"x-reduct-entries": ["e,$meta"], "x-reduct-start-ts": ["0"], "x-reduct-9-0": [""]},
         "Can't delete records from system entry '$meta'; use label update with remove=true"),
        ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["0"], "x-reduct-9-0": [""]},
         "Invalid header 'x-reduct-9-0': entry index out of range"),
    ]
    for headers, message in cases:
        resp = await server.http.delete(server.api("/io/nope/remove"), headers=headers)
        await assert_error(resp, 422, message)
    resp = await server.http.delete(server.api("/io/nope/remove"),
                                    headers=h(x_reduct_entries="e", x_reduct_start_ts="1",
                                              x_reduct_0_0=""))
    await assert_error(resp, 404, "Bucket 'nope' is not found")
    assert await labels(server, "e", 1) == {}


@pytest_twisted.ensureDeferred
async def test_write_policy(tmp_path):
    server, stop = await start_server(tmp_path / "data", api_token=INIT)
    try:
        auth = {"Authorization": [f"Bearer {INIT}"]}
        await create_bucket(server, headers=auth)
        tokens = {}
        for name, perms in (("reader", {"read": [BUCKET]}), ("writer", {"write": [BUCKET]})):
            resp = await server.http.post(server.api(f"/tokens/{name}"), headers=auth,
                                          data=json.dumps(perms).encode())
            tokens[name] = json.loads(await resp.content())["value"]
        await post_write(server, [("e", 1, b"x", "t", {})], headers=auth)
        update = {"x-reduct-entries": ["e"], "x-reduct-start-ts": ["1"],
                  "x-reduct-0-0": ["0,,a=1"]}
        remove = {"x-reduct-entries": ["e"], "x-reduct-start-ts": ["1"], "x-reduct-0-0": [""]}
        for method, path, headers in (("PATCH", "update", update), ("DELETE", "remove", remove)):
            resp = await send(server, method, path, headers, token=tokens["reader"])
            await assert_error(resp, 403, f"Token 'reader' doesn't have write access to "
                                          f"bucket '{BUCKET}'")
            resp = await send(server, method, path, headers)
            await assert_error(resp, 401, "No bearer token in request header")
        resp = await send(server, "PATCH", "update", update, token=tokens["writer"])
        assert resp.code == 200 and errors_of(resp) == {}
        resp = await send(server, "DELETE", "remove", remove, token=tokens["writer"])
        assert resp.code == 200 and errors_of(resp) == {}
    finally:
        await stop()


@pytest_twisted.ensureDeferred
async def test_refused_update_and_removal_change_nothing(server):
    """A 422 anywhere in the headers: no record of the request is touched."""
    await create_bucket(server)
    await post_write(server, [("e", 1, b"x", "t", {"a": "1"}), ("f", 2, b"y", "t", {})])
    update = {"x-reduct-entries": ["e,f"], "x-reduct-start-ts": ["1"],
              "x-reduct-labels": ["a"], "x-reduct-0-0": ["0,,0=changed"],
              "x-reduct-1-1": ["0,,3=oops"]}
    resp = await send(server, "PATCH", "update", update)
    await assert_error(resp, 422, "Label index '3' is out of range")
    remove = {"x-reduct-entries": ["e,f"], "x-reduct-start-ts": ["1"], "x-reduct-0-0": [""],
              "x-reduct-1-x1": [""], "x-reduct-f-1": [""]}
    resp = await send(server, "DELETE", "remove", remove)
    await assert_error(resp, 422, "Invalid header 'x-reduct-f-1': entry index must be a number")
    assert await labels(server, "e", 1) == {"a": "1"}
    assert await labels(server, "f", 2) == {}
