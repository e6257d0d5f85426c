"""
``http/access.py``: the access line of each request, driven through a real
``ReductSite`` and ``ReductChannel`` over a ``StringTransport`` on a Clock
(the integration tests in ``tests/integration/test_logs.py`` run the real
daemon).
"""

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from reduct_twisted.config import Config
from reduct_twisted.http.access import ACCESS_FORMAT, STATUS_GONE, AccessLog, public_target
from reduct_twisted.http.site import make_site
from reduct_twisted.http.streaming import ReductSite

SECRET = "s3cret-token-value"


class Leaf(Resource):
    """Answers by the path: ``/slow`` later, ``/cut`` never, ``/named`` as a token."""

    isLeaf = True

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.pending = []

    def render(self, request):
        if request.path == b"/named":
            request.reduct_token_name = "camera-writer"
        elif request.path == b"/open":
            request.reduct_token_name = "AUTHENTICATION-DISABLED"
        elif request.path == b"/missing":
            request.setResponseCode(404)
            return b'{"detail":"no"}'
        elif request.path == b"/slow":
            self.clock.callLater(0.25, lambda: (request.write(b"late"), request.finish()))
            return NOT_DONE_YET
        elif request.path == b"/cut":
            request.write(b"12345")
            self.pending.append(request)
            return NOT_DONE_YET
        return b"ok"


def connect(peer="10.1.2.3", access=True):
    """A connection to a site whose access events are collected in ``events``."""
    clock = Clock()
    clock.advance(1000)
    events = []
    site = ReductSite(Leaf(clock), router=None, reactor=clock)
    if access:
        site.access_log = AccessLog(clock, Logger(namespace="test.access", observer=events.append))
    channel = site.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
    channel.makeConnection(transport)
    return clock, channel, transport, events


def request_bytes(target, headers=b"", body=b"", method=b"GET"):
    length = b"content-length: %d\r\n" % len(body) if body else b""
    return b"%s %s HTTP/1.1\r\nhost: x\r\n%s%s\r\n%s" % (method, target, headers, length, body)


def fields(event):
    return {k: event[k] for k in ("client", "token", "method", "path", "status", "bytes",
                                  "duration_ms", "cut")}


def test_finished_request_has_every_field_once():
    clock, channel, transport, events = connect()
    channel.dataReceived(request_bytes(b"/x?ts=1"))
    [event] = events
    assert fields(event) == {
        "client": "10.1.2.3", "token": "-", "method": "GET", "path": "/x?ts=1",
        "status": 200, "bytes": 2, "duration_ms": 0.0, "cut": False,
    }
    assert event["log_level"] == LogLevel.info
    assert event["log_text"] == '10.1.2.3 - "GET /x?ts=1" 200 2B 0.000ms'


def test_rendered_line_is_what_twisted_would_format():
    """``log_text`` is the event's own format rendered: any observer shows the same line."""
    clock, channel, transport, events = connect()
    channel.dataReceived(request_bytes(b"/named?ts=1&q=2", body=b"abc", method=b"POST"))
    channel.dataReceived(request_bytes(b"/cut"))
    channel.connectionLost(Failure(ConnectionDone()))
    assert len(events) == 2
    for event in events:
        plain = {k: v for k, v in event.items() if k != "log_text"}
        assert formatEvent(plain) == event["log_text"]
    assert events[0]["log_format"] == ACCESS_FORMAT


def test_duration_runs_from_the_headers_to_the_end_of_the_answer():
    clock, channel, transport, events = connect()
    channel.dataReceived(request_bytes(b"/slow"))
    assert events == []
    clock.advance(0.25)
    [event] = events
    assert event["duration_ms"] == 250.0 and event["bytes"] == 4
    assert event["log_text"].endswith(" 200 4B 250.000ms")


def test_token_name_never_its_value():
    clock, channel, transport, events = connect()
    auth = b"authorization: Bearer " + SECRET.encode() + b"\r\n"
    for target in (b"/named", b"/open", b"/x"):
        channel.dataReceived(request_bytes(target, headers=auth))
    assert [e["token"] for e in events] == ["camera-writer", "-", "-"]
    assert not any(SECRET in repr(e) for e in events)


@pytest.mark.parametrize(
    "target, shown",
    [
        (b"/b/x/e?ts=1&token=SECRET", "/b/x/e?ts=1"),
        (b"/b/x/e?token=SECRET", "/b/x/e"),
        (b"/b/x/e?access_token=SECRET&start=1&stop=2", "/b/x/e?start=1&stop=2"),
        (b"/b/x/e?API_KEY=SECRET&apikey=SECRET&password=SECRET&sig=SECRET", "/b/x/e"),
        (b"/links/f.bin?ct=abc&s=SECRET&i=tok&n=nonce", "/links/f.bin?ct=abc&i=tok&n=nonce"),
        (b"/x?%74oken=SECRET&Auth+orization=SECRET&jwt=SECRET&q=1", "/x?q=1"),
        (b"/x?ts=1&&ts=2", "/x?ts=1&ts=2"),
        (b"/x?", "/x"),
    ],
)
def test_secret_query_parameters_left_out(target, shown):
    """A parameter whose name may hold a credential is dropped whole, name and value."""
    assert public_target(target) == shown
    clock, channel, transport, events = connect()
    channel.dataReceived(request_bytes(target))
    [event] = events
    assert event["path"] == shown
    assert "SECRET" not in event["log_text"]


def test_control_characters_and_quotes_escaped():
    """A line stays one line, and the quoted request cannot be closed early."""
    assert public_target(b'/x\x1b[31m"y\\') == '/x\\x1b[31m%22y\\\\'
    assert public_target("/caf\u00e9".encode()) == "/caf\u00e9"
    assert public_target(b"/caf\xe9\xe2\x80\xa8") == "/caf\\udce9\\u2028"


def test_upload_aborted_before_the_answer_is_499_cut():
    clock, channel, transport, events = connect()
    channel.dataReceived(
        b"POST /x?ts=1 HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc"
    )
    clock.advance(2)
    assert events == []
    channel.connectionLost(Failure(ConnectionDone()))
    [event] = events
    assert fields(event) == {
        "client": "10.1.2.3", "token": "-", "method": "POST", "path": "/x?ts=1",
        "status": STATUS_GONE, "bytes": 0, "duration_ms": 2000.0, "cut": True,
    }
    assert event["log_text"].endswith(" cut")


def test_download_cut_keeps_its_status_and_bytes_sent():
    clock, channel, transport, events = connect()
    channel.dataReceived(request_bytes(b"/cut"))
    assert events == []
    channel.connectionLost(Failure(ConnectionDone()))
    [event] = events
    assert (event["status"], event["bytes"], event["cut"]) == (200, 5, True)


def test_request_refused_by_the_channel_logged_once():
    """A request line that does not parse: 400 from the channel, one line, no stale method."""
    clock, channel, transport, events = connect()
    channel.dataReceived(request_bytes(b"/first"))
    channel.dataReceived(b"GARBAGE\r\n\r\n")
    assert b"400 Bad Request" in transport.value()
    channel.connectionLost(Failure(ConnectionDone()))
    assert [(e["method"], e["path"], e["status"]) for e in events] == [
        ("GET", "/first", 200), ("-", "-", 400),
    ]
    assert events[1]["bytes"] == len(b'{"detail":"Bad request"}')


def test_4xx_and_keep_alive_requests_each_get_a_line():
    clock, channel, transport, events = connect()
    for target in (b"/missing", b"/x", b"/missing"):
        channel.dataReceived(request_bytes(target))
    assert [(e["path"], e["status"]) for e in events] == [
        ("/missing", 404), ("/x", 200), ("/missing", 404),
    ]


def test_client_behind_a_trusted_proxy():
    clock, channel, transport, events = connect(peer="127.0.0.1")
    channel.dataReceived(request_bytes(b"/x", headers=b"x-forwarded-for: 203.0.113.9\r\n"))
    assert events[0]["client"] == "203.0.113.9"


def test_untrusted_peer_cannot_name_the_client():
    clock, channel, transport, events = connect(peer="203.0.113.1")
    channel.dataReceived(request_bytes(b"/x", headers=b"x-forwarded-for: 10.9.9.9\r\n"))
    assert events[0]["client"] == "203.0.113.1"


class _API:
    def __init__(self):
        self.clock = Clock()

    def resource(self):
        return Leaf(self.clock)


@pytest.mark.parametrize(
    "settings, on",
    [
        ({}, True),
        ({"log_level": "DEBUG"}, True),
        ({"access_log": False}, False),
        ({"log_level": "WARN"}, False),
        ({"log_level": "ERROR"}, False),
    ],
)
def test_make_site_switch(settings, on):
    """``access_log = off``, or a level that hides INFO lines: no access log at all."""
    site = make_site(_API(), Config(**settings), Clock())
    assert (site.access_log is not None) == on


def test_no_access_log_no_events():
    clock, channel, transport, events = connect(access=False)
    channel.dataReceived(request_bytes(b"/x"))
    assert b"200 OK" in transport.value() and events == []


def test_the_unsplit_query_path_agrees_with_the_split_one():
    """public_target keeps most queries whole without splitting them: for random
    queries (secret-like names, encodings, empty and odd parameters) the result is
    what splitting every parameter gives."""
    import random
    from urllib.parse import quote

    from reduct_twisted.http import access

    def split_way(target: bytes) -> str:
        path, sep, query = target.partition(b"?")
        if sep:
            kept = [p for p in query.split(b"&") if p and not access._secret_parameter(p)]
            if kept:
                path = path + b"?" + b"&".join(kept)
        return access._printable(path.decode("utf-8", "surrogateescape"))

    rng = random.Random(7)
    names = ["ts", "start", "stop", "q", "s", "S", "limit", "Token", "x-key", "passwd", "sig",
             "auth", "session_id", "continuous", "each_s", "ss", "jwt", "cred", "a"]
    for _ in range(3000):
        params = []
        for _ in range(rng.randrange(0, 5)):
            name = rng.choice(names)
            if rng.random() < 0.2:
                name = quote(name, safe="") if rng.random() < 0.5 else "%" + name.encode().hex()[:2] + name[1:]
            params.append(name + rng.choice(["", "=", "=1", "=a+b", "=" + str(rng.randrange(10 ** 16))]))
        query = "&".join(params) if rng.random() < 0.8 else "&".join(params) + rng.choice(["&", "&&", ""])
        target = ("/api/v1/b/x/e?" + query).encode()
        assert public_target(target) == split_way(target), target
