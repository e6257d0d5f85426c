"""
Hostile HTTP input (issue #12), over real sockets to the in-process daemon:
numbers longer than Python converts, lengths beyond u64, Host headers the
IDNA codec refuses, a refused chunked batch whose framing then breaks, a
request line trickled a byte at a time.  Each gets a clear answer (never a
5xx, a reset or silence) and leaves no failure in the log.
"""

import json
import socket
import time

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from tests.integration.conftest import start_server
from tests.integration.helpers import port_of

#: Longer than Python's int() converts (4300 digits).
HUGE = b"1" * 5000


@pytest.fixture
def logged_failures():
    """Log events that carry a failure or are errors/critical, while the test runs."""
    found = []

    def observer(event):
        level = getattr(event.get("log_level"), "name", "")
        if "log_failure" in event or event.get("isError") or level in ("error", "critical"):
            found.append(event)

    globalLogPublisher.addObserver(observer)
    yield found
    globalLogPublisher.removeObserver(observer)


def _exchange(port, payload, timeout):
    """Send ``payload``; read until the server closes.  -> (bytes, how it ended)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    data = b""
    try:
        try:
            sock.sendall(payload)
        except OSError:
            pass  # refused early: read the answer
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return data, "timeout"
            except ConnectionResetError:
                return data, "reset"
            if not chunk:
                return data, "closed"
            data += chunk
    finally:
        sock.close()


def exchange(server, payload, timeout=3.0):
    return deferToThread(_exchange, port_of(server), payload, timeout)


def answer(raw):
    """(status line, {header: value}, body) of a single raw response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    return lines[0], headers, body


def assert_refused(raw, how, status, message):
    """One ReductStore error answer, then the server closed the connection."""
    assert how == "closed", (how, raw[:200])
    line, headers, body = answer(raw)
    assert line.startswith(b"HTTP/1.1 %d " % status), raw[:200]
    assert headers[b"x-reduct-error"] == message
    assert json.loads(body) == {"detail": message.decode()}
    assert raw.count(b"HTTP/1.1 ") == 1


async def make_bucket(server, name="b"):
    resp = await server.http.post(server.api(f"/b/{name}"))
    assert resp.code == 200
    await resp.content()


@pytest_twisted.ensureDeferred
async def test_content_length_of_thousands_of_digits(server, logged_failures):
    """A Content-Length too long for int() is 'not a number': the record write's 422, the
    other routes' 400, each answered and closed, no traceback."""
    await make_bucket(server)
    raw, how = await exchange(server, b"POST /api/v1/b/b/e?ts=1 HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: " + HUGE + b"\r\n\r\nx")
    assert_refused(raw, how, 422, b"content-length header must be a number")
    raw, how = await exchange(server, b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: " + HUGE + b"\r\n\r\n")
    assert_refused(raw, how, 400, b"Invalid content-length header")
    # Leading zeros are still a number (as twisted.web has always read them).
    raw, how = await exchange(server, b"POST /api/v1/b/b/e?ts=2 HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: " + b"0" * 5000 + b"3\r\n"
                              b"Connection: close\r\n\r\nabc")
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "2"})
    assert await resp.content() == b"abc"
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_content_length_beyond_u64_on_a_record_write(server, logged_failures):
    """2^64 on a record write is refused at once (422, closed), as on the other routes
    (400), instead of waiting for a body; nothing is stored."""
    await make_bucket(server)
    for length in (b"18446744073709551616", b"99999999999999999999999"):
        raw, how = await exchange(server, b"POST /api/v1/b/b/e?ts=1 HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: " + length + b"\r\n\r\nxyz")
        assert_refused(raw, how, 422, b"content-length header must be a number")
        raw, how = await exchange(server, b"POST /api/v1/b/other HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: " + length + b"\r\n\r\n{}")
        assert_refused(raw, how, 400, b"Invalid content-length header")
    resp = await server.http.get(server.api("/b/b/e"), params={"ts": "1"})
    assert resp.code == 404
    await resp.content()
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_chunk_size_beyond_u64_is_refused(server, logged_failures):
    """A chunk size of 2^64 or more is malformed framing: 400, not a wait for the chunk."""
    await make_bucket(server)
    raw, how = await exchange(server, b"POST /api/v1/b/b/e?ts=1 HTTP/1.1\r\nHost: x\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" + b"1" + b"0" * 16 + b"\r\nab")
    assert_refused(raw, how, 400, b"Bad request")
    assert logged_failures == []


@pytest.mark.parametrize("host", [b"a..b", b".", b"a" * 64 + b".example", b"..:80"])
@pytest_twisted.ensureDeferred
async def test_host_the_idna_codec_refuses_is_answered(server, logged_failures, host):
    """A Host with an empty or over-long label means nothing to the API: the request
    is answered as usual (no HTML 500, no critical traceback)."""
    raw, how = await exchange(server, b"GET /api/v1/info HTTP/1.1\r\nHost: " + host
                              + b"\r\nConnection: close\r\n\r\n")
    line, headers, body = answer(raw)
    assert line == b"HTTP/1.1 200 OK", raw[:300]
    assert "version" in json.loads(body)
    raw, how = await exchange(server, b"GET /api/v1/nothing/here HTTP/1.1\r\nHost: x\r\nHost: "
                              + host + b"\r\nConnection: close\r\n\r\n")
    line, headers, body = answer(raw)
    assert line.startswith(b"HTTP/1.1 404 ") and headers[b"x-reduct-error"] == b"Not found"
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_refused_chunked_batch_with_broken_framing_keeps_its_422(server, logged_failures):
    """A chunked batch write refused on its headers, whose body then breaks the chunk
    framing, still delivers its 422 (a half-close, not a reset)."""
    await make_bucket(server)
    raw, how = await exchange(server, b"POST /api/v1/b/b/e/batch HTTP/1.1\r\nHost: x\r\n"
                              b"x-reduct-time-abc: 1,text/plain\r\nTransfer-Encoding: chunked\r\n"
                              b"\r\nzz\r\nab\r\n0\r\n\r\n")
    assert_refused(raw, how, 422,
                   b"Invalid header 'x-reduct-time-abc': must be an unix timestamp in microseconds")
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_json_integers_of_thousands_of_digits(server, logged_failures):
    """A JSON integer too long for int(), or beyond the f64 range, is 'Invalid JSON: number
    out of range' (422; 400 on a rename, as its other syntax errors; a token body's is
    'Invalid body' since API 1.19, spec 1.20 §4.2): the interpreter's limit never shows,
    and no field check overflows."""
    await make_bucket(server)
    cases = [
        ("POST", "/b/q", b'{"quota_type": "FIFO", "quota_size": ' + HUGE + b"}", 422),
        ("POST", "/b/b/e/q", b'{"query_type": "QUERY", "limit": ' + HUGE + b"}", 422),
        ("POST", "/tokens/t", b'{"full_access": ' + HUGE + b"}", 422),
        ("PUT", "/b/b/rename", b'{"new_name": -' + HUGE + b"}", 400),
        # Beyond f64 but converted by int(): math.isfinite() raised OverflowError (a 500).
        ("POST", "/replications/r", b'{"src_bucket": "b", "dst_bucket": "x", "dst_host": '
         b'"http://127.0.0.1:1", "each_s": ' + b"9" * 1000 + b"}", 422),
        ("POST", "/b/b/e/q", b'{"query_type": "QUERY", "each_s": ' + b"9" * 1000 + b"}", 422),
    ]
    for method, path, body, status in cases:
        resp = await server.http.request(method, server.api(path), data=body,
                                         headers={"content-type": "application/json"})
        detail = json.loads(await resp.content())["detail"]
        assert resp.code == status, (path, detail)
        expected = "Invalid body" if path.startswith("/tokens/") else "Invalid JSON: number out of range"
        assert detail == expected, path
    resp = await server.http.get(server.api("/b/q"))
    assert resp.code == 404
    await resp.content()
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_conditions_with_numbers_of_thousands_of_digits(server, logged_failures):
    """Condition literals and label values of thousands of digits are evaluated as upstream
    types them (too big for i64: a float, not a duration) instead of failing with a 500."""
    await make_bucket(server)
    resp = await server.http.post(server.api("/b/b/e"), params={"ts": "1"}, data=b"x",
                                  headers={"x-reduct-label-n": "9" * 5000})
    assert resp.code == 200
    await resp.content()
    for size in ("1" * 400 + ".5KB", "1" * 5000 + "KB"):
        # Sizes beyond u64 are refused like any other out-of-range size.
        resp = await server.http.post(server.api("/b/b/e/q"), data=json.dumps(
            {"query_type": "QUERY", "when": {"#batch_size": size, "&n": {"$gt": 1}}}).encode())
        text = await resp.content()
        assert resp.code == 422 and b"out of the 64-bit integer range" in text, text[:200]
    whens = [
        {"&n": {"$gt": 1}},
        {"&n": {"$gt": "1" * 5000 + "s"}},
    ]
    for when in whens:
        resp = await server.http.post(server.api("/b/b/e/q"),
                                      data=json.dumps({"query_type": "QUERY", "when": when}).encode())
        text = await resp.content()
        assert resp.code == 200, (when, text[:200])
        qid = json.loads(text)["id"]
        resp = await server.http.get(server.api("/b/b/e"), params={"q": str(qid)})
        body = await resp.content()
        if when is whens[0]:
            # 9...9 (5000 digits) is a float, inf: greater than 1.
            assert (resp.code, body) == (200, b"x"), when
        else:
            # A number against a string that is no duration: no match.
            assert resp.code == 204, (when, body[:200])
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_request_line_trickled_over_a_socket_is_cut(tmp_path, logged_failures):
    """Over a real socket, a request line sent a byte at a time is cut at the header
    deadline, counted from its first byte, although every byte restarts the idle timer."""
    server, stop = await start_server(tmp_path / "data", header_timeout=1.0)

    def trickle():
        sock = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
        started = time.monotonic()
        try:
            for byte in b"GET /api/v1/info HTTP/1.1\r\n":
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    return time.monotonic() - started
                sock.settimeout(0.25)
                try:
                    if sock.recv(100) == b"":
                        return time.monotonic() - started
                except socket.timeout:
                    pass
                except OSError:
                    return time.monotonic() - started
            return None
        finally:
            sock.close()

    try:
        cut_after = await deferToThread(trickle)
    finally:
        await stop()
    assert cut_after is not None, "the whole request line went through"
    assert 0.9 <= cut_after < 3.0, cut_after
    assert logged_failures == []


@pytest_twisted.ensureDeferred
async def test_json_nan_and_infinity_are_refused(server, logged_failures):
    """NaN, Infinity and 1e400 are no JSON: refused (422) instead of stored in a
    replication's condition and answered back as invalid JSON."""
    await make_bucket(server)
    for literal in (b"NaN", b"-Infinity", b"1e400"):
        body = (b'{"src_bucket": "b", "dst_bucket": "x", "dst_host": "http://127.0.0.1:1",'
                b' "when": {"&a": {"$gt": ' + literal + b"}}}")
        resp = await server.http.post(server.api("/replications/r"), data=body)
        detail = json.loads(await resp.content())["detail"]
        assert resp.code == 422 and detail.startswith("Invalid JSON: "), (literal, detail)
        resp = await server.http.get(server.api("/replications/r"))
        assert resp.code == 404
        await resp.content()
    assert logged_failures == []
