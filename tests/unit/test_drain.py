"""
Stopping the daemon with requests in flight (issue #12, item 3), on a Clock:
``ConnectionDrain`` over a ``ReductSite`` and ``StringTransport`` connections,
``DaemonService``'s stop sequence and the continuous queries ended by a stop.
"""

import json
import signal

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from reduct_twisted.http.drain import ABORT_GRACE, DrainService
from reduct_twisted.http.streaming import ReductSite
from reduct_twisted.shutdown import DaemonService
from reduct_twisted.storage.testing import write_record
from reduct_twisted.tap import Options, makeService

TIMEOUT = 10.0


class Transport(StringTransport):
    """A ``StringTransport`` that can half-close, as TCP can."""

    write_closed = False

    def loseWriteConnection(self):
        self.write_closed = True


class Slow(Resource):
    """Answers GETs only when the test says so (``pending``)."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.pending = []

    def render_GET(self, request):
        self.pending.append(request)
        return NOT_DONE_YET


class Sink:
    """A record upload's sink: counts bytes, remembers an abort."""

    def __init__(self):
        self.received = 0
        self.done = False
        self.aborted = False

    def write(self, data):
        self.received += len(data)

    def abort(self):
        self.done = self.aborted = True


class Router:
    """Sends every body to a new :class:`Sink`; answers it once complete."""

    def __init__(self):
        self.sinks = []

    def open_body(self, request, length):
        self.sinks.append(Sink())
        return self.sinks[-1]

    def direct_handler(self, request):
        if request.sink is None:
            return None

        def handler():
            request.sink.done = True
            return b""

        return handler


@pytest.fixture
def site():
    """A ``ReductSite`` on a Clock (``site.clock``) with the slow resource and the router."""
    clock = Clock()
    site = ReductSite(Slow(), Router(), clock, timeout=60.0)
    site.clock = clock
    return site


def connect(site):
    channel = site.buildProtocol(None)
    transport = Transport()
    channel.makeConnection(transport)
    return channel, transport


def lose(channel):
    channel.connectionLost(Failure(ConnectionDone()))


def fired(d):
    results = []
    d.addBoth(results.append)
    return bool(results)


def upload_head(size):
    return b"POST /b/e?ts=1 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size


def drain_timers(site):
    """The delayed calls of the drain (not the connections' own timeouts)."""
    return [c for c in site.clock.getDelayedCalls()
            if getattr(c.func, "__self__", None) is site.drain]


def test_connections_are_tracked_until_lost(site):
    """A connection is counted while open and forgotten once lost: no leak."""
    first, _ = connect(site)
    second, _ = connect(site)
    assert site.drain.open_connections == 2
    second.dataReceived(upload_head(4) + b"ab")
    lose(first)
    lose(second)
    assert site.drain.open_connections == 0


def test_nothing_open_stops_at_once(site):
    """With no connection open, draining ends at once and leaves no timer."""
    lose(connect(site)[0])
    assert fired(site.drain.drain(TIMEOUT))
    assert drain_timers(site) == []


def test_nothing_in_flight_stops_once_idle_connections_closed(site):
    """Idle keep-alive connections are closed at once; draining ends when they are gone."""
    channel, transport = connect(site)
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    site.resource.pending.pop().finish()
    assert not transport.disconnecting  # kept alive, idle

    d = site.drain.drain(TIMEOUT)
    assert transport.disconnecting
    assert not fired(d)  # the end of its last answer may still be in the socket buffer
    lose(channel)
    assert fired(d)
    assert drain_timers(site) == []


def test_waits_for_a_request_in_flight(site):
    """An upload in progress may finish; draining ends once its answer is out and it closed."""
    channel, transport = connect(site)
    channel.dataReceived(upload_head(10) + b"12345")
    d = site.drain.drain(TIMEOUT)
    assert not fired(d)
    site.clock.advance(TIMEOUT - 1)
    channel.dataReceived(b"67890")
    [sink] = site.router.sinks
    assert sink.received == 10 and not sink.aborted
    response = transport.value()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nconnection: close\r\n" in response
    assert transport.disconnecting  # closed once answered
    assert not fired(d)  # until the answer has left: connectionLost
    lose(channel)
    assert fired(d)
    assert drain_timers(site) == []


def test_waits_for_a_download_in_flight(site):
    """A read being answered may finish too; its answer says the connection closes."""
    channel, transport = connect(site)
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    d = site.drain.drain(TIMEOUT)
    request = site.resource.pending.pop()
    request.write(b"data")
    site.clock.advance(3)
    request.finish()
    assert b"\r\nconnection: close\r\n" in transport.value()
    assert transport.disconnecting
    lose(channel)
    assert fired(d)


def test_aborts_what_is_left_after_the_timeout(site, log_events):
    """After shutdown_timeout the connections left are aborted and the upload's sink aborted."""
    channel, transport = connect(site)
    channel.dataReceived(upload_head(10) + b"12345")
    idle, idle_transport = connect(site)
    d = site.drain.drain(TIMEOUT)
    assert idle_transport.disconnecting
    site.clock.advance(TIMEOUT - 0.01)
    assert not transport.disconnected
    site.clock.advance(0.02)
    assert transport.disconnected  # aborted
    assert idle_transport.disconnected  # its close never completed: aborted too
    lose(channel)
    assert not fired(d)
    lose(idle)
    assert fired(d)
    [sink] = site.router.sinks
    assert sink.aborted
    assert drain_timers(site) == []
    [warning] = [e for e in log_events if "aborting" in e.get("log_format", "")]
    assert warning["count"] == 2


def test_aborted_connections_that_never_report_do_not_hold_the_stop(site):
    """A connection that never reports its loss after the abort is given up on."""
    connect(site)[0].dataReceived(upload_head(10))
    d = site.drain.drain(TIMEOUT)
    site.clock.advance(TIMEOUT)
    assert not fired(d)
    site.clock.advance(ABORT_GRACE)
    assert fired(d)


@pytest.mark.parametrize(
    "rest, method",
    [
        (b"\r\n", b"GET"),
        (b"Content-Length: 5\r\n\r\nabcde", b"POST"),
        (b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n", b"POST"),
        (b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n", b"POST"),
    ],
)
def test_a_new_request_while_draining_gets_503(site, rest, method):
    """
    A request whose headers complete while draining is answered 503 with
    x-reduct-error, a JSON detail and connection: close; no sink is opened.
    """
    channel, transport = connect(site)
    channel.dataReceived(method + b" /b/e?ts=1 HTTP/1.1\r\nHost: a\r\n")
    d = site.drain.drain(TIMEOUT)
    assert not transport.disconnecting  # not idle: a request is arriving
    channel.dataReceived(rest)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 503 Service Unavailable"
    assert b"x-reduct-error: Server is shutting down" in lines
    assert b"connection: close" in lines
    assert b"content-type: application/json" in lines
    assert json.loads(body) == {"detail": "Server is shutting down"}
    assert b"100 Continue" not in transport.value()
    assert site.router.sinks == []
    assert transport.disconnecting or transport.write_closed
    lose(channel)
    assert fired(d)


def test_a_request_before_draining_is_not_refused(site):
    """Requests are refused only once draining has started."""
    channel, transport = connect(site)
    channel.dataReceived(upload_head(2) + b"ab")
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close" not in transport.value()
    assert not site.drain.draining


def test_on_start_callbacks_run_when_draining_starts(site):
    """The on_start callbacks run once draining starts (the engine ends continuous queries)."""
    calls = []
    site.drain.on_start.append(lambda: calls.append("ended"))
    site.drain.drain(TIMEOUT)
    site.drain.drain(TIMEOUT)
    assert calls == ["ended"]


class Recording(Service):
    """A service that notes when it is stopped and returns ``result`` from stopService."""

    def __init__(self, name, events, result=None):
        self.setName(name)
        self.events = events
        self.result = result

    def stopService(self):
        super().stopService()
        self.events.append(self.name)
        return self.result


def test_daemon_service_stops_children_in_sequence(log_events):
    """Each child stops only once the one added after it has stopped; failures do not stop it."""
    events = []
    slow = Deferred()
    top = DaemonService(None, "INFO")
    Recording("first", events).setServiceParent(top)
    failing = Recording("second", events)
    failing.stopService = lambda: 1 / 0
    failing.setServiceParent(top)
    Recording("third", events, slow).setServiceParent(top)
    Recording("fourth", events).setServiceParent(top)
    top.startService()
    d = top.stopService()
    assert events == ["fourth", "third"]
    slow.callback(None)
    assert events == ["fourth", "third", "first"]
    assert fired(d)
    assert any("Stopping second failed" in e.get("log_format", "").format(**e)
               for e in log_events if "log_format" in e)


def test_service_tree_drains_between_listeners_and_replication(tmp_path):
    """The real tree: listeners, then the drain, then the lifecycle policies, then
    replication, then storage stop."""
    reactor = MemoryReactorClock()
    options = Options(environ={})
    options.parseOptions(["--data-path", str(tmp_path / "data"), "--shutdown-timeout", "7",
                          "--listen", "tcp:0:interface=127.0.0.1"])
    top = makeService(options, reactor)
    assert isinstance(top, DaemonService)
    assert [s.name for s in top] == [
        "storage", "system-events", "replication", "lifecycles", "drain",
        "listen:tcp:0:interface=127.0.0.1",
    ]
    drain = top.getServiceNamed("drain")
    assert isinstance(drain, DrainService) and drain.timeout == 7.0
    site = top.getServiceNamed("listen:tcp:0:interface=127.0.0.1").factory
    assert drain.drain is site.drain
    top.startService()
    channel, _ = connect(site)
    channel.dataReceived(b"GET /api/v1/info HTTP/1.1\r\nHost: a\r\n")
    d = top.stopService()
    assert not top.getServiceNamed("listen:tcp:0:interface=127.0.0.1").running
    storage = top.getServiceNamed("storage")
    assert site.drain.draining and storage.running
    assert top.getServiceNamed("replication").running
    reactor.advance(7.0)  # the partial request is aborted
    lose(channel)
    assert fired(d)
    assert not storage.running and storage.threadpool.joined
    assert not top.getServiceNamed("replication").running


def test_continuous_query_ends_when_stopping(engine):
    """After end_continuous_queries a continuous query with nothing new is dropped (a 204)."""
    engine.create_bucket("b", {})
    write_record(engine, "b", "e", 1, b"x")
    qid = engine.create_query("b", "e", continuous=True)
    assert engine.query_next("b", "e", qid) is not None
    assert engine.query_next("b", "e", qid) is None
    assert engine.query_options("b", "e", qid) is not None  # still waiting
    plain = engine.create_query("b", "e")
    engine.end_continuous_queries()
    assert engine.query_next("b", "e", qid) is None
    assert engine.query_options("b", "e", qid) is None
    assert engine.query_next("b", "e", plain) is not None  # a plain query goes on


@pytest.mark.parametrize("fail, left", [(False, None), (True, signal.SIGTERM)])
def test_orderly_stop_after_sigterm_exits_0(fail, left):
    """An orderly stop clears the captured SIGTERM (twistd exits 0); a failed stop keeps it."""
    reactor = MemoryReactorClock()
    reactor._exitSignal = signal.SIGTERM
    top = DaemonService(None, "INFO", reactor)
    child = Recording("child", [])
    if fail:
        child.stopService = lambda: 1 / 0
    child.setServiceParent(top)
    top.startService()
    top.stopService()
    assert reactor._exitSignal == left


def test_systemd_waits_longer_than_the_drain():
    """The sample unit's TimeoutStopSec leaves room for shutdown_timeout and the final sync."""
    from reduct_twisted.config import Config
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "systemd" / "reduct-twisted.service").read_text()
    [value] = [line.split("=", 1)[1] for line in text.splitlines()
               if line.startswith("TimeoutStopSec=")]
    assert float(value) >= Config().shutdown_timeout + 10
