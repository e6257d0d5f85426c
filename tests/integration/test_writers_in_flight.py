"""
RS_IO_MAX_WRITERS_IN_FLIGHT over real sockets (spec 1.20 §1.8, §9): with
one writer slot, a slow chunked upload holding it makes other writes wait
(their bodies paused) up to RS_IO_OPERATION_TIMEOUT, then answer 429 — the
whole request for a single write, the record's ``x-reduct-error-*`` header
in a v1 or v2 batch — and succeed once the slot is free again.  Nothing
stored is touched, and cut uploads give their slots back.
"""

import time

import pytest_twisted
from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from reduct_twisted.http.writers import TOO_MANY_WRITERS
from tests.integration.conftest import running_server
from tests.integration.helpers import assert_error, body_of, port_of
from tests.integration.io_helpers import errors_of, v2_write

TIMEOUT = 0.6
TOO_MANY = "429," + TOO_MANY_WRITERS


@implementer(IBodyProducer)
class SlowBody:
    """
    A request body sent in parts, when the test says so.  With ``trickle``
    (a chunked body) it sends a byte every 0.1 s meanwhile, or
    RS_IO_OPERATION_TIMEOUT would cut the stalled upload.
    """

    def __init__(self, first: bytes, length=UNKNOWN_LENGTH, trickle=False):
        self.length = length
        self.sent = b""
        self._first = first
        self._consumer = None
        self._done = defer.Deferred()
        self._trickle = task.LoopingCall(self._write, b".") if trickle else None

    def _write(self, data: bytes) -> None:
        self._consumer.write(data)
        self.sent += data

    def startProducing(self, consumer):
        self._consumer = consumer
        self._write(self._first)
        if self._trickle is not None:
            self._trickle.start(0.1, now=False)
        return self._done

    def send(self, data: bytes, last=True) -> None:
        if self._trickle is not None and self._trickle.running:
            self._trickle.stop()
        self._write(data)
        if last:
            self._done.callback(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


def writers(server):
    return server.site.router.writers


async def wait_for(predicate, timeout=10.0):
    from twisted.internet import reactor

    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not reached")


async def make_bucket(server, name="b"):
    resp = await server.http.post(server.api(f"/b/{name}"))
    assert resp.code == 200, await resp.content()
    await body_of(resp)


async def read(server, ts, entry="e", bucket="b"):
    resp = await server.http.get(server.api(f"/b/{bucket}/{entry}"), params={"ts": str(ts)})
    return resp.code, await body_of(resp)


async def hold_slot(server, ts=1, entry="e"):
    """A chunked upload that holds the only slot until ``body.send``."""
    body = SlowBody(b"first part ", trickle=True)
    answer = server.http.post(server.api(f"/b/b/{entry}"), params={"ts": str(ts)}, data=body)
    await wait_for(lambda: writers(server).in_use == 1)
    return body, answer


def limited(tmp_path, limit=1):
    return running_server(tmp_path / "data", io_max_writers_in_flight=limit,
                          io_operation_timeout=TIMEOUT)


@pytest_twisted.ensureDeferred
async def test_single_write_waits_then_429_then_succeeds(tmp_path):
    async with limited(tmp_path) as server:
        await make_bucket(server)
        body, answer = await hold_slot(server)
        started = time.monotonic()
        resp = await server.http.post(server.api("/b/b/e"), params={"ts": "2"}, data=b"second")
        await assert_error(resp, 429, TOO_MANY_WRITERS)
        assert time.monotonic() - started >= TIMEOUT * 0.9
        assert writers(server).in_use == 1 and writers(server).waiting == 0
        body.send(b"and the rest")
        resp = await answer
        assert resp.code == 200, await body_of(resp)
        await body_of(resp)
        assert writers(server).in_use == 0
        resp = await server.http.post(server.api("/b/b/e"), params={"ts": "2"}, data=b"second")
        assert resp.code == 200, await body_of(resp)
        await body_of(resp)
        assert await read(server, 1) == (200, body.sent)
        assert await read(server, 2) == (200, b"second")


@pytest_twisted.ensureDeferred
async def test_waiting_write_is_stored_once_the_slot_frees(tmp_path):
    async with limited(tmp_path) as server:
        await make_bucket(server)
        body, answer = await hold_slot(server)
        second = server.http.post(server.api("/b/b/e"), params={"ts": "2"}, data=b"second")
        await wait_for(lambda: writers(server).waiting == 1)
        body.send(b"and the rest")
        for d in (answer, second):
            resp = await d
            assert resp.code == 200, await body_of(resp)
            await body_of(resp)
        assert writers(server).in_use == 0
        assert await read(server, 1) == (200, body.sent)
        assert await read(server, 2) == (200, b"second")


@pytest_twisted.ensureDeferred
async def test_chunked_write_refused_mid_body(tmp_path):
    """A waiting upload whose body is still coming is answered 429 at once at the timeout."""
    async with limited(tmp_path) as server:
        await make_bucket(server)
        holder, answer = await hold_slot(server)
        slow = SlowBody(b"part of it")
        resp = await server.http.post(server.api("/b/b/e"), params={"ts": "2"}, data=slow)
        await assert_error(resp, 429, TOO_MANY_WRITERS)
        holder.send(b"rest")
        resp = await answer
        assert resp.code == 200
        await body_of(resp)
        assert (await read(server, 2))[0] == 404
        assert writers(server).in_use == 0 and writers(server).waiting == 0


@pytest_twisted.ensureDeferred
async def test_v1_batch_records_get_429_others_proceed(tmp_path):
    async with limited(tmp_path) as server:
        await make_bucket(server)
        holder, answer = await hold_slot(server, entry="other")
        headers = {"x-reduct-time-10": ["3,text/plain"], "x-reduct-time-20": ["4,text/plain"]}
        batch = SlowBody(b"AAA", length=7)
        result = server.http.post(server.api("/b/b/e/batch"), data=batch, headers=headers)
        # Record 10 waits, then times out; the slot is freed; record 20 comes.
        await wait_for(lambda: writers(server).waiting == 1)
        await wait_for(lambda: writers(server).waiting == 0)
        holder.send(b"rest")
        resp = await answer
        assert resp.code == 200
        await body_of(resp)
        batch.send(b"BBBB")
        resp = await result
        assert resp.code == 200, await body_of(resp)
        await body_of(resp)
        assert resp.headers.getRawHeaders("x-reduct-error-10") == [TOO_MANY]
        assert resp.headers.getRawHeaders("x-reduct-error-20") is None
        assert (await read(server, 10))[0] == 404
        assert await read(server, 20) == (200, b"BBBB")
        assert await read(server, 1, entry="other") == (200, holder.sent)
        assert writers(server).in_use == 0


@pytest_twisted.ensureDeferred
async def test_v1_batch_all_records_429_when_slot_stays_taken(tmp_path):
    async with limited(tmp_path) as server:
        await make_bucket(server)
        resp = await server.http.post(server.api("/b/b/e"), params={"ts": "10"}, data=b"old")
        assert resp.code == 200
        await body_of(resp)
        holder, answer = await hold_slot(server, entry="other")
        headers = {"x-reduct-time-10": ["3,text/plain"], "x-reduct-time-20": ["4,text/plain"]}
        resp = await server.http.post(server.api("/b/b/e/batch"), data=b"NEWBBBB",
                                      headers=headers)
        assert resp.code == 200, await body_of(resp)
        await body_of(resp)
        assert resp.headers.getRawHeaders("x-reduct-error-10") == [TOO_MANY]
        assert resp.headers.getRawHeaders("x-reduct-error-20") == [TOO_MANY]
        holder.send(b"rest")
        await body_of(await answer)
        # The record stored before is untouched.
        assert await read(server, 10) == (200, b"old")
        assert (await read(server, 20))[0] == 404


@pytest_twisted.ensureDeferred
async def test_v2_write_records_get_429_others_proceed(tmp_path):
    async with limited(tmp_path) as server:
        await make_bucket(server)
        holder, answer = await hold_slot(server, entry="other")
        headers, body = v2_write([("a", 100, b"xyz", "text/plain", {}),
                                  ("c", 105, b"QRST", "text/plain", {"k": "v"})])
        write = SlowBody(body[:3], length=len(body))
        result = server.http.post(server.api("/io/b/write"), data=write, headers=headers)
        await wait_for(lambda: writers(server).waiting == 1)
        await wait_for(lambda: writers(server).waiting == 0)
        holder.send(b"rest")
        await body_of(await answer)
        write.send(body[3:])
        resp = await result
        assert resp.code == 200, await body_of(resp)
        await body_of(resp)
        assert errors_of(resp) == {"x-reduct-error-0-0": TOO_MANY}
        assert (await read(server, 100, entry="a"))[0] == 404
        assert await read(server, 105, entry="c") == (200, b"QRST")
        assert writers(server).in_use == 0


class Cut(protocol.Protocol):
    """Sends ``data`` on connection, then nothing (the test aborts it)."""

    def __init__(self, data: bytes):
        self.data = data

    def connectionMade(self):
        self.transport.write(self.data)


@pytest_twisted.ensureDeferred
async def test_cut_uploads_give_their_slots_back(tmp_path):
    from twisted.internet import reactor

    async with limited(tmp_path, limit=2) as server:
        await make_bucket(server)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port_of(server))
        for round in range(5):
            cut = []
            for i in range(6):
                ts = round * 100 + i + 1
                if i % 2:
                    head = (f"POST /api/v1/b/b/e?ts={ts} HTTP/1.1\r\nHost: x\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").encode()
                else:
                    head = (f"POST /api/v1/b/b/e?ts={ts} HTTP/1.1\r\nHost: x\r\n"
                            "Content-Length: 100\r\n\r\nhello").encode()
                cut.append(await connectProtocol(endpoint, Cut(head)))
            # Two hold the slots, four wait (their bodies paused).
            await wait_for(lambda: writers(server).in_use == 2 and writers(server).waiting == 4)
            for p in cut:
                p.transport.abortConnection()
            await wait_for(lambda: writers(server).in_use == 0 and writers(server).waiting == 0)
        # The whole limit is there: two slow uploads at once, then a third write.
        first = SlowBody(b"one ", trickle=True)
        second = SlowBody(b"two ", trickle=True)
        d1 = server.http.post(server.api("/b/b/e"), params={"ts": "1000"}, data=first)
        d2 = server.http.post(server.api("/b/b/e"), params={"ts": "2000"}, data=second)
        await wait_for(lambda: writers(server).in_use == 2)
        assert writers(server).waiting == 0
        first.send(b"done")
        second.send(b"done")
        for d in (d1, d2):
            resp = await d
            assert resp.code == 200
            await body_of(resp)
        resp = await server.http.post(server.api("/b/b/e"), params={"ts": "3000"}, data=b"x")
        assert resp.code == 200
        await body_of(resp)
        assert await read(server, 1000) == (200, first.sent)
        assert await read(server, 2000) == (200, second.sent)
        # No cut upload left a record.
        assert (await read(server, 1))[0] == 404
        assert (await read(server, 2))[0] == 404


@pytest_twisted.ensureDeferred
async def test_large_waiting_upload_is_paused_then_stored_exactly(tmp_path):
    """A large record waits with its body paused (not buffered), then streams in byte-exact."""
    async with limited(tmp_path) as server:
        await make_bucket(server)
        holder, answer = await hold_slot(server)
        payload = bytes(range(256)) * (12 << 12)  # 12 MiB
        big = server.http.post(server.api("/b/b/e"), params={"ts": "2"}, data=payload)
        await wait_for(lambda: writers(server).waiting == 1)
        # While it waits the server reads (about) nothing more of it.
        from twisted.internet import reactor

        sink = next(r.sink for c in server.site.drain._channels for r in c.requests
                    if getattr(r.sink, "waiting", False))
        await task.deferLater(reactor, 0.3, lambda: None)
        assert 0 < sum(len(c) for c in sink._held) < 4 << 20
        holder.send(b"end")
        for d in (answer, big):
            resp = await d
            assert resp.code == 200, await body_of(resp)
            await body_of(resp)
        assert await read(server, 2) == (200, payload)
        assert writers(server).in_use == 0


@pytest_twisted.ensureDeferred
async def test_large_batch_records_wait_in_turn_and_are_stored_exactly(tmp_path):
    async with limited(tmp_path) as server:
        await make_bucket(server)
        holder, answer = await hold_slot(server, entry="other")
        one = bytes(range(256)) * (3 << 12)
        two = bytes(reversed(range(256))) * (3 << 12)
        headers = {"x-reduct-time-10": [f"{len(one)},a/b"], "x-reduct-time-20": [f"{len(two)},a/b"]}
        result = server.http.post(server.api("/b/b/e/batch"), data=one + two, headers=headers)
        await wait_for(lambda: writers(server).waiting == 1)
        holder.send(b"end")
        await body_of(await answer)
        resp = await result
        assert resp.code == 200, await body_of(resp)
        await body_of(resp)
        assert errors_of(resp) == {}
        assert await read(server, 10) == (200, one)
        assert await read(server, 20) == (200, two)
        assert writers(server).in_use == 0 and writers(server).waiting == 0
