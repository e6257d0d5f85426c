"""
``sdnotify.py``: systemd's notify protocol, sent to a real ``AF_UNIX``
datagram socket; the watchdog and the readiness wiring on a fake clock.
"""

import os
import socket
import time

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from reduct_twisted.interfaces_supervisor import ISupervisor
from reduct_twisted.sdnotify import SystemdNotifier, watchdog_service
from reduct_twisted.shutdown import DaemonService
from reduct_twisted.tap import Options, makeService
from tests.unit.fakes import FakeEngine
from tests.unit.test_tap import fake_assemble


@pytest.fixture
def receiver(tmp_path):
    """A bound datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield path, sock
    sock.close()


def received(sock):
    """Every datagram waiting on ``sock``, decoded."""
    out = []
    while True:
        try:
            out.append(sock.recv(65536).decode())
        except BlockingIOError:
            return out


def test_provides_the_seam(receiver):
    verifyObject(ISupervisor, SystemdNotifier(receiver[0], 5.0))
    verifyObject(ISupervisor, SystemdNotifier(None))


def test_silent_without_notify_socket():
    """No NOTIFY_SOCKET: nothing is enabled, sent, or asked of a watchdog."""
    notifier = SystemdNotifier.from_environment({"WATCHDOG_USEC": "1000000"}, pid=1)
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.stopping("y")
    notifier.watchdog()
    assert notifier._socket is None
    assert watchdog_service(notifier, Clock()) is None


def test_datagrams(receiver):
    """READY=1 with STATUS and MAINPID, STOPPING=1, WATCHDOG=1, STATUS, one per datagram."""
    path, sock = receiver
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    notifier.ready("Listening on 127.0.0.1:1\nsecond line")
    notifier.watchdog()
    notifier.status("busy")
    notifier.stopping("bye")
    assert received(sock) == [
        f"READY=1\nSTATUS=Listening on 127.0.0.1:1 second line\nMAINPID={os.getpid()}",
        "WATCHDOG=1",
        "STATUS=busy",
        "STOPPING=1\nSTATUS=bye",
    ]
    notifier.close()


def test_abstract_socket():
    """An '@name' NOTIFY_SOCKET is an abstract socket address."""
    name = f"reduct-twisted-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.setblocking(False)
    try:
        notifier = SystemdNotifier("@" + name)
        notifier.watchdog()
        notifier.close()
        assert received(sock) == ["WATCHDOG=1"]
    finally:
        sock.close()


@pytest.mark.parametrize(
    "environ, interval",
    [
        ({"WATCHDOG_USEC": "3000000"}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "43"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ, interval):
    """Half of WATCHDOG_USEC, unless WATCHDOG_PID names another process."""
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "/x", **environ}, pid=42)
    assert notifier.watchdog_interval == interval


def test_watchdog_pings_on_the_reactor(receiver):
    """The watchdog service pings at once, then every interval, until stopped."""
    path, sock = receiver
    clock = Clock()
    notifier = SystemdNotifier(path, 2.0)
    service = watchdog_service(notifier, clock)
    service.startService()
    assert received(sock) == ["WATCHDOG=1"]
    clock.advance(1.9)
    assert received(sock) == []
    clock.advance(0.1)
    clock.advance(2.0)
    assert received(sock) == ["WATCHDOG=1", "WATCHDOG=1"]
    service.stopService()
    clock.advance(10)
    assert received(sock) == [] and clock.getDelayedCalls() == []
    notifier.close()


def test_never_blocks_and_warns_once(tmp_path, log_events):
    """A full or missing notify socket drops the datagram at once, warned once."""
    path = str(tmp_path / "full")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        notifier = SystemdNotifier(path)
        started = time.monotonic()
        for _ in range(5000):  # far beyond the receive queue
            notifier.watchdog()
        assert time.monotonic() - started < 5
        missing = SystemdNotifier(str(tmp_path / "missing"))
        missing.ready("x")
        missing.ready("x")
    finally:
        sock.close()
        notifier.close()
        missing.close()
    warnings = [e for e in log_events if "Cannot notify systemd" in e.get("log_format", "")]
    assert [w["address"] for w in warnings] == [path, str(tmp_path / "missing")]


class _Recorder:
    def __init__(self, events):
        self.events = events

    def stopping(self, status):
        self.events.append("STOPPING")


class _Child(Service):
    def __init__(self, name, events):
        self.setName(name)
        self.events = events

    def stopService(self):
        super().stopService()
        self.events.append(self.name)


def test_stopping_sent_before_anything_stops():
    """DaemonService tells the supervisor STOPPING before its first child stops."""
    events = []
    top = DaemonService(None, "INFO", supervisor=_Recorder(events))
    _Child("storage", events).setServiceParent(top)
    _Child("listen", events).setServiceParent(top)
    top.startService()
    top.stopService()
    assert events == ["STOPPING", "listen", "storage"]


def _build(environ, argv):
    reactor = MemoryReactorClock()
    options = Options(environ=environ)
    options.parseOptions(argv)
    return makeService(options, reactor, engine_factory=FakeEngine, assemble=fake_assemble), reactor


def test_ready_once_every_listener_listens(receiver):
    """READY=1 is sent once the reactor runs and every listener has listened."""
    path, sock = receiver
    top, reactor = _build(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"},
        ["--listen", "tcp:8999:interface=127.0.0.1", "--listen", "tcp:9000:interface=127.0.0.2"],
    )
    assert top.getServiceNamed("watchdog").step == 2.0
    top.startService()
    try:
        assert received(sock) == ["WATCHDOG=1"]  # not READY: the reactor is not running
        reactor.run()  # runs the "when running" hooks
        [ready] = received(sock)
        lines = ready.split("\n")
        assert lines[0] == "READY=1"
        assert lines[1].startswith("STATUS=Listening on ") and ":8999, " in lines[1]
        assert lines[1].endswith(":9000")
    finally:
        top.stopService()
    assert received(sock)[0].startswith("STOPPING=1\n")
    top._supervisor.close()


def test_no_ready_when_a_listener_fails(receiver):
    """A listener that cannot listen: no READY=1 (start-up fails instead)."""
    path, sock = receiver
    top, reactor = _build({"NOTIFY_SOCKET": path}, ["--listen", "tcp:8999"])
    [listener] = [s for s in top if s.name.startswith("listen:")]
    listener.endpoint.endpoint.listen = lambda factory: Deferred()  # never listens
    listener.endpoint.listening.callback(None)  # as AnnouncingEndpoint._failed does
    reactor.run()
    assert received(sock) == []
    top._supervisor.close()
