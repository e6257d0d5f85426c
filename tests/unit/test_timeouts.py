"""
Connection deadlines of ``ReductChannel``/``ReductSite``, on a Clock: the
header deadline (slow loris) and the idle timeout.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from reduct_twisted.http.streaming import ReductSite


class Leaf(Resource):
    isLeaf = True

    def render(self, request):
        return b"ok"


def connect(idle=60.0, header=10.0):
    clock = Clock()
    site = ReductSite(Leaf(), router=None, reactor=clock, timeout=idle, header_timeout=header)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return clock, channel, transport


def test_trickled_headers_are_cut_at_the_header_deadline():
    """A client sending a header line every second cannot outlive the header deadline."""
    clock, channel, transport = connect(idle=60.0, header=10.0)
    channel.dataReceived(b"GET /x HTTP/1.1\r\n")
    for i in range(9):
        clock.advance(1)
        channel.dataReceived(b"X-Slow-%d: y\r\n" % i)
        assert not transport.disconnecting, i
    clock.advance(1.01)
    assert transport.disconnecting or transport.disconnected


def test_complete_headers_cancel_the_deadline():
    """Headers in time: the request is answered and no timer is left behind but the idle one."""
    clock, channel, transport = connect(idle=60.0, header=10.0)
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n")
    clock.advance(9)
    channel.dataReceived(b"\r\n")
    assert b"200 OK" in transport.value()
    clock.advance(30)
    assert not transport.disconnecting
    assert [c.getTime() for c in clock.getDelayedCalls()] == [69.0]  # the idle timer only


def test_each_request_gets_its_own_header_deadline():
    """A keep-alive connection's second request starts a fresh deadline."""
    clock, channel, transport = connect(idle=600.0, header=5.0)
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    clock.advance(100)
    channel.dataReceived(b"GET /x HTTP/1.1\r\n")
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting or transport.disconnected


def test_idle_connection_is_closed_after_idle_timeout():
    clock, channel, transport = connect(idle=3.0, header=10.0)
    clock.advance(2.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting or transport.disconnected


def test_no_timer_left_after_the_connection_is_gone():
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    clock, channel, transport = connect()
    channel.dataReceived(b"GET /x HTTP/1.1\r\n")
    channel.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []
