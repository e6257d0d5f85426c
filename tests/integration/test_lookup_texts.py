"""
The record lookup texts of API 1.18 (spec 1.20 §5.5, §12) over real
sockets, on plain and nested entries: a read by ``ts`` names the block it
looked in (the greatest block id at or before ``ts``) or, without one, the
entry; removals and label updates, single and batched, always name the
entry; an empty entry's latest read is record 0 of the entry.
"""

import pytest_twisted

from tests.integration.helpers import assert_error, body_of

B = "texts"


async def _write(server, entry, ts, data=b"x"):
    resp = await server.http.post(server.api(f"/b/{B}/{entry}"), params={"ts": str(ts)},
                                  data=data)
    assert resp.code == 200, await body_of(resp)
    await body_of(resp)


def _errors(resp):
    return {name.decode().lower(): values[-1].decode()
            for name, values in resp.headers.getAllRawHeaders()
            if name.lower().startswith(b"x-reduct-error-")}


@pytest_twisted.ensureDeferred
async def test_lookup_texts(server):
    server.engine.create_bucket(B, None)
    for entry in ("entry", "a/b/c"):
        for ts in (1000, 2000):
            await _write(server, entry, ts)
        where = f"{B}/{entry}"
        get = server.api(f"/b/{B}/{entry}")
        await assert_error(await server.http.get(get, params={"ts": "1500"}), 404,
                           f"Record 1500 not found in block {where}/1000")
        await assert_error(await server.http.head(get, params={"ts": "5"}), 404,
                           f"Record 5 not found in entry {where}")
        await assert_error(await server.http.delete(get, params={"ts": "1500"}), 404,
                           f"Record 1500 not found in entry {where}")
        await assert_error(await server.http.patch(get, params={"ts": "1500"},
                                                   headers={"x-reduct-label-k": "v"}), 404,
                           f"Record 1500 not found in entry {where}")
        for method in ("PATCH", "DELETE"):  # (the DELETE removes 1000)
            resp = await server.http.request(method, server.api(f"/b/{B}/{entry}/batch"),
                                             headers={"x-reduct-time-1000": "0,",
                                                      "x-reduct-time-1500": "0,,k=v"})
            await body_of(resp)
            assert resp.code == 200
            assert _errors(resp) == {
                "x-reduct-error-1500": f"404,Record 1500 not found in entry {where}"}
    # a parent made by the nested write holds no record: its latest is record 0
    await assert_error(await server.http.get(server.api(f"/b/{B}/a/b")), 404,
                       f"Record 0 not found in entry {B}/a/b")
