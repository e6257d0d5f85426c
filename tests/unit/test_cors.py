"""
CORS (spec §3.15) without sockets: the policy built from the configured
origins, and preflights answered by the streaming request before routing,
on a ``StringTransport`` and a Clock.
"""

import attr
import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from reduct_twisted.http.cors import NO_ORIGINS, CorsPolicy
from reduct_twisted.http.streaming import ReductSite

FIRST = "https://first-allowed-origin.com"
VARY = b"vary: origin, access-control-request-method, access-control-request-headers"


@attr.s
class FakeRequest:
    requestHeaders = attr.ib(factory=Headers)
    set = attr.ib(factory=dict)

    def setHeader(self, name, value):
        self.set[name] = value


def request_from(origin=None):
    request = FakeRequest()
    if origin is not None:
        request.requestHeaders.setRawHeaders(b"origin", [origin])
    return request


@pytest.mark.parametrize(
    "origins, sent, allowed",
    [
        ((FIRST, "https://b.example"), FIRST.encode(), FIRST.encode()),
        ((FIRST, "https://b.example"), b"https://b.example", b"https://b.example"),
        ((FIRST,), b"https://other.example", None),
        ((FIRST,), FIRST.upper().encode(), None),  # compared as sent, like upstream
        ((FIRST,), None, None),
        ((), FIRST.encode(), None),
        ((FIRST, "*"), b"https://other.example", b"*"),
        (("*",), None, b"*"),
    ],
)
def test_allowed_origin(origins, sent, allowed):
    """A listed origin is echoed; with ``*`` listed the answer is ``*``; otherwise none."""
    assert CorsPolicy.from_origins(origins).allowed(request_from(sent)) == allowed


def test_header_lines():
    """Normal answers expose every header; preflights allow every method and header; both vary."""
    vary = b"vary: origin, access-control-request-method, access-control-request-headers\r\n"
    assert NO_ORIGINS.response_lines == b"access-control-expose-headers: *\r\n" + vary
    assert NO_ORIGINS.preflight_lines == (
        b"access-control-allow-methods: *\r\naccess-control-allow-headers: *\r\n" + vary
    )
    listed = CorsPolicy.from_origins([FIRST])
    assert (listed.response_lines, listed.preflight_lines) == (
        NO_ORIGINS.response_lines, NO_ORIGINS.preflight_lines)
    anyone = CorsPolicy.from_origins(["*"])
    star = b"access-control-allow-origin: *\r\n"
    assert anyone.response_lines == NO_ORIGINS.response_lines + star
    assert anyone.preflight_lines == NO_ORIGINS.preflight_lines + star


@pytest.mark.parametrize(
    "policy, sent, echoed",
    [
        (CorsPolicy.from_origins([FIRST]), FIRST.encode(),
         {b"access-control-allow-origin": FIRST.encode()}),
        (CorsPolicy.from_origins([FIRST]), b"https://other.example", {}),
        (CorsPolicy.from_origins(["*"]), FIRST.encode(), {}),  # in the lines already
        (NO_ORIGINS, FIRST.encode(), {}),
    ],
)
def test_echo(policy, sent, echoed):
    """Only a listed origin is set on the request, as it was sent."""
    request = request_from(sent)
    policy.echo(request)
    assert request.set == echoed


class Transport(StringTransport):
    """A TCP-like transport: it can half-close."""

    write_closed = False

    def loseWriteConnection(self):
        self.write_closed = True


class Counting(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.rendered = 0

    def render(self, request):
        self.rendered += 1
        return b"ok"


def connect(origins=()):
    clock = Clock()
    resource = Counting()
    site = ReductSite(resource, router=None, reactor=clock,
                      cors=CorsPolicy.from_origins(origins))
    channel = site.buildProtocol(None)
    transport = Transport()
    channel.makeConnection(transport)
    return resource, channel, transport


def test_preflight_is_answered_before_any_resource():
    """OPTIONS never reaches the resource: 200, no body, lowercase CORS and common headers."""
    resource, channel, transport = connect([FIRST])
    channel.dataReceived(
        b"OPTIONS /api/v1/b/x/y HTTP/1.1\r\nHost: a\r\nOrigin: " + FIRST.encode() + b"\r\n\r\n"
    )
    head, _, body = transport.value().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK" and body == b""
    assert resource.rendered == 0
    for line in (b"access-control-allow-methods: *", b"access-control-allow-headers: *",
                 b"access-control-allow-origin: " + FIRST.encode(), VARY,
                 b"content-length: 0", b"x-reduct-api: 1.20"):
        assert line in lines, line
    assert all(line.split(b":")[0].islower() for line in lines[1:])


def test_preflight_body_is_drained_and_the_connection_kept():
    """A preflight's body is read and dropped; the next request on the connection is served."""
    resource, channel, transport = connect()
    channel.dataReceived(b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    assert transport.value() == b""
    channel.dataReceived(b"cdGET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    answers = transport.value().split(b"HTTP/1.1 ")[1:]
    assert [a.split(b"\r\n")[0] for a in answers] == [b"200 OK", b"200 OK"]
    assert b"access-control-allow-methods: *" in answers[0]
    assert b"access-control-allow-origin" not in answers[0]
    assert answers[1].endswith(b"\r\n\r\nok") and resource.rendered == 1
    assert b"access-control-expose-headers: *" in answers[1] and VARY in answers[1]


def test_preflight_with_unframed_body_is_refused():
    """A preflight whose Content-Length is not a number cannot be framed: 400 and close."""
    _, channel, transport = connect()
    channel.dataReceived(b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"x-reduct-error: Invalid content-length header" in transport.value()
    assert transport.write_closed
