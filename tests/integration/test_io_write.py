"""
``POST /api/v1/io/:bucket/write`` (spec 1.20 §1.3) against the real daemon:
body order, per-record errors keyed by the request's index and delta, the
echo headers, content-length rules, chunked bodies with
``x-reduct-content-length``, cut bodies and refused requests that change
nothing.
"""

import pytest
import pytest_twisted

from reduct_twisted.storage import SMALL_RECORD_MAX
from reduct_twisted.storage.settings import ENTRY_NAME_ERROR
from tests.integration.conftest import start_server
from tests.integration.helpers import (
    assert_error,
    body_of,
    labels_of,
    port_of,
    raw_request,
    read_single,
)
from tests.integration.io_helpers import (
    BUCKET,
    create_bucket,
    errors_of,
    header,
    post_write,
    v2_write,
)


@pytest_twisted.ensureDeferred
async def test_body_order_is_entry_then_time(server):
    """Upstream test_write_batched_orders_by_entry_then_time."""
    await create_bucket(server)
    headers = {"x-reduct-entries": ["e0,e1"], "x-reduct-start-ts": ["1000"],
               "x-reduct-0-10": ["2,text/plain"], "x-reduct-1-0": ["3,text/plain"]}
    resp = await server.http.post(server.api(f"/io/{BUCKET}/write"), data=b"AABBB",
                                  headers=headers)
    assert resp.code == 200, await resp.content()
    assert await body_of(resp) == b""
    assert header(resp, "x-reduct-entries") == b"e0,e1"
    assert header(resp, "x-reduct-start-ts") == b"1000"
    assert errors_of(resp) == {}
    resp, data = await read_single(server, "e0", 1010)
    assert (resp.code, data, header(resp, "content-type")) == (200, b"AA", b"text/plain")
    resp, data = await read_single(server, "e1", 1000)
    assert (resp.code, data) == (200, b"BBB")


@pytest_twisted.ensureDeferred
async def test_labels_types_and_inheritance(server):
    await create_bucket(server)
    headers = {"x-reduct-entries": ["a%2Db,c"], "x-reduct-start-ts": ["100"],
               "x-reduct-labels": ["x,y"],
               "x-reduct-0-0": ['1,text/plain,0=1,1="p,q",z=3'],
               "x-reduct-0-5": ["1"],
               "x-reduct-0-7": ["1,,1=,z=4"],
               "x-reduct-1-1": ["2,image/png"]}
    resp = await server.http.post(server.api(f"/io/{BUCKET}/write"), data=b"abcde",
                                  headers=headers)
    await body_of(resp)
    assert resp.code == 200 and errors_of(resp) == {}
    assert header(resp, "x-reduct-entries") == b"a-b,c"  # re-encoded
    expected = [("a-b", 100, b"a", b"text/plain", {"x": "1", "y": "p,q", "z": "3"}),
                ("a-b", 105, b"b", b"text/plain", {"x": "1", "y": "p,q", "z": "3"}),
                ("a-b", 107, b"c", b"text/plain", {"x": "1", "z": "4"}),
                ("c", 101, b"de", b"image/png", {})]
    for entry, ts, data, ctype, labels in expected:
        resp, got = await read_single(server, entry, ts)
        assert (got, header(resp, "content-type"), labels_of(resp)) == (data, ctype, labels)


@pytest_twisted.ensureDeferred
async def test_per_record_errors_keyed_by_request_index_and_delta(server):
    await create_bucket(server)
    resp = await post_write(server, [("e", 1000, b"old", "t", {})])
    assert resp.code == 200 and errors_of(resp) == {}
    records = [("bad.name", 1000, b"xx", "t", {}), ("e", 1000, b"dup", "t", {}),
               ("e", 1001, b"new", "t", {}), ("f", 1002, b"ok", "t", {})]
    resp = await post_write(server, records)
    assert resp.code == 200
    assert header(resp, "x-reduct-entries") == b"bad.name,e,f"
    assert errors_of(resp) == {
        "x-reduct-error-0-0": f"422,{ENTRY_NAME_ERROR}",  # spec 1.20 §2.1, §1.3
        "x-reduct-error-1-0": "409,A record with timestamp 1000 already exists",
    }
    for entry, ts, data in (("e", 1000, b"old"), ("e", 1001, b"new"), ("f", 1002, b"ok")):
        resp, got = await read_single(server, entry, ts)
        assert got == data


@pytest_twisted.ensureDeferred
async def test_missing_bucket_is_a_404_per_record(server):
    resp = await post_write(server, [("a", 5, b"x", "t", {}), ("b", 6, b"yy", "t", {})],
                            bucket="nope")
    assert resp.code == 200
    assert errors_of(resp) == {"x-reduct-error-0-0": "404,Bucket 'nope' is not found",
                               "x-reduct-error-1-1": "404,Bucket 'nope' is not found"}


@pytest_twisted.ensureDeferred
async def test_large_and_small_records_in_one_batch(server):
    await create_bucket(server)
    big = bytes(range(256)) * ((SMALL_RECORD_MAX * 3) // 256)
    records = [("big", 1, big, "b", {}), ("small", 2, b"s" * 10, "t", {}),
               ("big", 3, big[::-1], "b", {})]
    resp = await post_write(server, records)
    assert resp.code == 200 and errors_of(resp) == {}
    for entry, ts, data, *_ in records:
        _, got = await read_single(server, entry, ts)
        assert got == data


@pytest_twisted.ensureDeferred
async def test_empty_batch(server):
    """§10.4 e: what reduct-py and reduct-js send when nothing is to be written."""
    resp = await server.http.post(server.api(f"/io/{BUCKET}/write"), data=b"",
                                  headers={"x-reduct-entries": [""], "x-reduct-start-ts": ["0"]})
    assert resp.code == 200, await resp.content()
    await body_of(resp)
    assert (header(resp, "x-reduct-entries"), header(resp, "x-reduct-start-ts")) == (b"", b"0")


@pytest_twisted.ensureDeferred
async def test_content_length_must_match(server):
    await create_bucket(server)
    hdrs, body = v2_write([("e", 1, b"abc", "t", {})])
    resp = await server.http.post(server.api(f"/io/{BUCKET}/write"), data=body + b"x",
                                  headers=hdrs)
    await assert_error(resp, 422, "content-length header does not match the sum of the "
                                  "content-lengths in the headers")
    resp, _ = await read_single(server, "e", 1)
    assert resp.code == 404


REFUSED = [
    ({"x-reduct-entries": ["e"], "x-reduct-0-0": ["1,t"]}, "x-reduct-start-ts header is required"),
    ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["x"], "x-reduct-0-0": ["1,t"]},
     "Invalid x-reduct-start-ts header"),
    ({"x-reduct-entries": [" "], "x-reduct-start-ts": ["0"], "x-reduct-0-0": ["1,t"]},
     "x-reduct-entries header is required"),
    ({"x-reduct-entries": ["e,,f"], "x-reduct-start-ts": ["0"], "x-reduct-0-0": ["1,t"]},
     "x-reduct-entries header must not contain empty entry names"),
    ({"x-reduct-entries": ["e%2"], "x-reduct-start-ts": ["0"], "x-reduct-0-0": ["1,t"]},
     "Invalid entry encoding in header name: 'e%2'"),
    ({"x-reduct-entries": ["e%FF"], "x-reduct-start-ts": ["0"], "x-reduct-0-0": ["1,t"]},
     "Entry name is not valid UTF-8 in header 'e%FF'"),
    ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["0"], "x-reduct-1-0": ["1,t"]},
     "Invalid header 'x-reduct-1-0': entry index out of range"),
    ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["0"], "x-reduct-time-5": ["1,t"]},
     "Invalid header 'x-reduct-time-5': entry index must be a number"),
    ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["18446744073709551615"],
      "x-reduct-0-1": ["1,t"]},
     "Invalid header 'x-reduct-0-1': must be an unix timestamp in microseconds"),
    ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["0"], "x-reduct-0-0": ["1"]},
     "Content-type and labels must be provided for the first record of an entry"),
    ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["0"], "x-reduct-0-0": ["1,t,0=a"],
      "x-reduct-labels": ["k"], "x-reduct-0-1": ["0,,1=b"]}, "Label index '1' is out of range"),
    ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["0"], "x-reduct-0-0": ["1,t,@a=1"]},
     "Label names must not start with '@': reserved for computed labels"),
    ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["0"], "x-reduct-0-0": ['1,t,a="x']},
     "Invalid batched header"),
    ({"x-reduct-entries": ["e"], "x-reduct-start-ts": ["0"], "x-reduct-0-0": ["1,t,0=a"],
      "x-reduct-labels": [""]}, "x-reduct-labels header is empty"),
]


@pytest.mark.parametrize("headers, message", REFUSED)
@pytest_twisted.ensureDeferred
async def test_malformed_headers_change_nothing(server, headers, message):
    await create_bucket(server)
    resp = await post_write(server, [("e", 7, b"kept", "t", {"k": "v"})])
    assert errors_of(resp) == {}
    length = sum(int(v[0].split(",")[0] or 0) for k, v in headers.items()
                 if k.startswith("x-reduct-") and k[-1].isdigit() and v[0][:1].isdigit())
    resp = await server.http.post(server.api(f"/io/{BUCKET}/write"), data=b"z" * length,
                                  headers=headers)
    await assert_error(resp, 422, message)
    info = await server.http.get(server.api(f"/b/{BUCKET}"))
    entries = [e["name"] for e in (await info.json())["entries"]]
    assert entries == ["e"]
    resp, data = await read_single(server, "e", 7)
    assert (data, labels_of(resp)) == (b"kept", {"k": "v"})


def chunked(headers: dict, body: bytes, cut: int = 0) -> bytes:
    lines = [b"POST /api/v1/io/bkt/write HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    payload = b"\r\n".join(lines) + b"\r\n\r\n"
    for i in range(0, len(body) - cut, 3):
        piece = body[i:min(i + 3, len(body) - cut)]
        payload += b"%x\r\n%s\r\n" % (len(piece), piece)
    return payload + b"0\r\n\r\n"


V2_HEADERS = {"x-reduct-entries": "a,b", "x-reduct-start-ts": "10",
              "x-reduct-0-0": "4,t", "x-reduct-0-1": "3,t", "x-reduct-1-0": "5,t"}


@pytest_twisted.ensureDeferred
async def test_chunked_body_with_x_reduct_content_length(server):
    """§5.2: no Content-Length, a chunked body held to x-reduct-content-length."""
    await create_bucket(server)
    headers = dict(V2_HEADERS, **{"x-reduct-content-length": "12"})
    answer = await raw_request(port_of(server), chunked(headers, b"AAAABBBCCCCC"))
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"x-reduct-entries: a,b" in answer
    for entry, ts, data in (("a", 10, b"AAAA"), ("a", 11, b"BBB"), ("b", 10, b"CCCCC")):
        _, got = await read_single(server, entry, ts)
        assert got == data


@pytest_twisted.ensureDeferred
async def test_chunked_body_checks(server):
    await create_bucket(server)
    port = port_of(server)
    answer = await raw_request(port, chunked(V2_HEADERS, b"AAAABBBCCCCC"))
    assert answer.startswith(b"HTTP/1.1 422") and b"content-length header is required" in answer
    bad = dict(V2_HEADERS, **{"x-reduct-content-length": "twelve"})
    answer = await raw_request(port, chunked(bad, b"AAAABBBCCCCC"))
    assert b"x-reduct-content-length header must be a number" in answer
    # shorter than announced: the records complete before the end stay
    cut = dict(V2_HEADERS, **{"x-reduct-content-length": "12"})
    answer = await raw_request(port, chunked(cut, b"AAAABBBCCCCC", cut=2), True)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"Content is shorter than expected: no more data to read" in answer
    resp, got = await read_single(server, "a", 10)
    assert got == b"AAAA"
    resp, _ = await read_single(server, "b", 10)
    assert resp.code == 404
    # longer than announced
    answer = await raw_request(port, chunked(dict(cut, **{"x-reduct-start-ts": "20"}),
                                             b"AAAABBBCCCCCDD"), True)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"Content is bigger than in content-length" in answer


@pytest_twisted.ensureDeferred
async def test_cut_body_keeps_completed_records(tmp_path):
    """A client that goes away mid-body: records complete before stay, the rest is lost."""
    server, stop = await start_server(tmp_path / "data")
    try:
        await create_bucket(server)
        hdrs, body = v2_write([("a", 1, b"1111", "t", {}), ("a", 2, b"2222", "t", {}),
                               ("b", 1, b"3333", "t", {})])
        lines = [b"POST /api/v1/io/bkt/write HTTP/1.1", b"Host: x",
                 b"Content-Length: %d" % len(body)]
        lines += [f"{k}: {v[0]}".encode() for k, v in hdrs.items()]
        payload = b"\r\n".join(lines) + b"\r\n\r\n" + body[:6]
        await raw_request(port_of(server), payload, timeout=0.5)
        resp, got = await read_single(server, "a", 1)
        assert got == b"1111"
        for entry, ts in (("a", 2), ("b", 1)):
            resp, _ = await read_single(server, entry, ts)
            assert resp.code == 404
    finally:
        await stop()
