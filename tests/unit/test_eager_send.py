"""
``http/eager.py``: an answer's bytes go to the socket at once when nothing
waits before them; what the socket does not take, or everything when the
transport is busy or the socket broken, goes to ``transport.write``, in order.
Real sockets (a socketpair), a transport stand-in with Twisted's buffer fields.
"""

import socket

import pytest
from twisted.internet.testing import StringTransport

from reduct_twisted.http import eager
from reduct_twisted.http.channel import ReductChannel


class Transport:
    """The fields of ``twisted.internet.abstract.FileDescriptor`` that ``send_now`` reads."""

    def __init__(self, sock):
        self.socket = sock
        self.connected, self.disconnecting, self._writeDisconnected = True, False, False
        self._tempDataLen, self.dataBuffer, self.offset = 0, b"", 0
        self.queued = []

    def write(self, data):
        self.queued.append(bytes(data))
        self._tempDataLen += len(data)


@pytest.fixture
def pair():
    made = []

    def make(sndbuf=None):
        a, b = socket.socketpair()
        made.extend((a, b))
        if sndbuf:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        a.setblocking(False)
        b.setblocking(False)
        return a, b

    yield make
    for sock in made:
        sock.close()


def _drain(sock) -> bytes:
    out = []
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(out)
        if not data:
            return b"".join(out)
        out.append(data)


def test_a_small_answer_is_sent_at_once(pair):
    a, b = pair()
    transport = Transport(a)
    eager.send_now(transport, b"HTTP/1.1 200 OK\r\n\r\nhello")
    assert transport.queued == []
    assert _drain(b) == b"HTTP/1.1 200 OK\r\n\r\nhello"


def test_what_the_socket_does_not_take_is_queued_and_later_answers_follow_it(pair):
    a, b = pair(sndbuf=4096)
    transport = Transport(a)
    big = bytes(range(256)) * 4096  # 1 MiB, more than the socket's buffer
    eager.send_now(transport, big)
    [rest] = transport.queued
    assert 0 < len(rest) < len(big)
    sent = _drain(b)
    assert sent + rest == big
    # The transport is busy now: the next answer goes behind what it holds.
    eager.send_now(transport, b"next")
    assert transport.queued == [rest, b"next"]
    assert _drain(b) == b""


def test_a_busy_transport_or_a_closed_socket_gets_everything(pair):
    a, b = pair()
    transport = Transport(a)
    transport._tempDataLen = 3  # Twisted holds bytes of its own (a 100 Continue)
    eager.send_now(transport, b"answer")
    assert transport.queued == [b"answer"] and _drain(b) == b""
    b.close()
    idle = Transport(a)
    eager.send_now(idle, b"x" * 200_000)  # EPIPE: queued, not raised (the transport reports it)
    assert idle.queued == [b"x" * 200_000]
    half = Transport(a)
    half._writeDisconnected = True
    eager.send_now(half, b"late")
    assert half.queued == [b"late"]  # (Twisted's write drops it, as before)


def test_only_plain_tcp_server_connections_are_direct():
    """(A real connection is direct: tests/integration/test_eager_send.py.)"""
    assert not eager.direct(StringTransport())
    assert not eager.direct(None)


def test_the_header_block_joins_the_first_body_bytes():
    """One write for headers and body; a header block alone is sent by ``send_held_head``."""
    writes = []

    class Counting(StringTransport):
        def write(self, data):
            writes.append(bytes(data))
            super().write(data)

    from twisted.web.http_headers import Headers

    channel = ReductChannel()
    channel.transport = Counting()
    channel.writeHeaders(b"HTTP/1.1", b"200", b"OK", Headers({b"content-length": [b"5"]}))
    assert writes == []
    channel.write(b"hello")
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\nhello")
    channel.writeHeaders(b"HTTP/1.1", b"204", b"No Content", Headers())
    channel.send_held_head()
    channel.send_held_head()  # nothing left: no second write
    assert len(writes) == 2 and writes[1].endswith(b"\r\n\r\n")
