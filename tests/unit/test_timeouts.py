"""
Connection deadlines of ``ReductChannel``/``ReductSite``, on a Clock: the
header deadline (slow loris), the idle timeout between requests and the
I/O timeout of a request body; and the header limits the batch settings
raise.
"""

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from reduct_twisted.http.streaming import HEADER_SLACK, ReductChannel, ReductSite


class Leaf(Resource):
    isLeaf = True

    def render(self, request):
        return b"ok"


def connect(idle=60.0, header=10.0, io=30.0):
    clock = Clock()
    site = ReductSite(Leaf(), router=None, reactor=clock, timeout=idle, header_timeout=header,
                      io_timeout=io)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return clock, channel, transport


def assert_cut_after(seconds, clock, transport):
    """The connection is still open just before ``seconds`` and closed just after."""
    clock.advance(seconds - 0.1)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting or transport.disconnected


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
    assert_cut_after(5.0, clock, transport)


def test_idle_connection_is_closed_after_idle_timeout():
    clock, channel, transport = connect(idle=3.0, header=10.0)
    assert_cut_after(3.0, clock, transport)


def test_no_timer_left_after_the_connection_is_gone():
    clock, channel, transport = connect()
    channel.dataReceived(b"GET /x HTTP/1.1\r\n")
    channel.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def test_stalled_body_is_cut_at_the_io_timeout():
    """A request body that stops arriving is cut after io_timeout, not idle_timeout."""
    clock, channel, transport = connect(idle=60.0, io=5.0)
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    for _ in range(3):
        clock.advance(4.9)  # every byte restarts the timer
        channel.dataReceived(b"d")
    assert_cut_after(5.0, clock, transport)
    assert b"200 OK" not in transport.value()


def test_idle_timeout_again_after_a_body():
    """Once the body is complete, the connection waits idle_timeout for the next request."""
    clock, channel, transport = connect(idle=60.0, io=5.0)
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    assert b"200 OK" in transport.value()
    assert [c.getTime() for c in clock.getDelayedCalls()] == [60.0]
    assert_cut_after(60.0, clock, transport)


def test_chunked_body_gets_the_io_timeout():
    """A chunked body (no Content-Length) is a body too."""
    clock, channel, transport = connect(idle=60.0, io=2.0)
    channel.dataReceived(
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    )
    assert_cut_after(2.0, clock, transport)
    # twisted.web buffers a chunked body of a plain resource in a temporary file
    request = channel.requests[-1]
    channel.connectionLost(Failure(ConnectionDone()))
    request.content.close()


def test_header_limits_follow_the_batch_settings():
    """Batch settings beyond ReductChannel's limits raise them; smaller ones never lower them."""
    site = ReductSite(Leaf(), None, Clock(), max_batch_records=5000,
                      max_batch_metadata=2_000_000)
    channel = site.buildProtocol(None)
    assert channel.maxHeaders == 5015
    assert channel.totalHeadersSize == channel.MAX_LENGTH == 2_000_000 + HEADER_SLACK
    small = ReductSite(Leaf(), None, Clock(), max_batch_records=85,
                       max_batch_metadata=512_000).buildProtocol(None)
    assert small.maxHeaders == ReductChannel.maxHeaders == 2000
    assert small.totalHeadersSize == ReductChannel.totalHeadersSize
    assert small.MAX_LENGTH == 512_000 + HEADER_SLACK > ReductChannel.MAX_LENGTH


def test_request_line_trickled_a_byte_a_second_is_cut():
    """The header deadline runs from a connection's first byte, not from a complete
    request line: a request line sent a byte a second is cut (issue #12)."""
    clock, channel, transport = connect(idle=60.0, header=10.0)
    line = b"GET /api/v1/info HTTP/1.1\r\n"
    channel.dataReceived(line[:1])
    for i, byte in enumerate(line[1:10], start=1):
        clock.advance(1)
        assert not transport.disconnecting, i
        channel.dataReceived(bytes([byte]))
    clock.advance(0.99)
    assert not transport.disconnecting
    clock.advance(0.02)
    assert transport.disconnecting or transport.disconnected


def test_next_request_deadline_runs_from_its_first_byte():
    """On a keep-alive connection the next request's deadline starts with its first
    byte, however long the connection idled before it (within idle_timeout)."""
    clock, channel, transport = connect(idle=600.0, header=5.0)
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"200 OK" in transport.value()
    clock.advance(100)
    assert not transport.disconnecting
    channel.dataReceived(b"G")
    clock.advance(3)
    channel.dataReceived(b"E")  # a byte resets the idle timer, not the deadline
    clock.advance(1.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting or transport.disconnected


def test_pipelined_request_deadline_runs_from_the_previous_answer():
    """A request whose bytes came while the one before it was answered gets its
    deadline once it is parsed, and is answered in time."""
    clock, channel, transport = connect(idle=600.0, header=5.0)
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\nGE")
    assert transport.value().count(b"200 OK") == 2
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting or transport.disconnected


def test_headers_in_one_read_make_no_deadline_timer():
    """The header deadline's timer is made only when a read ends with the headers incomplete."""
    clock, channel, transport = connect(idle=60.0, header=10.0)
    made = []
    call_later = clock.callLater
    clock.callLater = lambda delay, *a, **kw: made.append(delay) or call_later(delay, *a, **kw)
    channel.callLater = clock.callLater
    for _ in range(3):
        channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert transport.value().count(b"200 OK") == 3
    assert 10.0 not in made
    # Split over two reads 4 s apart: the deadline still runs from the first byte.
    channel.dataReceived(b"GET /x HTTP/1.1\r\n")
    assert made.count(10.0) == 1
    clock.advance(4)
    channel.dataReceived(b"Host: a\r\n")
    assert_cut_after(6.0, clock, transport)
