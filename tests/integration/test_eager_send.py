"""
Answers sent straight to the socket (``http/eager.py``) over real
connections: pipelined reads and HEADs whose answers overflow the socket's
buffers arrive whole and in order, each header block with its body.
"""

import socket

import pytest_twisted
from twisted.internet.defer import succeed
from twisted.internet.threads import deferToThread

from tests.integration.helpers import port_of, until

SIZE = 60 * 1024
COUNT = 120


def _content(i: int) -> bytes:
    return (b"%05d" % i) * (SIZE // 5) + b"x" * (SIZE % 5)


def _connect_and_send(port: int, requests: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(requests)
    return sock


def _read_to_end(sock: socket.socket) -> bytes:
    try:
        chunks = []
        while True:  # the last request asks to close
            data = sock.recv(1024)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    finally:
        sock.close()


@pytest_twisted.ensureDeferred
async def test_pipelined_answers_larger_than_the_socket_buffers_arrive_in_order(server, monkeypatch):
    from reduct_twisted.http import eager

    idle = eager.transport_idle
    busy = []

    def counting(transport):
        result = idle(transport)
        busy.append(not result)
        return result

    monkeypatch.setattr(eager, "transport_idle", counting)
    resp = await server.http.post(server.api("/b/eager"))
    assert resp.code == 200
    for i in range(1, COUNT + 1):
        resp = await server.http.post(server.api(f"/b/eager/e?ts={i}"), data=_content(i))
        assert resp.code == 200, await resp.text()
    # GETs with a HEAD after every tenth: a HEAD's header block goes out alone.
    requests, kinds = [], []
    for i in range(1, COUNT + 1):
        requests.append(b"GET /api/v1/b/eager/e?ts=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        kinds.append(("GET", i))
        if i % 10 == 0:
            requests.append(b"HEAD /api/v1/b/eager/e?ts=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            kinds.append(("HEAD", i))
    requests[-1] = requests[-1].replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    sock = await deferToThread(_connect_and_send, port_of(server), b"".join(requests))
    # Nothing is read until the daemon has had to queue an answer behind
    # bytes the socket did not take (7 MiB of answers, socket buffers of 4).
    await until(lambda: succeed(True in busy), timeout=30)
    raw = await deferToThread(_read_to_end, sock)
    pos, seen = 0, []
    for kind, i in kinds:
        end = raw.index(b"\r\n\r\n", pos)
        head = raw[pos:end].decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in head[1:])
        assert head[0] == "HTTP/1.1 200 OK", (kind, i, head[0])
        assert fields["x-reduct-time"] == str(i) and fields["content-length"] == str(SIZE)
        pos = end + 4
        if kind == "GET":
            assert raw[pos:pos + SIZE] == _content(i), (kind, i)
            pos += SIZE
        seen.append((kind, i))
    assert seen == kinds and pos == len(raw)
    # Both ways were taken: answers sent at once, and answers queued behind
    # what the socket had not taken yet.
    assert True in busy and False in busy
