"""
``x-reduct-content-length`` (API 1.20, spec 1.20 §5.2) over real sockets:
the length of an upload whose framing cannot carry one (a chunked body, from
``fetch`` streaming), on ``POST /b/:b/:e?ts=`` and ``POST /b/:b/:e/batch``,
used only when ``Content-Length`` is absent.  A chunked body is held to it:
shorter or longer is a 400 and nothing of the record is stored.  The rule
lives in one function, ``http.headers.announced_length``.
"""

import os

import pytest
import pytest_twisted

from reduct_twisted.storage import SMALL_RECORD_MAX
from tests.integration.helpers import port_of, raw_request

BUCKET = "alt"


def chunked(data: bytes, parts: int = 3) -> bytes:
    """``data`` as a chunked body of ``parts`` chunks (empty chunks skipped) and its end."""
    step = max(1, -(-len(data) // parts))
    out = []
    for pos in range(0, len(data), step):
        piece = data[pos:pos + step]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def split(raw: bytes):
    """Status code, ``{lowercase header: value}``, body of one raw HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


async def post(server, target: str, headers: dict, body: bytes = b"", timeout: float = 5.0):
    """One raw POST on a fresh connection (``Connection: close``); its parsed answer."""
    lines = [f"POST {target} HTTP/1.1", "Host: x", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    raw = await raw_request(port_of(server), payload, read_until_close=True, timeout=timeout)
    return split(raw)


def record_path(ts: int, entry: str = "e") -> str:
    return f"/api/v1/b/{BUCKET}/{entry}?ts={ts}"


CHUNKED = {"Transfer-Encoding": "chunked"}


async def read_back(server, ts: int, entry: str = "e"):
    resp = await server.http.get(server.api(f"/b/{BUCKET}/{entry}"), params={"ts": str(ts)})
    return resp.code, await resp.content(), resp.headers


@pytest_twisted.ensureDeferred
async def test_single_write_chunked_with_announced_length(server):
    """A chunked single write announcing its length is stored whole, small or large."""
    server.engine.create_bucket(BUCKET, None)
    small = b"hello, chunked"
    large = os.urandom(SMALL_RECORD_MAX + 54_321)
    for ts, data in ((1, small), (2, large), (3, b"")):
        headers = dict(CHUNKED, **{"x-reduct-content-length": str(len(data)),
                                    "Content-Type": "text/plain", "x-reduct-label-k": "v"})
        code, answer, _ = await post(server, record_path(ts), headers, chunked(data, 4))
        assert code == 200, answer
        code, body, headers = await read_back(server, ts)
        assert (code, body) == (200, data)
        assert headers.getRawHeaders("content-type") == ["text/plain"]
        assert headers.getRawHeaders("x-reduct-label-k") == ["v"]
    info = server.engine.bucket_info(BUCKET)
    assert info["entries"][0]["record_count"] == 3


@pytest.mark.parametrize("size", [10, SMALL_RECORD_MAX + 10], ids=["small", "large"])
@pytest_twisted.ensureDeferred
async def test_single_write_held_to_the_announced_length(server, size):
    """Longer than announced is 400 'bigger', shorter is 400 'shorter'; nothing is stored."""
    server.engine.create_bucket(BUCKET, None)
    data = os.urandom(size)
    cases = [
        (1, str(size - 1), "Content is bigger than in content-length"),
        (2, str(size + 1), "Content is shorter than expected"),
    ]
    for ts, announced, message in cases:
        headers = dict(CHUNKED, **{"x-reduct-content-length": announced})
        code, answer, body = await post(server, record_path(ts), headers, chunked(data))
        assert (code, answer.get("x-reduct-error")) == (400, message), body
        assert (await read_back(server, ts))[0] == 404
    assert server.engine.bucket_info(BUCKET)["info"]["size"] == 0


@pytest_twisted.ensureDeferred
async def test_announced_length_errors_and_precedence(server):
    """
    A malformed announcement is 422 (after the ts check); Content-Length wins
    over it; an announcement without body framing is the body's length.
    """
    server.engine.create_bucket(BUCKET, None)
    for bad in ("abc", "-1", "1.5", "18446744073709551616", ""):
        headers = dict(CHUNKED, **{"x-reduct-content-length": bad})
        code, answer, _ = await post(server, record_path(1), headers, chunked(b"abc"))
        assert (code, answer.get("x-reduct-error")) == (
            422, "x-reduct-content-length header must be a number"), bad
    # the ts check comes first
    headers = dict(CHUNKED, **{"x-reduct-content-length": "abc"})
    code, answer, _ = await post(server, f"/api/v1/b/{BUCKET}/e", headers, chunked(b"abc"))
    assert (code, answer.get("x-reduct-error")) == (422, "'ts' parameter is required")
    # Content-Length present: the announcement is ignored
    code, _, _ = await post(server, record_path(2),
                            {"Content-Length": "3", "x-reduct-content-length": "10"}, b"abc")
    assert code == 200
    assert (await read_back(server, 2))[:2] == (200, b"abc")
    code, answer, _ = await post(server, record_path(3),
                                 {"Content-Length": "3", "x-reduct-content-length": "abc"}, b"abc")
    assert code == 200, answer
    # No framing at all: the announcement says how much should have come.
    code, _, _ = await post(server, record_path(4), {"x-reduct-content-length": "0"})
    assert code == 200
    assert (await read_back(server, 4))[:2] == (200, b"")
    code, answer, _ = await post(server, record_path(5), {"x-reduct-content-length": "3"})
    assert (code, answer.get("x-reduct-error")) == (400, "Content is shorter than expected")
    assert (await read_back(server, 5))[0] == 404
    # Neither: required; a chunked body announcing nothing stays of unknown length.
    code, answer, _ = await post(server, record_path(6), {})
    assert (code, answer.get("x-reduct-error")) == (422, "content-length header is required")
    code, _, _ = await post(server, record_path(7), CHUNKED, chunked(b"as before"))
    assert code == 200
    assert (await read_back(server, 7))[:2] == (200, b"as before")


def batch_headers(records, **extra):
    headers = dict(extra)
    for ts, data in records:
        headers[f"x-reduct-time-{ts}"] = f"{len(data)},text/plain"
    return headers


@pytest_twisted.ensureDeferred
async def test_batch_chunked_with_announced_length(server):
    """A chunked v1 batch announcing the sum of its records stores them all."""
    server.engine.create_bucket(BUCKET, None)
    records = [(10, b"first"), (11, b""), (12, os.urandom(SMALL_RECORD_MAX + 7)), (13, b"last")]
    body = b"".join(data for _, data in records)
    headers = batch_headers(records, **CHUNKED, **{"x-reduct-content-length": str(len(body))})
    code, answer, _ = await post(server, f"/api/v1/b/{BUCKET}/e/batch", headers, chunked(body, 5))
    assert code == 200
    assert not [name for name in answer if name.startswith("x-reduct-error")]
    for ts, data in records:
        assert (await read_back(server, ts))[:2] == (200, data)


@pytest_twisted.ensureDeferred
async def test_batch_announced_length_errors(server):
    """Mismatch and malformed announcements are 422; a body longer or shorter is a 400."""
    server.engine.create_bucket(BUCKET, None)
    url = f"/api/v1/b/{BUCKET}/e/batch"
    records = [(20, b"abc"), (21, b"defg")]
    body = b"abcdefg"
    cases = [
        ("8", body, 422,
         "content-length header does not match the sum of the content-lengths in the headers"),
        ("x", body, 422, "x-reduct-content-length header must be a number"),
    ]
    for announced, sent, code_expected, message in cases:
        headers = batch_headers(records, **CHUNKED, **{"x-reduct-content-length": announced})
        code, answer, _ = await post(server, url, headers, chunked(sent))
        assert (code, answer.get("x-reduct-error")) == (code_expected, message)
    # longer: the records before the excess are kept, the request fails
    headers = batch_headers(records, **CHUNKED, **{"x-reduct-content-length": "7"})
    code, answer, _ = await post(server, url, headers, chunked(body + b"extra"))
    assert (code, answer.get("x-reduct-error")) == (400, "Content is bigger than in content-length")
    # shorter: the record cut short is not stored
    records = [(30, b"abc"), (31, b"defg")]
    headers = batch_headers(records, **CHUNKED, **{"x-reduct-content-length": "7"})
    code, answer, _ = await post(server, url, headers, chunked(b"abcde"))
    assert (code, answer.get("x-reduct-error")) == (
        400, "Content is shorter than expected: no more data to read")
    assert (await read_back(server, 30))[:2] == (200, b"abc")
    assert (await read_back(server, 31))[0] == 404
    # neither header: required, as before
    headers = batch_headers(records[:1], **CHUNKED)
    code, answer, _ = await post(server, url, headers, chunked(b"abc"))
    assert (code, answer.get("x-reduct-error")) == (422, "content-length header is required")
