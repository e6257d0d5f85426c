# -*- test-case-name: tests.unit.test_eager_send,tests.integration.test_eager_send -*-
"""
An answer's bytes sent to the socket at once when nothing waits before them
(issue #17).

Twisted's ``transport.write`` keeps the bytes, registers the socket for
writing (an ``epoll_ctl``), sends them when the reactor next polls and
unregisters the socket (another ``epoll_ctl``).  An answer of a few KiB fits
the socket's buffer: :func:`send_now` hands it to ``send(2)`` directly when
the transport has nothing of its own waiting, and gives only what the
socket did not take to ``transport.write``, so bytes keep their order.
Single-record reads and writes at 8 connections took about 10 % less CPU a
request with it (README, "Measured").

Only a plain TCP connection of ``twisted.internet.tcp`` qualifies
(:func:`direct`); anything else (TLS, test transports) always goes through
``transport.write``.  Other writers keep working: bytes Twisted buffered
(a ``100 Continue``, a refusal) make the transport busy, and the next answer
queues behind them; ``sendfile`` (``producers.py``) takes the same sockets
(:func:`direct`) and checks the same :func:`transport_idle`.
"""

from __future__ import annotations

from twisted.internet import tcp

__all__ = ["direct", "send_now", "transport_idle"]


def direct(transport) -> bool:
    """Whether ``send_now`` may use ``transport``'s socket (plain TCP, server side)."""
    return isinstance(transport, tcp.Server) and not getattr(transport, "TLS", False)


def transport_idle(transport) -> bool:
    """Whether the transport has no bytes of its own waiting to be sent."""
    return (
        transport.connected
        and not transport.disconnecting
        and not transport._tempDataLen
        and len(transport.dataBuffer) == transport.offset
    )


def send_now(transport, data: bytes) -> None:
    """
    Send ``data`` on ``transport`` (for which :func:`direct` holds): as much
    as the socket takes now, the rest through ``transport.write``.
    """
    if data and transport_idle(transport) and not transport._writeDisconnected:
        try:
            sent = transport.socket.send(data)
        except OSError:
            # Full (EAGAIN) or broken: the transport queues the bytes, or
            # finds the break on its own send and reports it (connectionLost).
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
